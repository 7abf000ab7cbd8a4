"""docker's multiplexed stream framing (dockyard.streams.stdcopy) and the attach
client's detach-key handling."""

from __future__ import annotations

import io
import random
import socket
import struct

import pytest

from dockyard.errors import InvalidArgument
from dockyard.streams.detach import EscapeMatcher, parse_detach_keys
from dockyard.streams.stdcopy import (
    STDERR,
    STDIN,
    STDOUT,
    SYSTEMERR,
    Demuxer,
    StreamError,
    demux_to,
    frame,
    frames,
)


def test_frame_header_layout() -> None:
    assert frame(STDOUT, b"hi") == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    assert frame(STDERR, b"") == b"\x02\x00\x00\x00\x00\x00\x00\x00"
    big = frame(STDOUT, b"x" * 0x01020304)
    assert big[:8] == b"\x01\x00\x00\x00\x01\x02\x03\x04"


@pytest.mark.parametrize("stream_id", [-1, 4, 255])
def test_frame_rejects_bad_stream_type(stream_id: int) -> None:
    with pytest.raises(ValueError):
        frame(stream_id, b"x")


@pytest.mark.parametrize("partial", [False, True])
def test_round_trip(partial: bool) -> None:
    chunks = [(STDOUT, b"hello\n"), (STDERR, b"oops\n"), (STDIN, b"in"), (SYSTEMERR, b"bad"), (STDOUT, b"\x00" * 9)]
    wire = b"".join(frame(s, d) for s, d in chunks)
    assert Demuxer(partial=partial).feed(wire) == chunks


def _joined(pieces: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Adjacent pieces of one stream merged: what a partial-mode reader reassembles."""
    out: list[tuple[int, bytearray]] = []
    for s, d in pieces:
        if out and out[-1][0] == s:
            out[-1][1].extend(d)
        else:
            out.append((s, bytearray(d)))
    return [(s, bytes(d)) for s, d in out]


def test_split_at_every_offset() -> None:
    chunks = [(STDOUT, b"abc"), (STDERR, b"defgh"), (STDOUT, b""), (STDOUT, b"ij")]
    wire = b"".join(frame(s, d) for s, d in chunks)
    want = [c for c in chunks if c[1]]  # zero-length frames are skipped
    for cut in range(len(wire) + 1):
        d = Demuxer()
        got = d.feed(wire[:cut]) + d.feed(wire[cut:])
        assert got == want, cut
        d.close()


@pytest.mark.parametrize("partial", [False, True])
def test_byte_at_a_time(partial: bool) -> None:
    chunks = [(STDOUT, b"one"), (STDERR, b"two"), (STDOUT, b"three")]
    wire = b"".join(frame(s, d) for s, d in chunks)
    d = Demuxer(partial=partial)
    got: list[tuple[int, bytes]] = []
    for i in range(len(wire)):
        got += d.feed(wire[i : i + 1])
    d.close()
    if partial:
        assert all(len(p) == 1 for _, p in got)  # delivered as soon as they arrive
        got = _joined(got)
    assert got == chunks


def test_whole_frame_mode_keeps_boundaries_of_same_stream() -> None:
    wire = frame(STDOUT, b"line 1\n") + frame(STDOUT, b"line 2\n")
    d = Demuxer()
    assert d.feed(wire[:10]) == []
    assert d.feed(wire[10:]) == [(STDOUT, b"line 1\n"), (STDOUT, b"line 2\n")]


def test_large_frames_random_splits() -> None:
    rng = random.Random(4)
    payloads = [(STDOUT, rng.randbytes(3 << 20)), (STDERR, rng.randbytes(70_000)), (STDOUT, b"end")]
    wire = b"".join(frame(s, d) for s, d in payloads)
    for partial in (False, True):
        d = Demuxer(partial=partial)
        got: list[tuple[int, bytes]] = []
        pos = 0
        while pos < len(wire):
            n = rng.randint(1, 200_000)
            got += d.feed(wire[pos : pos + n])
            pos += n
        d.close()
        assert _joined(got) == payloads
    assert d.pending == 0


def test_partial_mode_bounds_memory_for_a_huge_frame() -> None:
    d = Demuxer(partial=True)
    header = struct.pack(">B3xL", STDOUT, 0xFFFFFFFF)
    assert d.feed(header + b"x" * 1000) == [(STDOUT, b"x" * 1000)]
    assert d.pending == 0 and d.current == STDOUT


def test_frames_splits_big_payloads() -> None:
    parts = frames(STDERR, b"abcdefg", max_payload=3)
    assert parts == [frame(STDERR, b"abc"), frame(STDERR, b"def"), frame(STDERR, b"g")]
    assert frames(STDOUT, b"") == []


@pytest.mark.parametrize(
    "header",
    [b"\x04\x00\x00\x00\x00\x00\x00\x01", b"\x01\x00\x01\x00\x00\x00\x00\x01", b"hello wo"],
)
def test_bad_header_is_a_clear_error(header: bytes) -> None:
    d = Demuxer()
    with pytest.raises(StreamError, match="invalid stream header.*TTY"):
        d.feed(frame(STDOUT, b"ok") + header + b"x")
    with pytest.raises(StreamError):  # stays failed
        d.feed(frame(STDOUT, b"ok"))


def test_truncated_stream_is_an_error_at_close() -> None:
    d = Demuxer()
    d.feed(frame(STDOUT, b"abcdef")[:10])
    with pytest.raises(StreamError, match="middle of a frame"):
        d.close()
    d = Demuxer()
    d.feed(b"\x01\x00\x00")
    with pytest.raises(StreamError, match="frame header"):
        d.close()


def test_demux_to_files_and_socket() -> None:
    wire = frame(STDOUT, b"out1 ") + frame(STDERR, b"err") + frame(STDIN, b"in ") + frame(STDOUT, b"out2")
    out, err = io.BytesIO(), io.BytesIO()
    assert demux_to(io.BytesIO(wire), out, err) == len(b"out1 errin out2")
    assert (out.getvalue(), err.getvalue()) == (b"out1 in out2", b"err")

    a, b = socket.socketpair()
    with a, b:
        a.sendall(wire)
        a.shutdown(socket.SHUT_WR)
        out = io.BytesIO()
        demux_to(b, out, None)  # None discards stderr
        assert out.getvalue() == b"out1 in out2"


def test_demux_to_raises_daemon_error() -> None:
    wire = frame(STDOUT, b"partial output") + frame(SYSTEMERR, b"container exploded\n") + frame(STDOUT, b"never")
    out = io.BytesIO()
    with pytest.raises(StreamError, match="error from daemon in stream: container exploded$"):
        demux_to(io.BytesIO(wire), out, out)
    assert out.getvalue() == b"partial output"


def test_demux_to_truncated() -> None:
    with pytest.raises(StreamError, match="middle of a frame"):
        demux_to(io.BytesIO(frame(STDOUT, b"abc")[:-1]), io.BytesIO(), io.BytesIO())


# -- detach keys (client side, TTY mode)


@pytest.mark.parametrize(
    "spec,want",
    [("ctrl-p,ctrl-q", b"\x10\x11"), ("ctrl-a", b"\x01"), ("a,b", b"ab"), ("ctrl-@,ctrl-[,ctrl-_", b"\x00\x1b\x1f"),
     ("CTRL-Z", b"\x1a")],
)
def test_parse_detach_keys(spec: str, want: bytes) -> None:
    assert parse_detach_keys(spec) == want


@pytest.mark.parametrize("spec", ["", "ctrl-", "ctrl-1", "ab", "ctrl-pq"])
def test_parse_detach_keys_invalid(spec: str) -> None:
    with pytest.raises(InvalidArgument, match="Invalid detach keys"):
        parse_detach_keys(spec)


def test_escape_matcher() -> None:
    m = EscapeMatcher(b"\x10\x11")
    assert m.feed(b"ls\r") == (b"ls\r", False)
    assert m.feed(b"a\x10") == (b"a", False)  # held back: may start the sequence
    assert m.feed(b"b") == (b"\x10b", False)  # not the sequence after all
    assert m.feed(b"\x10\x10") == (b"\x10", False)  # first one released, second held
    assert m.feed(b"\x11rest") == (b"", True)  # detached: the sequence is never sent
    m = EscapeMatcher(b"\x10\x11")
    assert m.feed(b"x\x10\x11") == (b"x", True)
