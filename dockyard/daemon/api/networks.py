"""Network endpoints: create, list, inspect, remove, prune, connect, disconnect; and the
swarm call docker's clients make on their way out (there is no swarm)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from dockyard.daemon.api.server import Router, engine_of, filters, param, qbool, read_json
from dockyard.errors import Unavailable


def _svc(request: web.Request):  # type: ignore[no-untyped-def]
    return engine_of(request).networks


async def create_network(request: web.Request) -> web.Response:
    body = await read_json(request)
    return web.json_response(await asyncio.to_thread(_svc(request).create, body), status=201)


async def list_networks(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_svc(request).list, filters(request)))


async def inspect_network(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_svc(request).inspect, param(request, "id"),
                                                     qbool(request, "verbose")))


async def remove_network(request: web.Request) -> web.Response:
    await asyncio.to_thread(_svc(request).remove, param(request, "id"))
    return web.Response(status=204)


async def prune_networks(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_svc(request).prune, filters(request)))


async def connect_network(request: web.Request) -> web.Response:
    body = await read_json(request)
    engine = engine_of(request)
    await asyncio.to_thread(engine.networks.connect, param(request, "id"), body, engine.containers.update_record)
    return web.Response(status=200)


async def disconnect_network(request: web.Request) -> web.Response:
    body = await read_json(request)
    engine = engine_of(request)
    await asyncio.to_thread(engine.networks.disconnect, param(request, "id"), body, engine.containers.update_record)
    return web.Response(status=200)


async def leave_swarm(request: web.Request) -> web.Response:
    raise Unavailable("This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" "
                      "to connect this node to swarm and try again.")


def register(router: Router) -> None:
    router.add("POST", "/networks/create", create_network)
    router.add("POST", "/networks/prune", prune_networks)
    router.add("GET", "/networks", list_networks)
    router.add("GET", "/networks/{id}", inspect_network)
    router.add("DELETE", "/networks/{id}", remove_network)
    router.add("POST", "/networks/{id}/connect", connect_network)
    router.add("POST", "/networks/{id}/disconnect", disconnect_network)
    router.add("POST", "/swarm/leave", leave_swarm)
