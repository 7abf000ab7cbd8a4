"""A subset of Go's text/template, enough for docker's ``--format`` strings.

Supported: literal text; ``{{.Field}}``, ``{{.A.B}}``, ``{{.}}``, ``$``, variables
(``{{$x := .A}}``, ``{{$x = 1}}``, ``{{range $k, $v := .M}}``); string, raw string,
number, char, bool and nil literals; parenthesised pipelines with field chains
(``{{(index .L 0).Name}}``); pipes (``{{.A | lower}}``, the piped value is passed
as the LAST argument, as in Go); ``if``/``else if``/``else``, ``with``/``else with``,
``range``/``else`` with ``break``/``continue``; comments ``{{/* */}}``; the trim
markers ``{{- `` and `` -}}``.

Functions: Go's builtins ``and or not len index slice eq ne lt le gt ge print
printf println`` plus docker's ``json split join title lower upper pad truncate``.
Not supported: ``define``/``template``/``block``, ``html``/``js``/``urlquery``/``call``.

Values: fields resolve against mappings (case-sensitive keys; a missing key is
Go's "<no value>") or against objects' public attributes and methods (methods are
called, with arguments if given). Printing follows Go's ``%v``: ``true``,
``<nil>``, ``[a b]``, ``map[k:v]`` (sorted keys), Go float formatting.

Every error is a :class:`TemplateError` whose message is one line starting with
``template parsing error:`` -- docker wraps both parse and execution errors so.

Stdlib only; ``re`` and ``json`` are already loaded by the time the CLI runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from dockyard.errors import InvalidArgument

__all__ = [
    "TemplateError",
    "Template",
    "parse",
    "render",
    "render_template",
    "expand_escapes",
    "go_str",
    "go_sprintf",
    "NO_VALUE",
    "FUNCS",
]


class TemplateError(InvalidArgument):
    """Parse or execution failure; ``str()`` is docker's one-line message."""


class _NoValue:
    """Go's invalid reflect.Value: a missing map key. Prints as ``<no value>``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no value>"

    def __bool__(self) -> bool:
        return False


NO_VALUE: Any = _NoValue()


def expand_escapes(fmt: str) -> str:
    r"""Turn the two-character sequences ``\t`` and ``\n`` into TAB and newline.

    docker's CLI does this to every ``--format`` of its list commands (shells make
    typing a real tab awkward); it is not part of Go templates, so :func:`parse`
    leaves it to the caller. The two patterns cannot overlap, so two sequential
    replaces equal Go's single-pass strings.Replacer.
    """
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


# --------------------------------------------------------------------------
# Go-style value printing


def go_type(v: Any) -> str:
    """Go-ish type name for error messages (``%!d(string=x)``)."""
    if v is None:
        return "<nil>"
    if v is NO_VALUE:
        return "<invalid reflect.Value>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        return "map[string]interface {}"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    return type(v).__name__


def go_float(x: float, upper: bool = False) -> str:
    """Go's ``%v`` of a float64: shortest round-trip digits, exponent form when the
    decimal exponent is < -4 or >= 6 (so 1e6 prints ``1e+06``, 123456.0 ``123456``).
    """
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "+Inf" if x > 0 else "-Inf"
    # repr() gives the same shortest round-trip digits as Go's strconv.
    r = repr(x)
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    mant, _, exp_s = r.partition("e")
    ip, _, fp = mant.partition(".")
    digits = ip + fp
    pow10 = (int(exp_s) if exp_s else 0) - len(fp)  # value = int(digits) * 10**pow10
    digits = digits.lstrip("0")
    stripped = digits.rstrip("0")
    pow10 += len(digits) - len(stripped)
    digits = stripped
    if not digits:
        return sign + "0"
    exp10 = pow10 + len(digits) - 1  # exponent of the leading digit
    if exp10 < -4 or exp10 >= 6:
        e = "E" if upper else "e"
        frac = "." + digits[1:] if len(digits) > 1 else ""
        return f"{sign}{digits[0]}{frac}{e}{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if pow10 >= 0:
        return sign + digits + "0" * pow10
    point = len(digits) + pow10  # digits before the decimal point
    if point > 0:
        return f"{sign}{digits[:point]}.{digits[point:]}"
    return f"{sign}0.{'0' * -point}{digits}"


def _sorted_items(m: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    # Go visits map keys in sorted order when printing and ranging.
    try:
        return sorted(m.items(), key=lambda kv: kv[0])
    except TypeError:  # mixed key types: keep insertion order
        return list(m.items())


def go_str(v: Any) -> str:
    """Format a value as Go's fmt ``%v`` would inside a template action."""
    t = type(v)
    if t is str:
        return v
    if v is None:
        return "<nil>"
    if v is NO_VALUE:
        return "<no value>"
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is float:
        return go_float(v)
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_str(e) for e in v) + "]"
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{go_str(k)}:{go_str(e)}" for k, e in _sorted_items(v)) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, float):
        return go_float(float(v))
    return str(v)


def _truth(v: Any) -> bool:
    """Go template truthiness: zero values (false, 0, "", empty, nil) are false."""
    if v is None or v is NO_VALUE:
        return False
    if isinstance(v, (bool, int, float, str, bytes, list, tuple, dict, set, Mapping)):
        return bool(v)
    return True  # structs/objects are always "non-empty"


_QUOTE_SHORT = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_quote(s: str, quote: str = '"') -> str:
    """strconv.Quote: Go-syntax double-quoted string (``%q``)."""
    out = [quote]
    for ch in s:
        if ch == quote or ch == "\\":
            out.append("\\" + ch)
        elif ch in _QUOTE_SHORT:
            out.append(_QUOTE_SHORT[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            o = ord(ch)
            if o < 0x80:
                out.append(f"\\x{o:02x}")
            elif o < 0x10000:
                out.append(f"\\u{o:04x}")
            else:
                out.append(f"\\U{o:08x}")
    out.append(quote)
    return "".join(out)


# --------------------------------------------------------------------------
# printf

_VERB_RE = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:(\.)(\*|\d+)?)?(.)?", re.S)


def _pad(s: str, width: int | None, left: bool, zero: bool) -> str:
    if width is None or len(s) >= width:
        return s
    if left:
        return s + " " * (width - len(s))
    if zero:
        # Zero padding goes after a sign, as Go does for numbers.
        if s[:1] in "+-" and s[1:2].isdigit():
            return s[0] + "0" * (width - len(s)) + s[1:]
        return "0" * (width - len(s)) + s
    return " " * (width - len(s)) + s


def _bad_verb(verb: str, arg: Any) -> str:
    if arg is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(arg)}={go_str(arg)})"


def _fmt_one(verb: str, flags: str, width: int | None, prec: int | None, arg: Any) -> str:
    left = "-" in flags
    zero = "0" in flags and not left
    plus = "+" in flags
    space = " " in flags
    sharp = "#" in flags
    sign = "+" if plus else (" " if space else "")
    is_int = isinstance(arg, int) and not isinstance(arg, bool)
    is_num = is_int or isinstance(arg, float)

    if verb in "vs":
        if isinstance(arg, float) and verb == "v":
            s = go_float(arg)
            if sign and not s.startswith("-"):
                s = sign + s
            return _pad(s, width, left, zero)
        if is_int and verb == "v":
            s = format(arg, sign + "d") if sign else str(arg)
            return _pad(s, width, left, zero)
        # docker's Python rows may hold ints where Go had strings; print them
        # rather than Go's "%!s(int=5)".
        s = go_str(arg)
        if prec is not None:
            s = s[:prec]
        return _pad(s, width, left, zero)
    if verb == "d":
        if not is_int:
            if isinstance(arg, float) and arg.is_integer():
                arg = int(arg)  # JSON numbers decoded as float
            else:
                return _bad_verb(verb, arg)
        return _pad(format(arg, sign + "d"), width, left, zero)
    if verb in "xXob":
        if is_int:
            s = format(arg, ("#" if sharp else "") + verb)
            return _pad(s, width, left, zero)
        if isinstance(arg, str) and verb in "xX":
            s = arg.encode().hex()
            return _pad(s.upper() if verb == "X" else s, width, left, zero)
        return _bad_verb(verb, arg)
    if verb == "c":
        if is_int:
            return _pad(chr(arg), width, left, False)
        return _bad_verb(verb, arg)
    if verb == "q":
        if isinstance(arg, str):
            return _pad(go_quote(arg), width, left, zero)
        if is_int:
            return _pad(go_quote(chr(arg), "'"), width, left, zero)
        return _bad_verb(verb, arg)
    if verb in "eEfFgG":
        if not is_num:
            return _bad_verb(verb, arg)
        f = float(arg)
        if verb in "gG" and prec is None:
            s = go_float(f, upper=verb == "G")
            if sign and not s.startswith("-"):
                s = sign + s
        else:
            spec = sign + ("#" if sharp else "") + "." + str(6 if prec is None else prec) + verb
            s = format(f, spec)
            if s in ("inf", "-inf", "+inf", "nan", "INF", "-INF", "+INF", "NAN"):
                s = {"inf": "+Inf", "+inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}[s.lower()]
        return _pad(s, width, left, zero)
    if verb == "t":
        if isinstance(arg, bool):
            return _pad("true" if arg else "false", width, left, False)
        return _bad_verb(verb, arg)
    if verb == "T":
        return _pad(go_type(arg), width, left, False)
    return _bad_verb(verb, arg)


def go_sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf for the verbs docker formats use: %v %s %d %q %x %f %g %t %T %%,
    with flags ``-+# 0``, width and precision (``*`` too). Errors are rendered
    inline the Go way (``%!d(string=x)``, ``%!s(MISSING)``, ``%!(EXTRA ...)``).
    """
    out: list[str] = []
    argi = 0
    i = 0
    n = len(fmt)
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        m = _VERB_RE.match(fmt, j)
        assert m is not None  # the pattern always matches at a '%'
        flags, width_s, dot, prec_s, verb = m.groups()
        i = m.end()
        if verb is None:
            out.append("%!(NOVERB)")
            break
        if verb == "%":
            out.append("%")
            continue
        width: int | None = None
        prec: int | None = None
        if width_s == "*":
            w = args[argi] if argi < len(args) else None
            argi += 1
            if not isinstance(w, int) or isinstance(w, bool):
                out.append("%!(BADWIDTH)")
            else:
                if w < 0:
                    flags += "-"
                width = abs(w)
        elif width_s:
            width = int(width_s)
        if dot:
            if prec_s == "*":
                p = args[argi] if argi < len(args) else None
                argi += 1
                if not isinstance(p, int) or isinstance(p, bool) or p < 0:
                    out.append("%!(BADPREC)")
                else:
                    prec = p
            else:
                prec = int(prec_s) if prec_s else 0
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(_fmt_one(verb, flags, width, prec, arg))
    if argi < len(args):
        extra = ", ".join(f"{go_type(a)}={go_str(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _go_sprint(*args: Any) -> str:
    # fmt.Sprint adds a space between operands when neither side is a string.
    out: list[str] = []
    prev_str = True
    for k, a in enumerate(args):
        is_str = isinstance(a, str)
        if k > 0 and not is_str and not prev_str:
            out.append(" ")
        out.append(go_str(a))
        prev_str = is_str
    return "".join(out)


def _go_sprintln(*args: Any) -> str:
    return " ".join(go_str(a) for a in args) + "\n"


# --------------------------------------------------------------------------
# Functions


class _FuncError(Exception):
    """A function rejected its arguments; becomes "error calling NAME: ..."."""


def _as_str(v: Any) -> str:
    # Go's string functions need strings; Python rows may carry ints where docker
    # had pre-formatted strings, so print rather than reject.
    return v if isinstance(v, str) else go_str(v)


def _to_jsonable(v: Any, depth: int = 0) -> Any:
    if depth > 100:
        raise _FuncError("json: value nested too deeply")
    if v is NO_VALUE:
        return None
    if isinstance(v, float):
        # Go's encoding/json prints integral floats without ".0" (below 1e21).
        if v.is_integer() and abs(v) < 1e21:
            return int(v)
        return v
    if v is None or isinstance(v, (str, int)):
        return v
    if isinstance(v, Mapping):
        return {str(k): _to_jsonable(e, depth + 1) for k, e in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_to_jsonable(e, depth + 1) for e in v]
    if isinstance(v, bytes):
        import base64  # Go encodes []byte as base64; rare, so import lazily

        return base64.b64encode(v).decode()
    to_dict = getattr(v, "to_dict", None)
    if callable(to_dict):
        return _to_jsonable(to_dict(), depth + 1)
    if hasattr(v, "__dataclass_fields__"):
        return {
            name: _to_jsonable(getattr(v, name), depth + 1)
            for name in v.__dataclass_fields__
            if not name.startswith("_")
        }
    if hasattr(v, "__dict__"):
        return {k: _to_jsonable(e, depth + 1) for k, e in vars(v).items() if not k.startswith("_")}
    return str(v)


def to_json(v: Any, sort_keys: bool = False) -> str:
    """docker's ``json`` template function: compact, no HTML escaping.

    Key order is kept (Python dicts built from daemon JSON are in struct order, as
    docker prints structs); pass ``sort_keys`` for Go map semantics.
    """
    s = json.dumps(_to_jsonable(v), ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    # Go escapes these two even with SetEscapeHTML(false); Python leaves them raw.
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _fn_index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if item is None or item is NO_VALUE:
            raise _FuncError("index of untyped nil")
        if isinstance(item, Mapping):
            # Go returns the map's zero value for a missing key; for the common
            # case (labels, map[string]string) that is "", which scripts test for.
            item = item.get(key, "")
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise _FuncError(f"cannot index slice/array with type {go_type(key)}")
            if key < 0 or key >= len(item):
                raise _FuncError(f"index out of range: {key}")
            # Go indexes a string's bytes and yields a number (uint8).
            item = ord(item[key]) if isinstance(item, str) else item[key]
        else:
            raise _FuncError(f"can't index item of type {go_type(item)}")
    return item


def _fn_slice(item: Any, *idx: Any) -> Any:
    if not isinstance(item, (list, tuple, str)):
        raise _FuncError(f"can't slice item of type {go_type(item)}")
    if len(idx) > 2:
        raise _FuncError("too many slice indexes")
    for k in idx:
        if not isinstance(k, int) or isinstance(k, bool):
            raise _FuncError(f"cannot slice with type {go_type(k)}")
    lo = idx[0] if idx else 0
    hi = idx[1] if len(idx) > 1 else len(item)
    if not 0 <= lo <= hi <= len(item):
        raise _FuncError(f"slice index out of range: {lo}:{hi}")
    return item[lo:hi]


def _fn_len(item: Any) -> int:
    if isinstance(item, (str, bytes, list, tuple, Mapping, set)):
        return len(item)
    raise _FuncError(f"len of type {go_type(item)}")


def _fn_eq(a: Any, *bs: Any) -> bool:
    if not bs:
        raise _FuncError("missing argument for comparison")
    return any(a == b for b in bs)


def _cmp(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        try:
            return bool(op(a, b))
        except TypeError:
            raise _FuncError("incompatible types for comparison") from None

    return compare


def _fn_title(s: Any) -> str:
    # strings.Title: upper-case the first letter of each word and leave the rest
    # alone (unlike str.title(), which lower-cases "ID" to "Id").
    s = _as_str(s)
    out = []
    prev_sep = True
    for ch in s:
        out.append(ch.upper() if prev_sep else ch)
        prev_sep = not (ch.isalnum() or ch == "_") and (ch.isascii() or ch.isspace())
    return "".join(out)


def _fn_split(s: Any, sep: Any) -> list[str]:
    s, sep = _as_str(s), _as_str(sep)
    if sep == "":
        return list(s)  # Go splits after each UTF-8 sequence
    return s.split(sep)


def _fn_join(elems: Any, sep: Any) -> str:
    if isinstance(elems, str) or not isinstance(elems, Iterable):
        raise _FuncError(f"wrong type for value; expected []string; got {go_type(elems)}")
    return _as_str(sep).join(_as_str(e) for e in elems)


def _fn_pad(s: Any, prefix: int, suffix: int) -> str:
    s = _as_str(s)
    if s == "":
        return s
    return " " * prefix + s + " " * suffix


def _fn_truncate(s: Any, length: int) -> str:
    s = _as_str(s)
    return s if len(s) < length else s[:length]


# name -> (function, min args, max args or None for variadic)
FUNCS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "and": (lambda *a: a[-1], 1, None),  # evaluated lazily in _Exec
    "or": (lambda *a: a[-1], 1, None),
    "not": (lambda a: not _truth(a), 1, 1),
    "len": (_fn_len, 1, 1),
    "index": (_fn_index, 1, None),
    "slice": (_fn_slice, 1, None),
    "eq": (_fn_eq, 1, None),
    "ne": (lambda a, b: a != b, 2, 2),
    "lt": (_cmp(lambda a, b: a < b), 2, 2),
    "le": (_cmp(lambda a, b: a <= b), 2, 2),
    "gt": (_cmp(lambda a, b: a > b), 2, 2),
    "ge": (_cmp(lambda a, b: a >= b), 2, 2),
    "print": (_go_sprint, 0, None),
    "printf": (lambda f, *a: go_sprintf(_as_str(f), *a), 1, None),
    "println": (_go_sprintln, 0, None),
    # docker's additions (templates.basicFunctions)
    "json": (to_json, 1, 1),
    "split": (_fn_split, 2, 2),
    "join": (_fn_join, 2, 2),
    "title": (_fn_title, 1, 1),
    "lower": (lambda s: _as_str(s).lower(), 1, 1),
    "upper": (lambda s: _as_str(s).upper(), 1, 1),
    "pad": (_fn_pad, 3, 3),
    "truncate": (_fn_truncate, 2, 2),
}


def _first(v: Any, *_: Any) -> Any:
    return v


# docker renders table headers by running the row template over the header
# names with these functions swapped in, so "{{.Names | upper}}" or
# "{{json .Labels}}" still print the plain header ("HeaderFunctions").
_HEADER_FUNCS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    **FUNCS,
    "json": (_first, 1, 1),
    "split": (_first, 2, 2),
    "join": (_first, 2, 2),
    "title": (_first, 1, 1),
    "lower": (_first, 1, 1),
    "upper": (_first, 1, 1),
    "truncate": (_first, 2, 2),
    # Not overridden by docker (it would fail on a header string); returning the
    # header keeps "{{index .Labels "k"}}" columns titled.
    "index": (_first, 1, None),
}


# --------------------------------------------------------------------------
# Lexer

_KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "break", "continue", "define", "template", "block"}
)
_IDENT_RE = re.compile(r"[^\W\d]\w*")
_VAR_RE = re.compile(r"\$\w*")
_NUMBER_RE = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+"
    r"|(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?\.?)"
)
_SPACE = " \t\r\n"
_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


class _Tok:
    __slots__ = ("kind", "val", "pos", "space", "end")

    def __init__(self, kind: str, val: Any, pos: int, space: bool, end: int) -> None:
        self.kind = (
            kind  # field var ident dot string number lparen rparen pipe declare assign comma
        )
        self.val = val
        self.pos = pos
        self.space = space  # whitespace before: separates operands / breaks chains
        self.end = end

    def describe(self) -> str:
        return f'"{self.val}"' if self.kind in ("ident", "field", "var") else self.kind


class _ParseError(Exception):
    def __init__(self, msg: str, pos: int) -> None:
        super().__init__(msg)
        self.pos = pos


def _unquote(body: str, pos: int) -> str:
    """Decode a Go interpreted string literal's escapes."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            raise _ParseError("invalid syntax in quoted string", pos)
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            size = {"x": 2, "u": 4, "U": 8}[e]
            hexd = body[i + 2 : i + 2 + size]
            if len(hexd) != size or any(c not in "0123456789abcdefABCDEF" for c in hexd):
                raise _ParseError("invalid syntax in quoted string", pos)
            out.append(chr(int(hexd, 16)))
            i += 2 + size
        elif e in "01234567":
            octd = body[i + 1 : i + 4]
            if len(octd) != 3 or any(c not in "01234567" for c in octd):
                raise _ParseError("invalid syntax in quoted string", pos)
            out.append(chr(int(octd, 8)))
            i += 4
        else:
            raise _ParseError("invalid syntax in quoted string", pos)
    return "".join(out)


def _lex_action(text: str, pos: int) -> tuple[list[_Tok], int, bool]:
    """Tokenize one action starting at ``pos`` (just after ``{{`` and any ``- ``).

    Returns (tokens, position after the closing ``}}``, right-trim flag).
    """
    toks: list[_Tok] = []
    n = len(text)
    space = True
    while True:
        if pos >= n:
            raise _ParseError("unclosed action", pos)
        c = text[pos]
        if c == "}" and text.startswith("}}", pos):
            return toks, pos + 2, False
        if c in _SPACE:
            if text.startswith("-}}", pos + 1):
                return toks, pos + 4, True
            pos += 1
            space = True
            continue
        start = pos
        if c == "." and pos + 1 < n and (text[pos + 1].isalpha() or text[pos + 1] == "_"):
            m = _IDENT_RE.match(text, pos + 1)
            assert m is not None
            toks.append(_Tok("field", m.group(), start, space, m.end()))
            pos = m.end()
        elif c.isdigit() or (
            c in "+-."
            and pos + 1 < n
            and (text[pos + 1].isdigit() or (c != "." and text[pos + 1] == "."))
        ):
            m = _NUMBER_RE.match(text, pos)
            if m is None or m.end() == pos:
                raise _ParseError(f"bad number syntax: {text[pos : pos + 10]!r}", pos)
            lit = m.group()
            pos = m.end()
            if pos < n and (text[pos].isalnum() or text[pos] in "._"):
                raise _ParseError(f'bad number syntax: "{lit}{text[pos]}"', start)
            toks.append(_Tok("number", _parse_number(lit, start), start, space, pos))
        elif c == ".":
            toks.append(_Tok("dot", ".", start, space, pos + 1))
            pos += 1
        elif c == "$":
            m = _VAR_RE.match(text, pos)
            assert m is not None
            toks.append(_Tok("var", m.group(), start, space, m.end()))
            pos = m.end()
        elif c.isalpha() or c == "_":
            m = _IDENT_RE.match(text, pos)
            assert m is not None
            toks.append(_Tok("ident", m.group(), start, space, m.end()))
            pos = m.end()
        elif c == '"':
            j = pos + 1
            while True:
                if j >= n:
                    raise _ParseError("unterminated quoted string", start)
                if text[j] == "\\":
                    j += 2
                    continue
                if text[j] == '"':
                    break
                j += 1
            toks.append(_Tok("string", _unquote(text[pos + 1 : j], start), start, space, j + 1))
            pos = j + 1
        elif c == "`":
            j = text.find("`", pos + 1)
            if j < 0:
                raise _ParseError("unterminated raw quoted string", start)
            toks.append(_Tok("string", text[pos + 1 : j], start, space, j + 1))
            pos = j + 1
        elif c == "'":
            j = pos + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise _ParseError("unterminated character constant", start)
            val = _unquote(text[pos + 1 : j], start)
            if len(val) != 1:
                raise _ParseError(f"malformed character constant: {text[pos : j + 1]}", start)
            toks.append(_Tok("number", ord(val), start, space, j + 1))
            pos = j + 1
        elif c in "()|,=":
            kind = {"(": "lparen", ")": "rparen", "|": "pipe", ",": "comma", "=": "assign"}[c]
            toks.append(_Tok(kind, c, start, space, pos + 1))
            pos += 1
        elif c == ":" and text.startswith(":=", pos):
            toks.append(_Tok("declare", ":=", start, space, pos + 2))
            pos += 2
        else:
            raise _ParseError(f"unrecognized character in action: U+{ord(c):04X} '{c}'", start)
        space = False


def _parse_number(lit: str, pos: int) -> int | float:
    clean = lit.replace("_", "")
    body = clean.lstrip("+-")
    neg = clean.startswith("-")
    try:
        if body[:2].lower() in ("0x", "0b", "0o"):
            v: int | float = int(body, 0)
        elif len(body) > 1 and body[0] == "0" and body.isdigit():
            v = int(body, 8)  # Go: leading zero means octal
        elif body.isdigit():
            v = int(body)
        else:
            v = float(body)
    except ValueError:
        raise _ParseError(f'bad number syntax: "{lit}"', pos) from None
    return -v if neg else v


# --------------------------------------------------------------------------
# Parse tree


class _Field:
    __slots__ = ("chain", "pos", "src")

    def __init__(self, chain: list[str], pos: int, src: str) -> None:
        self.chain, self.pos, self.src = chain, pos, src


class _Var:
    __slots__ = ("name", "chain", "pos", "src")

    def __init__(self, name: str, chain: list[str], pos: int, src: str) -> None:
        self.name, self.chain, self.pos, self.src = name, chain, pos, src


class _Func:
    __slots__ = ("name", "pos", "src")

    def __init__(self, name: str, pos: int) -> None:
        self.name, self.pos, self.src = name, pos, name


class _Lit:
    __slots__ = ("value", "pos", "src")

    def __init__(self, value: Any, pos: int, src: str) -> None:
        self.value, self.pos, self.src = value, pos, src


class _Dot:
    __slots__ = ("pos", "src")

    def __init__(self, pos: int) -> None:
        self.pos, self.src = pos, "."


class _Paren:
    __slots__ = ("pipe", "chain", "pos", "src")

    def __init__(self, pipe: _Pipe, chain: list[str], pos: int, src: str) -> None:
        self.pipe, self.chain, self.pos, self.src = pipe, chain, pos, src


class _Pipe:
    __slots__ = ("decl", "is_assign", "cmds", "pos")

    def __init__(self, decl: list[str], is_assign: bool, cmds: list[list[Any]], pos: int) -> None:
        self.decl, self.is_assign, self.cmds, self.pos = decl, is_assign, cmds, pos


class _Action:
    __slots__ = ("pipe",)

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe


class _Branch:
    """``if`` / ``with`` / ``range`` node."""

    __slots__ = ("kind", "pipe", "body", "else_body")

    def __init__(
        self, kind: str, pipe: _Pipe, body: list[Any], else_body: list[Any] | None
    ) -> None:
        self.kind, self.pipe, self.body, self.else_body = kind, pipe, body, else_body


class _Break:
    __slots__ = ()


class _Continue:
    __slots__ = ()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.items = self._split(text)
        self.i = 0
        self.scopes: list[list[str]] = [["$"]]
        self.range_depth = 0

    # The item stream: plain text (already trimmed) and actions as token lists.
    def _split(self, text: str) -> list[Any]:
        items: list[Any] = []
        pos = 0
        n = len(text)
        trim_next = False
        while pos <= n:
            j = text.find("{{", pos)
            chunk = text[pos:] if j < 0 else text[pos:j]
            if trim_next:
                chunk = chunk.lstrip(_SPACE)
            if j < 0:
                if chunk:
                    items.append(chunk)
                break
            # "{{- " trims preceding whitespace; the space after "-" is required
            # so that "{{-3}}" stays the number -3.
            trim_left = text.startswith("{{-", j) and j + 3 < n and text[j + 3] in _SPACE
            if trim_left:
                chunk = chunk.rstrip(_SPACE)
            if chunk:
                items.append(chunk)
            start = j + (4 if trim_left else 2)
            # Comments: {{/* ... */}}, closed right before the delimiter.
            if text.startswith("/*", start):
                end = text.find("*/", start + 2)
                if end < 0:
                    raise _ParseError("unclosed comment", j)
                after = end + 2
                if text.startswith("}}", after):
                    pos, trim_next = after + 2, False
                elif after < n and text[after] in _SPACE and text.startswith("-}}", after + 1):
                    pos, trim_next = after + 4, True
                else:
                    raise _ParseError("comment ends before closing delimiter", j)
                continue
            toks, pos, trim_next = _lex_action(text, start)
            items.append((toks, j))
        return items

    def fail(self, msg: str, pos: int) -> None:
        raise _ParseError(msg, pos)

    def parse(self) -> list[Any]:
        body, end = self.parse_list()
        if end is not None:
            kw, _, pos = end
            self.fail(f"unexpected {{{{{kw}}}}}", pos)
        return body

    def parse_list(self) -> tuple[list[Any], tuple[str, list[_Tok], int] | None]:
        nodes: list[Any] = []
        while self.i < len(self.items):
            item = self.items[self.i]
            self.i += 1
            if isinstance(item, str):
                nodes.append(item)
                continue
            toks, pos = item
            if not toks:
                self.fail("missing value for command", pos)
            head = toks[0]
            kw = head.val if head.kind == "ident" and head.val in _KEYWORDS else None
            if kw in ("end", "else"):
                return nodes, (kw, toks[1:], pos)
            if kw in ("if", "with", "range"):
                nodes.append(self.parse_branch(kw, toks[1:], pos))
            elif kw in ("break", "continue"):
                if self.range_depth == 0:
                    self.fail(f"{{{{{kw}}}}} outside {{{{range}}}}", pos)
                if len(toks) > 1:
                    self.fail(f"unexpected {toks[1].describe()} in {{{{{kw}}}}}", pos)
                nodes.append(_Break() if kw == "break" else _Continue())
            elif kw is not None:
                self.fail(f"{{{{{kw}}}}} is not supported by dockyard's templates", pos)
            else:
                pipe, k = self.parse_pipeline(toks, 0, pos, "command")
                if k != len(toks):
                    self.fail(f"unexpected {toks[k].describe()} in command", toks[k].pos)
                nodes.append(_Action(pipe))
        return nodes, None

    def parse_branch(self, kind: str, toks: list[_Tok], pos: int) -> _Branch:
        if not toks:
            self.fail(f"missing value for {kind}", pos)
        self.scopes.append([])
        pipe, k = self.parse_pipeline(toks, 0, pos, kind, allow_two=kind == "range")
        if k != len(toks):
            self.fail(f"unexpected {toks[k].describe()} in {kind}", toks[k].pos)
        if kind == "range":
            self.range_depth += 1
        body, end = self.parse_list()
        if kind == "range":
            self.range_depth -= 1
        if end is None:
            self.fail("unexpected EOF", len(self.text))
        assert end is not None
        kw, rest, epos = end
        else_body: list[Any] | None = None
        if kw == "else":
            if rest and kind in ("if", "with") and rest[0].kind == "ident" and rest[0].val == kind:
                # "{{else if x}}" is sugar for "{{else}}{{if x}}...{{end}}{{end}}":
                # the nested branch consumes the shared {{end}}.
                else_body = [self.parse_branch(kind, rest[1:], epos)]
            else:
                if rest:
                    self.fail(f"unexpected {rest[0].describe()} in else", rest[0].pos)
                else_body, end2 = self.parse_list()
                if end2 is None:
                    self.fail("unexpected EOF", len(self.text))
                assert end2 is not None
                if end2[0] != "end":
                    self.fail(f"expected end; found {{{{{end2[0]}}}}}", end2[2])
                if end2[1]:
                    self.fail(f"unexpected {end2[1][0].describe()} in end", end2[2])
        elif rest:
            self.fail(f"unexpected {rest[0].describe()} in end", epos)
        self.scopes.pop()
        return _Branch(kind, pipe, body, else_body)

    def _declared(self, name: str) -> bool:
        return any(name in scope for scope in self.scopes)

    def parse_pipeline(
        self, toks: list[_Tok], k: int, pos: int, context: str, allow_two: bool = False
    ) -> tuple[_Pipe, int]:
        decl: list[str] = []
        is_assign = False
        # Declaration: "$x :=", "$x =", or for range "$k, $v :=".
        if k < len(toks) and toks[k].kind == "var":
            if k + 1 < len(toks) and toks[k + 1].kind in ("declare", "assign"):
                decl = [toks[k].val]
                is_assign = toks[k + 1].kind == "assign"
                k += 2
            elif (
                allow_two
                and k + 3 < len(toks)
                and toks[k + 1].kind == "comma"
                and toks[k + 2].kind == "var"
                and toks[k + 3].kind in ("declare", "assign")
            ):
                decl = [toks[k].val, toks[k + 2].val]
                is_assign = toks[k + 3].kind == "assign"
                k += 4
        cmds: list[list[Any]] = []
        while True:
            cmd, k = self.parse_command(toks, k, pos)
            if not cmd:
                what = "declaration" if decl and not cmds else "command"
                self.fail(f"missing value for {what}", pos)
            if isinstance(cmd[0], _Lit) and cmd[0].src == "nil":
                self.fail("nil is not a command", cmd[0].pos)
            if cmds and isinstance(cmd[0], (_Lit, _Dot)):
                self.fail(f"non executable command in pipeline stage {len(cmds) + 1}", cmd[0].pos)
            cmds.append(cmd)
            if k < len(toks) and toks[k].kind == "pipe":
                k += 1
                continue
            break
        for name in decl:
            if is_assign:
                if not self._declared(name):
                    self.fail(f'undefined variable "{name}"', pos)
            else:
                self.scopes[-1].append(name)
        return _Pipe(decl, is_assign, cmds, pos), k

    def parse_command(self, toks: list[_Tok], k: int, pos: int) -> tuple[list[Any], int]:
        args: list[Any] = []
        while k < len(toks) and toks[k].kind not in ("pipe", "rparen"):
            tok = toks[k]
            if args and not tok.space:
                self.fail(f"missing space before {tok.describe()}", tok.pos)
            node, k = self.parse_operand(toks, k)
            args.append(node)
        return args, k

    def _chain(self, toks: list[_Tok], k: int) -> tuple[list[str], int]:
        chain: list[str] = []
        while k < len(toks) and toks[k].kind == "field" and not toks[k].space:
            chain.append(toks[k].val)
            k += 1
        return chain, k

    def parse_operand(self, toks: list[_Tok], k: int) -> tuple[Any, int]:
        tok = toks[k]
        kind = tok.kind
        if kind == "field":
            chain, k2 = self._chain(toks, k + 1)
            full = [tok.val, *chain]
            return _Field(full, tok.pos, "." + ".".join(full)), k2
        if kind == "var":
            if not self._declared(tok.val):
                self.fail(f'undefined variable "{tok.val}"', tok.pos)
            chain, k2 = self._chain(toks, k + 1)
            src = tok.val + "".join("." + c for c in chain)
            return _Var(tok.val, chain, tok.pos, src), k2
        if kind == "dot":
            return _Dot(tok.pos), k + 1
        if kind == "string":
            return _Lit(tok.val, tok.pos, self.text[tok.pos : tok.end]), k + 1
        if kind == "number":
            return _Lit(tok.val, tok.pos, self.text[tok.pos : tok.end]), k + 1
        if kind == "ident":
            name = tok.val
            if name in ("true", "false"):
                return _Lit(name == "true", tok.pos, name), k + 1
            if name == "nil":
                return _Lit(None, tok.pos, name), k + 1
            if name in _KEYWORDS:
                self.fail(f"unexpected <{name}> in command", tok.pos)
            if name not in FUNCS:
                self.fail(f'function "{name}" not defined', tok.pos)
            return _Func(name, tok.pos), k + 1
        if kind == "lparen":
            pipe, k2 = self.parse_pipeline(toks, k + 1, tok.pos, "parenthesized pipeline")
            if k2 >= len(toks) or toks[k2].kind != "rparen":
                self.fail("unclosed left paren", tok.pos)
            chain, k3 = self._chain(toks, k2 + 1)
            end = toks[k3 - 1].end
            return _Paren(pipe, chain, tok.pos, self.text[tok.pos : end]), k3
        self.fail(f"unexpected {tok.describe()} in operand", tok.pos)
        raise AssertionError("unreachable")


# --------------------------------------------------------------------------
# Execution


class _ExecError(Exception):
    def __init__(self, msg: str, node: Any = None) -> None:
        super().__init__(msg)
        self.node = node


class _BreakSignal(Exception):
    pass


class _ContinueSignal(Exception):
    pass


class _HeaderContext:
    """Stands in for a row when rendering a table header: every field chain
    resolves to that column's header name."""

    __slots__ = ("headers",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        self.headers = headers

    def lookup(self, chain: Sequence[str]) -> str:
        full = ".".join(chain)
        if full in self.headers:
            return self.headers[full]
        if chain[0] in self.headers:
            return self.headers[chain[0]]
        # No header given: docker would print "<no value>"; a readable title
        # is more useful for fields the caller didn't anticipate.
        return chain[-1].upper()

    def __str__(self) -> str:
        return ""


_SCALAR_TYPES = (str, bytes, int, float, bool, list, tuple, set, frozenset)


class _Exec:
    def __init__(
        self,
        root: Any,
        funcs: Mapping[str, tuple[Callable[..., Any], int, int | None]],
        header: bool,
        sort_json: bool,
    ) -> None:
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.out: list[str] = []
        self.funcs = funcs
        self.header = header
        self.sort_json = sort_json

    # -- variables
    def lookup(self, name: str, node: Any) -> Any:
        for k in range(len(self.vars) - 1, -1, -1):
            if self.vars[k][0] == name:
                return self.vars[k][1]
        raise _ExecError(f"undefined variable: {name}", node)

    def assign(self, name: str, value: Any, node: Any) -> None:
        for k in range(len(self.vars) - 1, -1, -1):
            if self.vars[k][0] == name:
                self.vars[k] = (name, value)
                return
        raise _ExecError(f"undefined variable: {name}", node)

    # -- tree walking
    def walk(self, nodes: list[Any], dot: Any) -> None:
        out = self.out
        for node in nodes:
            t = type(node)
            if t is str:
                out.append(node)
            elif t is _Action:
                v = self.pipeline(node.pipe, dot)
                if not node.pipe.decl:
                    out.append(go_str(v))
            elif t is _Branch:
                if node.kind == "range":
                    self.walk_range(node, dot)
                else:
                    self.walk_if(node, dot)
            elif t is _Break:
                raise _BreakSignal
            elif t is _Continue:
                raise _ContinueSignal

    def walk_if(self, node: _Branch, dot: Any) -> None:
        mark = len(self.vars)
        try:
            val = self.pipeline(node.pipe, dot)
            if _truth(val):
                self.walk(node.body, val if node.kind == "with" else dot)
            elif node.else_body is not None:
                self.walk(node.else_body, dot)
        finally:
            del self.vars[mark:]

    def walk_range(self, node: _Branch, dot: Any) -> None:
        mark = len(self.vars)
        try:
            pipe = node.pipe
            val = self.pipeline(pipe, dot, declare=False)
            if self.header and isinstance(val, str):
                items: Iterable[tuple[Any, Any]] = [(0, val)]  # one pass over the title
            elif val is None or val is NO_VALUE:
                items = ()
            elif isinstance(val, Mapping):
                items = _sorted_items(val)
            elif isinstance(val, (list, tuple)):
                items = enumerate(val)
            elif isinstance(val, int) and not isinstance(val, bool):
                if val < 0:
                    raise _ExecError(f"range can't iterate over {val}", pipe.cmds[0][0])
                items = ((i, i) for i in range(val))
            elif isinstance(val, (str, bytes, float, bool)):
                raise _ExecError(f"range can't iterate over {go_str(val)}", pipe.cmds[0][0])
            elif isinstance(val, Iterable):
                items = enumerate(val)
            else:
                raise _ExecError(f"range can't iterate over {go_str(val)}", pipe.cmds[0][0])
            if pipe.decl and not pipe.is_assign:
                for name in pipe.decl:
                    self.vars.append((name, None))
            body_mark = len(self.vars)
            ran = False
            for key, elem in items:
                ran = True
                if pipe.decl:
                    if len(pipe.decl) == 1:
                        self.assign(pipe.decl[0], elem, pipe)
                    else:
                        self.assign(pipe.decl[0], key, pipe)
                        self.assign(pipe.decl[1], elem, pipe)
                try:
                    self.walk(node.body, elem)
                except _ContinueSignal:
                    pass
                except _BreakSignal:
                    break
                finally:
                    del self.vars[body_mark:]
            if not ran and node.else_body is not None:
                self.walk(node.else_body, dot)
        finally:
            del self.vars[mark:]

    # -- evaluation
    def pipeline(self, pipe: _Pipe, dot: Any, declare: bool = True) -> Any:
        value: Any = None
        has_final = False
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, value, has_final)
            has_final = True
        if declare and pipe.decl:
            name = pipe.decl[-1]
            if pipe.is_assign:
                self.assign(name, value, pipe)
            else:
                self.vars.append((name, value))
        return value

    def command(self, cmd: list[Any], dot: Any, final: Any, has_final: bool) -> Any:
        first = cmd[0]
        t = type(first)
        if t is _Func:
            return self.call(first, cmd[1:], dot, final, has_final)
        if t is _Field:
            return self.chain(dot, first.chain, first, cmd[1:], dot, final, has_final)
        if t is _Var:
            base = self.lookup(first.name, first)
            if first.chain:
                return self.chain(base, first.chain, first, cmd[1:], dot, final, has_final)
            self._no_args(first, cmd, has_final)
            return base
        if t is _Paren:
            base = self.pipeline(first.pipe, dot)
            if first.chain:
                return self.chain(base, first.chain, first, cmd[1:], dot, final, has_final)
            self._no_args(first, cmd, has_final)
            return base
        self._no_args(first, cmd, has_final)
        if t is _Dot:
            return dot
        return first.value

    @staticmethod
    def _no_args(first: Any, cmd: list[Any], has_final: bool) -> None:
        if len(cmd) > 1 or has_final:
            raise _ExecError(f"can't give argument to non-function {first.src}", first)

    def arg(self, node: Any, dot: Any) -> Any:
        t = type(node)
        if t is _Lit:
            return node.value
        if t is _Field:
            return self.chain(dot, node.chain, node, [], dot, None, False)
        if t is _Var:
            base = self.lookup(node.name, node)
            return self.chain(base, node.chain, node, [], dot, None, False) if node.chain else base
        if t is _Dot:
            return dot
        if t is _Paren:
            base = self.pipeline(node.pipe, dot)
            return self.chain(base, node.chain, node, [], dot, None, False) if node.chain else base
        if t is _Func:
            return self.call(node, [], dot, None, False)
        raise _ExecError("can't handle argument", node)

    def call(self, fn: _Func, arg_nodes: list[Any], dot: Any, final: Any, has_final: bool) -> Any:
        name = fn.name
        impl, lo, hi = self.funcs[name]
        nargs = len(arg_nodes) + (1 if has_final else 0)
        if nargs < lo or (hi is not None and nargs > hi):
            want = str(lo) if hi == lo else (f"at least {lo}" if hi is None else f"{lo}-{hi}")
            raise _ExecError(f"wrong number of args for {name}: want {want} got {nargs}", fn)
        if name in ("and", "or"):
            # Go 1.18+: stop at the first argument that decides the result.
            val: Any = None
            for k in range(nargs):
                val = final if k == len(arg_nodes) else self.arg(arg_nodes[k], dot)
                if _truth(val) == (name == "or"):
                    return val
            return val
        args = [self.arg(a, dot) for a in arg_nodes]
        if has_final:
            args.append(final)
        if name == "json" and self.sort_json:
            impl = _json_sorted
        try:
            return impl(*args)
        except (_ExecError, _BreakSignal, _ContinueSignal):
            raise
        except _FuncError as e:
            raise _ExecError(f"error calling {name}: {e}", fn) from None
        except Exception as e:  # a bad argument type surfacing from Python
            raise _ExecError(f"error calling {name}: {e}", fn) from None

    def chain(
        self,
        receiver: Any,
        names: list[str],
        node: Any,
        arg_nodes: list[Any],
        dot: Any,
        final: Any,
        has_final: bool,
    ) -> Any:
        if self.header and isinstance(receiver, _HeaderContext):
            return receiver.lookup(names)
        last = len(names) - 1
        for k, name in enumerate(names):
            if k == last and (arg_nodes or has_final):
                args = [self.arg(a, dot) for a in arg_nodes]
                if has_final:
                    args.append(final)
                receiver = self.field(receiver, name, args, True, node)
            else:
                receiver = self.field(receiver, name, [], False, node)
        return receiver

    @staticmethod
    def field(receiver: Any, name: str, args: list[Any], has_args: bool, node: Any) -> Any:
        if receiver is None or receiver is NO_VALUE:
            raise _ExecError(f"nil pointer evaluating interface {{}}.{name}", node)
        if isinstance(receiver, Mapping):
            if has_args:
                raise _ExecError(f"{name} is not a method but has arguments", node)
            return receiver.get(name, NO_VALUE)
        if isinstance(receiver, _SCALAR_TYPES) or name.startswith("_"):
            raise _ExecError(f"can't evaluate field {name} in type {go_type(receiver)}", node)
        try:
            attr = getattr(receiver, name)
        except AttributeError:
            raise _ExecError(
                f"can't evaluate field {name} in type {go_type(receiver)}", node
            ) from None
        if callable(attr) and not isinstance(attr, type):
            try:
                return attr(*args)
            except (_ExecError, _BreakSignal, _ContinueSignal):
                raise
            except Exception as e:
                raise _ExecError(f"error calling {name}: {e}", node) from None
        if has_args:
            raise _ExecError(f"{name} is not a method but has arguments", node)
        return attr


def _json_sorted(v: Any) -> str:
    return to_json(v, sort_keys=True)


# --------------------------------------------------------------------------
# Public API


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1)
    return line, col


def _one_line(msg: str) -> str:
    return " ".join(msg.split("\n"))


class Template:
    """A parsed template. Build with :func:`parse`."""

    __slots__ = ("text", "_tree")

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            self._tree = _Parser(text).parse()
        except _ParseError as e:
            line, _ = _line_col(text, e.pos)
            raise TemplateError(
                _one_line(f"template parsing error: template: :{line}: {e}")
            ) from None

    def execute(self, data: Any, *, sort_json: bool = False) -> str:
        """Render against ``data``. ``sort_json`` makes ``json`` sort mapping keys
        (docker's list-command rows are Go maps, so their JSON is sorted)."""
        return self._run(data, FUNCS, header=False, sort_json=sort_json)

    def execute_header(self, headers: Mapping[str, str]) -> str:
        """Render the table header: each ``.Field`` becomes ``headers[Field]``
        (falling back to the upper-cased field name), and docker's header
        function set makes ``lower``/``json``/... pass the title through."""
        return self._run(_HeaderContext(headers), _HEADER_FUNCS, header=True, sort_json=False)

    def _run(
        self,
        data: Any,
        funcs: Mapping[str, tuple[Callable[..., Any], int, int | None]],
        header: bool,
        sort_json: bool,
    ) -> str:
        ex = _Exec(data, funcs, header, sort_json)
        try:
            ex.walk(self._tree, data)
        except _ExecError as e:
            node = e.node
            pos = getattr(node, "pos", 0)
            src = getattr(node, "src", "")
            line, col = _line_col(self.text, pos)
            raise TemplateError(
                _one_line(
                    f'template parsing error: template: :{line}:{col}: executing "" at <{src}>: {e}'
                )
            ) from None
        except RecursionError:
            raise TemplateError(
                "template parsing error: template: exceeded maximum depth"
            ) from None
        return "".join(ex.out)


def parse(text: str) -> Template:
    """Parse a Go template; raises :class:`TemplateError` on syntax errors."""
    return Template(text)


def render(text: str, data: Any) -> str:
    """Parse and execute in one go (for one-off formats like ``inspect -f``)."""
    return Template(text).execute(data)


def render_template(text: str, data: Any) -> str:
    """``inspect -f`` / ``version -f`` / ``info -f``: Go template semantics only.

    docker expands ``\\t``/``\\n`` escapes only for list-command formats (see
    :func:`dockyard.cli.formatting.render`), not for these.
    """
    return Template(text).execute(data)
