"""Volume endpoints: create, list, inspect, remove, prune."""

from __future__ import annotations

import asyncio

from aiohttp import web

from dockyard.daemon.api.server import Router, engine_of, filters, param, qbool, read_json


async def create_volume(request: web.Request) -> web.Response:
    body = await read_json(request)
    return web.json_response(await asyncio.to_thread(engine_of(request).volumes.create, body), status=201)


async def list_volumes(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(engine_of(request).volumes.list, filters(request)))


async def inspect_volume(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(engine_of(request).volumes.inspect, param(request, "name")))


async def remove_volume(request: web.Request) -> web.Response:
    await asyncio.to_thread(engine_of(request).volumes.remove, param(request, "name"), qbool(request, "force"))
    return web.Response(status=204)


async def prune_volumes(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(engine_of(request).volumes.prune, filters(request)))


def register(router: Router) -> None:
    router.add("POST", "/volumes/create", create_volume)
    router.add("POST", "/volumes/prune", prune_volumes)
    router.add("GET", "/volumes", list_volumes)
    router.add("GET", "/volumes/{name}", inspect_volume)
    router.add("DELETE", "/volumes/{name}", remove_volume)
