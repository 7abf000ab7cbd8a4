"""The aiohttp application: API versions in the path, typed errors -> status codes."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from dockyard import API_VERSION, MIN_API_VERSION, __version__
from dockyard.errors import DockyardError, InvalidArgument, http_status

log = logging.getLogger("dockyard.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_VERSION_PREFIX = re.compile(r"^/v(\d+\.\d+)(/.*)$")
ENGINE_KEY = web.AppKey("engine", object)


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def error_response(status: int, message: str) -> web.Response:
    # exactly "application/json" (no charset): the docker CLI only parses error bodies then
    return web.Response(body=json.dumps({"message": message}).encode(), status=status, content_type="application/json")


def _common_headers() -> dict[str, str]:
    return {"Api-Version": API_VERSION, "Server": f"Dockyard/{__version__} (linux)", "Ostype": "linux"}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except DockyardError as e:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %s %s", request.method, request.path, http_status(e), e)
        return error_response(http_status(e), str(e))
    except web.HTTPException:
        raise
    except Exception as e:  # an unexpected failure still answers in docker's shape
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, str(e) or e.__class__.__name__)
    return response


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    for k, v in _common_headers().items():
        response.headers.setdefault(k, v)


class Router:
    """Method + path-pattern dispatch after the optional ``/v1.xx`` prefix is stripped.

    Patterns use ``{name}`` for one segment and ``{name:.+}`` for a greedy match (image
    names contain slashes and docker clients send them unescaped)."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        def repl(m: re.Match[str]) -> str:
            name, _, rx = m.group(1).partition(":")
            return f"(?P<{name}>{rx or '[^/]+'})"

        regex = re.compile("^" + re.sub(r"\{([^}]+)\}", repl, pattern) + "$")
        self._routes.append((method, regex, handler))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        path_matched = False
        for want in (method, "GET") if method == "HEAD" else (method,):
            for m, regex, handler in self._routes:
                match = regex.match(path)
                if match:
                    path_matched = True
                    if m == want:
                        return handler, match.groupdict()
        if path_matched:
            raise _MethodNotAllowed()
        raise _PageNotFound()


class _PageNotFound(DockyardError):
    status = 404

    def __str__(self) -> str:
        return "page not found"


class _MethodNotAllowed(DockyardError):
    status = 405

    def __str__(self) -> str:
        return "method not allowed"


ROUTER_KEY = web.AppKey("router", Router)


def _request_key(name: str, kind: type) -> Any:
    # typed request keys exist in newer aiohttp; plain strings work (with a warning) before
    maker = getattr(web, "RequestKey", None)
    return maker(name, kind) if maker else name


API_VERSION_KEY = _request_key("api_version", str)
PARAMS_KEY = _request_key("params", dict)


async def dispatch(request: web.Request) -> web.StreamResponse:
    path = request.path
    m = _VERSION_PREFIX.match(path)
    if m:
        version, path = m.groups()
        if _vtuple(version) > _vtuple(API_VERSION):
            raise InvalidArgument(f"client version {version} is too new. Maximum supported API version is {API_VERSION}")
        if _vtuple(version) < _vtuple(MIN_API_VERSION):
            raise InvalidArgument(
                f"client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                "please upgrade your client to a newer version"
            )
        request[API_VERSION_KEY] = version
    handler, params = request.app[ROUTER_KEY].resolve(request.method, path.rstrip("/") or "/")
    request[PARAMS_KEY] = params
    return await handler(request)


def version_of(request: web.Request) -> str:
    return request.get(API_VERSION_KEY, API_VERSION)


def param(request: web.Request, name: str) -> str:
    return request[PARAMS_KEY][name]


def qbool(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.lower() not in ("", "0", "false", "no")


def qint(request: web.Request, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {value!r}") from None


def filters(request: web.Request) -> dict[str, list[str]]:
    """Docker's ``filters`` query: {"k": ["v"]} or the legacy {"k": {"v": true}}."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid filter: {raw}") from None
    out: dict[str, list[str]] = {}
    for key, val in (doc or {}).items():
        if isinstance(val, dict):
            out[key] = [k for k, on in val.items() if on]
        elif isinstance(val, list):
            out[key] = [str(v) for v in val]
        else:
            raise InvalidArgument(f"invalid filter: {raw}")
    return out


async def read_json(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        return await request.json(loads=json.loads)
    except ValueError as e:
        raise InvalidArgument(f"invalid JSON: {e}") from None


def create_app(engine: Any) -> web.Application:
    from dockyard.daemon.api import (
        build,
        container_fs,
        containers,
        events,
        execs,
        images,
        networks,
        system,
        volumes,
    )

    app = web.Application(middlewares=[errors_middleware], client_max_size=0)
    app[ENGINE_KEY] = engine
    router = Router()
    for module in (system, images, containers, container_fs, events, execs, volumes, networks, build):
        module.register(router)
    app[ROUTER_KEY] = router
    app.on_response_prepare.append(_add_headers)
    app.router.add_route("*", "/{path:.*}", dispatch)
    return app


def engine_of(request: web.Request) -> Any:
    return request.app[ENGINE_KEY]
