"""POST /build: the classic builder's endpoint. The body is the build context as a tar (any
compression); it is unpacked (safely: resolved inside a scratch directory, as a layer is)
into the exec root, the Dockerfile run there, the directory removed after."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from typing import Any

from aiohttp import web

from dockyard.daemon.api.server import Router, engine_of, qbool
from dockyard.daemon.api.streams import JSONMessages, buffered_body
from dockyard.errors import DockyardError, InvalidArgument

# dockyard's: the context directory of a client on this host, read in place (no tar sent;
# unchanged files are not read again). docker's clients send a tar, as always.
CONTEXT_HEADER = "X-Dockyard-Context"


def _json_param(request: web.Request, name: str, kind: type = dict) -> Any:
    """A JSON-valued query parameter: an object (buildargs, labels) or a list (cachefrom)."""
    raw = request.query.get(name, "")
    if not raw:
        return kind()
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid {name} parameter: not JSON") from None
    if not isinstance(value, kind):
        raise InvalidArgument(f"invalid {name} parameter: not a JSON {'object' if kind is dict else 'array'}")
    return value


def _options(request: web.Request):  # noqa: ANN202 - BuildOptions, imported lazily
    from dockyard.builder.build import BuildOptions

    if request.query.get("remote"):
        raise InvalidArgument("building from a remote context (git, URL) is not supported")
    return BuildOptions(
        dockerfile=request.query.get("dockerfile") or "Dockerfile",
        tags=request.query.getall("t", []),
        build_args={str(k): None if v is None else str(v) for k, v in _json_param(request, "buildargs").items()},
        labels={str(k): str(v) for k, v in _json_param(request, "labels").items()},
        target=request.query.get("target", ""),
        no_cache=qbool(request, "nocache"),
        pull=qbool(request, "pull"),
        network=request.query.get("networkmode", ""),
        quiet=qbool(request, "q"),
        remove=request.query.get("rm", "1").lower() not in ("0", "false"),
        force_remove=qbool(request, "forcerm"),
        explain_cache=qbool(request, "explaincache"),  # dockyard's
        cache_from=[str(name) for name in _json_param(request, "cachefrom", list)],
        platform=request.query.get("platform", ""),
    )


def _unpack_context(body, directory: str) -> None:  # noqa: ANN001
    from dockyard.archive import apply_layer
    from dockyard.snapshots import Mount

    os.makedirs(directory, mode=0o700)
    apply_layer(body, [Mount("bind", directory, ["rbind", "rw"])], whiteouts=False)


async def build(request: web.Request) -> web.StreamResponse:
    from dockyard.builder.build import Build, BuildError

    engine = engine_of(request)
    options = _options(request)
    in_place = request.headers.get(CONTEXT_HEADER, "")
    messages = JSONMessages(request)
    if in_place:  # a client on this host: its directory, read where it is
        if not os.path.isabs(in_place) or not os.path.isdir(in_place):
            raise InvalidArgument(f"invalid {CONTEXT_HEADER}: {in_place!r} is not an absolute path to a directory")
        directory = in_place
    else:
        directory = os.path.join(engine.config.exec_root, "build", uuid.uuid4().hex)
        body = buffered_body(request)
        try:
            await asyncio.to_thread(_unpack_context, body, directory)
        except DockyardError as e:
            await asyncio.to_thread(shutil.rmtree, directory, True)
            raise InvalidArgument(f"failed to read the build context: {e}") from None
    await messages.start()
    try:
        def gone() -> bool:
            return request.transport is None or request.transport.is_closing()

        build = Build(engine, directory, options, messages.send_threadsafe, gone, in_place=bool(in_place))
        await asyncio.to_thread(build.run)
    except BuildError as e:
        await _error(messages, str(e), e.code)
    except Exception as e:  # headers are sent: the error travels in the stream
        await _error(messages, str(e), 1)
    finally:
        if not in_place:
            await asyncio.to_thread(shutil.rmtree, directory, True)
    return await messages.finish()


async def _error(messages: JSONMessages, message: str, code: int) -> None:
    try:
        await messages.send({"errorDetail": {"code": code, "message": message}, "error": message})
    except ConnectionError:
        pass


def register(router: Router) -> None:
    router.add("POST", "/build", build)
