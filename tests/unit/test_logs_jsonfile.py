"""json-file log driver: docker's record format, line splitting, rotation bounds, tail /
since / until / stream filters, option parsing. Real files in a temporary directory."""

from __future__ import annotations

import gzip
import json
import os
import threading
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument
from dockyard.logs import (
    JSONFileWriter,
    format_time,
    format_time_fixed,
    parse_log_opts,
    parse_time,
    read_logs,
)
from dockyard.logs.jsonfile import MAX_RECORD_DATA

T0 = 1704067200  # 2024-01-01T00:00:00Z


def raw_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def log_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "c-json.log"


# --------------------------------------------------------------------------- format


def test_record_format_exact_bytes(log: Path) -> None:
    with JSONFileWriter(str(log)) as w:
        w.write("stdout", b"hello\n", ts=T0 + 0.5)
        w.write("stderr", b"oops\n", ts=T0)
    assert log.read_bytes() == (
        b'{"log":"hello\\n","stream":"stdout","time":"2024-01-01T00:00:00.5Z"}\n'
        b'{"log":"oops\\n","stream":"stderr","time":"2024-01-01T00:00:00Z"}\n'
    )
    assert [list(r) for r in raw_records(log)] == [["log", "stream", "time"]] * 2


def test_time_is_rfc3339nano_utc() -> None:
    # Go's RFC3339Nano, as docker writes: nanoseconds, trailing zeros trimmed
    assert format_time(T0 * 10**9 + 123456789) == "2024-01-01T00:00:00.123456789Z"
    assert format_time(T0 * 10**9 + 120000000) == "2024-01-01T00:00:00.12Z"
    assert format_time(T0 * 10**9) == "2024-01-01T00:00:00Z"
    assert format_time_fixed(T0 * 10**9 + 120000000) == "2024-01-01T00:00:00.120000000Z"
    assert parse_time("2024-01-01T00:00:00.123456789Z") == T0 * 10**9 + 123456789
    assert parse_time("2024-01-01T00:00:00.5Z") == T0 * 10**9 + 500000000
    assert parse_time("2024-01-01T02:00:00+02:00") == T0 * 10**9
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_default_time_is_now_with_nanoseconds(log: Path) -> None:
    import time

    before = time.time_ns()
    with JSONFileWriter(str(log)) as w:
        w.write("stdout", b"x\n")
    after = time.time_ns()
    (rec,) = read_logs(str(log))
    assert before <= rec.time_ns <= after
    assert rec.time_str.endswith("Z") and rec.time_str == raw_records(log)[0]["time"]


def test_escaping_matches_docker(log: Path) -> None:
    with JSONFileWriter(str(log)) as w:
        w.write("stdout", 'a<b>&"\\\t\r\x01\x08\x0c\u2028 café 😀\n'.encode(), ts=T0)
    line = log.read_bytes().split(b',"stream"')[0]
    # Go's HTML-safe escaping, lowercase hex, raw UTF-8 for non-ASCII
    assert line == ('{"log":"a\\u003cb\\u003e\\u0026\\"\\\\\\t\\r\\u0001\\u0008\\u000c\\u2028 café 😀\\n"').encode()
    (rec,) = read_logs(str(log))
    assert rec.data == 'a<b>&"\\\t\r\x01\x08\x0c\u2028 café 😀\n'.encode()


def test_invalid_utf8_round_trips(log: Path) -> None:
    data = b"bad \xff\xfe and cut \xe2\x82 and overlong \xc0\xaf and surrogate \xed\xa0\x80\n"
    with JSONFileWriter(str(log)) as w:
        w.write("stdout", data, ts=T0)
    # still valid JSON for any reader; a Go reader sees U+FFFD where docker writes U+FFFD
    assert "\\udcff\\udcfe" in log.read_text()
    assert json.loads(log.read_bytes())["log"].startswith("bad \udcff\udcfe")
    assert [r.data for r in read_logs(str(log))] == [data]


def test_docker_written_file_is_readable(log: Path) -> None:
    log.write_bytes(
        b'{"log":"from docker \\ufffd\\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}\n'
        b'{"log":"attrs\\n","stream":"stderr","attrs":{"tag":"x"},"time":"2019-01-01T11:11:12Z"}\n'
        b'{"log":"stray \\ud800\\n","stream":"stdout","time":"2019-01-01T11:11:13Z"}\n'
        b'not json at all\n'
    )
    recs = list(read_logs(str(log)))
    assert [r.data for r in recs] == ["from docker \ufffd\n".encode(), b"attrs\n", "stray \ufffd\n".encode()]
    assert recs[0].time_str == "2019-01-01T11:11:11.111111111Z"
    assert recs[1].stream == "stderr"


# --------------------------------------------------------------------------- lines


def test_line_splitting_and_buffering(log: Path) -> None:
    w = JSONFileWriter(str(log))
    w.write("stdout", b"one\ntwo\nthr", ts=T0)
    assert [r["log"] for r in raw_records(log)] == ["one\n", "two\n"]
    w.write("stderr", b"err\n", ts=T0)  # streams buffer separately
    w.write("stdout", b"ee\n\nfour", ts=T0)
    assert [(r["stream"], r["log"]) for r in raw_records(log)] == [
        ("stdout", "one\n"), ("stdout", "two\n"), ("stderr", "err\n"), ("stdout", "three\n"), ("stdout", "\n")]
    w.close()  # docker emits the unterminated tail on close, with a newline
    assert raw_records(log)[-1]["log"] == "four\n"


def test_flush_partial_without_newline(log: Path) -> None:
    with JSONFileWriter(str(log)) as w:
        w.write("stdout", b"prompt> ", ts=T0)
        assert log.read_bytes() == b""
        w.flush_partial("stdout", newline=False)
        w.write("stdout", b"answer\n", ts=T0)
    recs = list(read_logs(str(log)))
    assert [(r.data, r.partial) for r in recs] == [(b"prompt> ", True), (b"answer\n", False)]


def test_long_line_split_into_16k_records(log: Path) -> None:
    line = bytes(range(32, 127)) * 500  # 47500 bytes
    with JSONFileWriter(str(log)) as w:
        w.write("stdout", line[:1000], ts=T0)  # arrives in pieces; the time is the first piece's
        w.write("stdout", line[1000:] + b"\nnext\n", ts=T0 + 5)
        w.write("stdout", b"y" * MAX_RECORD_DATA + b"\n", ts=T0 + 6)  # exactly 16 KiB: whole
    recs = list(read_logs(str(log)))
    sizes = [len(r.data) for r in recs]
    assert sizes == [16384, 16384, 47500 - 32768 + 1, 5, 16385]
    assert [r.partial for r in recs] == [True, True, False, False, False]
    assert b"".join(r.data for r in recs[:3]) == line + b"\n"
    assert {r.time_ns for r in recs[:3]} == {T0 * 10**9 + 5 * 10**9}
    assert all(not r["log"].endswith("\n") for r in raw_records(log)[:2])


def test_huge_write_without_newline_is_not_held_in_memory(log: Path) -> None:
    with JSONFileWriter(str(log), max_size=None) as w:
        w.write("stdout", b"z" * (MAX_RECORD_DATA * 10 + 7), ts=T0)
        assert len(raw_records(log)) == 10  # full 16 KiB pieces are written at once
        assert len(w._pending["stdout"]) == 7
    assert len(raw_records(log)) == 11


# --------------------------------------------------------------------------- rotation


def write_lines(w: JSONFileWriter, n: int, start: int = 0, stream: str = "stdout", ts: float | None = None) -> None:
    for i in range(start, start + n):
        w.write(stream, b"line %06d %s\n" % (i, b"." * 40), ts=ts)


def line_numbers(recs) -> list[int]:
    return [int(r.data.split()[1]) for r in recs]


def test_rotation_keeps_max_file_and_max_size(log: Path) -> None:
    with JSONFileWriter(str(log), max_size=4096, max_file=3) as w:
        write_lines(w, 1000)
    assert log_files(log.parent) == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    for p in log.parent.iterdir():
        assert 0 < p.stat().st_size <= 4096
        assert p.read_bytes().endswith(b"\n")
    nums = line_numbers(read_logs(str(log)))
    # what is kept is the contiguous newest part, oldest file first
    assert nums == list(range(1000 - len(nums), 1000))
    assert len(nums) == sum(len(p.read_bytes().splitlines()) for p in log.parent.iterdir()) > 60


def test_rotation_single_oversized_record_goes_alone(log: Path) -> None:
    with JSONFileWriter(str(log), max_size=1000, max_file=2) as w:
        w.write("stdout", b"small\n", ts=T0)
        w.write("stdout", b"B" * 5000 + b"\n", ts=T0)
        w.write("stdout", b"after\n", ts=T0)
    assert log_files(log.parent) == ["c-json.log", "c-json.log.1"]
    assert (log.parent / "c-json.log.1").stat().st_size <= 5000 + 100  # max_size + one record
    assert [r.data[:5] for r in read_logs(str(log))] == [b"BBBBB", b"after"]


def test_max_file_one_truncates(log: Path) -> None:
    with JSONFileWriter(str(log), max_size=2048, max_file=1) as w:
        write_lines(w, 200)
    assert log_files(log.parent) == ["c-json.log"]
    assert log.stat().st_size <= 2048
    assert line_numbers(read_logs(str(log)))[-1] == 199


@pytest.mark.parametrize("unbounded", [None, -1])
def test_unbounded(log: Path, unbounded: int | None) -> None:
    with JSONFileWriter(str(log), max_size=unbounded, max_file=3) as w:
        write_lines(w, 2000)
    assert log_files(log.parent) == ["c-json.log"]
    assert line_numbers(read_logs(str(log))) == list(range(2000))


def test_reopen_appends_and_keeps_size_accounting(log: Path) -> None:
    with JSONFileWriter(str(log), max_size=4096, max_file=2) as w:
        write_lines(w, 30)
    with JSONFileWriter(str(log), max_size=4096, max_file=2) as w:  # a restarted supervisor
        write_lines(w, 30, start=30)
    assert all(p.stat().st_size <= 4096 for p in log.parent.iterdir())
    nums = line_numbers(read_logs(str(log)))
    assert nums == list(range(60 - len(nums), 60))


def test_100mb_with_default_like_bound_stays_bounded(log: Path) -> None:
    mb = 1024 * 1024
    chunk = b"".join(b"%07d %s\n" % (i, b"x" * 1015) for i in range(64))  # 64 KiB of 1 KiB lines
    with JSONFileWriter(str(log), max_size=10 * mb, max_file=3) as w:
        for _ in range(100 * mb // len(chunk)):
            w.write("stdout", chunk)
    sizes = [p.stat().st_size for p in log.parent.iterdir()]
    assert len(sizes) == 3
    assert all(s <= 10 * mb for s in sizes)
    assert sum(sizes) <= 30 * mb
    # a tail on a full-size set reads only the end
    assert len(list(read_logs(str(log), tail=5))) == 5


def test_compress_rotated_files(log: Path) -> None:
    with JSONFileWriter(str(log), max_size=4096, max_file=4, compress=True) as w:
        write_lines(w, 500)
    assert log_files(log.parent) == ["c-json.log", "c-json.log.1.gz", "c-json.log.2.gz", "c-json.log.3.gz"]
    # standard gzip with docker's lastTime metadata in the header's Extra field
    body = gzip.decompress((log.parent / "c-json.log.1.gz").read_bytes())
    assert body.endswith(b"\n") and json.loads(body.splitlines()[0])["stream"] == "stdout"
    from dockyard.logs.jsonfile import read_gzip_extra

    fd = os.open(log.parent / "c-json.log.1.gz", os.O_RDONLY)
    try:
        meta = json.loads(read_gzip_extra(fd) or b"{}")
    finally:
        os.close(fd)
    assert "lastTime" in meta
    nums = line_numbers(read_logs(str(log)))
    assert nums == list(range(500 - len(nums), 500))
    assert len(nums) > 60
    assert line_numbers(read_logs(str(log), tail=len(nums) - 10)) == nums[10:]  # starts inside a .gz
    assert line_numbers(read_logs(str(log), tail=2)) == [498, 499]


# --------------------------------------------------------------------------- reading


@pytest.fixture
def rotated(log: Path) -> Path:
    """300 lines over three files (100 lines each): line i written at T0 + i seconds."""
    from dockyard.logs.jsonfile import encode_record

    size = len(encode_record("stdout", b"line 000000 .....\n", T0 * 10**9))  # all records are this long
    with JSONFileWriter(str(log), max_size=100 * size, max_file=3) as w:
        for i in range(300):
            w.write("stderr" if i % 3 == 0 else "stdout", b"line %06d %s\n" % (i, b"." * 5), ts=T0 + i)
    assert len(log_files(log.parent)) == 3
    assert len((log.parent / "c-json.log.2").read_bytes().splitlines()) == 100
    return log


@pytest.mark.parametrize(("tail", "expected"), [
    (0, []),
    (1, [299]),
    (100, list(range(200, 300))),  # exactly the newest file
    (101, list(range(199, 300))),  # crosses into path.1
    (250, list(range(50, 300))),
    (10_000, list(range(300))),  # more than there is
    ("all", list(range(300))),
    (None, list(range(300))),
    (-1, list(range(300))),
])
def test_tail_across_rotated_files(rotated: Path, tail, expected: list[int]) -> None:
    assert line_numbers(read_logs(str(rotated), tail=tail)) == expected


def test_tail_ignores_torn_last_record(rotated: Path) -> None:
    with open(rotated, "ab") as f:
        f.write(b'{"log":"half')  # a writer mid-write
    assert line_numbers(read_logs(str(rotated), tail=2)) == [298, 299]
    assert line_numbers(read_logs(str(rotated)))[-1] == 299


def test_tail_reads_backwards_not_everything(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with JSONFileWriter(str(log), max_size=None) as w:
        write_lines(w, 20000)
    read = 0
    real_pread = os.pread

    def counting_pread(fd: int, n: int, off: int) -> bytes:
        nonlocal read
        data = real_pread(fd, n, off)
        read += len(data)
        return data

    monkeypatch.setattr(os, "pread", counting_pread)
    assert line_numbers(read_logs(str(log), tail=3)) == [19997, 19998, 19999]
    assert read < log.stat().st_size // 4


def test_since_until_filters(rotated: Path) -> None:
    p = str(rotated)
    assert line_numbers(read_logs(p, since=T0 + 290)) == list(range(290, 300))
    assert line_numbers(read_logs(p, until=T0 + 9)) == list(range(10))
    assert line_numbers(read_logs(p, since=T0 + 150, until=T0 + 152.5)) == [150, 151, 152]
    assert line_numbers(read_logs(p, since=T0 + 10_000)) == []
    # docker applies tail first, then the time filter
    assert line_numbers(read_logs(p, tail=5, since=T0 + 297)) == [297, 298, 299]


def test_stream_filters(rotated: Path) -> None:
    p = str(rotated)
    out = line_numbers(read_logs(p, stderr=False))
    err = line_numbers(read_logs(p, stdout=False))
    assert err == list(range(0, 300, 3))
    assert sorted(out + err) == list(range(300))
    assert list(read_logs(p, stdout=False, stderr=False)) == []
    assert {r.stream for r in read_logs(p, stdout=False)} == {"stderr"}


def test_missing_log_reads_empty(tmp_path: Path) -> None:
    assert list(read_logs(str(tmp_path / "none.log"))) == []
    assert list(read_logs(str(tmp_path / "none.log"), tail=3)) == []


def test_concurrent_writers_threads(log: Path) -> None:
    # the supervisor may pump stdout and stderr from two threads
    with JSONFileWriter(str(log), max_size=8192, max_file=50) as w:
        ts = [threading.Thread(target=write_lines, args=(w, 500, 0, s)) for s in ("stdout", "stderr")]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    recs = list(read_logs(str(log)))
    for s in ("stdout", "stderr"):
        assert line_numbers(r for r in recs if r.stream == s) == list(range(500))


# --------------------------------------------------------------------------- options


def test_parse_log_opts_defaults_and_values() -> None:
    o = parse_log_opts({})
    assert (o.max_size, o.max_file, o.compress) == (10 * 1024 * 1024, 3, False)
    o = parse_log_opts({"max-size": "10m", "max-file": "5", "compress": "true", "tag": "x"})
    assert (o.max_size, o.max_file, o.compress, o.extra) == (10_000_000, 5, True, {"tag": "x"})
    assert parse_log_opts({"max-size": "1.5k"}).max_size == 1500
    assert parse_log_opts({"max-size": "2MB"}).max_size == 2_000_000
    assert parse_log_opts({"max-size": "100"}).max_size == 100
    assert parse_log_opts({"max-size": "-1"}).max_size is None  # ours: explicit unbounded
    assert parse_log_opts(None).max_file == 3


@pytest.mark.parametrize(("opts", "message"), [
    ({"max-size": "abc"}, "invalid size: 'abc'"),
    ({"max-size": "10x"}, "invalid size: '10x'"),
    ({"max-size": "0"}, "max-size must be a positive number"),
    ({"max-file": "0"}, "max-file cannot be less than 1"),
    ({"max-file": "-2"}, "max-file cannot be less than 1"),
    ({"max-file": "three"}, 'strconv.Atoi: parsing "three": invalid syntax'),
    ({"compress": "maybe"}, 'strconv.ParseBool: parsing "maybe": invalid syntax'),
    ({"compress": "true", "max-file": "1"},
     "compress cannot be true when max-file is less than 2 or max-size is not set"),
    ({"compress": "true", "max-size": "-1"},
     "compress cannot be true when max-file is less than 2 or max-size is not set"),
    ({"max-sise": "1m"}, "unknown log opt 'max-sise' for json-file log driver"),
])
def test_parse_log_opts_errors(opts: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_log_opts(opts)
    assert str(exc.value) == message
    assert "\n" not in str(exc.value)


def test_options_make_a_writer(log: Path) -> None:
    w = parse_log_opts({"max-size": "4k", "max-file": "2"}).writer(str(log))
    with w:
        write_lines(w, 200)
    assert log_files(log.parent) == ["c-json.log", "c-json.log.1"]
    assert all(p.stat().st_size <= 4000 for p in log.parent.iterdir())
