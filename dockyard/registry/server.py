"""The distribution spec's HTTP API over a RegistryStore (aiohttp).

Repository names contain slashes, so routes are matched here, longest suffix first
(``/blobs/uploads/`` before ``/blobs/``). Every error answers in the spec's shape; a
manifest or blob is never visible before it is complete and verified."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from dockyard.registry.errors import RegistryError
from dockyard.registry.storage import MAX_MANIFEST, RegistryStore, check_digest, check_name

log = logging.getLogger("dockyard.registry")
_CHUNK = 1 << 20
API_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}

Handler = Callable[..., Awaitable[web.StreamResponse]]


@dataclass
class Options:
    read_only: bool = False
    htpasswd: dict[str, str] = field(default_factory=dict)  # user -> bcrypt hash
    realm: str = "dockyard-registry"
    max_body: int = 0  # bytes per request body (0: no limit; manifests are limited anyway)
    token: Any = None  # a TokenAuth (tokens.py): bearer tokens instead of htpasswd


def load_htpasswd(path: str) -> dict[str, str]:
    """An htpasswd file of bcrypt entries (``htpasswd -B``), as the distribution registry
    takes."""
    users = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, _, hashed = line.partition(":")
            if not hashed.startswith(("$2y$", "$2b$", "$2a$")):
                raise ValueError(f"{path}: only bcrypt entries are supported (htpasswd -B): {user}")
            users[user] = hashed
    return users


class Registry:
    def __init__(self, store: RegistryStore, options: Options | None = None) -> None:
        self.store = store
        self.options = options or Options()
        self._routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
            (re.compile(r"^/v2/?$"), {"GET": self.base}),
            (re.compile(r"^/v2/_catalog$"), {"GET": self.catalog}),
            (re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?$"), {"POST": self.start_upload}),
            (re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<uid>[^/]+)$"),
             {"GET": self.upload_status, "PATCH": self.patch_upload, "PUT": self.finish_upload,
              "DELETE": self.cancel_upload}),
            (re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$"),
             {"GET": self.get_blob, "DELETE": self.delete_blob}),
            (re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$"),
             {"GET": self.get_manifest, "PUT": self.put_manifest, "DELETE": self.delete_manifest}),
            (re.compile(r"^/v2/(?P<name>.+)/tags/list$"), {"GET": self.tags}),
            (re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)$"), {"GET": self.referrers}),
        ]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{path:.*}", self.dispatch)
        return app

    # ------------------------------------------------------------------ dispatch, auth

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            for pattern, methods in self._routes:
                m = pattern.match(request.path)
                if m is None:
                    continue
                method = "GET" if request.method == "HEAD" else request.method
                handler = methods.get(method)
                if handler is None:
                    raise RegistryError("UNSUPPORTED", status=405)
                args = m.groupdict()
                if "name" in args:
                    check_name(args["name"])
                self._authorize(request, method, args.get("name"))
                if self.options.read_only and method != "GET":
                    raise RegistryError("UNSUPPORTED", "the registry is in read-only mode", status=405)
                response = await handler(request, **args)
                if not response.prepared:
                    response.headers.update(API_HEADER)
                return response
            raise RegistryError("NAME_UNKNOWN" if request.path.startswith("/v2/") else "UNSUPPORTED",
                                "page not found", status=404)
        except (ConnectionResetError, asyncio.CancelledError):
            raise  # the client went: nothing to answer (an upload keeps what reached the disk)
        except Exception as e:  # never a bare 500: the spec's shape, and the server keeps serving
            if not isinstance(e, RegistryError):
                log.exception("%s %s failed", request.method, request.path)
                e = RegistryError("UNKNOWN", str(e) or type(e).__name__, status=500)
            headers = {"Content-Type": "application/json", **API_HEADER}
            if e.status == 401:
                headers["WWW-Authenticate"] = getattr(e, "challenge", None) or f'Basic realm="{self.options.realm}"'
            return web.Response(status=e.status, body=e.body() if request.method != "HEAD" else None,
                                headers=headers)

    def _authorize(self, request: web.Request, method: str, name: str | None) -> None:
        token = self.options.token
        if token is not None:
            if name is None:
                catalog = request.path.rstrip("/").endswith("/_catalog")
                token.check(request.headers.get("Authorization", ""), "registry", "catalog", ["*"] if catalog else [])
            else:
                action = {"GET": "pull", "DELETE": "delete"}.get(method, "push")
                token.check(request.headers.get("Authorization", ""), "repository", name,
                            ["pull", "push"] if action == "push" else [action])
            return
        if not self.options.htpasswd:
            return
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            hashed = self.options.htpasswd.get(user)
            if hashed is not None and _bcrypt_ok(password, hashed):
                return
        raise RegistryError("UNAUTHORIZED")

    # ------------------------------------------------------------------ base, catalog, tags

    async def base(self, request: web.Request) -> web.Response:
        return web.json_response({})

    @staticmethod
    def _page(request: web.Request, items: list[str], path: str) -> tuple[list[str], dict[str, str]]:
        """``n`` and ``last`` pagination with the spec's Link header to the next page."""
        last = request.query.get("last")
        if last:
            items = [i for i in items if i > last]
        n_text = request.query.get("n")
        if n_text is None or n_text == "":
            return items, {}
        try:
            n = int(n_text)
        except ValueError:
            raise RegistryError("UNSUPPORTED", f"invalid n: {n_text}", status=400) from None
        if n < 0:
            raise RegistryError("UNSUPPORTED", f"invalid n: {n_text}", status=400)
        page = items[:n]
        headers = {}
        if len(items) > n and page:
            headers["Link"] = f'<{path}?n={n}&last={page[-1]}>; rel="next"'
        return page, headers

    async def catalog(self, request: web.Request) -> web.Response:
        repos = await asyncio.to_thread(self.store.catalog)
        page, headers = self._page(request, repos, "/v2/_catalog")
        return web.json_response({"repositories": page}, headers=headers)

    async def tags(self, request: web.Request, name: str) -> web.Response:
        tags = await asyncio.to_thread(self.store.tags, name)
        page, headers = self._page(request, tags, f"/v2/{name}/tags/list")
        return web.json_response({"name": name, "tags": page}, headers=headers)

    async def referrers(self, request: web.Request, name: str, digest: str) -> web.Response:
        artifact = request.query.get("artifactType")
        found = await asyncio.to_thread(self.store.referrers, name, digest, artifact)
        headers = {"OCI-Filters-Applied": "artifactType"} if artifact else {}
        body = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": found}
        return web.Response(body=json.dumps(body).encode(), content_type="application/vnd.oci.image.index.v1+json",
                            headers=headers)

    # ------------------------------------------------------------------ manifests

    async def get_manifest(self, request: web.Request, name: str, reference: str) -> web.Response:
        body, media_type, digest = await asyncio.to_thread(self.store.get_manifest, name, reference)
        headers = {"Docker-Content-Digest": digest, "Content-Type": media_type, "Content-Length": str(len(body)),
                   "ETag": f'"{digest}"'}
        if request.method == "HEAD":
            return await _head(request, headers)
        return web.Response(body=body, headers=headers)

    async def put_manifest(self, request: web.Request, name: str, reference: str) -> web.Response:
        body = await _read_limited(request, MAX_MANIFEST)
        digest, subject = await asyncio.to_thread(self.store.put_manifest, name, reference, body,
                                                  request.headers.get("Content-Type"))
        headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
        if subject:
            headers["OCI-Subject"] = subject
        return web.Response(status=201, headers=headers)

    async def delete_manifest(self, request: web.Request, name: str, reference: str) -> web.Response:
        await asyncio.to_thread(self.store.delete_manifest, name, reference)
        return web.Response(status=202)

    # ------------------------------------------------------------------ blobs

    async def get_blob(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        size = await asyncio.to_thread(self.store.blob_size, name, digest)
        headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream",
                   "ETag": f'"{digest}"', "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            return await _head(request, {**headers, "Content-Length": str(size)})
        # FileResponse: sendfile, and Range requests (206 / 416) as HTTP has them
        return web.FileResponse(self.store.content.path(digest), headers=headers)

    async def delete_blob(self, request: web.Request, name: str, digest: str) -> web.Response:
        await asyncio.to_thread(self.store.delete_blob, name, digest)
        return web.Response(status=202, headers={"Docker-Content-Digest": digest})

    # ------------------------------------------------------------------ uploads

    def _upload_headers(self, name: str, up: Any) -> dict[str, str]:
        end = up.writer.offset - 1
        return {"Location": f"/v2/{name}/blobs/uploads/{up.id}", "Docker-Upload-UUID": up.id,
                "Range": f"0-{max(end, 0)}", "Content-Length": "0"}

    async def start_upload(self, request: web.Request, name: str) -> web.Response:
        query = request.query
        if query.get("mount"):
            digest = check_digest(query["mount"])
            source = query.get("from") or ""
            if source and self.options.token is not None:
                try:  # a mount reads the source: the token must allow pulling it, else a plain upload
                    self.options.token.check(request.headers.get("Authorization", ""), "repository",
                                             check_name(source), ["pull"])
                except RegistryError:
                    source = ""
            if source and await asyncio.to_thread(self.store.mount_blob, name, digest, check_name(source)):
                return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{digest}",
                                                         "Docker-Content-Digest": digest})
        digest = query.get("digest")
        if digest:
            check_digest(digest)
        up = await asyncio.to_thread(self.store.start_upload, name)
        if not digest:
            return web.Response(status=202, headers=self._upload_headers(name, up))
        # monolithic: the whole blob in this request, streamed to disk (never held in memory)
        try:
            await self._append(request, up)
        except BaseException:
            self.store.cancel_upload(up)  # not awaited: the request may be being cancelled
            raise
        await asyncio.to_thread(self.store.finish_upload, up, digest)
        return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{digest}",
                                                 "Docker-Content-Digest": digest})

    async def upload_status(self, request: web.Request, name: str, uid: str) -> web.Response:
        up = await asyncio.to_thread(self.store.upload, name, uid)
        return web.Response(status=204, headers=self._upload_headers(name, up))

    async def _append(self, request: web.Request, up: Any) -> None:
        """The request's body onto the upload; a Content-Range must start where the
        upload is (416 otherwise: an out-of-order chunk)."""
        content_range = request.headers.get("Content-Range")
        if content_range:
            m = re.fullmatch(r"(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?", content_range.strip())
            if not m or int(m.group(1)) != up.writer.offset or int(m.group(2)) < int(m.group(1)):
                raise RegistryError("RANGE_INVALID", f"Content-Range {content_range} does not continue the upload "
                                                     f"at {up.writer.offset}", status=416)
            expected = int(m.group(2)) - int(m.group(1)) + 1
        else:
            expected = None
        received = 0
        limit = self.options.max_body
        while chunk := await request.content.read(_CHUNK):
            received += len(chunk)
            if limit and received > limit:
                raise RegistryError("PAYLOAD_TOO_LARGE", f"request body over {limit} bytes")
            await asyncio.to_thread(up.writer.write, chunk)
        if expected is not None and received != expected:
            raise RegistryError("SIZE_INVALID", f"Content-Range says {expected} bytes, the body had {received}")

    async def _claim(self, name: str, uid: str) -> Any:
        """The upload, for this request alone (a second request on it meanwhile: 416)."""
        up = await asyncio.to_thread(self.store.upload, name, uid)
        if not up.busy.acquire(blocking=False):
            raise RegistryError("RANGE_INVALID", "another request is writing this upload", status=416)
        return up

    async def patch_upload(self, request: web.Request, name: str, uid: str) -> web.Response:
        up = await self._claim(name, uid)
        try:
            await self._append(request, up)
            await asyncio.to_thread(up.writer.flush)
            return web.Response(status=202, headers=self._upload_headers(name, up))
        finally:
            up.busy.release()

    async def finish_upload(self, request: web.Request, name: str, uid: str) -> web.Response:
        digest = request.query.get("digest")
        if not digest:
            raise RegistryError("DIGEST_INVALID", "a digest is required to finish an upload")
        check_digest(digest)
        up = await self._claim(name, uid)
        try:
            await self._append(request, up)
            await asyncio.to_thread(self.store.finish_upload, up, digest)
        finally:
            up.busy.release()
        return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{digest}",
                                                 "Docker-Content-Digest": digest, "Content-Length": "0"})

    async def cancel_upload(self, request: web.Request, name: str, uid: str) -> web.Response:
        up = await asyncio.to_thread(self.store.upload, name, uid)
        await asyncio.to_thread(self.store.cancel_upload, up)
        return web.Response(status=204)


async def _head(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
    """A HEAD answer that keeps its Content-Length (the size of what GET would send)."""
    resp = web.StreamResponse(status=200, headers={**API_HEADER, **{k: v for k, v in headers.items()
                                                                    if k != "Content-Length"}})
    resp.content_length = int(headers.get("Content-Length", "0"))
    await resp.prepare(request)
    await resp.write_eof()
    return resp


async def _read_limited(request: web.Request, limit: int) -> bytes:
    data = bytearray()
    while chunk := await request.content.read(_CHUNK):
        data += chunk
        if len(data) > limit:
            raise RegistryError("PAYLOAD_TOO_LARGE", f"request body over {limit} bytes")
    return bytes(data)


def _bcrypt_ok(password: str, hashed: str) -> bool:
    import bcrypt

    try:
        return bcrypt.checkpw(password.encode(), hashed.replace("$2y$", "$2b$", 1).encode())
    except ValueError:
        return False
