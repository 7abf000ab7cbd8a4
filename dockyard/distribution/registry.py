"""A client of the registry HTTP API v2 (the OCI distribution spec): manifests and blobs of a
repository, streamed, from worker threads (http.client: one connection per thread).

Plain HTTP only for localhost and 127.0.0.0/8, as docker does without an insecure-registries
setting; everything else over TLS. Authentication (Bearer and Basic challenges), mirrors and
resumed downloads are the next steps of issue 6."""

from __future__ import annotations

import http.client
import ipaddress
import json
import threading
from collections.abc import Callable
from typing import Any

from dockyard.errors import DockyardError, InvalidArgument, Unavailable
from dockyard.images import mediatypes as mt

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_ACCEPT = ", ".join([mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.OCI_INDEX])
_CHUNK = 1 << 20
RETRIES = 3  # a dropped blob download is taken up again this many times


class RegistryError(DockyardError):
    """An error the registry answered, with the codes of its ``errors`` body."""

    status = 500

    def __init__(self, status: int, codes: list[str], message: str) -> None:
        super().__init__(message)
        self.http_status, self.codes = status, codes


def is_local(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Registry:
    def __init__(self, host: str) -> None:
        self.host = DOCKER_HUB_API if host == DOCKER_HUB else host
        self.secure = not is_local(self.host)
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.secure else http.client.HTTPConnection
            conn = self._local.conn = cls(self.host, timeout=60)
        return conn

    def _request(self, method: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        for attempt in range(2):
            conn = self._conn()
            try:
                conn.request(method, path, headers={"User-Agent": "dockyard", **(headers or {})})
                return conn.getresponse()
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                conn.close()
                self._local.conn = None
                if attempt == 1:
                    raise Unavailable(f"Get \"{self._url(path)}\": {e}") from None
        raise AssertionError("unreachable")

    def _url(self, path: str) -> str:
        return f"{'https' if self.secure else 'http'}://{self.host}{path}"

    @staticmethod
    def _error(resp: http.client.HTTPResponse, what: str) -> RegistryError:
        body = resp.read()
        codes, messages = [], []
        try:
            for err in json.loads(body).get("errors") or []:
                codes.append(str(err.get("code", "")))
                messages.append(str(err.get("message", "")).lower())
        except (ValueError, AttributeError):
            pass
        detail = ": ".join(dict.fromkeys(messages)) if messages else resp.reason
        return RegistryError(resp.status, codes, f"{what}: {detail}")

    def manifest(self, repo: str, reference: str) -> tuple[bytes, str]:
        """The manifest (or index) bytes and their declared media type."""
        resp = self._request("GET", f"/v2/{repo}/manifests/{reference}", {"Accept": _ACCEPT})
        if resp.status != 200:
            raise self._error(resp, f"manifest {repo}:{reference}")
        return resp.read(), (resp.getheader("Content-Type") or "").split(";")[0].strip()

    def blob(self, repo: str, digest: str, write: Callable[[bytes], Any], size: int | None = None) -> None:
        """Stream the blob into ``write`` (the caller verifies the digest). A connection
        that drops mid-blob is taken up again where it stopped, with an HTTP Range request
        (bytes the registry sends again anyway are skipped), up to RETRIES times."""
        path = f"/v2/{repo}/blobs/{digest}"
        received = failures = 0
        while True:
            resp = self._request("GET", path, {"Range": f"bytes={received}-"} if received else None)
            if resp.status not in (200, 206):
                raise self._error(resp, f"blob {digest}")
            skip = received if resp.status == 200 else 0  # the registry ignored the range
            try:
                while chunk := resp.read(_CHUNK):
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                        if not chunk:
                            continue
                    write(chunk)
                    received += len(chunk)
                if size is None or received >= size:
                    return
                raise ConnectionResetError(f"the connection closed after {received} of {size} bytes")
            except (OSError, http.client.HTTPException) as e:
                self._drop()
                failures += 1
                if failures > RETRIES:
                    raise Unavailable(f"error pulling blob {digest}: {e} (after {RETRIES} retries)") from None

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None


def split_repository(name: str) -> tuple[str, str]:
    """A normalized reference name (``docker.io/library/busybox``) -> (host, repository path)."""
    host, _, path = name.partition("/")
    if not path:
        raise InvalidArgument(f"invalid reference: {name}")
    return host, path


__all__ = ["Registry", "RegistryError", "is_local", "split_repository"]
