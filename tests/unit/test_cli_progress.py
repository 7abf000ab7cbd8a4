"""JSON message stream rendering, terminal and plain, like docker's jsonmessage."""

from __future__ import annotations

import io

import pytest

from dockyard.cli.progress import StreamError, display_stream, go_duration, progress_string

UP = "\x1b[{}A".format
DOWN = "\x1b[{}B".format
CLEAR = "\x1b[2K\r"

PULL = [
    {"status": "Pulling from library/alpine", "id": "latest"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
    {
        "status": "Downloading",
        "progressDetail": {"current": 1_000_000, "total": 4_000_000},
        "progress": "[===>    ] 1MB/4MB",
        "id": "aaa",
    },
    {"status": "Download complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Pull complete", "progressDetail": {}, "id": "bbb"},
    {"status": "Digest: sha256:abc"},
    {"status": "Status: Downloaded newer image for alpine:latest"},
]


def test_plain_output_drops_progress_updates() -> None:
    out = io.StringIO()
    aux = display_stream(PULL, out, tty=False)
    assert aux == []
    assert out.getvalue() == (
        "latest: Pulling from library/alpine\n"
        "aaa: Pulling fs layer\n"
        "bbb: Pulling fs layer\n"
        "aaa: Download complete\n"
        "bbb: Pull complete\n"
        "Digest: sha256:abc\n"
        "Status: Downloaded newer image for alpine:latest\n"
    )
    assert "\x1b" not in out.getvalue()


def test_tty_updates_lines_in_place() -> None:
    out = io.StringIO()
    display_stream(PULL, out, tty=True, width=120)
    bar = "[" + "=" * 12 + ">" + " " * 38 + "] "
    # fmt: off
    assert out.getvalue() == (
        "latest: Pulling from library/alpine\n"
        # new id: newline, up to its line, erase, text, CR, back down
        + "\n" + UP(1) + CLEAR + "aaa: Pulling fs layer \r" + DOWN(1)
        + "\n" + UP(1) + CLEAR + "bbb: Pulling fs layer \r" + DOWN(1)
        # existing id two lines up
        + UP(2) + CLEAR + f"aaa: Downloading {bar}     1MB/4MB\r" + DOWN(2)
        + UP(2) + CLEAR + "aaa: Download complete \r" + DOWN(2)
        + UP(1) + CLEAR + "bbb: Pull complete \r" + DOWN(1)
        + "Digest: sha256:abc\n"
        + "Status: Downloaded newer image for alpine:latest\n"
    )
    # fmt: on


def test_tty_narrow_terminal_has_no_bar() -> None:
    out = io.StringIO()
    display_stream(PULL[3:4], out, tty=True, width=80)
    assert out.getvalue() == "\n" + UP(1) + CLEAR + "aaa: Downloading      1MB/4MB\r" + DOWN(1)


def test_non_progress_message_forgets_lines() -> None:
    msgs = [
        {"status": "Waiting", "progressDetail": {}, "id": "x"},
        {"status": "Tagging"},
        {"status": "Waiting", "progressDetail": {}, "id": "x"},
    ]
    out = io.StringIO()
    display_stream(msgs, out, tty=True, width=120)
    first = "\n" + UP(1) + CLEAR + "x: Waiting \r" + DOWN(1)
    assert out.getvalue() == first + "Tagging\n" + first


def test_stream_and_aux_messages() -> None:
    msgs = [
        {"stream": "Step 1/2 : FROM scratch\n"},
        {"stream": " ---> Running\n"},
        {"aux": {"ID": "sha256:123"}},
        {"stream": "Successfully built 123\n"},
    ]
    for tty in (False, True):
        out = io.StringIO()
        aux = display_stream(msgs, out, tty=tty)
        assert aux == [{"ID": "sha256:123"}]
        assert out.getvalue() == (
            "Step 1/2 : FROM scratch\n ---> Running\nSuccessfully built 123\n"
        )


def test_error_raised_after_preceding_output() -> None:
    msgs = [
        {"status": "Loading layer"},
        {"errorDetail": {"message": "archive/tar: invalid tar header"}, "error": "ignored"},
        {"status": "never printed"},
    ]
    out = io.StringIO()
    with pytest.raises(StreamError) as info:
        display_stream(msgs, out, tty=False)
    assert str(info.value) == "archive/tar: invalid tar header"
    assert info.value.message == "archive/tar: invalid tar header"
    assert out.getvalue() == "Loading layer\n"


def test_error_without_detail_and_auth_error() -> None:
    with pytest.raises(StreamError, match="^boom$"):
        display_stream([{"error": "boom"}], io.StringIO(), tty=False)
    with pytest.raises(StreamError, match="authentication is required"):
        display_stream(
            [{"errorDetail": {"code": 401, "message": "unauthorized"}}], io.StringIO(), tty=True
        )


def test_tty_autodetect_and_status_only() -> None:
    class FakeTTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = FakeTTY()
    display_stream(PULL[1:2], out, width=120)
    assert "\x1b[" in out.getvalue()
    out = FakeTTY()
    display_stream(PULL[1:4], out, status_only=True)
    assert out.getvalue() == "aaa: Pulling fs layer\nbbb: Pulling fs layer\n"


def test_timestamps_and_from() -> None:
    out = io.StringIO()
    display_stream(
        [{"status": "start", "id": "c1", "from": "alpine", "timeNano": 5}], out, tty=False
    )
    line = out.getvalue()
    assert line.endswith(" c1: (from alpine) start\n")
    assert ".000000005" in line


@pytest.mark.parametrize(
    ("detail", "width", "expected"),
    [
        ({}, 200, ""),
        ({"current": 0, "total": 0}, 200, ""),
        ({"current": 1500}, 200, "   1.5kB"),
        ({"current": 7, "units": "files"}, 200, "7 files"),
        ({"current": 50, "total": 100}, 80, "     50B/100B"),
        ({"current": 150, "total": 100}, 80, "    150B"),
        ({"current": 3, "total": 10, "units": "layers"}, 80, "3/10 layers"),
        ({"current": 30, "total": 10, "units": "layers"}, 80, "30 layers"),
        (
            {"current": 5, "total": 10, "hidecounts": True},
            120,
            "[" + "=" * 25 + ">" + " " * 25 + "] ",
        ),
        ({"current": 10, "total": 10}, 120, "[" + "=" * 50 + ">] " + "     10B/10B"),
        (
            {"current": 12_300_000, "total": 45_600_000},
            120,
            "[" + "=" * 13 + ">" + " " * 37 + "] " + "  12.3MB/45.6MB",
        ),
    ],
)
def test_progress_string(detail: dict[str, object], width: int, expected: str) -> None:
    assert progress_string(detail, width) == expected


def test_progress_time_left() -> None:
    # 25 units in 10 s -> 0.4 s each; 75 left -> 30 s
    detail = {"current": 25, "total": 100, "start": 1000}
    assert progress_string(detail, 80, now=1010) == "     25B/100B 30s"
    assert progress_string(detail, 50, now=1010) == "     25B/100B"  # too narrow


@pytest.mark.parametrize(
    ("seconds", "expected"), [(0, "0s"), (45, "45s"), (90, "1m30s"), (7205, "2h0m5s")]
)
def test_go_duration(seconds: int, expected: str) -> None:
    assert go_duration(seconds) == expected
