"""Bridges between aiohttp's async streams and the services' blocking code, which runs in
worker threads: a request body read synchronously, a response written synchronously, and
docker's JSON message streams."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from dockyard.errors import DockyardError

T = TypeVar("T")
_CHUNK = 1 << 20


class BodyReader(io.RawIOBase):
    """A blocking, file-like view of a request body, for use from a worker thread."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self._content = request.content
        self._loop = loop

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = asyncio.run_coroutine_threadsafe(self._content.read(len(buf)), self._loop).result()
        buf[: len(data)] = data
        return len(data)


class ResponseWriter(io.RawIOBase):
    """A blocking, file-like writer into a prepared StreamResponse."""

    def __init__(self, response: web.StreamResponse, loop: asyncio.AbstractEventLoop) -> None:
        self._response = response
        self._loop = loop
        self.done = False  # set once the producer is over: later writes (a buffer's flush
        # when it is collected, on the loop's own thread) must not wait on the loop

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        if data and not self.done:
            asyncio.run_coroutine_threadsafe(self._response.write(data), self._loop).result()
        return len(data)


def buffered_body(request: web.Request) -> io.BufferedReader:
    return io.BufferedReader(BodyReader(request, asyncio.get_running_loop()), _CHUNK)


async def stream_bytes(request: web.Request, produce: Callable[[io.BufferedWriter], None], content_type: str,
                       headers: dict[str, str] | None = None) -> web.StreamResponse:
    """Run ``produce(out)`` in a thread, streaming what it writes. Errors raised before
    anything was written become a normal error response."""
    loop = asyncio.get_running_loop()
    response = web.StreamResponse(headers={"Content-Type": content_type, **(headers or {})})
    started = False

    class _LazyStart(ResponseWriter):
        def write(self, data: Any) -> int:
            nonlocal started
            if not started:
                asyncio.run_coroutine_threadsafe(response.prepare(request), loop).result()
                started = True
            return super().write(data)

    raw = _LazyStart(response, loop)
    out = io.BufferedWriter(raw, _CHUNK)
    try:
        await asyncio.to_thread(lambda: (produce(out), out.flush()))
    except DockyardError:
        if not started:
            raise
        return response  # the client sees a truncated stream, as with docker
    except ConnectionError:
        return response  # the client went away (``export | head``): nothing to answer
    finally:
        raw.done = True
    if not started:
        await response.prepare(request)
    await response.write_eof()
    return response


class JSONMessages:
    """docker's ``application/json`` progress stream: one JSON object per line, sent as
    produced; an error after the stream started is sent as ``errorDetail``."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._response = web.StreamResponse(headers={"Content-Type": "application/json"})
        self._loop = asyncio.get_running_loop()

    async def start(self) -> None:
        await self._response.prepare(self._request)

    async def send(self, message: dict[str, Any]) -> None:
        await self._response.write(json.dumps(message).encode() + b"\r\n")

    def send_threadsafe(self, message: dict[str, Any]) -> None:
        asyncio.run_coroutine_threadsafe(self.send(message), self._loop).result()

    async def error(self, err: BaseException) -> None:
        msg = str(err)
        try:
            await self.send({"errorDetail": {"message": msg}, "error": msg})
        except ConnectionError:  # the client went away (Ctrl-C): the error was its doing
            pass

    async def finish(self) -> web.StreamResponse:
        try:
            await self._response.write_eof()
        except ConnectionError:
            pass
        return self._response
