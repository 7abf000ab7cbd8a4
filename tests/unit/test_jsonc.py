"""dockyard.jsonc against the stdlib json it stands in for."""

from __future__ import annotations

import json
import math

import pytest

from dockyard import jsonc

DOCS = [
    "null", "true", "false", "0", "-0", "12", "-7", "1.5", "-0.0", "1e400", "-1e400", "1E-3",
    "123456789012345678901234567890", "2.5e+10", '""', '"abc"', '"\\u00e9\\n\\t\\"\\\\\\/"',
    '"\\ud83d\\ude00"', '"\\ud800"', '"caf\u00e9 \u4e2d\u6587 \U0001f600"', "[]", "{}",
    ' \n\t{"a": [1, 2, {"b": null}], "c": {"d": [true, false]}} \r\n', '[1,[2,[3,[4,[]]]]]',
    '{"a": 1, "a": 2}', "NaN", "Infinity", "-Infinity", "[NaN, Infinity, -Infinity]",
    '{"k\\u0000": "v\\u001f"}',
]
BAD = [
    "", " ", "[", "]", "{", '{"a"}', '{"a":}', '{"a":1,}', "[1,]", "[1 2]", "tru", "nul",
    '"abc', '"\\x"', '"\\u12"', '"a\nb"', "01", "1.", ".5", "+1", "- 1", "1 2", "{} x", "[]]",
    "'a'", "nan", "inf", '{1: 2}', "\ufeff[]", "\x00",
]
OBJS = [
    None, True, False, 0, -3, 10**30, 1.5, -0.0, 1e-7, 1e300, "", "plain", "caf\u00e9",
    "\U0001f600", "\ud800", "\"\\/\b\f\n\r\t\x00\x1f\x7f", ["a", 1, [None, {}]],
    {"b": 1, "a": [1, 2], "c": {"z": "y", "x": None}}, {1: "int key", 2.5: "f", False: "f", None: "n"},
    (1, 2), [float("nan"), float("inf"), float("-inf")], {"nested": [{"deep": [[[]]]}]},
]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("doc", DOCS)
def test_loads_matches_stdlib(doc: str) -> None:
    assert _same(jsonc.loads(doc), json.loads(doc))
    for enc in ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"):
        try:
            raw = doc.encode(enc)
        except UnicodeEncodeError:
            continue  # a lone surrogate escape stays ASCII; only these docs' raw text matters
        assert _same(jsonc.loads(raw), json.loads(raw)), enc
    assert _same(jsonc.loads(bytearray(doc.encode())), json.loads(doc))


@pytest.mark.parametrize("doc", BAD)
def test_bad_documents_raise_value_error_like_stdlib(doc: str) -> None:
    with pytest.raises(ValueError) as std:
        json.loads(doc)
    with pytest.raises(ValueError) as ours:
        jsonc.loads(doc)
    assert str(ours.value) == str(std.value)
    if not doc.startswith("\ufeff"):  # in bytes, a UTF-8 BOM is accepted (as json does)
        with pytest.raises(ValueError):
            jsonc.loads(doc.encode("utf-8", "surrogatepass"))


def test_loads_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        jsonc.loads(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("obj", OBJS)
@pytest.mark.parametrize("sort_keys", [False, True])
@pytest.mark.parametrize("separators", [None, (",", ":"), (", ", ": ")])
def test_dumps_matches_stdlib(obj: object, sort_keys: bool, separators: tuple[str, str] | None) -> None:
    try:
        expected = json.dumps(obj, sort_keys=sort_keys, separators=separators)
    except TypeError:  # sort_keys over mixed key types
        with pytest.raises(TypeError):
            jsonc.dumps(obj, sort_keys=sort_keys, separators=separators)
        return
    assert jsonc.dumps(obj, sort_keys=sort_keys, separators=separators) == expected


def test_dumps_errors_like_stdlib() -> None:
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        jsonc.dumps({"a": {1}})
    with pytest.raises(TypeError):
        jsonc.dumps({(1, 2): 3})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        jsonc.dumps(loop)
    assert jsonc.dumps([1]) == "[1]"  # a failed encoding leaves nothing behind
