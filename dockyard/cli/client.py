"""HTTP client for the dockyard daemon's Docker Engine API.

Like the docker CLI, every command is a sequence of API calls over a unix socket
(default) or TCP. HTTP/1.1 via the stdlib's ``http.client``, which costs ~20 ms to
import (it pulls in ``email`` and ``ssl``); it is therefore imported on the first
request, not with this module, so ``dockyard --help`` and argument errors stay fast.

One keep-alive connection is kept idle between calls. A streamed response holds
its connection until read to the end or closed; a request made meanwhile (e.g.
``wait`` while ``attach`` streams) opens another connection.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

from dockyard import API_VERSION, __version__
from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    import http.client
    import socket

__all__ = [
    "DEFAULT_HOST",
    "APIClient",
    "APIError",
    "DaemonUnreachable",
    "ProtocolError",
    "Response",
    "encode_params",
    "quote",
    "parse_host",
]

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"
API_PREFIX = f"/v{API_VERSION}"
USER_AGENT = f"dockyard-cli/{__version__}"
_BLOCK = 64 * 1024


class APIError(DockyardError):
    """The daemon answered with an error status (>= 400).

    ``message`` is the body's ``message`` field (docker's error format), falling
    back to the raw body text; ``str()`` is the message alone. docker prints it
    as ``Error response from daemon: <message>``.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DaemonUnreachable(DockyardError):
    """No connection to the daemon (socket missing, refused, no permission) or
    the connection broke mid-request. ``str()`` is docker's wording."""

    status = 503


class ProtocolError(DockyardError):
    """The daemon sent something that isn't the HTTP/JSON we expect."""

    status = 502


# ----------------------------------------------------------------- helpers

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote(s: str, safe: str = "") -> str:
    """Percent-encode like ``urllib.parse.quote(s, safe)``; handy for path parts
    (``f"/containers/{quote(name)}/json"``). Avoids importing urllib."""
    ok = _UNRESERVED | frozenset(safe.encode())
    return "".join(chr(b) if b in ok else f"%{b:02X}" for b in s.encode())


def encode_params(params: Mapping[str, Any] | None) -> str:
    """Query string with docker's conventions: booleans ``1``/``0``, mappings (like
    ``filters``) JSON-encoded, lists/tuples as repeated keys (``t=a&t=b``), and
    ``None`` omitted. JSON-encode a list yourself where the API wants one
    (``cachefrom``)."""
    if not params:
        return ""
    parts: list[str] = []
    for key, value in params.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else (value,)
        for v in values:
            if v is None:
                continue
            if isinstance(v, bool):
                s = "1" if v else "0"
            elif isinstance(v, Mapping):
                s = json.dumps(v, separators=(",", ":"))
            else:
                s = str(v)
            parts.append(f"{quote(str(key))}={quote(s)}")
    return "&".join(parts)


def parse_host(host: str) -> tuple[str, str | tuple[str, int], str, str]:
    """Split a daemon address into (kind, address, display form, base path).

    ``unix:///path`` and a bare ``/path`` give ("unix", path); ``tcp://h:p`` and
    ``http://h:p`` give ("tcp", (h, p)), port 2375 when omitted, IPv6 as ``[::1]``.
    """
    if host.startswith("/"):
        return "unix", host, "unix://" + host, ""
    scheme, sep, rest = host.partition("://")
    if not sep:
        raise InvalidArgument(f"invalid daemon address {host!r}: expected unix:// or tcp://")
    scheme = scheme.lower()
    if scheme == "unix":
        if not rest:
            raise InvalidArgument(f"invalid daemon address {host!r}: empty socket path")
        return "unix", rest, host, ""
    if scheme not in ("tcp", "http"):
        raise InvalidArgument(f"invalid daemon address {host!r}: unsupported scheme {scheme!r}")
    hostport, _, path = rest.partition("/")
    base = ("/" + path).rstrip("/") if path else ""
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]*)(?::(\d+))?", hostport)
    if m is None:
        raise InvalidArgument(f"invalid daemon address {host!r}")
    name = m.group(1) or m.group(3) or "127.0.0.1"
    port_s = m.group(2) or m.group(4)
    port = int(port_s) if port_s else 2375
    if not 0 < port < 65536:
        raise InvalidArgument(f"invalid daemon address {host!r}: bad port")
    return "tcp", (name, port), host, base


# http.client is imported lazily (see module docstring).
_unix_connection_cls: Any = None


def _unix_connection_class() -> Any:
    global _unix_connection_cls
    if _unix_connection_cls is None:
        import http.client

        class UnixHTTPConnection(http.client.HTTPConnection):
            """HTTPConnection over an AF_UNIX stream socket."""

            def __init__(self, path: str, timeout: float | None = None) -> None:
                super().__init__("localhost", timeout=timeout, blocksize=_BLOCK)
                self.socket_path = path

            def connect(self) -> None:
                import socket  # already loaded by http.client

                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.timeout)
                    sock.connect(self.socket_path)
                except BaseException:
                    sock.close()
                    raise
                self.sock = sock

        _unix_connection_cls = UnixHTTPConnection
    return _unix_connection_cls


def __getattr__(name: str) -> Any:
    # `from dockyard.cli.client import UnixHTTPConnection` works, lazily.
    if name == "UnixHTTPConnection":
        return _unix_connection_class()
    raise AttributeError(name)


# ---------------------------------------------------------- JSON streaming

_NON_WS = re.compile(r"[^ \t\r\n]")
_STR_SPECIAL = re.compile(r'["\\]')
_STRUCTURAL = re.compile(r'[{}\[\]"]')
_SCALAR_END = re.compile(r'[ \t\r\n{}\[\]",]')


class _JSONSplitter:
    """Cuts a stream of concatenated JSON values into one string per value.

    Values may be split anywhere across chunks. Tracking nesting depth and string
    state means each character is examined once (regexes skip the dull ones),
    instead of re-parsing a growing buffer after every chunk.
    """

    def __init__(self) -> None:
        self.active = False  # inside a value
        self.scalar = False  # a top-level number/true/false/null
        self.depth = 0
        self.in_str = False
        self.esc = False
        self.pieces: list[str] = []

    def feed(self, chunk: str) -> list[str]:
        values: list[str] = []
        pos = 0
        start = 0
        n = len(chunk)
        while pos < n:
            if not self.active:
                m = _NON_WS.search(chunk, pos)
                if m is None:
                    break
                pos = start = m.start()
                self.active = True
                c = chunk[pos]
                if c in "{[":
                    self.depth = 1
                    pos += 1
                elif c == '"':
                    self.in_str = True
                    pos += 1
                else:
                    self.scalar = True
                continue
            if self.esc:
                self.esc = False
                pos += 1
                continue
            if self.in_str:
                m = _STR_SPECIAL.search(chunk, pos)
                if m is None:
                    break
                pos = m.end()
                if m.group() == "\\":
                    self.esc = True
                    continue
                self.in_str = False
                if self.depth == 0:
                    values.append(self._take(chunk[start:pos]))
                continue
            if self.scalar:
                m = _SCALAR_END.search(chunk, pos)
                if m is None:
                    break
                pos = m.start()
                values.append(self._take(chunk[start:pos]))
                continue
            m = _STRUCTURAL.search(chunk, pos)
            if m is None:
                break
            pos = m.end()
            c = m.group()
            if c == '"':
                self.in_str = True
            elif c in "{[":
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 0:
                    values.append(self._take(chunk[start:pos]))
        if self.active:
            self.pieces.append(chunk[start:])
        return values

    def _take(self, tail: str) -> str:
        text = "".join(self.pieces) + tail if self.pieces else tail
        self.pieces = []
        self.active = self.scalar = self.in_str = self.esc = False
        self.depth = 0
        return text

    def finish(self) -> list[str]:
        if not self.active:
            return []
        if self.scalar:
            return [self._take("")]
        raise ProtocolError("truncated JSON value at end of response stream")


# ---------------------------------------------------------------- response


class Response:
    """A daemon response. Non-streamed ones are already fully read.

    ``status``, ``reason`` and ``headers`` (case-insensitive ``.get()``) are
    available at once; the body via :meth:`read`, :meth:`json`, :meth:`text`,
    :meth:`iter_chunks` or :meth:`iter_json`. Use as a context manager (or call
    :meth:`close`) to let go of a stream early.
    """

    def __init__(self, client: APIClient, conn: Any, raw: http.client.HTTPResponse) -> None:
        self.status: int = raw.status
        self.reason: str = raw.reason
        self.headers = raw.headers
        self._client = client
        self._conn = conn
        self._raw = raw
        self._body: bytes | None = None
        self._done = False

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _finish(self) -> None:
        # The body was read to the end: the connection can serve another request.
        if not self._done:
            self._done = True
            self._client._release(self._conn)

    def close(self) -> None:
        """Abandon the rest of the body; the connection is dropped, not reused."""
        if self._done:
            return
        self._done = True
        if self._raw.isclosed():
            self._client._release(self._conn)
        else:
            self._raw.close()
            self._conn.close()

    def read(self) -> bytes:
        """The whole body (the rest of it, for a partly iterated stream)."""
        if self._body is None:
            try:
                self._body = self._raw.read()
            except (OSError, _http().HTTPException) as e:
                self.close()
                raise DaemonUnreachable(f"error reading response from the daemon: {e}") from None
            self._finish()
        return self._body

    def text(self) -> str:
        return self.read().decode("utf-8", "replace")

    def json(self) -> Any:
        """Decoded JSON body; ``None`` for an empty body (204, HEAD)."""
        data = self.read()
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except ValueError as e:
            raise ProtocolError(f"invalid JSON in daemon response: {e}") from None

    def iter_chunks(self, size: int = _BLOCK) -> Iterator[bytes]:
        """Body bytes as they arrive (``read1``: no waiting for a full block)."""
        if self._body is not None:
            if self._body:
                yield self._body
            return
        raw = self._raw
        try:
            while True:
                chunk = raw.read1(size)
                if not chunk:
                    break
                yield chunk
        except (OSError, _http().HTTPException) as e:
            self.close()
            raise DaemonUnreachable(f"error reading response from the daemon: {e}") from None
        except GeneratorExit:
            self.close()
            raise
        self._finish()

    def iter_json(self) -> Iterator[Any]:
        """Decoded JSON values from a stream of concatenated or newline-delimited
        JSON (progress messages, events, stats), yielded as each one completes."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        splitter = _JSONSplitter()
        for chunk in self.iter_chunks():
            for text in splitter.feed(decoder.decode(chunk)):
                yield _loads(text)
        for text in splitter.feed(decoder.decode(b"", final=True)) + splitter.finish():
            yield _loads(text)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise ProtocolError(f"invalid JSON in daemon response stream: {e}") from None


def _http() -> Any:
    import http.client

    return http.client


def _error_message(status: int, reason: str, body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    if text:
        try:
            doc = json.loads(text)
        except ValueError:
            return text
        if isinstance(doc, Mapping) and isinstance(doc.get("message"), str):
            return doc["message"]
        return text
    return f"{status} {reason}".strip()


# ------------------------------------------------------------------ client


class APIClient:
    """Talks to the daemon. ``host``: argument, else ``$DOCKYARD_HOST``, else
    ``unix:///run/dockyard/dockyard.sock``. All paths get the ``/v1.51`` prefix."""

    def __init__(self, host: str | None = None, timeout: float | None = None) -> None:
        if not host:
            host = os.environ.get("DOCKYARD_HOST") or DEFAULT_HOST
        self.host = host
        self.kind, self.address, self.display_host, self.base_path = parse_host(host)
        self.timeout = timeout
        self._idle: Any = None

    # -- connections
    def _new_connection(self) -> Any:
        if self.kind == "unix":
            return _unix_connection_class()(self.address, timeout=self.timeout)
        name, port = self.address
        return _http().HTTPConnection(name, port, timeout=self.timeout, blocksize=_BLOCK)

    def _acquire(self, fresh: bool = False) -> tuple[Any, bool]:
        conn, self._idle = self._idle, None
        if conn is not None and (fresh or conn.sock is None):
            conn.close()
            conn = None
        if conn is None:
            conn = self._new_connection()
            self._connect(conn)
            return conn, False
        return conn, True

    def _connect(self, conn: Any) -> None:
        try:
            conn.connect()
        except PermissionError as e:
            conn.close()
            raise DaemonUnreachable(
                "permission denied while trying to connect to the dockyard daemon socket at "
                f"{self.display_host}: {e.strerror or e}"
            ) from None
        except OSError:
            conn.close()
            raise DaemonUnreachable(self.unreachable_message()) from None

    def unreachable_message(self) -> str:
        return (
            f"Cannot connect to the dockyard daemon at {self.display_host}. "
            "Is the dockyard daemon running?"
        )

    def _release(self, conn: Any) -> None:
        if self._idle is None and conn.sock is not None:
            self._idle = conn
        else:
            conn.close()

    def close(self) -> None:
        if self._idle is not None:
            self._idle.close()
            self._idle = None

    def __enter__(self) -> APIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests
    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        if not path.startswith("/"):
            path = "/" + path
        if not re.match(r"/v\d+\.\d+/", path):
            path = API_PREFIX + path
        query = encode_params(params)
        return self.base_path + path + ("?" + query if query else "")

    def _headers(self, body: Any, headers: Mapping[str, str] | None) -> tuple[Any, dict[str, str]]:
        hdrs = {"User-Agent": USER_AGENT}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode()
        if headers:
            hdrs.update(headers)
        return body, hdrs

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> Response:
        """One API call. ``body``: dict/list (sent as JSON), str, bytes or None.

        Raises :class:`APIError` for status >= 400 (docker's client treats 1xx-3xx,
        e.g. 304 "already started", as success), :class:`DaemonUnreachable` when
        the daemon can't be reached.
        """
        url = self.url(path, params)
        payload, hdrs = self._headers(body, headers)
        hc = _http()
        for attempt in range(2):
            conn, reused = self._acquire()
            try:
                conn.request(method, url, body=payload, headers=hdrs)
                raw = conn.getresponse()
            except (OSError, hc.HTTPException) as e:
                conn.close()
                # An idle keep-alive connection the daemon has since closed fails
                # on first use: retry once on a fresh one.
                if reused and attempt == 0:
                    continue
                raise DaemonUnreachable(f"error during connect: {method} {url}: {e}") from None
            return self._wrap(conn, raw, stream)
        raise AssertionError("unreachable")

    def _wrap(self, conn: Any, raw: Any, stream: bool) -> Response:
        resp = Response(self, conn, raw)
        if resp.status >= 400:
            raise APIError(resp.status, _error_message(resp.status, resp.reason, resp.read()))
        if not stream:
            resp.read()
        return resp

    def get(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> Response:
        return self.request("GET", path, params, body, headers, stream)

    def post(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> Response:
        return self.request("POST", path, params, body, headers, stream)

    def put(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> Response:
        return self.request("PUT", path, params, body, headers, stream)

    def delete(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> Response:
        return self.request("DELETE", path, params, body, headers, stream)

    def head(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> Response:
        return self.request("HEAD", path, params, body, headers, stream)

    def ping(self) -> bool:
        """``GET /_ping``; True when the daemon answers OK."""
        return self.get("/_ping").text() == "OK"

    def post_stream(
        self,
        path: str,
        fileobj: IO[bytes],
        content_type: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = True,
        method: str = "POST",
    ) -> Response:
        """Upload ``fileobj`` (a file, ``sys.stdin.buffer``, a pipe) as a chunked
        body, 64 KiB at a time, never holding it all in memory. The response is
        streamed by default (load/build/import answer with progress JSON)."""
        url = self.url(path, params)
        hdrs = {
            "User-Agent": USER_AGENT,
            "Content-Type": content_type,
            "Transfer-Encoding": "chunked",
        }
        if headers:
            hdrs.update(headers)
        hc = _http()
        # A body that can't be replayed gets a fresh connection: no stale
        # keep-alive socket to fail halfway through the upload.
        conn, _ = self._acquire(fresh=True)

        def chunks() -> Iterator[bytes]:
            read = getattr(fileobj, "read1", None) or fileobj.read
            while True:
                data = read(_BLOCK)
                if not data:
                    return
                yield data.encode() if isinstance(data, str) else data

        try:
            conn.request(method, url, body=chunks(), headers=hdrs, encode_chunked=True)
        except (OSError, hc.HTTPException) as send_error:
            # The daemon may have rejected the request and closed before taking
            # the whole body: its error response is more useful than EPIPE.
            try:
                raw = conn.getresponse()
            except (OSError, hc.HTTPException):
                conn.close()
                raise DaemonUnreachable(
                    f"error during connect: {method} {url}: {send_error}"
                ) from None
            return self._wrap(conn, raw, stream)
        try:
            raw = conn.getresponse()
        except (OSError, hc.HTTPException) as e:
            conn.close()
            raise DaemonUnreachable(f"error during connect: {method} {url}: {e}") from None
        return self._wrap(conn, raw, stream)

    # -- hijacking (attach, exec start)
    def _open_socket(self) -> socket.socket:
        import socket  # lazily, like http.client: ~3 ms of imports

        try:
            if self.kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(self.address)
                except BaseException:
                    sock.close()
                    raise
                return sock
            return socket.create_connection(self.address)
        except PermissionError as e:
            raise DaemonUnreachable(
                "permission denied while trying to connect to the dockyard daemon socket at "
                f"{self.display_host}: {e.strerror or e}"
            ) from None
        except OSError:
            raise DaemonUnreachable(self.unreachable_message()) from None

    def hijack(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> socket.socket:
        """Send an upgrade request (``Connection: Upgrade``, ``Upgrade: tcp``) and,
        on 101 Switching Protocols (or a 200 from daemons that don't upgrade),
        return the socket, now a raw byte stream (stdcopy frames unless TTY).

        The response head is consumed exactly, never past ``\\r\\n\\r\\n``, so
        stream bytes the daemon sends right after it stay in the socket.
        """
        return self.hijack_response(method, path, params, body, headers)[0]

    def hijack_response(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[socket.socket, int, dict[str, str]]:
        """Like :meth:`hijack`, also returning the status and the response headers
        (lower-cased names), e.g. to tell ``application/vnd.docker.multiplexed-stream``
        from ``application/vnd.docker.raw-stream``."""
        url = self.url(path, params)
        payload, hdrs = self._headers(body, headers)
        payload = payload or b""
        if self.kind == "unix":
            host = "localhost"
        else:
            name, port = self.address
            host = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
        lines = [f"{method} {url} HTTP/1.1", f"Host: {host}"]
        lines += [f"{k}: {v}" for k, v in hdrs.items()]
        lines += ["Connection: Upgrade", "Upgrade: tcp", f"Content-Length: {len(payload)}"]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
        sock = self._open_socket()
        try:
            sock.sendall(request)
            status, reason, resp_headers = _read_head(sock)
            if status in (101, 200):
                return sock, status, resp_headers
            body_bytes = _read_body(sock, resp_headers)
        except OSError as e:
            sock.close()
            raise DaemonUnreachable(f"error during connect: {method} {url}: {e}") from None
        except BaseException:
            sock.close()
            raise
        sock.close()
        if status >= 400:
            raise APIError(status, _error_message(status, reason, body_bytes))
        raise ProtocolError(f"daemon did not upgrade the connection: {status} {reason}")


def _read_head(sock: socket.socket) -> tuple[int, str, dict[str, str]]:
    """Read an HTTP response head without consuming a byte past it: peek, then
    recv exactly up to the blank line."""
    import socket

    head = b""
    while True:
        peek = sock.recv(4096, socket.MSG_PEEK)
        if not peek:
            raise ProtocolError("connection closed before the response head")
        # The terminator may straddle what we already took and what we peek.
        window = head[-3:] + peek
        idx = window.find(b"\r\n\r\n")
        if idx >= 0:
            need = idx + 4 - len(head[-3:])
            while need > 0:
                got = sock.recv(need)
                if not got:
                    raise ProtocolError("connection closed in the response head")
                head += got
                need -= len(got)
            break
        got = sock.recv(len(peek))
        head += got
        if len(head) > 64 * 1024:
            raise ProtocolError("response head too large")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"malformed status line: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        got = sock.recv(min(n - len(buf), _BLOCK))
        if not got:
            break
        buf += got
    return bytes(buf)


def _read_body(sock: socket.socket, headers: Mapping[str, str]) -> bytes:
    """Body of a non-upgraded (error) response: Content-Length, chunked, or EOF."""
    if "content-length" in headers:
        return _recv_exact(sock, int(headers["content-length"]))
    if "chunked" in headers.get("transfer-encoding", "").lower():
        f = sock.makefile("rb")
        out = bytearray()
        try:
            while True:
                size_line = f.readline()
                if not size_line:
                    break
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                out += f.read(size)
                f.readline()
        finally:
            f.close()
        return bytes(out)
    out = bytearray()
    sock.settimeout(5)
    try:
        while len(out) < 1 << 20:
            got = sock.recv(_BLOCK)
            if not got:
                break
            out += got
    except OSError:
        pass
    return bytes(out)
