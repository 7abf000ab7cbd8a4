"""A client of the registry HTTP API v2 (the OCI distribution spec) for one repository host:
manifests, blobs (streamed, resumed with Range), uploads and tags, from worker threads
(http.client: one connection per thread).

Endpoints (scheme, TLS) come from ``hosts.RegistryHosts``: the first that answers is kept.
A 401 carries the registry's challenge: Basic gets the credentials, Bearer a token from
the realm for the repository scopes this client needs (kept until it expires)."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from dockyard.distribution.auth import AuthConfig, Challenge, Token, fetch_token, parse_challenges
from dockyard.distribution.hosts import Endpoint, RegistryHosts
from dockyard.errors import (
    DataCorruption,
    DockyardError,
    InvalidArgument,
    Unauthorized,
    Unavailable,
)
from dockyard.images import mediatypes as mt

_ACCEPT = ", ".join([mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.OCI_INDEX])
_CHUNK = 1 << 20
RETRIES = 3  # a dropped blob download is taken up again this many times
MANIFEST_MAX = 4 << 20  # docker's limit on a manifest's size
MONOLITHIC_MAX = 32 << 20  # blobs up to this size go in one PUT; larger ones in PATCH chunks
UPLOAD_CHUNK = 64 << 20
_TRANSPORT_ERRORS = (ConnectionError, http.client.HTTPException, OSError)


class RegistryError(DockyardError):
    """An error the registry answered, with the codes of its ``errors`` body."""

    status = 500

    def __init__(self, status: int, codes: list[str], message: str) -> None:
        super().__init__(message)
        self.http_status, self.codes = status, codes
        if status == 401:
            self.status = 401


class Registry:
    """One registry, for the repository operations ``actions`` ("pull" or "pull,push")."""

    def __init__(self, endpoints: list[Endpoint], auth: AuthConfig | None = None, actions: str = "pull",
                 hosts: RegistryHosts | None = None) -> None:
        if not endpoints:
            raise InvalidArgument("no endpoint for the registry")
        self.endpoints, self.auth, self.actions = endpoints, auth, actions
        self.hosts = hosts
        self._endpoint: Endpoint | None = endpoints[0] if len(endpoints) == 1 else None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], Token] = {}

    @property
    def url(self) -> str:
        return (self._endpoint or self.endpoints[0]).url

    # ---------------------------------------------------------------- transport

    def _conn(self, endpoint: Endpoint) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.endpoint is not endpoint:
            if conn is not None:
                conn.close()
            if endpoint.scheme == "https":
                conn = http.client.HTTPSConnection(endpoint.host, timeout=60, context=endpoint.tls,
                                                   blocksize=_CHUNK)
            else:
                conn = http.client.HTTPConnection(endpoint.host, timeout=60, blocksize=_CHUNK)
            self._local.conn, self._local.endpoint = conn, endpoint
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None
        self._close_redirects()

    def _close_redirects(self) -> None:
        for conn in self._redirects():
            conn.close()
        self._redirects().clear()

    def _send(self, method: str, path: str, headers: dict[str, str], body: Any) -> http.client.HTTPResponse:
        """One request; the first request picks the endpoint (HTTPS before HTTP for an
        insecure registry). A stale keep-alive connection is retried once when the body
        can be sent again."""
        candidates = [self._endpoint] if self._endpoint else self.endpoints
        error: Exception | None = None
        for endpoint in candidates:
            for attempt in range(2):
                conn = self._conn(endpoint)
                try:
                    conn.request(method, path, body=body, headers={"User-Agent": "dockyard", **headers})
                    resp = conn.getresponse()
                except _TRANSPORT_ERRORS as e:
                    self._drop()
                    error = e
                    if attempt == 0 and (body is None or isinstance(body, bytes)) and self._endpoint:
                        continue
                    break
                if self._endpoint is None:
                    self._endpoint = endpoint
                return resp
        verb = method.capitalize()
        raise Unavailable(f'{verb} "{candidates[-1].url}{path}": {error}')

    def _request(self, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None,
                 scopes: Iterable[str] = ()) -> http.client.HTTPResponse:
        """A request with the credentials the registry asks for: after a 401 the challenge
        is answered and the request sent again. A streamed body cannot be sent twice: callers
        send one only after a body-less request of the same scopes got the credentials."""
        all_scopes = tuple(sorted({*scopes}))
        headers = dict(headers or {})
        authorization = self._authorization(all_scopes)
        if authorization:
            headers["Authorization"] = authorization
        resp = self._send(method, path, headers, body)
        if resp.status != 401 or not (body is None or isinstance(body, bytes)):
            return resp
        challenges = parse_challenges(resp.getheader("WWW-Authenticate") or "")
        challenge = next((c for c in challenges if c.scheme in ("bearer", "basic")), None)
        if challenge is None or (authorization and challenge.scheme == "basic"):
            return resp  # nothing (else) to answer with: the caller reports the 401
        resp.read()
        with self._lock:
            self._challenge = challenge
            self._tokens.pop(all_scopes, None)
        authorization = self._authorization(all_scopes)
        if not authorization:
            raise Unauthorized("unauthorized: authentication required (no basic auth credentials)")
        headers["Authorization"] = authorization
        return self._send(method, path, headers, body)

    def _authorization(self, scopes: tuple[str, ...]) -> str:
        challenge = self._challenge
        if challenge is None:
            return ""
        if challenge.scheme == "basic":
            if self.auth is None or not (self.auth.username or self.auth.password):
                return ""
            return self.auth.basic()
        with self._lock:
            token = self._tokens.get(scopes)
            if token is None or not token.fresh():
                token = self._tokens[scopes] = fetch_token(self._realm_fetch, challenge, list(scopes), self.auth)
        return f"Bearer {token.value}"

    def _connection_to(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        """A new connection to ``url``'s host (a token realm, a redirect's target), with
        the TLS settings the hosts give that host; and the request target."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "https":
            tls = self._tls_for(parts.netloc)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(parts.netloc, timeout=60, context=tls,
                                                                           blocksize=_CHUNK)
        elif parts.scheme == "http":
            conn = http.client.HTTPConnection(parts.netloc, timeout=60, blocksize=_CHUNK)
        else:
            raise Unavailable(f"unsupported URL: {url}")
        return conn, (parts.path or "/") + ("?" + parts.query if parts.query else "")

    def _tls_for(self, netloc: str) -> Any:
        """TLS for another host this registry sends us to (its token realm, a redirect): the
        host's own certs.d settings where it has some, else the registry endpoint's (its CA,
        its client certificate, no verification for an insecure registry), as docker does."""
        if self.hosts is not None and self.hosts.has_certs(netloc):
            return self.hosts.tls(netloc, verify=not self.hosts.insecure(netloc))
        endpoint = self._endpoint or self.endpoints[0]
        if endpoint.tls is not None:
            return endpoint.tls
        return self.hosts.tls(netloc, verify=not self.hosts.insecure(netloc)) if self.hosts else None

    def _realm_fetch(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> tuple[int, bytes]:
        conn, target = self._connection_to(url)
        try:
            conn.request(method, target, body=body, headers={"User-Agent": "dockyard", **headers})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except _TRANSPORT_ERRORS as e:
            raise Unavailable(f'{method.capitalize()} "{url}": {e}') from None
        finally:
            conn.close()

    def _follow(self, resp: http.client.HTTPResponse, method: str, base: str,
                headers: dict[str, str]) -> http.client.HTTPResponse:
        """Follow a blob's redirect (registries on object storage send GETs to a CDN or a
        signed URL): a connection of its own to the target, and without the registry's
        Authorization — the target's own credentials are in the URL."""
        url = base
        for _ in range(5):
            if resp.status not in (301, 302, 303, 307, 308) or method not in ("GET", "HEAD"):
                return resp
            location = resp.getheader("Location") or ""
            resp.read()
            url = urllib.parse.urljoin(url, location)
            conn, target = self._connection_to(url)
            self._redirects().append(conn)
            forwarded = {k: v for k, v in headers.items() if k.lower() == "range"}
            try:
                conn.request(method, target, headers={"User-Agent": "dockyard", **forwarded})
                resp = conn.getresponse()
            except _TRANSPORT_ERRORS as e:
                raise OSError(f'{method.capitalize()} "{url}": {e}') from None
        raise Unavailable("stopped after 5 redirects")

    def _redirects(self) -> list[http.client.HTTPConnection]:
        conns = getattr(self._local, "redirects", None)
        if conns is None:
            conns = self._local.redirects = []
        return conns

    def _scope(self, repo: str, actions: str | None = None) -> str:
        return f"repository:{repo}:{actions or self.actions}"

    @staticmethod
    def _error(resp: http.client.HTTPResponse, what: str) -> RegistryError:
        """docker's wording: each error as ``<code, lowercased, spaces>: <message>``; a body
        without errors: ``received unexpected HTTP status: 500 Internal Server Error``."""
        body = resp.read()
        codes, parts = [], []
        try:
            for err in json.loads(body).get("errors") or []:
                code = str(err.get("code", ""))
                codes.append(code)
                parts.append(f"{code.lower().replace('_', ' ')}: {err.get('message', '')}")
        except (ValueError, AttributeError):
            pass
        detail = "; ".join(dict.fromkeys(parts)) or f"received unexpected HTTP status: {resp.status} {resp.reason}"
        return RegistryError(resp.status, codes, detail if resp.status == 401 else f"{what}: {detail}")

    # ---------------------------------------------------------------- the API

    def login(self) -> str:
        """Check the credentials as ``docker login`` does: GET /v2/ answering the challenge
        (a Bearer realm is asked for an offline token). Returns the refresh token the realm
        gave, if any — the CLI stores it as the identity token."""
        resp = self._send("GET", "/v2/", {}, None)
        resp.read()
        if resp.status == 200:
            return ""
        if resp.status != 401:
            raise Unavailable(f'login attempt to {self.url}/v2/ failed with status: {resp.status} {resp.reason}')
        challenges = parse_challenges(resp.getheader("WWW-Authenticate") or "")
        challenge = next((c for c in challenges if c.scheme in ("bearer", "basic")), None)
        if challenge is None:
            raise Unauthorized("unauthorized: the registry asked for an unsupported authentication scheme")
        if challenge.scheme == "bearer":
            token = fetch_token(self._realm_fetch, challenge, [], self.auth, offline=True)
            header = f"Bearer {token.value}"
        else:
            if self.auth is None:
                raise Unauthorized("unauthorized: no basic auth credentials")
            header, token = self.auth.basic(), None
        resp = self._send("GET", "/v2/", {"Authorization": header}, None)
        resp.read()
        if resp.status != 200:
            raise Unauthorized(f"login attempt to {self.url}/v2/ failed with status: {resp.status} {resp.reason}")
        return token.refresh_token if token else ""

    def manifest(self, repo: str, reference: str) -> tuple[bytes, str]:
        """The manifest (or index) bytes and their declared media type."""
        resp = self._request("GET", f"/v2/{repo}/manifests/{reference}", {"Accept": _ACCEPT}, scopes=[self._scope(repo)])
        if resp.status != 200:
            raise self._error(resp, f"manifest {repo}:{reference}")
        raw = resp.read(MANIFEST_MAX + 1)
        if len(raw) > MANIFEST_MAX:
            self._drop()
            raise DataCorruption(f"manifest {repo}:{reference}: larger than {MANIFEST_MAX >> 20} MiB")
        return raw, (resp.getheader("Content-Type") or "").split(";")[0].strip()

    def tags(self, repo: str) -> list[str]:
        """Every tag of ``repo``, following ``Link`` pagination."""
        path: str | None = f"/v2/{repo}/tags/list"
        tags: list[str] = []
        while path:
            resp = self._request("GET", path, scopes=[self._scope(repo, "pull")])
            if resp.status != 200:
                raise self._error(resp, f"tags of {repo}")
            tags += json.loads(resp.read()).get("tags") or []
            link = resp.getheader("Link") or ""
            path = link.split(";")[0].strip().strip("<>") if 'rel="next"' in link else None
            if path and "://" in path:
                parts = urllib.parse.urlsplit(path)
                path = parts.path + ("?" + parts.query if parts.query else "")
        return tags

    def blob(self, repo: str, digest: str, write: Callable[[bytes], Any], size: int | None = None, *,
             offset: int = 0) -> None:
        """Stream the blob from ``offset`` into ``write`` (the caller verifies the digest). A
        connection that drops mid-blob is taken up again where it stopped, with an HTTP
        Range request (bytes the registry sends again anyway are skipped), up to RETRIES
        times."""
        path = f"/v2/{repo}/blobs/{digest}"
        received, failures = offset, 0
        try:
            while True:
                headers = {"Range": f"bytes={received}-"} if received else {}
                try:
                    resp = self._follow(self._request("GET", path, headers, scopes=[self._scope(repo)]), "GET",
                                        self.url + path, headers)
                except (OSError, http.client.HTTPException) as e:  # a redirect's host failed
                    failures = self._dropped(digest, e, failures)
                    continue
                if resp.status not in (200, 206):
                    raise self._error(resp, f"blob {digest}")
                skip = received - _range_start(resp) if resp.status == 206 else received
                if skip < 0:
                    raise DataCorruption(f"blob {digest}: the registry answered bytes from {_range_start(resp)}, "
                                         f"{received} asked")
                try:
                    for chunk in _chunks(resp, skip):
                        received += len(chunk)
                        if size is not None and received > size:
                            raise DataCorruption(f"blob {digest}: the registry sent more than its {size} bytes")
                        write(chunk)  # its errors (a full disk) are not a dropped connection
                    if size is None or received >= size:
                        return
                    raise _Dropped() from ConnectionResetError(f"the connection closed after {received} of {size} bytes")
                except _Dropped as e:
                    failures = self._dropped(digest, e.__cause__, failures)
        finally:
            self._close_redirects()

    def _dropped(self, digest: str, error: BaseException | None, failures: int) -> int:
        self._drop()
        if failures >= RETRIES:
            raise Unavailable(f"error pulling blob {digest}: {error} (after {RETRIES} retries)") from None
        return failures + 1

    # ---------------------------------------------------------------- push

    def blob_size(self, repo: str, digest: str) -> int | None:
        """HEAD the blob: its size when the repository has it, else None."""
        path = f"/v2/{repo}/blobs/{digest}"
        try:
            resp = self._follow(self._request("HEAD", path, scopes=[self._scope(repo)]), "HEAD", self.url + path, {})
            resp.read()
        except (OSError, http.client.HTTPException) as e:
            self._drop()
            raise Unavailable(f'Head "{self.url}{path}": {e}') from None
        finally:
            self._close_redirects()
        if resp.status == 200:
            return int(resp.getheader("Content-Length") or 0)
        if resp.status == 404:
            return None
        raise self._error(resp, f"blob {digest}")

    def mount_blob(self, repo: str, digest: str, source: str) -> bool:
        """Cross-repository mount of ``digest`` from ``source``: True when the registry
        mounted it (201); False when it opened an upload instead (202, cancelled here)."""
        scopes = [self._scope(repo), self._scope(source, "pull")]
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        path = f"/v2/{repo}/blobs/uploads/?{query}"
        resp = self._request("POST", path, {"Content-Length": "0"}, b"", scopes=scopes)
        if resp.status == 201:
            resp.read()
            return True
        if resp.status == 202:
            resp.read()
            location = self._location(resp, path)
            resp = self._request("DELETE", location, scopes=scopes)
            resp.read()
            return False
        raise self._error(resp, f"mount of {digest}")

    def upload_blob(self, repo: str, digest: str, size: int, stream: IO[bytes],
                    progress: Callable[[int], Any] | None = None, chunk: int | None = None) -> None:
        """Upload a blob: POST an upload session, then one PUT with the whole blob (small
        blobs) or PATCH chunks with Content-Range, closed by a PUT with the digest."""
        scopes = [self._scope(repo)]
        location = f"/v2/{repo}/blobs/uploads/"
        resp = self._request("POST", location, {"Content-Length": "0"}, b"", scopes=scopes)
        if resp.status != 202:
            raise self._error(resp, f"upload of {digest}")
        resp.read()
        location = self._location(resp, location)
        chunk = chunk or (UPLOAD_CHUNK if size > MONOLITHIC_MAX else 0)
        sent = 0
        if chunk:
            while sent < size:
                n = min(chunk, size - sent)
                headers = {"Content-Type": "application/octet-stream", "Content-Length": str(n),
                           "Content-Range": f"{sent}-{sent + n - 1}"}
                resp = self._request("PATCH", location, headers, _Counted(stream, n, progress), scopes=scopes)
                if resp.status != 202:
                    raise self._error(resp, f"upload of {digest}")
                resp.read()
                location = self._location(resp, location)
                sent += n
            body: Any = b""
            length = 0
        else:
            body, length = _Counted(stream, size, progress), size
        sep = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        resp = self._request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", headers, body, scopes=scopes)
        if resp.status != 201:
            raise self._error(resp, f"upload of {digest}")
        resp.read()

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> str:
        """PUT a manifest byte for byte; returns the digest the registry reports."""
        resp = self._request("PUT", f"/v2/{repo}/manifests/{reference}", {"Content-Type": media_type}, raw,
                             scopes=[self._scope(repo)])
        if resp.status not in (200, 201):
            raise self._error(resp, f"manifest {repo}:{reference}")
        resp.read()
        return resp.getheader("Docker-Content-Digest") or ""

    def _location(self, resp: http.client.HTTPResponse, request_path: str) -> str:
        """An upload's next URL, as a path on this registry (relative ones resolved against
        the request's); an upload elsewhere is refused rather than sent our credentials."""
        location = resp.getheader("Location") or ""
        if not location:
            raise Unavailable("the registry answered an upload without a Location")
        url = urllib.parse.urljoin(self.url + request_path, location)
        parts = urllib.parse.urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.url:
            raise Unavailable(f"the registry sent the upload to another host: {parts.netloc}")
        return parts.path + ("?" + parts.query if parts.query else "")


class _Dropped(Exception):
    """The connection broke while a blob's bytes were coming in (the cause says how)."""


def _chunks(resp: http.client.HTTPResponse, skip: int) -> Iterator[bytes]:
    """The response body as it arrives (read1: no waiting for a full buffer), the first
    ``skip`` bytes left out; the response is read to its end, so that the connection can
    serve the next request. A broken connection raises _Dropped."""
    while True:
        try:
            chunk = resp.read1(_CHUNK)
        except (OSError, http.client.HTTPException) as e:
            raise _Dropped() from e
        if not chunk:
            try:
                resp.read()  # read1 leaves the response open at its end; this closes it
            except (OSError, http.client.HTTPException) as e:
                raise _Dropped() from e
            return
        if skip:
            cut = min(skip, len(chunk))
            chunk, skip = chunk[cut:], skip - cut
            if not chunk:
                continue
        yield chunk


def _range_start(resp: http.client.HTTPResponse) -> int:
    """The first byte of a 206 answer (``Content-Range: bytes 100-999/1000``)."""
    value = resp.getheader("Content-Range") or ""
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        raise DataCorruption(f"invalid Content-Range in a partial answer: {value!r}") from None


class _Counted:
    """Reads exactly ``n`` bytes of ``stream`` for http.client, reporting each read."""

    def __init__(self, stream: IO[bytes], n: int, progress: Callable[[int], Any] | None) -> None:
        self._stream, self._left, self._progress = stream, n, progress

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._stream.read(size)
        if not data:
            raise OSError(f"the blob ended {self._left} bytes early")
        self._left -= len(data)
        if self._progress:
            self._progress(len(data))
        return data


def split_repository(name: str) -> tuple[str, str]:
    """A normalized reference name (``docker.io/library/busybox``) -> (host, repository path)."""
    host, _, path = name.partition("/")
    if not path:
        raise InvalidArgument(f"invalid reference: {name}")
    return host, path




def open_registry(hosts: RegistryHosts, host: str, auth: AuthConfig | None = None, push: bool = False) -> Registry:
    """The registry itself (no mirror): for pushes and logins."""
    return open_registries(hosts, host, auth, push)[-1]


def open_registries(hosts: RegistryHosts, host: str, auth: AuthConfig | None = None,
                    push: bool = False) -> list[Registry]:
    """A client per registry to try in order: docker.io's mirrors (anonymous, pulls only),
    then the registry itself over its endpoints."""
    endpoints = hosts.endpoints(host, pull=not push)
    actions = "pull,push" if push else "pull"
    mirrors = [Registry([e], None, actions, hosts) for e in endpoints if e.mirror]
    return [*mirrors, Registry([e for e in endpoints if not e.mirror], auth, actions, hosts)]


__all__ = ["Registry", "RegistryError", "open_registries", "open_registry", "split_repository"]
