"""``GET /events``: the event bus (``dockyard.daemon.events``) as docker streams it.

One JSON object per line, chunked, headers flushed at once (clients wait for them before
they act, e.g. ``docker stats`` subscribes first, then lists). ``since`` replays the
bus's history from then on; ``until`` ends the stream at that time — at once when it lies
in the past, after the history. Filters are docker's (daemon/events/filter.go semantics):
``event``, ``type``, ``container``, ``image``, ``label``, ``scope`` and the other object
types matched by ID prefix or name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any

from aiohttp import web

from dockyard.daemon.api.server import Router, engine_of, filters
from dockyard.errors import DockyardError, InvalidArgument

_NAMED_TYPES = ("daemon", "container", "plugin", "volume", "network", "node", "service", "secret", "config")
_FUZZY_EVENTS = {"health_status", "exec_create", "exec_start"}  # docker matches these as prefixes
_GO_DURATION = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h)(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))*")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
             "h": 3_600_000_000_000}
_CHECK_GONE = 1.0  # seconds between checks that an idle stream's client is still there


def parse_event_time(value: str | None, now_ns: int | None = None) -> int | None:
    """``since``/``until`` -> ns since the epoch. docker's CLI sends unix seconds with an
    optional fraction (``1700000000.123456789``); an RFC3339 time and a relative Go
    duration (``10m``: ten minutes ago), as the CLI accepts them, are taken too."""
    if not value:
        return None
    now_ns = time.time_ns() if now_ns is None else now_ns
    sec, dot, frac = value.partition(".")
    if sec.isdigit() and (not dot or frac.isdigit()):
        return int(sec) * 1_000_000_000 + (int(frac[:9].ljust(9, "0")) if frac else 0)
    if _GO_DURATION.fullmatch(value):
        total = sum(float(n) * _UNITS_NS[u] for n, u in _DURATION_PART.findall(value))
        return now_ns - int(-total if value.startswith("-") else total)
    from dockyard.logs import parse_time

    try:
        return parse_time(value)
    except ValueError:
        raise InvalidArgument(f"invalid value for time: {value!r}") from None


def _strip_tag(image: str) -> str:
    from dockyard import reference

    try:
        return reference.parse(image, default_tag=False).familiar_name
    except DockyardError:
        return image


def _fuzzy(values: list[str], source: str) -> bool:
    return not values or any(source == v or source.startswith(v) for v in values)


def include(ev: dict[str, Any], flt: dict[str, list[str]]) -> bool:
    """Whether event ``ev`` passes filters ``flt`` (every key must match)."""
    actor = ev.get("Actor") or {}
    actor_id, attrs = actor.get("ID", ""), actor.get("Attributes") or {}
    action, typ = ev.get("Action", ""), ev.get("Type", "")
    wanted = flt.get("event")
    if wanted:
        if _FUZZY_EVENTS & set(wanted):
            if not _fuzzy(wanted, action):
                return False
        elif action not in wanted:
            return False
    if flt.get("type") and typ not in flt["type"]:
        return False
    if flt.get("scope") and ev.get("scope") not in flt["scope"]:
        return False
    for kind in _NAMED_TYPES:
        values = flt.get(kind)
        if values and not (_fuzzy(values, actor_id) or _fuzzy(values, attrs.get("name", ""))):
            return False
    images = flt.get("image")
    if images:
        name = attrs.get("name" if typ == "image" else "image", "")
        candidates = {actor_id, name, _strip_tag(actor_id), _strip_tag(name)}
        if not candidates & set(images):
            return False
    for label in flt.get("label") or ():
        key, eq, val = label.partition("=")
        if key not in attrs or (eq and attrs[key] != val):
            return False
    return True


def _encode(ev: dict[str, Any]) -> bytes:
    return json.dumps(ev, separators=(",", ":")).encode() + b"\n"


_KNOWN_FILTERS = {"event", "type", "scope", "image", "label", *_NAMED_TYPES}


async def get_events(request: web.Request) -> web.StreamResponse:
    bus = engine_of(request).events
    now = time.time_ns()
    since = parse_event_time(request.query.get("since"), now)
    until = parse_event_time(request.query.get("until"), now)
    if until is not None and since is not None and until < since:
        raise InvalidArgument(f"`since` time ({request.query.get('since')}) cannot be after `until` time "
                              f"({request.query.get('until')})")
    flt = filters(request)
    unknown = set(flt) - _KNOWN_FILTERS
    if unknown:
        raise InvalidArgument(f"invalid filter '{sorted(unknown)[0]}'")
    # subscribed before the headers go out: a client acting once it has them misses nothing
    # (with only ``until``, docker replays the whole history up to it)
    sub = bus.subscribe(since if since is not None else (0 if until is not None else None))
    loop = asyncio.get_running_loop()
    try:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        out = b"".join(_encode(ev) for ev in sub.backlog
                       if (until is None or ev["timeNano"] <= until) and include(ev, flt))
        if out:
            await response.write(out)
        if until is not None and until <= time.time_ns():
            await response.write_eof()
            return response
        deadline = None if until is None else loop.time() + (until - time.time_ns()) / 1e9
        while True:
            wait = _CHECK_GONE if deadline is None else min(_CHECK_GONE, deadline - loop.time())
            if wait <= 0:
                break
            try:
                ev = await asyncio.wait_for(sub.get(), wait)
            except TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    return response  # the client went away
                continue
            if until is not None and ev["timeNano"] > until:
                break
            if include(ev, flt):
                await response.write(_encode(ev))
    except (ConnectionError, RuntimeError):
        return response  # the client went away mid-write
    finally:
        sub.close()
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response


def register(router: Router) -> None:
    router.add("GET", "/events", get_events)
