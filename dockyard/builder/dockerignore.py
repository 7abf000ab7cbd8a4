""".dockerignore: which paths of a build context are sent to the builder.

The semantics are those of moby's patternmatcher (``ignorefile.ReadAll`` then
``patternmatcher.New`` / ``MatchesOrParentMatches``), which both the classic builder and
BuildKit's context transfer use:

    parse(text) -> list[Pattern]       # the lines of a .dockerignore file
    load(context_dir) -> list[Pattern] # ... read from <context_dir>/.dockerignore, if any
    Matcher(patterns)                  # Pattern objects, or raw strings as patternmatcher.New takes
        .matches(path) -> bool         # True: the path is excluded from the context
        .excludes_dir_entirely(dir) -> bool   # True: nothing beneath dir can be re-included
    walk(root, matcher, always=...) -> Iterator[str]   # what the context contains

Reading a file: a line starting with ``#`` (in column 1) is a comment; every other line is
trimmed, blank lines are skipped, a leading ``!`` makes an exception (re-include); the rest
is cleaned like Go's ``filepath.Clean`` and a leading ``/`` dropped, so ``/a``, ``./a`` and
``a/`` all mean ``a``.

Matching a path (relative to the context root, ``/``-separated): a pattern matches it when
it matches the path itself or any of its parent directories, so ``node_modules`` excludes
everything under it; the last pattern that matches decides, so a later ``!`` line
re-includes. The glob is Go's ``filepath.Match`` plus ``**``: ``*`` is any run of
non-``/`` characters, ``?`` one non-``/`` character, ``[...]`` a character class (negated
by ``^``; ``!`` is an ordinary member), ``\\`` escapes the next character, ``**/`` any
number of directories including none and a trailing ``**`` anything. As in moby, a pattern
that starts with ``**`` and has no other wildcard is a plain suffix test (``**.pyc``
matches ``a/b.pyc``), one that ends with ``**`` after only literal text a plain prefix test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument

__all__ = ["DockerignoreError", "Matcher", "Pattern", "load", "parse", "walk"]

# Go's strings.TrimSpace: Unicode White_Space (Python's str.strip() also strips \x1c-\x1f).
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

_EXACT, _PREFIX, _SUFFIX, _REGEX = "exact", "prefix", "suffix", "regex"


class DockerignoreError(InvalidArgument, ValueError):
    """A pattern docker refuses (a bare ``!``, an unterminated or empty ``[``, a class range
    that runs backwards, a trailing ``\\``)."""


def _trim(s: str) -> str:
    return s.strip(_GO_SPACE)


def _clean(path: str) -> str:
    """Go's path/filepath.Clean on a ``/``-separated path."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(comp)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


def _kind(p: str) -> str:
    """How moby's patternmatcher matches ``p``: an exact string, a prefix (literal text then
    a final ``**``), a suffix (a leading ``**`` then literal text) or a regexp. This mirrors
    its scan, which treats ``[``/``]`` as plain regexp characters wherever they are."""
    kind = _EXACT
    i, n, first = 0, len(p), True
    while i < n:
        ch = p[i]
        i += 1
        if ch == "*":
            if i < n and p[i] == "*":
                i += 1
                if i < n and p[i] == "/":
                    i += 1
                # "**" at the end after only literal text: a prefix test
                kind = _PREFIX if i >= n and kind == _EXACT else _REGEX
                if first:
                    kind = _SUFFIX
            else:
                kind = _REGEX
        elif ch in "?[]":
            kind = _REGEX
        elif ch == "\\" and i < n:
            i += 1
            kind = _REGEX
        first = False
    return kind


def _class_char(ch: str) -> str:
    return "\\" + ch if ch in "\\]-^[" else ch


# One parsed token of a pattern: ("lit", ch) | ("star",) | ("qmark",) | ("dstar", regex)
# | ("class", regex, may_match_slash).
_Token = tuple


def _tokenize(p: str) -> list[_Token]:
    """Parse ``p`` with Go's filepath.Match grammar (raising DockerignoreError where
    filepath.Match or moby's regexp compilation fails) into tokens."""
    toks: list[_Token] = []
    i, n = 0, len(p)
    while i < n:
        ch = p[i]
        if ch == "*":
            if i + 1 < n and p[i + 1] == "*":
                i += 2
                if i < n and p[i] == "/":
                    i += 1
                toks.append(("dstar", ".*" if i >= n else "(?:.*/)?"))
                continue
            toks.append(("star",))
            i += 1
        elif ch == "?":
            toks.append(("qmark",))
            i += 1
        elif ch == "\\":
            if i + 1 >= n:
                raise DockerignoreError(f"syntax error in pattern {p!r}: trailing backslash")
            toks.append(("lit", p[i + 1]))
            i += 2
        elif ch == "[":
            tok, i = _parse_class(p, i + 1)
            toks.append(tok)
        else:
            toks.append(("lit", ch))
            i += 1
    return toks


def _parse_class(p: str, i: int) -> tuple[_Token, int]:
    """The class starting after the ``[`` at ``p[i-1]``: returns its token and the index
    after its ``]``."""
    n = len(p)

    def bad(why: str) -> DockerignoreError:
        return DockerignoreError(f"syntax error in pattern {p!r}: {why}")

    def char(i: int) -> tuple[str, int]:  # Go's getEsc
        if i >= n:
            raise bad("unterminated character class")
        if p[i] in "-]":
            raise bad(f"unexpected {p[i]!r} in character class")
        if p[i] == "\\":
            i += 1
            if i >= n:
                raise bad("unterminated character class")
        if i + 1 >= n:
            raise bad("unterminated character class")
        return p[i], i + 1

    negated = i < n and p[i] == "^"
    if negated:
        i += 1
    ranges: list[tuple[str, str]] = []
    while True:
        if i < n and p[i] == "]" and ranges:
            i += 1
            break
        lo, i = char(i)
        hi = lo
        if p[i] == "-":
            hi, i = char(i + 1)
        if lo > hi:
            raise bad(f"character class range {lo}-{hi} runs backwards")
        ranges.append((lo, hi))
    body = "".join(_class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}"
                   for lo, hi in ranges)
    has_slash = any(lo <= "/" <= hi for lo, hi in ranges)
    return ("class", f"[{'^' if negated else ''}{body}]", has_slash != negated), i


def _regex(toks: Iterable[_Token]) -> str:
    out = []
    for t in toks:
        if t[0] == "lit":
            out.append(re.escape(t[1]))
        elif t[0] == "star":
            out.append("[^/]*")
        elif t[0] == "qmark":
            out.append("[^/]")
        else:  # dstar, class
            out.append(t[1])
    return "".join(out)


@dataclass(frozen=True, eq=False)
class Pattern:
    """One compiled .dockerignore line. ``text`` is the cleaned glob without its ``!``;
    ``exception`` is True for a ``!`` line (re-include)."""

    text: str
    exception: bool = False
    literal: bool = False  # match ``text`` as a plain path, not a glob (see walk's ``always``)
    _kind: str = field(init=False, repr=False)
    _re: re.Pattern[str] | None = field(init=False, repr=False, default=None)
    _depth: int | None = field(init=False, repr=False, default=None)
    # per path segment: (regex, plain) -- plain: matches exactly one path component
    _segments: tuple[tuple[re.Pattern[str] | None, bool], ...] = field(
        init=False, repr=False, default=())

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.literal:
            set_(self, "_kind", _EXACT)
            set_(self, "_depth", self.text.count("/") + 1)
            return
        toks = _tokenize(self.text)  # validates, whatever kind the matching will use
        kind = _kind(self.text)
        set_(self, "_kind", kind)
        if kind == _EXACT:
            set_(self, "_depth", self.text.count("/") + 1)
        if kind != _REGEX:
            return
        set_(self, "_re", re.compile(_regex(toks)))
        segments: list[list[_Token]] = [[]]
        for t in toks:
            if t == ("lit", "/"):
                segments.append([])
            else:
                segments[-1].append(t)
        compiled = []
        for seg in segments:
            plain = not any(t[0] == "dstar" or (t[0] == "class" and t[2]) for t in seg)
            compiled.append((re.compile(_regex(seg)) if plain else None, plain))
        set_(self, "_segments", tuple(compiled))
        if all(plain for _, plain in compiled):
            set_(self, "_depth", len(compiled))

    @classmethod
    def from_string(cls, s: str) -> Pattern | None:
        """One entry as patternmatcher.New takes it (``!`` prefix for an exception); None for
        a blank one."""
        s = _trim(s)
        if not s:
            return None
        s = _clean(s)
        exception = s[0] == "!"
        if exception:
            if len(s) == 1:
                raise DockerignoreError('illegal exclusion pattern: "!"')
            s = s[1:]
        return cls(s, exception)

    def __str__(self) -> str:
        return ("!" if self.exception else "") + self.text

    def match(self, path: str, depth: int | None = None) -> bool:
        """Whether the glob matches ``path`` itself (no parent rule). ``depth`` is the
        number of components of ``path`` when the caller knows it."""
        kind = self._kind
        if kind == _EXACT:
            return path == self.text
        if kind == _PREFIX:
            return path.startswith(self.text[:-2])
        if kind == _SUFFIX:
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix[:1] == "/" and path == suffix[1:])
        if self._depth is not None:
            if depth is None:
                depth = path.count("/") + 1
            if depth != self._depth:
                return False
        return self._re.fullmatch(path) is not None  # type: ignore[union-attr]

    def could_match_under(self, dir_path: str) -> bool:
        """Whether the glob might match a path strictly beneath ``dir_path`` (conservative:
        True unless it certainly cannot)."""
        kind = self._kind
        prefix = dir_path + "/"
        if kind == _EXACT:
            return self.text.startswith(prefix)
        if kind == _PREFIX:
            lit = self.text[:-2]
            return lit.startswith(prefix) or prefix.startswith(lit)
        if kind == _SUFFIX:
            return True
        parts = dir_path.split("/")
        for i, part in enumerate(parts):
            if i >= len(self._segments):
                return False  # only paths no deeper than dir_path itself
            seg_re, plain = self._segments[i]
            if not plain:
                return True
            if seg_re.fullmatch(part) is None:  # type: ignore[union-attr]
                return False
        return len(self._segments) > len(parts)


def parse(text: str) -> list[Pattern]:
    """The patterns of a .dockerignore file's text, in order (ignorefile.ReadAll then
    patternmatcher.New). Raises DockerignoreError for a line docker refuses."""
    patterns = []
    for lineno, line in enumerate(text.split("\n")):
        if lineno == 0:
            line = line.removeprefix("\ufeff")
        line = line.removesuffix("\r")
        if line.startswith("#"):
            continue
        s = _trim(line)
        if not s:
            continue
        invert = s[0] == "!"
        if invert:
            s = _trim(s[1:])
        if s:
            s = _clean(s)
            if len(s) > 1 and s[0] == "/":
                s = s[1:]
        try:
            p = Pattern.from_string("!" + s if invert else s)
        except DockerignoreError as e:
            raise DockerignoreError(f".dockerignore line {lineno + 1}: {e}") from None
        if p is not None:
            patterns.append(p)
    return patterns


def load(context_dir: str) -> list[Pattern]:
    """The patterns of ``<context_dir>/.dockerignore`` ([] when there is none)."""
    try:
        with open(os.path.join(context_dir, ".dockerignore"), encoding="utf-8",
                  errors="surrogateescape", newline="") as f:
            return parse(f.read())
    except FileNotFoundError:
        return []


def _norm(path: str) -> str:
    path = _clean(path.replace(os.sep, "/"))
    return path.lstrip("/") or "."


class Matcher:
    """The patterns of a .dockerignore, applied in order (the last match wins)."""

    def __init__(self, patterns: Iterable[Pattern | str] = ()) -> None:
        ps: list[Pattern] = []
        for p in patterns:
            if isinstance(p, str):
                p = Pattern.from_string(p)
                if p is None:
                    continue
            ps.append(p)
        self.patterns: tuple[Pattern, ...] = tuple(ps)
        self._exceptions = tuple(p for p in ps if p.exception)

    @property
    def has_exceptions(self) -> bool:
        return bool(self._exceptions)

    def __repr__(self) -> str:
        return f"Matcher({[str(p) for p in self.patterns]!r})"

    def with_exceptions(self, paths: Iterable[str]) -> Matcher:
        """This matcher plus a final literal exception for each path: what the docker CLI
        does to keep the Dockerfile and .dockerignore in the context."""
        extra = [Pattern(p, exception=True, literal=True)
                 for p in (_norm(p) for p in paths) if p != "."]
        return Matcher([*self.patterns, *extra])

    # -- matching ---------------------------------------------------------------------------

    def _vector(self, path: str, depth: int, parent: tuple[bool, ...] | None) -> tuple[bool, ...]:
        """For each pattern, whether it matches ``path`` or one of its parents; ``parent``
        is the parent directory's vector (None: compute the parents' matches here)."""
        if parent is not None:
            return tuple(pm or p.match(path, depth) for p, pm in zip(self.patterns, parent, strict=True))
        ancestors = []
        i = path.find("/")
        while i != -1:
            ancestors.append(path[:i])
            i = path.find("/", i + 1)
        return tuple(p.match(path, depth) or any(p.match(a, d + 1) for d, a in enumerate(ancestors))
                     for p in self.patterns)

    def _decide(self, vector: tuple[bool, ...]) -> bool:
        for p, m in zip(reversed(self.patterns), reversed(vector), strict=True):
            if m:
                return not p.exception
        return False

    def matches(self, path: str) -> bool:
        """Whether ``path`` (relative to the context root) is excluded. The root itself
        never is."""
        path = _norm(path)
        if path == "." or not self.patterns:
            return False
        return self._decide(self._vector(path, path.count("/") + 1, None))

    def _nothing_reincluded_under(self, dir_path: str) -> bool:
        return not any(p.could_match_under(dir_path) for p in self._exceptions)

    def excludes_dir_entirely(self, dir_path: str) -> bool:
        """True when ``dir_path`` is excluded and no exception could re-include anything
        beneath it, so a walker need not descend."""
        return self.matches(dir_path) and self._nothing_reincluded_under(_norm(dir_path))


def _entries(path: str) -> list[tuple[str, bool]]:
    with os.scandir(path) as it:
        return sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)


class _Frame:
    __slots__ = ("entries", "i", "rel", "depth", "vector", "emitted")

    def __init__(self, entries: list[tuple[str, bool]], rel: str, depth: int,
                 vector: tuple[bool, ...], emitted: bool) -> None:
        self.entries, self.i, self.rel, self.depth = entries, 0, rel, depth
        self.vector, self.emitted = vector, emitted


def walk(root: str, matcher: Matcher, always: Iterable[str] = frozenset()) -> Iterator[str]:
    """The relative (``/``-separated) paths of everything under ``root`` that the context
    contains -- files, directories, symlinks (never followed) and other special files --
    depth first, each directory's entries sorted by name, a directory before its contents.

    An excluded directory is not descended into when no exception could re-include anything
    beneath it; when something beneath it is re-included, the directory is still yielded
    (just before that entry), as BuildKit sends the parents of what it sends. The paths in
    ``always`` (the Dockerfile and .dockerignore) are sent even if excluded -- the docker
    CLI appends an exception for each -- along with their parent directories.
    """
    if always:
        matcher = matcher.with_exceptions(always)
    nothing = not matcher.patterns
    stack = [_Frame(_entries(root), "", 0, (False,) * len(matcher.patterns), True)]
    while stack:
        frame = stack[-1]
        if frame.i >= len(frame.entries):
            stack.pop()
            continue
        name, is_dir = frame.entries[frame.i]
        frame.i += 1
        rel = f"{frame.rel}/{name}" if frame.rel else name
        depth = frame.depth + 1
        if nothing:
            vector, excluded = frame.vector, False
        else:
            vector = matcher._vector(rel, depth, frame.vector)
            excluded = matcher._decide(vector)
        if not excluded:
            for f in stack:
                if not f.emitted:
                    f.emitted = True
                    yield f.rel
            yield rel
        elif not is_dir or matcher._nothing_reincluded_under(rel):
            continue
        if is_dir:
            stack.append(_Frame(_entries(os.path.join(root, rel)), rel, depth, vector,
                                not excluded))
