"""The supervisor's sockets on its own loop (``loop.py``): a listening unix socket and the
connections it accepts, each reading JSON lines and writing buffered output.

``Connection`` does what the server needs and nothing more:

* input is split into lines (at most ``max_line`` bytes; a longer one ends the
  connection) and handed to ``on_line`` one at a time: the next line is handed over only
  after the owner called ``done()``, so requests on one connection are answered in order
  even when an answer has to wait (``wait``);
* output is buffered: ``send`` writes what the socket takes now and keeps the rest, which
  goes out when the socket is writable again (``out_size`` is what is still queued, for
  the owner's flow control; ``on_flush`` is called each time queued output went out);
* a chunk may carry file descriptors (SCM_RIGHTS): they travel with the chunk's first
  byte, so in order with the byte stream, and our copies are closed once sent (or when the
  connection closes unsent);
* a connection whose peer goes away, or errs, is closed and ``on_close`` is called;
  after the peer's EOF the answer to a request in progress is still sent, then the
  connection closes (``streaming`` connections, which only write, close at once).
"""

from __future__ import annotations

import errno
import os
from _collections import deque  # not collections: see dockyard/suppress.py

from dockyard.runtime import usock
from dockyard.suppress import suppress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from dockyard.supervisor.loop import Loop

MAX_LINE = 64 * 1024 * 1024  # a request line (stdin data travels base64 in one)
_RECV_SIZE = 65536
_ACCEPT_RETRY = 1.0  # seconds the listener rests after running out of fds


class Listener:
    """A non-blocking listening unix socket: ``on_connection(sock)`` per accepted client."""

    def __init__(self, loop: Loop, path: str, on_connection: Callable[[usock.Socket], object]) -> None:
        self.loop = loop
        self.path = path
        self.on_connection = on_connection
        self.sock = usock.unix(usock.SOCK_STREAM | usock.SOCK_NONBLOCK)
        try:
            self.sock.bind(path)
            os.chmod(path, 0o600)
            self.sock.listen(128)
        except BaseException:
            self.sock.close()
            raise
        loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        while True:
            try:
                conn = usock.accept(self.sock)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # the connection stays queued (level-triggered: it would spin); retry later
                    self.loop.remove_reader(self.sock.fileno())
                    self.loop.call_later(_ACCEPT_RETRY, self._resume)
                return  # ECONNABORTED and the like: that client is gone, the next one wakes us
            self.on_connection(conn)

    def _resume(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


class Connection:
    __slots__ = ("loop", "sock", "fd", "on_line", "on_close", "on_flush", "max_line", "streaming", "closed",
                 "out_size", "_in", "_scan", "_out", "_busy", "_eof", "_reading", "_writing", "_closing",
                 "_processing", "owner")

    def __init__(self, loop: Loop, sock: usock.Socket,
                 on_line: Callable[[Connection, bytes], object], max_line: int = MAX_LINE) -> None:
        sock.setblocking(False)
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.on_line = on_line
        self.on_close: Callable[[Connection], object] | None = None
        self.on_flush: Callable[[Connection], object] | None = None
        self.max_line = max_line
        self.streaming = False  # output only from now on: input is discarded, EOF closes
        self.closed = False
        self.out_size = 0
        self.owner: object = None  # whatever the owner keeps here (the attached container's id)
        self._in = bytearray()
        self._scan = 0  # bytes of _in known to hold no newline
        self._out: deque[tuple[bytes | memoryview, list[int] | None]] = deque()
        self._busy = False  # a line was handed over and not answered yet
        self._eof = False
        self._reading = True
        self._writing = False
        self._closing = False  # close once the output is out
        self._processing = False
        loop.add_reader(self.fd, self._readable)

    # ------------------------------------------------------------------ input

    def _readable(self) -> None:
        try:
            data = self.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self._eof = True
            self._stop_reading()
            if self.streaming:
                self.close()
            else:
                self._process()
            return
        if self.streaming:
            return
        self._in += data
        self._process()

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self.loop.remove_reader(self.fd)

    def _process(self) -> None:
        if self._processing:
            return  # done() called from inside on_line: the loop below goes on
        self._processing = True
        try:
            while not self._busy and not self.closed and not self.streaming:
                nl = self._in.find(b"\n", self._scan)
                if nl < 0:
                    if self._eof and self._in:
                        nl = len(self._in) - 1  # a last request without its newline
                    else:
                        self._scan = len(self._in)
                        if self._scan > self.max_line:
                            self.close()
                        break
                line = bytes(self._in[:nl + 1])
                del self._in[:nl + 1]
                self._scan = 0
                self._busy = True
                self.on_line(self, line)
            if not self.closed and not self._busy and self._eof and not self.streaming:
                self.close_when_flushed()
            elif self._reading and len(self._in) > self.max_line:
                self._stop_reading()  # a client pipelining far ahead waits for its answers
        finally:
            self._processing = False

    def done(self) -> None:
        """The line handed over is answered: hand over the next one."""
        self._busy = False
        if self.closed:
            return
        if not self._reading and not self._eof and not self._closing:
            self._reading = True
            self.loop.add_reader(self.fd, self._readable)
        self._process()

    def start_streaming(self) -> None:
        """From now on the connection only writes: further input is discarded and the
        peer's EOF (or an error) closes it."""
        self.streaming = True
        self._in.clear()
        if self._eof:
            self.close_when_flushed()
        elif not self._reading:
            self._reading = True
            self.loop.add_reader(self.fd, self._readable)

    # ------------------------------------------------------------------ output

    def send(self, data: bytes, fds: list[int] | None = None) -> None:
        """Queue ``data`` (with ``fds``, whose copies here are closed once sent) and write
        what the socket takes now."""
        if self.closed or self._closing:
            _close_fds(fds)
            return
        self._out.append((data, fds or None))
        self.out_size += len(data)
        if not self._writing:
            self._flush()

    def _flush(self) -> None:
        out = self._out
        while out:
            data, fds = out[0]
            try:
                n = usock.send_fds(self.sock, data, fds) if fds else self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close()
                return
            if fds:
                _close_fds(fds)
            self.out_size -= n
            if n < len(data):
                out[0] = (memoryview(data)[n:], None)
                break  # the socket's buffer is full
            out.popleft()
        if out and not self._writing:
            self._writing = True
            self.loop.add_writer(self.fd, self._writable)
        elif not out and self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)
        if not out and self._closing:
            self.close()

    def _writable(self) -> None:
        self._flush()
        if self.on_flush is not None and not self.closed:
            self.on_flush(self)

    # ------------------------------------------------------------------ closing

    def close_when_flushed(self) -> None:
        """Close once the queued output is out (at once if there is none)."""
        if self.closed:
            return
        self._closing = True
        self._stop_reading()
        if not self._out:
            self.close()

    def close(self) -> None:
        """Close now; queued output is dropped (its fds closed)."""
        if self.closed:
            return
        self.closed = True
        self._stop_reading()
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)
        for _data, fds in self._out:
            _close_fds(fds)
        self._out.clear()
        self.out_size = 0
        self._in.clear()
        self.sock.close()
        cb, self.on_close, self.on_flush = self.on_close, None, None
        if cb is not None:
            cb(self)


def _close_fds(fds: list[int] | None) -> None:
    for fd in fds or ():
        with suppress(OSError):
            os.close(fd)
