"""A container's filesystem: changes (docker diff), export, the archive API (docker cp) and
POST /commit."""

from __future__ import annotations

import asyncio

from aiohttp import web

from dockyard.daemon import archive_api, container_fs
from dockyard.daemon.api.server import Router, engine_of, param, qbool, read_json
from dockyard.daemon.api.streams import buffered_body, stream_bytes


async def container_changes(request: web.Request) -> web.Response:
    svc = engine_of(request).containers
    return web.json_response(await asyncio.to_thread(container_fs.container_changes, svc, param(request, "id")))


async def export_container(request: web.Request) -> web.StreamResponse:
    svc = engine_of(request).containers
    rec = await asyncio.to_thread(svc.lookup, param(request, "id"))  # a 404 before the stream starts
    response = await stream_bytes(request, lambda out: container_fs.export(svc, rec.id, out), "application/x-tar")
    await asyncio.to_thread(svc.event, rec, "export")
    return response


async def commit_container(request: web.Request) -> web.Response:
    svc = engine_of(request).containers
    body = await read_json(request) if request.can_read_body else None
    q = request.query
    image_id = await asyncio.to_thread(
        container_fs.commit, svc, q.get("container", ""), repo=q.get("repo") or None, tag=q.get("tag") or None,
        comment=q.get("comment", ""), author=q.get("author", ""), changes_=q.getall("changes", []),
        pause=qbool(request, "pause", True), overrides=body or None)
    return web.json_response({"Id": image_id}, status=201)


_STAT = "X-Docker-Container-Path-Stat"


async def archive_head(request: web.Request) -> web.Response:
    svc = engine_of(request).containers
    header = await asyncio.to_thread(archive_api.stat_header, svc, param(request, "id"), request.query.get("path", ""))
    return web.Response(status=200, headers={_STAT: header})


async def archive_get(request: web.Request) -> web.StreamResponse:
    svc = engine_of(request).containers
    path = request.query.get("path", "")
    header = await asyncio.to_thread(archive_api.stat_header, svc, param(request, "id"), path)  # 404 first
    return await stream_bytes(request, lambda out: archive_api.get_archive(svc, param(request, "id"), path, out),
                              "application/x-tar", {_STAT: header})


async def archive_put(request: web.Request) -> web.Response:
    svc = engine_of(request).containers
    body = buffered_body(request)
    await asyncio.to_thread(archive_api.put_archive, svc, param(request, "id"), request.query.get("path", ""), body,
                            copy_uid_gid=qbool(request, "copyUIDGID"),
                            no_overwrite_dir_non_dir=qbool(request, "noOverwriteDirNonDir"))
    return web.Response(status=200)


def register(router: Router) -> None:
    router.add("HEAD", "/containers/{id}/archive", archive_head)
    router.add("GET", "/containers/{id}/archive", archive_get)
    router.add("PUT", "/containers/{id}/archive", archive_put)
    router.add("GET", "/containers/{id}/changes", container_changes)
    router.add("GET", "/containers/{id}/export", export_container)
    router.add("POST", "/commit", commit_container)
