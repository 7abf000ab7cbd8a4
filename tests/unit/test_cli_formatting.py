"""Table/JSON/custom --format output and the tabwriter (minwidth 10, padding 3).

Expected strings are derived from Go's tabwriter rules: a column is as wide as
its widest cell + 3, at least 10; the last cell of a line is never padded.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from dockyard.cli.formatting import render, tabwrite, tabwrite_text, text_width
from dockyard.cli.templates import TemplateError

IMAGES_DEFAULT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_HEADERS = {
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "ID": "IMAGE ID",
    "CreatedSince": "CREATED",
    "Size": "SIZE",
}
ROWS = [
    {
        "Repository": "alpine",
        "Tag": "latest",
        "ID": "c059bfaa849c",
        "CreatedSince": "2 weeks ago",
        "Size": "5.59MB",
    },
    {
        "Repository": "registry.example.com/team/app",
        "Tag": "v1.2.3",
        "ID": "0123456789ab",
        "CreatedSince": "3 months ago",
        "Size": "142MB",
    },
]


def test_docker_ps_empty_header() -> None:
    # `docker ps` with no containers prints exactly this line.
    fmt = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    headers = {
        "ID": "CONTAINER ID",
        "Image": "IMAGE",
        "Command": "COMMAND",
        "RunningFor": "CREATED",
        "Status": "STATUS",
        "Ports": "PORTS",
        "Names": "NAMES",
    }
    out = render([], None, fmt, headers)
    assert out == "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n"


def test_images_table() -> None:
    out = render(ROWS, None, IMAGES_DEFAULT, IMAGES_HEADERS)
    # REPOSITORY column: len("registry.example.com/team/app") + 3 = 32
    assert out == (
        "REPOSITORY                      TAG       IMAGE ID       CREATED        SIZE\n"
        "alpine                          latest    c059bfaa849c   2 weeks ago    5.59MB\n"
        "registry.example.com/team/app   v1.2.3    0123456789ab   3 months ago   142MB\n"
    )
    # "table" alone means the default table, as in docker
    assert render(ROWS, "table", IMAGES_DEFAULT, IMAGES_HEADERS) == out


def test_custom_table_with_escapes_and_pipes() -> None:
    out = render(ROWS, r"table {{.Repository | upper}}:{{.Tag}}\t{{.Size}}", "", IMAGES_HEADERS)
    assert out == (
        "REPOSITORY:TAG                         SIZE\n"
        "ALPINE:latest                          5.59MB\n"
        "REGISTRY.EXAMPLE.COM/TEAM/APP:v1.2.3   142MB\n"
    )


def test_non_table_format_is_not_aligned() -> None:
    out = render(ROWS, r"{{.Repository}}\t{{.Tag}}", IMAGES_DEFAULT, IMAGES_HEADERS)
    assert out == "alpine\tlatest\nregistry.example.com/team/app\tv1.2.3\n"
    # leading/trailing spaces are trimmed, as docker does
    assert render(ROWS[:1], "  {{.Tag}}  ", "", {}) == "latest\n"


def test_json_format() -> None:
    out = render(ROWS[:1], "json", IMAGES_DEFAULT, IMAGES_HEADERS)
    assert out == (
        '{"CreatedSince":"2 weeks ago","ID":"c059bfaa849c","Repository":"alpine",'
        '"Size":"5.59MB","Tag":"latest"}\n'
    )
    # {{json .}} in a row template sorts keys too (docker's rows are Go maps)
    assert render([{"b": 1, "a": "<&>"}], "{{json .}}", "", {}) == '{"a":"<&>","b":1}\n'


def test_header_only_when_no_rows_and_missing_header_names() -> None:
    assert render([], "table {{.Repository}}\t{{.Digest}}", "", IMAGES_HEADERS) == (
        "REPOSITORY   DIGEST\n"
    )


@dataclass
class Row:
    Name: str

    def Status(self) -> str:  # noqa: N802 - Go-style exported method
        return "Up 3 minutes"


def test_object_rows() -> None:
    out = render(
        [Row("web"), Row("database-primary")],
        None,
        "table {{.Name}}\t{{.Status}}",
        {"Name": "NAMES", "Status": "STATUS"},
    )
    assert out == (
        "NAMES              STATUS\n"
        "web                Up 3 minutes\n"
        "database-primary   Up 3 minutes\n"
    )
    assert render([Row("x")], "json", "", {}) == '{"Name":"x"}\n'


def test_template_errors_propagate() -> None:
    with pytest.raises(TemplateError, match="^template parsing error: "):
        render(ROWS, "{{.Repository", IMAGES_DEFAULT, IMAGES_HEADERS)


def test_tabwrite_column_blocks() -> None:
    lines = [["a", "b", "c"], ["aaaaaaaaaaaaaa", "b"], ["x"], ["y", "z"]]
    # Column 0 block = lines 0-1 (width 14+3=17); column 1 exists only in line 0
    # (width 10); line 2 has no tab and ends the block, so line 3 starts anew.
    # fmt: off
    assert tabwrite(lines) == (
        "a" + " " * 16 + "b" + " " * 9 + "c\n"
        "aaaaaaaaaaaaaa   b\n"
        "x\n"
        "y" + " " * 9 + "z\n"
    )
    # fmt: on


def test_tabwrite_trailing_tab_pads_last_real_cell() -> None:
    assert tabwrite([["a", ""]]) == "a" + " " * 9 + "\n"
    assert tabwrite([]) == ""


def test_tabwrite_text_matches_go_writer() -> None:
    assert tabwrite_text("a\tb\nccc\td\n") == "a         b\nccc       d\n"
    # a final partial line is flushed without a newline
    assert tabwrite_text("a\tb\nccc\td") == "a         b\nccc       d"
    assert tabwrite_text("") == ""
    assert tabwrite_text("no tabs\n") == "no tabs\n"


def test_tabwrite_params() -> None:
    assert tabwrite([["ab", "c"]], minwidth=0, padding=1) == "ab c\n"
    assert tabwrite([["ab", "c"]], minwidth=0, padding=1, padchar=".") == "ab.c\n"


def test_wide_characters() -> None:
    assert text_width("日本") == 4
    assert text_width("e\u0301") == 1  # combining accent takes no column
    assert tabwrite([["日本語の名前", "x"], ["a", "y"]]) == (
        "日本語の名前   x\n"  # width 12 + 3 = 15 columns
        "a              y\n"
    )
