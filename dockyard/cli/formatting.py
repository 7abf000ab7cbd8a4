"""docker-style ``--format`` output for list commands, and Go's tabwriter.

docker's list commands (``ps``, ``images``, ``volume ls``...) share one formatter
(docker/cli ``cli/command/formatter``):

* ``table <tmpl>``: a header row (the template run over the header names) plus one
  row per item, aligned by ``tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`` --
  minwidth 10, tabwidth 1, padding 3, pad with spaces, no flags;
* ``json``: one compact JSON object per line (keys sorted: rows are Go maps);
* anything else: the template once per item, one line each, no alignment.

Before parsing, ``table`` is stripped, surrounding spaces are trimmed and the
two-character escapes ``\\t`` and ``\\n`` become real TAB/newline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dockyard.cli.templates import Template, expand_escapes, parse, to_json

__all__ = [
    "MIN_WIDTH",
    "TAB_WIDTH",
    "PADDING",
    "render",
    "is_table",
    "is_json",
    "tabwrite",
    "tabwrite_text",
    "text_width",
]

# tabwriter.NewWriter(output, 10, 1, 3, ' ', 0) in docker/cli formatter.go
MIN_WIDTH = 10
TAB_WIDTH = 1  # only used when padding with tabs, which docker does not
PADDING = 3

TABLE_KEY = "table"
JSON_KEY = "json"


def is_table(fmt: str | None) -> bool:
    return bool(fmt) and fmt.startswith(TABLE_KEY)  # type: ignore[union-attr]


def is_json(fmt: str | None) -> bool:
    return fmt == JSON_KEY


def _char_width(ch: str) -> int:
    # docker's fork of tabwriter measures cells with go-runewidth: East Asian wide
    # and fullwidth characters take two columns, combining marks none.
    import unicodedata  # small C module; only needed for non-ASCII text

    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(s: str) -> int:
    """Display width of ``s`` in terminal columns."""
    if s.isascii():
        return len(s)
    return sum(_char_width(ch) for ch in s)


def tabwrite(
    lines: Sequence[Sequence[str]],
    minwidth: int = MIN_WIDTH,
    padding: int = PADDING,
    padchar: str = " ",
) -> str:
    """Align rows of cells as Go's text/tabwriter does (docker's settings by default).

    Each line is its list of cells: every cell but the last was terminated by a
    TAB, the last is the text before the newline (so ``"a\\tb"`` is ``["a", "b"]``
    and ``"a\\tb\\t"`` is ``["a", "b", ""]``). Every output line ends in ``\\n``.

    The rules (elastic tabstops): a *column block* is a run of consecutive lines
    that all have a tab-terminated cell at index *c*; its width is the widest such
    cell plus ``padding``, but at least ``minwidth``. Tab-terminated cells are
    padded to their block's width; the last cell of a line never is. A line with
    fewer cells ends the blocks it does not reach, so a later block is measured
    on its own.
    """
    rendered = _tabwrite_lines([list(line) for line in lines], minwidth, padding, padchar)
    return "".join(line + "\n" for line in rendered)


def tabwrite_text(text: str, minwidth: int = MIN_WIDTH, padding: int = PADDING) -> str:
    """Feed ``text`` through the tabwriter as one Write + Flush.

    Lines are split on ``\\n`` and cells on TAB; a final line without a newline
    is written without one, exactly as Go's Writer flushes a trailing partial line.
    """
    raw = text.split("\n")
    lines = [line.split("\t") for line in raw]
    # Go keeps no cell for an empty trailing partial line; [""] formats the same.
    return "\n".join(_tabwrite_lines(lines, minwidth, padding, " "))


def _tabwrite_lines(lines: list[list[str]], minwidth: int, padding: int, padchar: str) -> list[str]:
    widths_cache = [[text_width(cell) for cell in line] for line in lines]
    col_widths: list[int] = []  # width of each enclosing column, outermost first
    out: list[str] = [""] * len(lines)

    def emit(lo: int, hi: int) -> None:
        # Write lines [lo, hi) with the current column widths: a cell gets padded
        # only if its column has a width here (i.e. it is tab-terminated).
        ncols = len(col_widths)
        for i in range(lo, hi):
            parts: list[str] = []
            cw = widths_cache[i]
            for j, cell in enumerate(lines[i]):
                parts.append(cell)
                if j < ncols:
                    parts.append(padchar * (col_widths[j] - cw[j]))
            out[i] = "".join(parts)

    def format_block(lo: int, hi: int) -> None:
        column = len(col_widths)
        i = lo
        while i < hi:
            # Only cells before the last one in a line belong to a column.
            if column >= len(lines[i]) - 1:
                i += 1
                continue
            emit(lo, i)  # lines above this block, at the current depth
            start = i
            width = minwidth
            while i < hi and column < len(lines[i]) - 1:
                width = max(width, widths_cache[i][column] + padding)
                i += 1
            col_widths.append(width)
            format_block(start, i)  # align the next column within this block
            col_widths.pop()
            lo = i
        emit(lo, hi)

    format_block(0, len(lines))
    return out


def _jsonable_row(row: Any) -> Any:
    if isinstance(row, Mapping):
        return row
    return json.loads(to_json(row))


def render(
    rows: Iterable[Any],
    fmt: str | None,
    default_table: str,
    headers: Mapping[str, str],
) -> str:
    """Format ``rows`` (dicts or objects) the way docker's list commands do.

    ``fmt`` is the user's ``--format`` (``None``/``""`` means ``default_table``;
    plain ``table`` too, as docker treats it). ``headers`` maps field names to
    column titles (``{"Repository": "REPOSITORY"}``); a field without one is
    titled with its upper-cased name. Returns the text to print, each line
    newline-terminated. ``--quiet`` is the caller's business.
    Raises :class:`~dockyard.cli.templates.TemplateError` for a bad template.
    """
    if not fmt or fmt.strip(" ") == TABLE_KEY:
        fmt = default_table
    rows = list(rows)
    if is_json(fmt):
        return "".join(
            json.dumps(
                _jsonable_row(row), sort_keys=True, ensure_ascii=False, separators=(",", ":")
            )
            .replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
            + "\n"
            for row in rows
        )
    table = is_table(fmt)
    body = fmt[len(TABLE_KEY) :] if table else fmt
    tmpl: Template = parse(expand_escapes(body.strip(" ")))
    # Row contexts are Go maps in docker, so {{json .}} sorts keys there too.
    text = "".join(tmpl.execute(row, sort_json=True) + "\n" for row in rows)
    if not table:
        return text
    header = tmpl.execute_header(headers)
    return tabwrite_text(header + "\n" + text)
