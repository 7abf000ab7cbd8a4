"""Container endpoints: create, list, inspect, start, stop, kill, restart, pause, unpause,
rename, top, stats, wait, remove, logs, attach."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from dockyard.daemon.api.hijack import MULTIPLEXED_STREAM, RAW_STREAM, hijack, stream_response
from dockyard.daemon.api.server import Router, engine_of, filters, param, qbool, qint, read_json
from dockyard.daemon.stats import ZERO_TIME
from dockyard.daemon.stats import chain as stats_chain
from dockyard.errors import (
    DockyardError,
    InvalidArgument,
    NotFound,
    NotModified,
    Unavailable,
)
from dockyard.logs import aread_logs, format_time_fixed, parse_time
from dockyard.streams.stdcopy import STDERR, STDOUT, frame


def _svc(request: web.Request) -> Any:
    return engine_of(request).containers


async def create_container(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = request.query.get("name") or None
    result = await asyncio.to_thread(_svc(request).create, body, name)
    return web.json_response(result, status=201)


async def list_containers(request: web.Request) -> web.Response:
    limit = qint(request, "limit")
    result = await asyncio.to_thread(_svc(request).list, qbool(request, "all"), filters(request), limit,
                                     qbool(request, "size"))
    return web.json_response(result)


async def inspect_container(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_svc(request).inspect, param(request, "id"),
                                                     qbool(request, "size")))


async def start_container(request: web.Request) -> web.Response:
    try:
        await asyncio.to_thread(_svc(request).start, param(request, "id"))
    except NotModified:
        return web.Response(status=304)
    return web.Response(status=204)


async def stop_container(request: web.Request) -> web.Response:
    try:
        await asyncio.to_thread(_svc(request).stop, param(request, "id"), qint(request, "t"),
                                request.query.get("signal") or None)
    except NotModified:
        return web.Response(status=304)
    return web.Response(status=204)


async def resize_container(request: web.Request) -> web.Response:
    h, w = qint(request, "h", 0), qint(request, "w", 0)
    if not h or not w or h < 0 or w < 0:
        raise InvalidArgument("resize needs positive h and w")
    await asyncio.to_thread(_svc(request).resize, param(request, "id"), h, w)
    return web.Response(status=200)


async def kill_container(request: web.Request) -> web.Response:
    await asyncio.to_thread(_svc(request).kill, param(request, "id"), request.query.get("signal") or None)
    return web.Response(status=204)


async def restart_container(request: web.Request) -> web.Response:
    await asyncio.to_thread(_svc(request).restart, param(request, "id"), qint(request, "t"),
                            request.query.get("signal") or None)
    return web.Response(status=204)


async def pause_container(request: web.Request) -> web.Response:
    await asyncio.to_thread(_svc(request).pause, param(request, "id"))
    return web.Response(status=204)


async def unpause_container(request: web.Request) -> web.Response:
    await asyncio.to_thread(_svc(request).unpause, param(request, "id"))
    return web.Response(status=204)


async def rename_container(request: web.Request) -> web.Response:
    await asyncio.to_thread(_svc(request).rename, param(request, "id"), request.query.get("name", ""))
    return web.Response(status=204)


async def top_container(request: web.Request) -> web.Response:
    result = await asyncio.to_thread(_svc(request).top, param(request, "id"), request.query.get("ps_args", ""))
    return web.json_response(result)


_STATS_INTERVAL = 1.0  # seconds between streamed samples, as dockerd's collector


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def container_stats(request: web.Request) -> web.StreamResponse:
    """One sample (``stream=false``; its ``precpu_stats`` from a sample taken a second
    earlier unless ``one-shot``), or a sample a second, chunked, until the client goes or
    the container is removed. A container that is not running gives docker's zeroed record."""
    svc = _svc(request)
    rec = await asyncio.to_thread(svc.lookup, param(request, "id"))
    if not qbool(request, "stream", True):
        sample = await asyncio.to_thread(svc.stats, rec.id)
        if sample["read"] != ZERO_TIME and not qbool(request, "one-shot"):
            await asyncio.sleep(_STATS_INTERVAL)
            sample = stats_chain(await asyncio.to_thread(svc.stats, rec.id), sample)
        return web.Response(body=_encode(sample), content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    previous = None
    next_at = loop.time()
    while not _gone(request):
        try:
            sample = stats_chain(await asyncio.to_thread(svc.stats, rec.id), previous)
        except NotFound:
            break  # removed: docker ends the stream
        try:
            await response.write(_encode(sample))
        except (ConnectionError, RuntimeError):
            return response
        previous = sample
        next_at += _STATS_INTERVAL
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response


async def wait_container(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    block = await asyncio.to_thread(svc.wait_registration, param(request, "id"),
                                    request.query.get("condition", ""))
    # The wait is registered: flush the headers now. docker run starts the container only
    # once it knows the wait is in place, or a fast exit (or --rm) could be missed.
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        result = await asyncio.to_thread(block)
    except DockyardError as e:  # the status is sent: the error travels in the body
        result = {"StatusCode": -1, "Error": {"Message": str(e)}}
    with contextlib.suppress(ConnectionError):  # the client gave up waiting (docker run -d does)
        await response.write(json.dumps(result).encode() + b"\n")
        await response.write_eof()
    return response


async def update_container(request: web.Request) -> web.Response:
    body = await read_json(request)
    return web.json_response(await asyncio.to_thread(_svc(request).update, param(request, "id"), body))


async def prune_containers(request: web.Request) -> web.Response:
    from dockyard.daemon.api.events import parse_event_time

    flt = filters(request)
    for key in flt:
        if key not in ("until", "label", "label!"):
            raise InvalidArgument(f"invalid filter '{key}'")
    until = parse_event_time(flt["until"][-1]) if flt.get("until") else None
    result = await asyncio.to_thread(_svc(request).prune, until, flt.get("label"), flt.get("label!"))
    return web.json_response(result)


async def remove_container(request: web.Request) -> web.Response:
    await asyncio.to_thread(_svc(request).remove, param(request, "id"), qbool(request, "force"), qbool(request, "v"))
    return web.Response(status=204)


def _time_arg(value: str | None) -> float | None:
    """docker's since/until: epoch seconds (with fraction) or an RFC3339 timestamp."""
    if not value or value == "0":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parse_time(value) / 1e9
    except (ValueError, DockyardError):
        raise InvalidArgument(f"invalid time value: {value}") from None


async def _exited_event(svc: Any, cid: str, condition: str) -> tuple[asyncio.Event, asyncio.Task[Any]]:
    """An event set once the container is not running (``condition`` as for wait)."""
    stop = asyncio.Event()
    block = await asyncio.to_thread(svc.wait_registration, cid, condition)

    async def waiter() -> None:
        with contextlib.suppress(DockyardError):
            await asyncio.to_thread(block)
        stop.set()

    return stop, asyncio.ensure_future(waiter())


async def container_logs(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    rec = await asyncio.to_thread(svc.lookup, param(request, "id"))
    stdout, stderr = qbool(request, "stdout"), qbool(request, "stderr")
    if not stdout and not stderr:
        raise InvalidArgument("You must choose at least one stream")
    follow, timestamps = qbool(request, "follow"), qbool(request, "timestamps")
    since, until = _time_arg(request.query.get("since")), _time_arg(request.query.get("until"))
    tail = request.query.get("tail") or None
    tty = bool(rec.config.get("Tty"))
    response = await stream_response(request, RAW_STREAM if tty else MULTIPLEXED_STREAM)
    stop: asyncio.Event | None = None
    task: asyncio.Task[Any] | None = None
    if follow:
        stop, task = await _exited_event(svc, rec.id, "not-running")
    try:
        async for batch in aread_logs(rec.log_path, stdout=stdout, stderr=stderr, since=since, until=until,
                                      tail=tail, follow=follow, stop=stop):
            out = bytearray()
            for r in batch:
                data = (format_time_fixed(r.time_ns) + " ").encode() + r.data if timestamps else r.data
                out += data if tty else frame(STDERR if r.stream == "stderr" else STDOUT, data)
            await response.write(bytes(out))
    finally:
        if task is not None:
            task.cancel()
    await response.write_eof()
    return response


async def attach_container(request: web.Request) -> web.StreamResponse:
    """Output, without ``logs``: the supervisor's attach stream — the bytes the container
    writes from now on, as they are read from its pipes (docker's attach), until it has
    exited and its output is drained; a container that is not running streams its next
    run (``docker start -a``). The stream is registered before the hijack, so all that is
    written after the 101 reaches the client. With ``logs=1``: the json log replayed, then
    followed. Input: passed to the supervisor's stdin pipe."""
    svc = _svc(request)
    rec = await asyncio.to_thread(svc.lookup, param(request, "id"))
    if qbool(request, "logs"):
        return await _attach_log(request, svc, rec)
    want = {STDOUT: qbool(request, "stdout"), STDERR: qbool(request, "stderr")}
    want_in = qbool(request, "stdin") and bool(rec.config.get("OpenStdin"))
    tty = bool(rec.config.get("Tty"))
    sup: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    if qbool(request, "stream"):
        sup = await _open_attach(svc, rec.id)
    try:
        stream = await hijack(request, tty=tty)
    except BaseException:
        if sup is not None:
            sup[1].close()
        raise
    svc.event(rec, "attach")
    stdin_task: asyncio.Task[Any] | None = None
    watcher: asyncio.Task[Any] | None = None
    async with stream:
        if want_in:
            stdin_task = asyncio.ensure_future(_pump_stdin(svc, rec, stream))
        try:
            if sup is not None:
                reader, writer = sup
                # the client going away ends the supervisor's stream too (it sees our EOF)
                watcher = asyncio.ensure_future(_close_when_gone(stream, writer))
                await _forward_frames(reader, stream, want, tty)
        finally:
            if sup is not None:
                sup[1].close()
            for task in (watcher, stdin_task):
                if task is not None:
                    task.cancel()
    return stream.response


_ATTACH_BUFFER = 1024 * 1024  # what the daemon reads ahead of a slow client from the supervisor


async def _open_attach(svc: Any, cid: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the supervisor, turned into container ``cid``'s attach stream."""
    from dockyard.supervisor.client import error_from

    path = await asyncio.to_thread(svc.supervisor_socket)
    try:
        reader, writer = await asyncio.open_unix_connection(path, limit=_ATTACH_BUFFER)
    except OSError as e:
        raise Unavailable(f"supervisor not running at {path}: {e.strerror or e}") from None
    try:
        writer.write(json.dumps({"op": "attach", "id": cid}).encode() + b"\n")
        line = await reader.readline()
        if not line:
            raise Unavailable("supervisor closed the connection without an answer")
        resp = json.loads(line)
        if not resp.get("ok"):
            raise error_from(resp.get("kind"), resp.get("error", "supervisor error"))
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def _forward_frames(reader: asyncio.StreamReader, stream: Any, want: dict[int, bool], tty: bool) -> None:
    """The supervisor's stdcopy frames to the client: as they are without a TTY (only the
    streams asked for), their payload with one. Ends when the supervisor closes."""
    while True:
        try:
            header = await reader.readexactly(8)
            payload = await reader.readexactly(int.from_bytes(header[4:8], "big"))
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        if want.get(header[0]):
            await stream.write(payload if tty else header + payload)


async def _close_when_gone(stream: Any, writer: asyncio.StreamWriter) -> None:
    await stream.wait_closed()
    writer.close()


async def _attach_log(request: web.Request, svc: Any, rec: Any) -> web.StreamResponse:
    """``logs=1``: the json log replayed, then (``stream``) followed until the container is
    not running."""
    want_out, want_err = qbool(request, "stdout"), qbool(request, "stderr")
    want_in = qbool(request, "stdin") and bool(rec.config.get("OpenStdin"))
    stream_mode = qbool(request, "stream")
    tty = bool(rec.config.get("Tty"))
    # registered before the hijack: an exit between the two must not be missed
    condition = "not-running" if rec.status == "running" else "next-exit"
    stop, task = await _exited_event(svc, rec.id, condition)
    stream = await hijack(request, tty=tty)
    svc.event(rec, "attach")
    stdin_task: asyncio.Task[Any] | None = None
    async with stream:
        if want_in:
            stdin_task = asyncio.ensure_future(_pump_stdin(svc, rec, stream))
        try:
            if want_out or want_err:
                async for batch in aread_logs(rec.log_path, stdout=want_out, stderr=want_err,
                                              tail=None,
                                              follow=stream_mode, stop=stop):
                    for r in batch:
                        await stream.send(STDERR if r.stream == "stderr" else STDOUT, r.data)
            elif stream_mode:
                await stop.wait()
        finally:
            task.cancel()
            if stdin_task is not None:
                stdin_task.cancel()
    return stream.response


async def _pump_stdin(svc: Any, rec: Any, stream: Any) -> None:
    while True:
        data = await stream.read()
        if not data:
            break
        try:
            await asyncio.to_thread(svc.write_stdin, rec.id, data)
        except DockyardError:
            return  # stdin already closed (or the container gone): input goes nowhere
    if rec.config.get("StdinOnce"):
        await asyncio.to_thread(svc.close_stdin, rec.id)


def register(router: Router) -> None:
    router.add("POST", "/containers/create", create_container)
    router.add("GET", "/containers/json", list_containers)
    router.add("GET", "/containers/{id}/json", inspect_container)
    router.add("POST", "/containers/{id}/start", start_container)
    router.add("POST", "/containers/{id}/stop", stop_container)
    router.add("POST", "/containers/{id}/kill", kill_container)
    router.add("POST", "/containers/{id}/restart", restart_container)
    router.add("POST", "/containers/{id}/pause", pause_container)
    router.add("POST", "/containers/{id}/unpause", unpause_container)
    router.add("POST", "/containers/{id}/rename", rename_container)
    router.add("GET", "/containers/{id}/top", top_container)
    router.add("GET", "/containers/{id}/stats", container_stats)
    router.add("POST", "/containers/{id}/resize", resize_container)
    router.add("POST", "/containers/{id}/wait", wait_container)
    router.add("GET", "/containers/{id}/logs", container_logs)
    router.add("POST", "/containers/{id}/attach", attach_container)
    router.add("DELETE", "/containers/{id}", remove_container)
    router.add("POST", "/containers/prune", prune_containers)
    router.add("POST", "/containers/{id}/update", update_container)
