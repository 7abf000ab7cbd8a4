"""The Dockerfile parser: text -> instructions, with docker's syntax.

* parser directives (``# escape=``, ``# syntax=`` — accepted, ignored —, ``# check=``) only
  before anything else: the first comment that is not a directive, blank line or instruction
  ends them;
* comments (``#`` as the first non-blank character) and blank lines, also inside a
  continued instruction, are dropped;
* a line ending in the escape character (trailing blanks allowed) continues on the next;
* instructions are case-insensitive; leading ``--flag[=value]`` options are split off;
* exec form: arguments that are a JSON array of strings; otherwise shell form;
* heredocs for RUN, COPY and ADD: ``<<EOF`` (``<<-EOF`` strips leading tabs; a quoted
  delimiter, ``<<"EOF"`` or ``<<'EOF'``, turns variable expansion off), their bodies being
  the lines after the instruction up to the delimiter.

Errors name the line: ``Dockerfile:7: unknown instruction: RUNN``. Variable expansion is
not done here (it depends on the build's state): see shell_words and the builder."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument

INSTRUCTIONS = frozenset({
    "add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck", "label",
    "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir",
})
# the options each instruction takes (docker's BFlags); a value of None: a boolean option
FLAGS: dict[str, dict[str, bool]] = {  # name -> takes a value
    "from": {"platform": True},
    "run": {"mount": True, "network": True, "security": True},
    "copy": {"from": True, "chown": True, "chmod": True, "link": False, "parents": False, "exclude": True},
    "add": {"chown": True, "chmod": True, "link": False, "checksum": True, "keep-git-dir": False,
            "exclude": True},
    "healthcheck": {"interval": True, "timeout": True, "start-period": True, "start-interval": True,
                    "retries": True},
}
_HEREDOC_INSTRUCTIONS = frozenset({"run", "copy", "add"})
_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_KNOWN_DIRECTIVES = frozenset({"escape", "syntax", "check"})
_HEREDOC = re.compile(r"<<(-?)(\"|')?([A-Za-z_][A-Za-z0-9_]*)\2?")


class DockerfileSyntaxError(InvalidArgument):
    def __init__(self, line: int, message: str, filename: str = "Dockerfile") -> None:
        super().__init__(f"{filename}:{line}: {message}")
        self.line = line


@dataclass
class Heredoc:
    name: str
    content: str  # with a final newline, as the shell would feed it
    expand: bool  # False for a quoted delimiter
    strip_tabs: bool = False


@dataclass
class Instruction:
    cmd: str  # lowercased
    args: list[str]  # exec form: the JSON list; ENV/LABEL/ARG: "key=value" words; else see parse
    original: str  # the logical line as written, continuations joined (docker's "Step N/M : ...")
    line: int  # where it starts (1-based)
    json: bool = False  # exec form
    flags: dict[str, list[str]] = field(default_factory=dict)  # --name=value, repeatable
    heredocs: list[Heredoc] = field(default_factory=list)
    raw_args: str = ""  # the argument text after the flags, before any splitting
    sub: Instruction | None = None  # ONBUILD's instruction


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    lines = text.replace("\r\n", "\n").split("\n")
    if text.endswith("\n"):
        lines.pop()
    directives: dict[str, str] = {}
    i = 0
    while i < len(lines):  # the directives block
        m = _DIRECTIVE.match(lines[i].strip())
        if not m:
            break
        key, value = m.group(1).lower(), m.group(2)
        if key in _KNOWN_DIRECTIVES:
            if key in directives:
                raise DockerfileSyntaxError(i + 1, f"only one {key} parser directive can be used", filename)
            directives[key] = value
        i += 1
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileSyntaxError(1, f"invalid escape token '{escape}' does not match ` or \\", filename)
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")
    doc = Dockerfile([], escape, directives)
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start = i
        parts: list[str] = []
        line = lines[i]
        while True:
            m = continuation.search(line)
            if not m:
                parts.append(line)
                i += 1
                break
            parts.append(line[:m.start()])
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].strip().startswith("#")):
                if not lines[i].strip():
                    doc.warnings.append(f"{filename}:{i + 1}: empty continuation line")
                i += 1
            if i >= len(lines):
                break
            line = lines[i]
        logical = "".join(parts).strip()
        inst = _instruction(logical, start + 1, filename)
        if inst.cmd in _HEREDOC_INSTRUCTIONS:
            i = _read_heredocs(inst, lines, i, filename)
        doc.instructions.append(inst)
    return doc


def _instruction(logical: str, line: int, filename: str, onbuild: bool = False) -> Instruction:
    word, _, rest = logical.partition(" ")
    if "\t" in word:
        word, _, more = word.partition("\t")
        rest = more + " " + rest
    cmd = word.lower()
    if cmd not in INSTRUCTIONS:
        raise DockerfileSyntaxError(line, f"unknown instruction: {word.upper()}", filename)
    rest = rest.strip()
    flags, rest = _flags(cmd, rest, line, filename)
    inst = Instruction(cmd, [], logical, line, flags=flags, raw_args=rest)
    if cmd == "onbuild":
        if not rest:
            raise DockerfileSyntaxError(line, "ONBUILD requires at least one argument", filename)
        sub = _instruction(rest, line, filename, onbuild=True)
        if sub.cmd in ("onbuild", "from", "maintainer"):
            raise DockerfileSyntaxError(line, f"{sub.cmd.upper()} isn't allowed as an ONBUILD trigger", filename)
        inst.sub, inst.args = sub, [rest]
        return inst
    if cmd in ("cmd", "entrypoint", "run", "shell", "volume", "copy", "add") or cmd == "healthcheck":
        parsed = _json_list(rest)
        if parsed is not None and cmd != "healthcheck":
            inst.args, inst.json = parsed, True
            return _check(inst, filename)
    if cmd in ("env", "label"):
        inst.args = _name_values(cmd, rest, line, filename)
    elif cmd == "arg":
        inst.args = _words(rest)
    elif cmd in ("run", "cmd", "entrypoint", "maintainer", "workdir", "stopsignal", "user", "shell"):
        inst.args = [rest] if rest else []
    elif cmd == "healthcheck":
        inst.args = _healthcheck(rest, line, filename)
    else:  # from, expose, volume, copy, add: whitespace-separated words
        inst.args = _words(rest)
    return _check(inst, filename)


def _check(inst: Instruction, filename: str) -> Instruction:
    name = inst.cmd.upper()
    if inst.cmd == "shell" and not inst.json:
        raise DockerfileSyntaxError(inst.line, "SHELL requires the arguments to be in JSON form", filename)
    if inst.cmd in ("copy", "add") and len(inst.args) < 2 and not _HEREDOC.search(inst.raw_args):
        raise DockerfileSyntaxError(inst.line, f"{name} requires at least two arguments, but only one was provided. "
                                    "Destination could not be determined", filename)
    if inst.cmd in ("from",) and not inst.args:
        raise DockerfileSyntaxError(inst.line, "FROM requires either one or three arguments", filename)
    if inst.cmd == "from" and len(inst.args) not in (1, 3):
        raise DockerfileSyntaxError(inst.line, "FROM requires either one or three arguments", filename)
    if inst.cmd == "from" and len(inst.args) == 3 and inst.args[1].lower() != "as":
        raise DockerfileSyntaxError(inst.line, "FROM requires either one or three arguments", filename)
    if inst.cmd in ("workdir", "user", "stopsignal", "maintainer", "expose", "volume", "arg", "run",
                    "env", "label") and not inst.args:
        raise DockerfileSyntaxError(inst.line, f"{name} requires at least one argument", filename)
    return inst


def _flags(cmd: str, rest: str, line: int, filename: str) -> tuple[dict[str, list[str]], str]:
    flags: dict[str, list[str]] = {}
    known = FLAGS.get(cmd, {})
    while rest.startswith("--"):
        token, _, after = rest.partition(" ")
        if token == "--":
            break
        name, eq, value = token[2:].partition("=")
        if name not in known:
            raise DockerfileSyntaxError(line, f"unknown flag: {name}", filename)
        if known[name] and not eq:
            raise DockerfileSyntaxError(line, f"missing a value on flag: {name}", filename)
        if not known[name] and eq and value.lower() not in ("true", "false"):
            raise DockerfileSyntaxError(line, f"expecting boolean value for flag {name}, not: {value}", filename)
        flags.setdefault(name, []).append(value if eq else "true")
        rest = after.lstrip()
    return flags, rest


def _json_list(text: str) -> list[str] | None:
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def _words(text: str) -> list[str]:
    """Whitespace-separated words, quotes (and the escapes in them) kept for expansion."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            word.append(ch)
            if ch == "\\" and quote == '"' and i + 1 < len(text):
                word.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in " \t":
            if word:
                words.append("".join(word))
                word = []
        else:
            word.append(ch)
            if ch in "'\"":
                quote = ch
            elif ch == "\\" and i + 1 < len(text):
                word.append(text[i + 1])
                i += 1
        i += 1
    if word:
        words.append("".join(word))
    return words


def _name_values(cmd: str, text: str, line: int, filename: str) -> list[str]:
    """ENV/LABEL: ``k=v k2="v 2"`` words, or the legacy ``key value`` (one pair; the value is
    the rest of the line)."""
    words = _words(text)
    if not words:
        return []
    if "=" not in words[0]:
        if len(words) < 2:
            raise DockerfileSyntaxError(line, f"{cmd.upper()} must have two arguments", filename)
        return [f"{words[0]}={text.split(None, 1)[1].strip()}"]
    for word in words:
        if "=" not in word:
            raise DockerfileSyntaxError(line, f"Syntax error - can't find = in \"{word}\". Must be of the form: name=value",
                                        filename)
        if word.startswith("="):
            raise DockerfileSyntaxError(line, f"{cmd.upper()} names can not be blank", filename)
    return words


def _healthcheck(text: str, line: int, filename: str) -> list[str]:
    kind, _, rest = text.partition(" ")
    kind = kind.upper()
    if kind == "NONE":
        if rest.strip():
            raise DockerfileSyntaxError(line, "HEALTHCHECK NONE takes no arguments", filename)
        return ["NONE"]
    if kind != "CMD":
        raise DockerfileSyntaxError(line, f"Unknown type \"{kind}\" in HEALTHCHECK (try CMD)", filename)
    rest = rest.strip()
    parsed = _json_list(rest)
    if parsed is not None:
        return ["CMD", *parsed]
    return ["CMD-SHELL", rest]


def _read_heredocs(inst: Instruction, lines: list[str], i: int, filename: str) -> int:
    """The heredoc bodies named on ``inst``'s line, from line ``i`` on; returns the next line."""
    for m in _HEREDOC.finditer(inst.raw_args):
        strip_tabs, quote, name = m.group(1) == "-", m.group(2), m.group(3)
        body: list[str] = []
        while True:
            if i >= len(lines):
                raise DockerfileSyntaxError(inst.line, f"unterminated heredoc {name}", filename)
            text = lines[i]
            i += 1
            if (text.lstrip("\t") if strip_tabs else text) == name:
                break
            body.append(text.lstrip("\t") if strip_tabs else text)
        inst.heredocs.append(Heredoc(name, "".join(f"{b}\n" for b in body), expand=not quote, strip_tabs=strip_tabs))
    return i


__all__ = ["Dockerfile", "DockerfileSyntaxError", "Heredoc", "INSTRUCTIONS", "Instruction", "parse"]
