"""Dockerfile variable substitution and word splitting, with docker's rules (the shell-lexer
of the classic builder and BuildKit):

* ``$NAME`` and ``${NAME}``; ``${NAME:-word}`` / ``${NAME-word}`` (default when unset/empty
  or unset), ``${NAME:+word}`` / ``${NAME+word}`` (alternative when set and non-empty / set),
  ``${NAME:?message}`` / ``${NAME?message}`` (an error when unset/empty or unset); ``word``
  is itself expanded. An unset variable expands to nothing.
* single quotes keep everything literal; double quotes allow expansion; both are removed.
* the escape character (``\\`` or the ``escape`` directive's) makes the next character
  literal; inside double quotes only before ``"``, ``$`` and itself, else it stays.

``expand`` gives one string (ENV values, WORKDIR, USER...); ``expand_words`` splits on
unquoted whitespace first (EXPOSE, VOLUME, COPY sources...)."""

from __future__ import annotations

from collections.abc import Mapping

from dockyard.errors import InvalidArgument

_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME = _NAME_START | frozenset("0123456789")


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text, self.env, self.escape = text, env, escape
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    def words(self, split: bool, stop: str = "") -> list[str]:
        """Read up to ``stop`` (a ``}`` ending a ``${...}`` word) or the end: the words (one
        unless ``split``), quotes removed, variables expanded."""
        words: list[str] = []
        word: list[str] = []
        started = False  # a word exists even when empty, once a quote opened it
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch == stop:
                break
            if split and ch in " \t\n\r":
                self.pos += 1
                if started:
                    words.append("".join(word))
                    word, started = [], False
                continue
            started = True
            if ch == self.escape:
                self.pos += 1
                if self.pos < len(self.text):
                    word.append(self.take())
                continue
            if ch == "'":
                self.pos += 1
                end = self.text.find("'", self.pos)
                if end < 0:
                    raise InvalidArgument(f"unexpected end of statement while looking for matching single-quote: {self.text}")
                word.append(self.text[self.pos:end])
                self.pos = end + 1
                continue
            if ch == '"':
                self.pos += 1
                word.append(self._double_quoted())
                continue
            if ch == "$":
                value = self._variable()
                if not split:
                    word.append(value)
                    continue
                # unquoted: the value's own whitespace separates words, as in a shell
                pieces = value.split()
                if value[:1].isspace() and started and word:
                    words.append("".join(word))
                    word = []
                for piece in pieces[:-1]:
                    word.append(piece)
                    words.append("".join(word))
                    word = []
                if pieces:
                    word.append(pieces[-1])
                if value[-1:].isspace():
                    words.append("".join(word))
                    word, started = [], False
                elif not pieces and not word:
                    started = False
                continue
            word.append(self.take())
        if started or not split:
            words.append("".join(word))
        return words

    def _double_quoted(self) -> str:
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise InvalidArgument(f"unexpected end of statement while looking for matching double-quote: {self.text}")
            ch = self.take()
            if ch == '"':
                return "".join(out)
            if ch == self.escape and self.pos < len(self.text):
                nxt = self.peek()
                if nxt in ('"', "$", self.escape):
                    out.append(self.take())
                else:
                    out.append(ch)
                continue
            if ch == "$":
                self.pos -= 1
                out.append(self._variable())
                continue
            out.append(ch)

    def _name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _NAME:
            self.pos += 1
        return self.text[start:self.pos]

    def _variable(self) -> str:
        self.pos += 1  # the $
        ch = self.peek()
        if ch == "{":
            self.pos += 1
            return self._braced()
        if ch and ch in _NAME_START:
            return self.env.get(self._name(), "")
        return "$"  # a lone $ is itself

    def _braced(self) -> str:
        name = self._name()
        if not name:
            raise InvalidArgument(f"missing ':' in substitution: {self.text}" if self.peek() != "}"
                                  else f"bad substitution: {self.text}")
        ch = self.take()
        if ch == "}":
            return self.env.get(name, "")
        colon = ch == ":"
        op = self.take() if colon else ch
        if op not in ("-", "+", "?"):
            raise InvalidArgument(f"unsupported modifier ({ch}{op if colon else ''}) in substitution: {self.text}")
        word = "".join(self.words(split=False, stop="}"))
        if self.take() != "}":
            raise InvalidArgument(f"syntax error: missing '}}' in substitution: {self.text}")
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if op == "-":
            return value if is_set else word  # type: ignore[return-value]
        if op == "+":
            return word if is_set else ""
        if not is_set:
            raise InvalidArgument(f"{name}: {word or 'is not allowed to be unset'}")
        return value  # type: ignore[return-value]


def expand(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word: quotes removed, variables expanded, whitespace kept."""
    return _Lexer(text, env, escape).words(split=False)[0]


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Words split on unquoted whitespace, each expanded."""
    return _Lexer(text, env, escape).words(split=True)


def expand_heredoc(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """A heredoc body with an unquoted delimiter: variables expanded, ``\\$`` a literal
    dollar, quotes and everything else kept as written (it is file content, not words)."""
    out: list[str] = []
    lexer = _Lexer(text, env, escape)
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == escape and text[i + 1:i + 2] == "$":
            out.append("$")
            i += 2
        elif ch == "$":
            lexer.pos = i
            out.append(lexer._variable())
            i = lexer.pos
        else:
            out.append(ch)
            i += 1
    return "".join(out)


__all__ = ["expand", "expand_heredoc", "expand_words"]
