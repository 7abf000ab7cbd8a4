"""The supervisor's sockets (dockyard/supervisor/connection.py) on its own loop: lines in,
answers in order, buffered output, fds in order with the bytes, closing."""

from __future__ import annotations

import array
import os
import socket
from collections.abc import Iterator

import pytest

from dockyard.supervisor.connection import Connection, Listener
from dockyard.supervisor.loop import Loop


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


def _spin(loop: Loop, seconds: float = 0.02) -> None:
    done = loop.create_future()
    loop.call_later(seconds, done.set_result, None)
    loop.run_until_complete(done)


def _until(loop: Loop, cond: object, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        _spin(loop, 0.005)


def test_lines_are_answered_in_order_even_when_an_answer_waits(loop: Loop) -> None:
    ours, theirs = socket.socketpair()
    pending: list[tuple[Connection, bytes]] = []

    def on_line(conn: Connection, line: bytes) -> None:
        if line.startswith(b"slow"):
            pending.append((conn, line))  # answered later: the next line must wait
            return
        conn.send(b"re:" + line)
        conn.done()

    conn = Connection(loop, ours, on_line)
    with theirs:
        theirs.sendall(b"slow 1\nfast 2\nfast")  # the last one is incomplete
        _until(loop, lambda: pending)
        _spin(loop)
        assert len(pending) == 1  # "fast 2" is held until "slow 1" is answered
        c, line = pending.pop()
        c.send(b"re:" + line)
        c.done()
        theirs.sendall(b" 3\n")
        got = b""
        theirs.settimeout(5)
        while got.count(b"\n") < 3:
            _spin(loop, 0.005)
            theirs.setblocking(False)
            try:
                got += theirs.recv(4096)
            except BlockingIOError:
                pass
        assert got == b"re:slow 1\nre:fast 2\nre:fast 3\n"
    _until(loop, lambda: conn.closed)  # the peer closed: so do we


def test_last_line_without_newline_is_answered_at_eof(loop: Loop) -> None:
    ours, theirs = socket.socketpair()
    seen: list[bytes] = []

    def on_line(conn: Connection, line: bytes) -> None:
        seen.append(line)
        conn.send(b"ok\n")
        conn.done()

    conn = Connection(loop, ours, on_line)
    with theirs:
        theirs.sendall(b'{"op": "x"}')
        theirs.shutdown(socket.SHUT_WR)
        _until(loop, lambda: conn.closed)
        assert seen == [b'{"op": "x"}']
        assert theirs.recv(100) == b"ok\n"  # answered, then closed
        assert theirs.recv(100) == b""


def test_a_line_over_the_limit_ends_the_connection(loop: Loop) -> None:
    ours, theirs = socket.socketpair()
    closed: list[bool] = []
    conn = Connection(loop, ours, lambda c, line: None, max_line=1000)
    conn.on_close = lambda c: closed.append(True)
    with theirs:
        theirs.sendall(b"x" * 5000)
        _until(loop, lambda: conn.closed)
        assert closed == [True]
        assert theirs.recv(10) == b""


def test_output_is_buffered_for_a_slow_reader_and_flushed_in_order(loop: Loop) -> None:
    ours, theirs = socket.socketpair()
    flushes: list[int] = []
    conn = Connection(loop, ours, lambda c, line: None)
    conn.on_flush = lambda c: flushes.append(c.out_size)
    chunks = [bytes([i]) * 100_000 for i in range(40)]  # 4 MB: far more than a socket buffer holds
    for chunk in chunks:
        conn.send(chunk)
    assert conn.out_size > 0  # not all of it fit
    got = bytearray()
    theirs.setblocking(False)
    with theirs:
        while len(got) < 4_000_000:
            _spin(loop, 0.001)
            try:
                got += theirs.recv(1 << 20)
            except BlockingIOError:
                pass
        _spin(loop)
    assert bytes(got) == b"".join(chunks)
    assert conn.out_size == 0 and flushes and flushes[-1] == 0
    _until(loop, lambda: conn.closed)


def test_fds_travel_with_their_chunk_in_order(loop: Loop) -> None:
    ours, theirs = socket.socketpair()
    conn = Connection(loop, ours, lambda c, line: None)
    r, w = os.pipe()
    conn.send(b"first\n")
    conn.send(b"second\n", [r])  # our copy is closed once sent
    conn.send(b"third\n")
    _spin(loop)
    with pytest.raises(OSError):
        os.fstat(r)
    with theirs:
        theirs.settimeout(5)
        got = b""
        fds = array.array("i")
        while not got.endswith(b"third\n"):
            data, anc, _flags, _addr = theirs.recvmsg(100, socket.CMSG_SPACE(4 * fds.itemsize))
            assert data
            for level, kind, payload in anc:
                assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
                assert not fds, "the fds came twice"
                # they come with the first byte of their chunk: in the read that ends with it
                # (Linux stops a stream read after a message carrying rights)
                assert (got + data).endswith(b"first\nsecond\n")
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            got += data
        assert got == b"first\nsecond\nthird\n" and len(fds) == 1
        os.write(w, b"through")
        assert os.read(fds[0], 100) == b"through"
        os.close(fds[0])
    os.close(w)
    _until(loop, lambda: conn.closed)


def test_fds_of_a_closed_connection_are_closed(loop: Loop) -> None:
    ours, theirs = socket.socketpair()
    conn = Connection(loop, ours, lambda c, line: None)
    theirs.close()
    _until(loop, lambda: conn.closed)
    r, w = os.pipe()
    conn.send(b"late\n", [r])
    with pytest.raises(OSError):
        os.fstat(r)
    os.close(w)


def test_streaming_connection_closes_on_peer_eof_and_discards_input(loop: Loop) -> None:
    ours, theirs = socket.socketpair()
    lines: list[bytes] = []
    conn = Connection(loop, ours, lambda c, line: (lines.append(line), c.start_streaming()))
    closed: list[bool] = []
    conn.on_close = lambda c: closed.append(True)
    with theirs:
        theirs.sendall(b"attach\n")
        _until(loop, lambda: lines)
        theirs.sendall(b"ignored\nalso ignored\n")
        conn.send(b"frame")
        _spin(loop)
        assert lines == [b"attach\n"] and not conn.closed
        assert theirs.recv(100) == b"frame"
        theirs.shutdown(socket.SHUT_WR)
        _until(loop, lambda: conn.closed)
    assert closed == [True]


def test_close_when_flushed_sends_everything_first(loop: Loop) -> None:
    ours, theirs = socket.socketpair()
    conn = Connection(loop, ours, lambda c, line: None)
    payload = os.urandom(3_000_000)
    conn.send(payload)
    conn.close_when_flushed()
    assert not conn.closed
    got = bytearray()
    theirs.setblocking(False)
    with theirs:
        while True:
            _spin(loop, 0.001)
            try:
                data = theirs.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                break
            got += data
    assert bytes(got) == payload and conn.closed


def test_listener_accepts_clients(loop: Loop, tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "s.sock")
    accepted: list[socket.socket] = []
    listener = Listener(loop, path, accepted.append)
    try:
        assert os.stat(path).st_mode & 0o777 == 0o600
        clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
        for c in clients:
            c.connect(path)
        _until(loop, lambda: len(accepted) == 3)
        for s in accepted + clients:
            s.close()
    finally:
        listener.close()
