"""Exec endpoints: create, start (hijacked like attach, or detached), inspect, resize.

A started exec's streams are fds the supervisor passed to the daemon (see
``dockyard/daemon/execs.py``): pipes, or a pty master with a TTY. They are pumped here on
the event loop, non-blocking: output to the hijacked connection (stdcopy frames without a
TTY, raw with one), the client's input to the process. The client half-closing is stdin's
EOF (the pipe is closed) while output keeps flowing; the connection ends once the output is
over *and* the exit is recorded, so a client that inspects the exec next (the docker CLI,
for its exit status) finds the exit code. Output a process's leftover children still write
after it exited is followed until it pauses for ``_LINGER``.

With a TTY and stdin, the detach keys (the exec's, else ctrl-p,ctrl-q) end the session
while the process runs on, as in docker; so does a client going away. Either way the
process's output is drained (and dropped) until it exits, so it never blocks on a full pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from typing import Any

from aiohttp import web

from dockyard.daemon.api.hijack import HijackedStream, hijack
from dockyard.daemon.api.server import Router, engine_of, param, read_json, version_of
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.streams.stdcopy import STDERR, STDOUT

_BLOCK = 64 * 1024
_LINGER = 0.2  # after the exit: how long output may pause before the stream ends


def _svc(request: web.Request) -> Any:
    return engine_of(request).execs


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def _console_size_ok(request: web.Request) -> bool:
    return _vtuple(version_of(request)) >= (1, 42)  # ConsoleSize is API 1.42+


async def create_exec(request: web.Request) -> web.Response:
    body = await read_json(request)
    eid = await asyncio.to_thread(_svc(request).create, param(request, "id"), body, _console_size_ok(request))
    return web.json_response({"Id": eid}, status=201)


async def inspect_exec(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_svc(request).inspect, param(request, "id")))


async def resize_exec(request: web.Request) -> web.Response:
    dims = []
    for name, what in (("h", "height"), ("w", "width")):
        value = request.query.get(name) or "0"
        if not value.isdigit() or int(value) >= 1 << 32:
            raise InvalidArgument(f'invalid resize {what} "{value}"')
        dims.append(int(value))
    h, w = dims
    if h and w:
        await asyncio.to_thread(_svc(request).resize, param(request, "id"), min(h, 65535), min(w, 65535))
    return web.Response(status=200)


async def start_exec(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the body must be an object")
    detach, tty = bool(body.get("Detach")), bool(body.get("Tty"))
    size = body.get("ConsoleSize") if tty and _console_size_ok(request) else None
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(isinstance(v, int) and v >= 0 for v in size)):
        raise InvalidArgument("invalid JSON: ConsoleSize must be [height, width]")
    ex = await asyncio.to_thread(svc.begin, param(request, "id"))
    if detach:
        session = await asyncio.to_thread(svc.launch, ex, size, False)
        svc.watch(session)
        return web.Response(status=200)
    # framing by the start request's Tty, as docker does (the exec's own decides the pty)
    stream = await hijack(request, tty=tty)
    async with stream:
        try:
            session = await asyncio.to_thread(svc.launch, ex, size, True)
        except DockyardError as e:
            # docker writes the failure into the stream, as output, and the exec's exit
            # code (126/127) says the rest
            with contextlib.suppress(ConnectionError):
                await stream.send(STDOUT, f"{e}\r\n".encode())
            return stream.response
        await _Pump(svc, stream, session).run()
    return stream.response


class _Pump:
    def __init__(self, svc: Any, stream: HijackedStream, session: Any) -> None:
        self.svc, self.stream, self.session = svc, stream, session
        self.ex = session.exec
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = svc.watch(session)
        self.fds: dict[str, int] = dict(session.fds)
        for fd in self.fds.values():
            os.set_blocking(fd, False)
        self.sink = True  # output goes to the client (False: drained and dropped)
        self.detached = asyncio.Event()

    async def run(self) -> None:
        outs = []
        if "tty" in self.fds:
            outs.append(self._copy_out("tty", STDOUT))
        for name, sid in (("stdout", STDOUT), ("stderr", STDERR)):
            if name in self.fds:
                outs.append(self._copy_out(name, sid))
        in_task = asyncio.ensure_future(self._copy_in())
        finished = asyncio.ensure_future(self._finished(outs))
        lost = asyncio.ensure_future(self.stream.wait_closed())
        detach = asyncio.ensure_future(self.detached.wait())
        try:
            await asyncio.wait({finished, lost, detach}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            detach.cancel()
        if finished.done():
            in_task.cancel()
            await asyncio.gather(in_task, return_exceptions=True)
            self._close_all()
            finished.result()  # an unexpected failure of the pump surfaces here
            return
        # detached, or the client went away: the process runs on without anyone attached
        self.sink = False
        if self.detached.is_set():
            self.svc.detached(self.ex)
        self.svc.keep(asyncio.ensure_future(self._finish_later(finished, in_task)))

    async def _finished(self, outs: list[Any]) -> None:
        await asyncio.gather(*outs)
        await asyncio.shield(self.done)

    async def _finish_later(self, finished: asyncio.Future[None], in_task: asyncio.Future[None]) -> None:
        try:
            await asyncio.gather(finished, return_exceptions=True)
        finally:
            in_task.cancel()
            await asyncio.gather(in_task, return_exceptions=True)
            self._close_all()

    def _close(self, name: str) -> None:
        fd = self.fds.pop(name, -1)
        if fd < 0:
            return
        if name == "tty":
            self.svc.release_master(self.ex)  # a resize may be using it: closed under its lock
        else:
            os.close(fd)

    def _close_all(self) -> None:
        for name in list(self.fds):
            self._close(name)

    # -- output
    async def _copy_out(self, name: str, sid: int) -> None:
        fd = self.fds[name]
        try:
            while True:
                data = await self._read(fd)
                if not data:
                    return
                if self.sink:
                    try:
                        await self.stream.send(sid, data)
                    except ConnectionError:
                        self.sink = False  # gone: keep draining so the process never blocks
        finally:
            if name != "tty":  # the pty master is also stdin's: closed at the end
                self._close(name)

    async def _read(self, fd: int) -> bytes:
        """Up to 64 KiB from ``fd``; b"" at EOF (EIO from a pty master), or once the process
        has exited and no more output came for ``_LINGER`` (a leftover child holds it)."""
        while True:
            try:
                return os.read(fd, _BLOCK)
            except BlockingIOError:
                pass
            except OSError as e:
                if e.errno == errno.EIO:
                    return b""
                raise
            exited = self.done.done()
            ready = self._when(fd, writer=False)
            try:
                got, _ = await asyncio.wait({ready} if exited else {ready, self.done},
                                            timeout=_LINGER if exited else None,
                                            return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._unwatch(fd, ready, writer=False)
            if not got:
                return b""

    # -- input
    async def _copy_in(self) -> None:
        ex = self.ex
        name = "tty" if "tty" in self.fds else "stdin"
        fd = self.fds.get(name, -1) if ex.open_stdin else -1
        matcher = None
        if ex.tty and fd >= 0:
            from dockyard.streams.detach import (
                DEFAULT_DETACH_KEYS,
                EscapeMatcher,
                parse_detach_keys,
            )

            matcher = EscapeMatcher(ex.detach_keys or parse_detach_keys(DEFAULT_DETACH_KEYS))
        while True:
            data = await self.stream.read()
            if not data:
                break
            detach = False
            if matcher is not None:
                data, detach = matcher.feed(data)
            if data and fd >= 0 and not await self._write_all(fd, data):
                fd = -1  # the process stopped reading for good: input goes nowhere
            if detach:
                self.detached.set()
                return
        if name == "stdin":
            self._close("stdin")  # the client's EOF is the process's

    async def _write_all(self, fd: int, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
                continue
            except BlockingIOError:
                pass
            except OSError:  # EPIPE: the reader is gone; EIO: the terminal is
                return False
            ready = self._when(fd, writer=True)
            try:
                await asyncio.wait({ready, self.done}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._unwatch(fd, ready, writer=True)
            if not ready.done():
                return False  # exited without reading it
        return True

    # -- readiness
    def _when(self, fd: int, writer: bool) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self.loop.create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        (self.loop.add_writer if writer else self.loop.add_reader)(fd, wake)
        return fut

    def _unwatch(self, fd: int, fut: asyncio.Future[None], writer: bool) -> None:
        (self.loop.remove_writer if writer else self.loop.remove_reader)(fd)
        if not fut.done():
            fut.cancel()


def register(router: Router) -> None:
    router.add("POST", "/containers/{id}/exec", create_exec)
    router.add("POST", "/exec/{id}/start", start_exec)
    router.add("POST", "/exec/{id}/resize", resize_exec)
    router.add("GET", "/exec/{id}/json", inspect_exec)
