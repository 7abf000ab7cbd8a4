"""``loads``/``dumps`` straight on the C accelerator ``_json``, without the ``json`` package.

``import json`` pulls in ``re`` and ``enum`` (about 1 MB of a process's anonymous memory); the
supervisor, which lives as long as its containers and is the one host-side process each of
them costs (issue 4), uses this instead. Output and accepted input match the stdlib's
``json.dumps``/``json.loads`` defaults (``ensure_ascii``, ``allow_nan``, NaN/Infinity parsed as
floats); a bad document raises a ``ValueError`` (the C scanner raises ``json.JSONDecodeError``,
importing ``json.decoder`` only then).
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing is not imported at run time
    from typing import Any

__all__ = ["dumps", "loads"]

_WS = " \t\n\r"
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _Context:
    """The attributes ``_json.make_scanner`` reads from its context (the stdlib's defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan_once = _json.make_scanner(_Context())


def _encoding(b: bytes) -> str:
    """The stdlib's guess (RFC 4627 section 3, plus BOMs) at a JSON byte string's encoding."""
    if b.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if b.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if b.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if len(b) >= 4:
        if not b[0]:
            return "utf-16-be" if b[1] else "utf-32-be"
        if not b[1]:
            return "utf-16-le" if b[2] or b[3] else "utf-32-le"
    elif len(b) == 2:
        if not b[0]:
            return "utf-16-be"
        if not b[1]:
            return "utf-16-le"
    return "utf-8"


def _error(msg: str, doc: str, pos: int) -> ValueError:
    """The stdlib's message for these errors (its JSONDecodeError is a ValueError too)."""
    line = doc.count("\n", 0, pos) + 1
    col = pos - doc.rfind("\n", 0, pos)
    return ValueError(f"{msg}: line {line} column {col} (char {pos})")


def loads(s: str | bytes | bytearray) -> Any:
    """``json.loads(s)`` with the default options."""
    if isinstance(s, str):
        if s.startswith("\ufeff"):
            raise _error("Unexpected UTF-8 BOM (decode using utf-8-sig)", s, 0)
    elif isinstance(s, (bytes, bytearray)):
        s = s.decode(_encoding(s), "surrogatepass")
    else:
        raise TypeError(f"the JSON object must be str, bytes or bytearray, not {s.__class__.__name__}")
    idx = len(s) - len(s.lstrip(_WS))
    try:
        obj, end = _scan_once(s, idx)
    except StopIteration as e:
        raise _error("Expecting value", s, e.value) from None
    if len(s.rstrip(_WS)) != end:
        raise _error("Extra data", s, len(s) - len(s[end:].lstrip(_WS)))
    return obj


def _default(o: Any) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def dumps(obj: Any, *, separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """``json.dumps(obj, separators=..., sort_keys=...)``, other options at their defaults."""
    if isinstance(obj, str):
        return _json.encode_basestring_ascii(obj)
    item_sep, key_sep = separators or (", ", ": ")
    # a fresh encoder per call, as the stdlib makes: the markers dict (the circular-reference
    # check) must not keep entries from an encoding an exception cut short
    return "".join(_json.make_encoder({}, _default, _json.encode_basestring_ascii, None, key_sep,
                                      item_sep, sort_keys, False, True)(obj, 0))
