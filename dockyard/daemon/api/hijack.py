"""Connection hijacking for attach and exec start, and chunked streaming for logs.

docker's protocol: the client sends ``Connection: Upgrade`` + ``Upgrade: tcp``; the
daemon answers ``101 UPGRADED`` and from then on the socket is a raw, bidirectional
byte stream: the client's stdin one way, the process's output the other (stdcopy
frames without a TTY, raw bytes with one). A client that doesn't ask for the upgrade
gets ``200 OK`` followed by the same raw stream (neither chunked nor sized: the end of
the body is the end of the connection). The client half-closing its side (``shutdown
(SHUT_WR)``) is stdin's EOF; output keeps flowing until the daemon closes.

How this is done in aiohttp, and why:

* The response head goes out through aiohttp (``StreamResponse.prepare``) so the
  app's ``on_response_prepare`` headers apply and aiohttp knows the request was
  answered. 101 has no body by definition; for the 200 fallback, a response subclass
  turns off aiohttp's length check so it neither chunks nor sizes the body.
* aiohttp's connection protocol can't carry the stream. Its ``eof_received`` returns
  None, which tells asyncio to close the transport on the client's half-close,
  cutting the output short; and ``request.content`` never sees the stream: aiohttp's
  pure-Python parser sets the bytes after an upgrade request aside for a
  websocket-style parser, and its C parser (the default) doesn't treat ``Upgrade:
  tcp`` as an upgrade at all (only websocket) and would parse them as the next HTTP
  request. So in the same loop iteration that writes the head, with no await in
  between, the transport is switched to our own protocol (``transport.set_protocol``,
  public asyncio API) that keeps the transport open on EOF, buffers reads with flow
  control and writes straight to the transport. Clients wait for the head before
  sending stdin, so all of it reaches the new protocol. (Bytes a client pipelines
  behind its request, before any answer, were read by aiohttp before the handler
  ran: the Python parser's leftovers are collected with ``RequestHandler.set_parser``,
  the hook aiohttp's WebSocketResponse uses; the C parser has consumed them.)
  ``connection_lost`` is passed on to aiohttp's protocol so its bookkeeping
  (graceful shutdown, keep-alive, cancelling the handler) stays right.
* The first output waits (briefly) until the client has read the head: docker-py
  would otherwise lose output sent right behind it (see ``_wait_head_read``).
* Once the handler returns, aiohttp's ``write_eof`` on the prepared response writes
  nothing (no chunked terminator: there is no chunking), and the forwarded
  ``connection_lost`` has already told it the connection is gone.

A handler::

    async def attach(request):
        stream = await hijack(request, tty=False)
        async with stream:              # closes; an error becomes an in-band message
            data = await stream.read()  # b"" on stdin EOF (half-close)
            await stream.send(STDOUT, data)
        return stream.response
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import sys
import termios
from types import TracebackType
from typing import Any

from aiohttp import web

from dockyard.streams.stdcopy import MAX_FRAME, SYSTEMERR, frame

__all__ = [
    "MULTIPLEXED_STREAM",
    "RAW_STREAM",
    "HijackedStream",
    "hijack",
    "stream_response",
    "wants_upgrade",
]

log = logging.getLogger("dockyard.api")

MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"
RAW_STREAM = "application/vnd.docker.raw-stream"

_READ_LIMIT = 256 * 1024  # stdin buffered before we stop reading from the socket
_CLOSE_TIMEOUT = 10.0  # how long close() lets unsent output drain before aborting
_AF_UNIX = socket.AF_UNIX
_HEAD_WAIT = 0.1  # at most this long, the first output waits for the head to be read


def _unread_by_peer(fd: int) -> int:
    """SIOCOUTQ: on a unix stream socket, what we sent that the peer hasn't read."""
    buf = fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0")  # SIOCOUTQ == TIOCOUTQ
    return int.from_bytes(buf, sys.byteorder, signed=True)


def wants_upgrade(request: web.Request) -> bool:
    """True when the client asked for docker's ``Upgrade: tcp``."""
    conn = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    return "upgrade" in conn and request.headers.get("Upgrade", "").strip().lower() == "tcp"


class _UnsizedStreamResponse(web.StreamResponse):
    # No Content-Length and no chunking: the body ends when the connection does, which
    # is what clients of the 200 (non-upgrade) hijack expect. aiohttp's
    # WebSocketResponse turns the same check off.
    _length_check = False


class _HijackProtocol(asyncio.Protocol):
    """The transport's protocol once the connection is hijacked."""

    def __init__(self, stream: HijackedStream, previous: asyncio.BaseProtocol) -> None:
        self._stream = stream
        self._previous = previous

    def data_received(self, data: bytes) -> None:
        self._stream._feed(data)

    def eof_received(self) -> bool:
        self._stream._feed_eof()
        return True  # keep the transport open: a half-close must not end the output

    def pause_writing(self) -> None:
        self._stream._can_write.clear()

    def resume_writing(self) -> None:
        self._stream._can_write.set()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stream._lost(exc)
        # aiohttp's protocol still tracks this connection (server shutdown waits for
        # it, handler cancellation, keep-alive timers): tell it, as asyncio would have.
        self._previous.connection_lost(exc)


class _TailCollector:
    """Stands in for a websocket reader in ``RequestHandler.set_parser`` just to
    receive the bytes that arrived after the request head, before the switch."""

    def __init__(self, stream: HijackedStream) -> None:
        self._stream = stream

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._stream._feed(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        # aiohttp calls this from its connection_lost, which we forward: the stream
        # has already seen the loss by then.
        pass


class HijackedStream:
    """The hijacked connection: the client's stdin in, the process's output out.

    ``response`` is the already-sent response; the handler must return it. Use the
    stream as an async context manager, or call :meth:`close` when done."""

    def __init__(self, request: web.Request, response: web.StreamResponse, tty: bool, upgraded: bool) -> None:
        self.request = request
        self.response = response
        self.tty = tty
        self.upgraded = upgraded
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._eof = False
        self._data_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._closed = self._loop.create_future()  # result: the loss's exception or None
        self._closing = False
        self._head_read = False

    # -- called by the protocol
    def _feed(self, data: bytes) -> None:
        if not data:
            return
        self._buf += data
        self._wake()
        if not self._reading_paused and len(self._buf) > _READ_LIMIT and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def _lost(self, exc: BaseException | None) -> None:
        self._eof = True
        self._wake()
        self._can_write.set()  # wake writers so they see the loss
        if not self._closed.done():
            self._closed.set_result(exc)

    def _wake(self) -> None:
        waiter = self._data_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reading (the client's stdin)
    async def read(self, n: int = 64 * 1024) -> bytes:
        """Up to ``n`` bytes the client sent, as soon as some are available; ``b""``
        once the client has half-closed (stdin EOF) or gone away."""
        while not self._buf and not self._eof:
            if self._data_waiter is not None:
                raise RuntimeError("read() called while another read() is waiting")
            self._data_waiter = self._loop.create_future()
            try:
                await self._data_waiter
            finally:
                self._data_waiter = None
        data = bytes(self._buf[:n])
        del self._buf[:n]
        if self._reading_paused and len(self._buf) <= _READ_LIMIT // 2 and not self._closed.done():
            self._reading_paused = False
            assert self._transport is not None
            self._transport.resume_reading()
        return data

    @property
    def buffered(self) -> int:
        """Bytes received from the client and not read yet (bounded: reading from the
        socket pauses past a limit, so a fast client can't fill the daemon's memory)."""
        return len(self._buf)

    @property
    def at_eof(self) -> bool:
        """The client sent EOF (or went away) and everything it sent was read."""
        return self._eof and not self._buf

    # -- writing (the process's output)
    async def write(self, data: bytes) -> None:
        """Send raw bytes (the caller frames them when not TTY, or uses :meth:`send`).
        Waits while the client isn't keeping up. Raises ``ConnectionResetError`` once
        the connection is gone, so a producer stops."""
        if not data:
            return
        if not self._head_read:
            self._head_read = True
            await self._wait_head_read()
        if self._closed.done() or self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("the client connection is closed")
        # One transport.write per call: a frame is never interleaved with another
        # writer's (stdout and stderr are often pumped by separate tasks).
        self._transport.write(data)
        if not self._can_write.is_set():
            await self._can_write.wait()
            if self._closed.done():
                raise ConnectionResetError("the client connection is closed")

    async def _wait_head_read(self) -> None:
        """Hold the first output until the client has read the response head.

        docker-py reads the head through http.client, whose buffered reader takes
        whatever else has arrived too, then reads the stream from the raw socket
        underneath: output sent right behind the head is lost to it (measured here: a
        fast exec's output lost 197 times in 200). On a unix socket SIOCOUTQ says how
        much of what we sent the peer hasn't read yet, so wait for it to reach zero,
        briefly: this only matters when output is ready at once (``logs=1``, a quick
        exec), and a client that doesn't read first only costs ``_HEAD_WAIT``."""
        t = self._transport
        sock = t.get_extra_info("socket") if t is not None else None
        if sock is None or sock.family != _AF_UNIX:
            return  # on TCP the count includes unacknowledged bytes: no signal of a read
        deadline = self._loop.time() + _HEAD_WAIT
        delay = 0.0002
        while not self._closed.done():
            assert t is not None
            try:
                if t.get_write_buffer_size() == 0 and _unread_by_peer(sock.fileno()) == 0:
                    return
            except OSError:
                return
            if self._loop.time() >= deadline:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.005)

    async def send(self, stream_id: int, data: bytes) -> None:
        """Send ``data`` as output of ``stream_id`` (stdcopy STDOUT/STDERR): a frame
        without a TTY, raw bytes with one (a TTY has no separate stderr)."""
        if not data:
            return
        if self.tty:
            await self.write(data)
            return
        view = memoryview(data)
        for i in range(0, len(view), MAX_FRAME):
            await self.write(frame(stream_id, bytes(view[i : i + MAX_FRAME])))

    async def send_error(self, message: str) -> None:
        """Report an error in-band, the HTTP status being long sent: a systemerr frame
        without a TTY, a line of text with one. Best effort."""
        text = message.rstrip("\n").encode("utf-8", "replace")
        try:
            if self.tty:
                await self.write(text + b"\r\n")
            else:
                await self.write(frame(SYSTEMERR, text + b"\n"))
        except ConnectionError:
            pass

    async def close_write(self) -> None:
        """Half-close our side: the client sees end of output but may still send."""
        t = self._transport
        if t is not None and not t.is_closing() and t.can_write_eof():
            t.write_eof()

    # -- lifetime
    @property
    def closed(self) -> bool:
        """The connection is gone or going (closed by us, or lost): writes fail."""
        t = self._transport
        return self._closed.done() or t is None or t.is_closing()

    async def wait_closed(self) -> BaseException | None:
        """Wait until the connection is gone (e.g. the client disconnected); returns
        the error that ended it, if any."""
        return await asyncio.shield(self._closed)

    async def close(self, timeout: float = _CLOSE_TIMEOUT) -> None:
        """Close the connection after the pending output is sent. A client that stops
        reading can't hold the daemon: after ``timeout`` the connection is aborted."""
        t = self._transport
        if t is None or self._closed.done():
            return
        if not self._closing:
            self._closing = True
            t.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), timeout)
        except TimeoutError:
            t.abort()
            await asyncio.shield(self._closed)

    async def __aenter__(self) -> HijackedStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        try:
            # After the hijack an exception can't become an HTTP error response any
            # more (aiohttp would write it into the raw stream): report it in-band, as
            # docker does, log it, and end the connection.
            if isinstance(exc, ConnectionError):
                pass  # the client went away: nothing to report, nobody to report it to
            elif isinstance(exc, Exception):
                log.warning("%s %s failed after hijacking: %s", self.request.method, self.request.path, exc)
                if not self._closed.done():
                    await self.send_error(str(exc) or exc.__class__.__name__)
        finally:
            await self.close()
        return isinstance(exc, Exception)

    # -- set-up
    def _attach(self, transport: asyncio.Transport, handler: Any) -> None:
        self._transport = transport
        if getattr(handler, "writing_paused", False):
            self._can_write.clear()
        # Bytes already past the request head: aiohttp hands them to a "parser" set
        # now. Synchronous, like the protocol switch below: nothing slips in between.
        set_parser = getattr(handler, "set_parser", None)
        if set_parser is not None:
            set_parser(_TailCollector(self))
        transport.set_protocol(_HijackProtocol(self, handler))
        if len(self._buf) > _READ_LIMIT:
            self._reading_paused = True
            transport.pause_reading()
        elif not transport.is_reading():
            # aiohttp may have paused reading (its buffer of unparsed bytes was full).
            transport.resume_reading()


async def hijack(request: web.Request, tty: bool = False, headers: dict[str, str] | None = None) -> HijackedStream:
    """Answer the request by taking over its connection (see module docstring).

    ``tty`` picks the content type: raw stream with a TTY, multiplexed without.
    Reads the request body first, if any (exec start sends JSON and the upgrade
    header together: the stream only begins after the body), so call
    ``request.json()`` before or after, it is cached either way."""
    if request.body_exists:
        await request.read()
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client connection is closed")
    upgraded = wants_upgrade(request)
    hdrs = {"Content-Type": RAW_STREAM if tty else MULTIPLEXED_STREAM}
    if upgraded:
        hdrs.update({"Connection": "Upgrade", "Upgrade": "tcp"})
        response: web.StreamResponse = web.StreamResponse(status=101, reason="UPGRADED", headers=hdrs)
    else:
        response = _UnsizedStreamResponse(status=200, headers=hdrs)
    if headers:
        response.headers.update(headers)
    # Never keep-alive: after the stream the connection is done, not reusable.
    response.force_close()
    await response.prepare(request)
    stream = HijackedStream(request, response, tty, upgraded)
    handler = request.protocol
    if transport.is_closing():  # the client went away while the head was sent
        stream._lost(ConnectionResetError("the client connection is closed"))
        return stream
    stream._attach(transport, handler)
    return stream


async def stream_response(
    request: web.Request, content_type: str, status: int = 200, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """A prepared, chunked streaming response (logs, stats, events): ``await
    resp.write(...)`` as output is produced, ``await resp.write_eof()`` at the end.
    Chunked explicitly so it holds even for a response that would otherwise be
    sized or, for HTTP/1.0 clients, delimited by close."""
    response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
    if headers:
        response.headers.update(headers)
    if request.version >= (1, 1):
        response.enable_chunked_encoding()
    await response.prepare(request)
    return response
