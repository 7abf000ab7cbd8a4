"""HTTP client for the dockyard daemon's Docker Engine API.

Like the docker CLI, every command is a sequence of API calls over a unix socket
(default) or TCP. The HTTP/1.1 here is our own, on the C ``_socket`` module: the
stdlib's ``http.client`` costs ~20 ms to import (``email``, ``ssl``...) and
``socket.py`` another ~3 ms of enum set-up, against a CLI budget of a few
milliseconds. Only hijacking (attach, exec), which hands a socket to the caller,
uses ``socket.socket``.

Requests send a ``Content-Length`` body or a chunked one (uploads from files and
pipes). Responses are framed by ``Content-Length``, chunked encoding (trailers
read and dropped) or the end of the connection; HEAD, 1xx, 204 and 304 have no
body. Streamed bodies are read with plain ``recv``: whatever bytes have arrived
are handed over at once, so progress, ``logs -f`` and events show up live.

One keep-alive connection is kept idle between calls. A streamed response holds
its connection until read to the end or closed; a request made meanwhile (e.g.
``wait`` while ``attach`` streams) opens another connection.
"""

from __future__ import annotations

import os

from dockyard import API_VERSION, __version__
from dockyard.errors import DockyardError, InvalidArgument

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (~3 ms)
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Iterator, Mapping
    from typing import IO, Any

__all__ = [
    "DEFAULT_HOST",
    "APIClient",
    "APIError",
    "DaemonUnreachable",
    "Headers",
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
_MAX_HEAD = 64 * 1024  # a response head (or a chunk-size line, or trailers) larger than this is garbage
_PREALLOCATE = 16 << 20  # Content-Length bodies up to this are received into one buffer


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


class _Disconnected(ConnectionError):
    """The daemon closed the connection before the response was complete."""


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
            elif isinstance(v, (str, int, float)):
                s = str(v)
            else:
                from collections.abc import Mapping

                if isinstance(v, Mapping):
                    from dockyard import jsonc as json  # the C _json only: no re, no enum

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
    if hostport.startswith("["):  # [v6 address] or [v6 address]:port
        name, bracket, port_part = hostport[1:].partition("]")
        if not bracket or not name:
            raise InvalidArgument(f"invalid daemon address {host!r}")
    else:
        name, _, tail = hostport.partition(":")
        port_part = ":" + tail if _ else ""
        if "[" in name or "]" in name:
            raise InvalidArgument(f"invalid daemon address {host!r}")
    if port_part:
        port_s = port_part[1:]
        if port_part[0] != ":" or not port_s.isdecimal():
            raise InvalidArgument(f"invalid daemon address {host!r}")
        port = int(port_s)
    else:
        port = 2375
    if not 0 < port < 65536:
        raise InvalidArgument(f"invalid daemon address {host!r}: bad port")
    return "tcp", (name or "127.0.0.1", port), host, base


def _has_version_prefix(path: str) -> bool:
    """``/v1.24/...``: the caller picked the API version itself."""
    if not path.startswith("/v"):
        return False
    major, dot, rest = path[2:].partition(".")
    minor, slash, _ = rest.partition("/")
    return bool(dot and slash) and major.isdecimal() and minor.isdecimal()


def _socket_module() -> Any:
    """The C socket module: all the client needs, without ``socket.py``'s import cost."""
    try:
        import _socket
    except ImportError:  # pragma: no cover - not CPython
        import socket as _socket
    return _socket


def _open_socket(kind: str, address: Any, timeout: float | None, mod: Any) -> Any:
    """A connected stream socket of module ``mod`` (``_socket`` or ``socket``).
    Raises OSError."""
    if kind == "unix":
        sock = mod.socket(mod.AF_UNIX, mod.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock
    name, port = address
    error: OSError | None = None
    for family, type_, proto, _, sockaddr in mod.getaddrinfo(name, port, 0, mod.SOCK_STREAM):
        sock = mod.socket(family, type_, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            # Requests go out as a few writes (head, chunks): no Nagle delays.
            sock.setsockopt(mod.IPPROTO_TCP, mod.TCP_NODELAY, 1)
            return sock
        except OSError as e:
            sock.close()
            error = e
        except BaseException:
            sock.close()
            raise
    raise error or OSError(f"no address found for {name!r}")


def _request_head(method: str, url: str, host: str, headers: Mapping[str, str]) -> bytes:
    """Request line and header fields, ``\\r\\n\\r\\n``-terminated."""
    if not url.isascii():  # e.g. an unquoted image name: send it percent-encoded
        url = "".join(c if c.isascii() else quote(c) for c in url)
    if any(c <= " " or c == "\x7f" for c in url):
        raise InvalidArgument(f"invalid request path {url!r}: contains whitespace or control characters")
    lines = [f"{method} {url} HTTP/1.1"]
    if not any(k.lower() == "host" for k in headers):
        lines.append(f"Host: {host}")
    for k, v in headers.items():
        v = str(v)
        if not k or any(c in k for c in ":\r\n ") or "\r" in v or "\n" in v or "\0" in v:
            raise InvalidArgument(f"invalid HTTP header {k!r}: {v!r}")
        lines.append(f"{k}: {v}")
    lines.append("\r\n")
    try:
        return "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        return "\r\n".join(lines).encode("utf-8")


def _body_chunks(body: Any) -> Iterator[bytes]:
    """The pieces of a streamed request body: a file-like object read 64 KiB at a
    time (``read1`` where there is one: a pipe's data is sent as it comes), or an
    iterable of bytes/str."""
    read = getattr(body, "read1", None) or getattr(body, "read", None)
    if read is not None:
        while True:
            data = read(_BLOCK)
            if not data:
                return
            yield data.encode() if isinstance(data, str) else data
    else:
        for data in body:
            if data:  # an empty chunk would end the body
                yield data.encode() if isinstance(data, str) else data


def _send_chunked(sendall: Any, head: bytes, body: Any) -> OSError | None:
    """Sends the request head and ``body`` in chunked encoding. Returns the socket
    error that cut it short, if any; errors reading ``body`` propagate."""
    try:
        sendall(head)
    except OSError as e:
        return e
    for data in _body_chunks(body):
        try:
            sendall(b"%x\r\n" % len(data) + data + b"\r\n")
        except OSError as e:
            return e
    try:
        sendall(b"0\r\n\r\n")
    except OSError as e:
        return e
    return None


# ------------------------------------------------------------------ HTTP/1.1


class Headers:
    """Response header fields in the order received. Lookups ignore case; like
    ``http.client``'s message object, ``[]`` gives None for a missing field and
    the first of repeated fields (``get_all()`` gives every one)."""

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items = items or []

    def get(self, name: str, default: Any = None) -> Any:
        name = name.lower()
        for k, v in self._items:
            if k.lower() == name:
                return v
        return default

    def __getitem__(self, name: str) -> str | None:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def get_all(self, name: str, default: Any = None) -> Any:
        name = name.lower()
        found = [v for k, v in self._items if k.lower() == name]
        return found or default

    def keys(self) -> list[str]:
        return [k for k, _ in self._items]

    def values(self) -> list[str]:
        return [v for _, v in self._items]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def _tokens(self, name: str) -> list[str]:
        """Comma-separated values of every ``name`` field, lower-cased."""
        return [
            t.strip().lower() for v in self.get_all(name, ()) for t in v.split(",") if t.strip()
        ]


def _parse_head(head: bytes) -> tuple[str, int, str, Headers]:
    """(protocol version, status, reason, headers) from a response head without
    its blank line."""
    lines = head.decode("latin-1").split("\r\n")
    proto, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not (proto.startswith("HTTP/1.") and len(code) == 3 and code.isascii() and code.isdigit()):
        raise ProtocolError(f"malformed status line from the daemon: {lines[0][:100]!r}")
    items: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and items:  # obsolete line folding
            k, v = items[-1]
            items[-1] = (k, f"{v} {line.strip()}".strip())
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name:
            raise ProtocolError(f"malformed header line from the daemon: {line[:100]!r}")
        items.append((name, value.strip()))
    return proto, int(code), reason.strip(), Headers(items)


class _Connection:
    """One HTTP/1.1 connection: a socket and the bytes received but not yet used."""

    __slots__ = ("sock", "buf", "received")

    def __init__(self, sock: Any) -> None:
        self.sock = sock  # None once closed
        self.buf = bytearray()
        self.received = 0  # bytes ever received (did a failed request get any answer?)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self.buf = bytearray()
        if sock is not None:
            sock.close()

    def idle_ok(self) -> bool:
        """An idle keep-alive connection is still usable: the daemon hasn't closed
        it (EOF) and sent nothing unasked. One non-blocking peek."""
        if self.sock is None or self.buf:
            return False
        sock = self.sock
        mod = _socket_module()
        timeout = sock.gettimeout()
        dontwait = getattr(mod, "MSG_DONTWAIT", 0) if timeout is None else 0
        if not dontwait:
            sock.settimeout(0)
        try:
            sock.recv(1, mod.MSG_PEEK | dontwait)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            if not dontwait:
                sock.settimeout(timeout)
        return False

    def _fill(self) -> int:
        data = self.sock.recv(_BLOCK)
        self.received += len(data)
        self.buf += data
        return len(data)

    def read_head(self) -> bytes:
        """The next response head (without the blank line ending it)."""
        buf = self.buf
        start = 0
        while True:
            end = buf.find(b"\r\n\r\n", start)
            if end >= 0:
                head = bytes(buf[:end])
                del buf[: end + 4]
                return head
            if len(buf) > _MAX_HEAD:
                raise ProtocolError("response head from the daemon too large")
            start = max(0, len(buf) - 3)
            if not self._fill():
                if buf:
                    raise _Disconnected("connection closed in the middle of the response head")
                raise _Disconnected("Remote end closed connection without response")

    def read_line(self) -> bytes:
        """One line (chunk size, trailer field) without its CRLF (or bare LF)."""
        buf = self.buf
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end >= 0:
                line = bytes(buf[:end])
                del buf[: end + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(buf) > _MAX_HEAD:
                raise ProtocolError("line too long in the daemon's chunked response")
            start = len(buf)
            if not self._fill():
                raise _Disconnected("connection closed in the middle of a chunked body")

    def recv_some(self, n: int) -> bytes:
        """Up to ``n`` bytes: what is buffered, else one ``recv`` (which returns as
        soon as anything arrives). ``b""`` at EOF."""
        buf = self.buf
        if buf:
            data = bytes(buf[:n])
            del buf[:n]
            return data
        data = self.sock.recv(n)
        self.received += len(data)
        return data

    def recv_exact(self, n: int) -> tuple[bytes, int]:
        """(data, count): ``n`` bytes, fewer only if the connection closes first."""
        out = bytearray(n)
        buf = self.buf
        got = min(n, len(buf))
        out[:got] = buf[:got]
        del buf[:got]
        view = memoryview(out)
        recv_into = self.sock.recv_into
        while got < n:
            k = recv_into(view[got:], min(n - got, 1 << 20))
            if not k:
                break
            self.received += k
            got += k
        view.release()
        if got < n:
            del out[got:]
        return bytes(out), got


# Body framing of a response
_NONE, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(4)


# ---------------------------------------------------------- JSON streaming


class _JSONSplitter:
    """Cuts a stream of concatenated JSON values into one string per value.

    Values may be split anywhere across chunks. Tracking nesting depth and string
    state means each character is examined once (regexes skip the dull ones),
    instead of re-parsing a growing buffer after every chunk.
    """

    _NON_WS: Any = None  # compiled on first use: `re` isn't needed before

    def __init__(self) -> None:
        if _JSONSplitter._NON_WS is None:
            import re

            cls = _JSONSplitter
            cls._STR_SPECIAL = re.compile(r'["\\]')
            cls._STRUCTURAL = re.compile(r'[{}\[\]"]')
            cls._SCALAR_END = re.compile(r'[ \t\r\n{}\[\]",]')
            cls._NON_WS = re.compile(r"[^ \t\r\n]")
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
        non_ws = self._NON_WS.search
        str_special = self._STR_SPECIAL.search
        scalar_end = self._SCALAR_END.search
        structural = self._STRUCTURAL.search
        while pos < n:
            if not self.active:
                m = non_ws(chunk, pos)
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
                m = str_special(chunk, pos)
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
                m = scalar_end(chunk, pos)
                if m is None:
                    break
                pos = m.start()
                values.append(self._take(chunk[start:pos]))
                continue
            m = structural(chunk, pos)
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

    def __init__(
        self,
        client: APIClient | None,
        conn: _Connection,
        status: int,
        reason: str,
        headers: Headers,
        version: str = "HTTP/1.1",
        method: str = "GET",
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self._client = client
        self._conn = conn
        self._body: bytes | None = None
        self._done = False  # the connection was handed back or dropped
        connection = headers._tokens("Connection")
        if version == "HTTP/1.0":
            self._keep_alive = "keep-alive" in connection
        else:
            self._keep_alive = "close" not in connection
        self._left = 0  # bytes left: of the body (_LENGTH), of the current chunk (_CHUNKED)
        self._chunked_started = False
        self._eof = False  # the body was read to its end
        if method == "HEAD" or status < 200 or status in (204, 304):
            self._mode = _NONE
            self._eof = True
        elif "Transfer-Encoding" in headers:
            # chunked must come last; any other coding runs to the end of the connection
            te = headers._tokens("Transfer-Encoding")
            self._mode = _CHUNKED if te and te[-1] == "chunked" else _UNTIL_CLOSE
        elif "Content-Length" in headers:
            lengths = set(headers._tokens("Content-Length"))
            value = next(iter(lengths), "")
            if len(lengths) != 1 or not (value.isascii() and value.isdigit()):
                raise ProtocolError(f"invalid Content-Length from the daemon: {sorted(lengths)!r}")
            self._mode = _LENGTH
            self._left = int(lengths.pop())
            self._eof = not self._left
        else:
            self._mode = _UNTIL_CLOSE
        if self._mode == _UNTIL_CLOSE:
            self._keep_alive = False

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _finish(self) -> None:
        # The body was read to the end: the connection can serve another request.
        if self._done:
            return
        self._done = True
        conn = self._conn
        if not self._keep_alive or conn.buf:  # bytes beyond the response: don't trust it
            conn.close()
        if self._client is None:
            conn.close()
        else:
            self._client._release(conn)

    def close(self) -> None:
        """Abandon the rest of the body; the connection is dropped, not reused."""
        if self._done:
            return
        if self._eof:
            self._finish()
            return
        self._done = True
        self._conn.close()

    def _read_some(self, size: int) -> bytes:
        """Up to ``size`` body bytes, as soon as any are there; ``b""`` at the end.
        Raises OSError (connection broken) or ProtocolError."""
        conn = self._conn
        if self._eof or conn.sock is None:
            return b""
        mode = self._mode
        if mode == _UNTIL_CLOSE:
            data = conn.recv_some(size)
            if not data:
                self._eof = True
            return data
        if mode == _CHUNKED and not self._left and not self._next_chunk():
            return b""
        data = conn.recv_some(min(size, self._left))
        if not data:
            if mode == _CHUNKED:
                raise _Disconnected("connection closed in the middle of a chunked body")
            raise _Disconnected(f"connection closed with {self._left} bytes of the body missing")
        self._left -= len(data)
        if mode == _LENGTH and not self._left:
            self._eof = True
        return data

    def _next_chunk(self) -> bool:
        """Reads up to the next chunk's data; False (trailers consumed) at the end."""
        conn = self._conn
        if self._chunked_started and conn.read_line():  # the CRLF after a chunk's data
            raise ProtocolError("malformed chunked encoding from the daemon: no CRLF after chunk data")
        self._chunked_started = True
        line = conn.read_line()
        size = line.partition(b";")[0].strip()  # chunk extensions are ignored
        if not size or size.strip(b"0123456789abcdefABCDEF"):
            raise ProtocolError(f"malformed chunk size line from the daemon: {line[:100]!r}")
        n = int(size, 16)
        if n:
            self._left = n
            return True
        total = 0
        while trailer := conn.read_line():
            total += len(trailer)
            if total > _MAX_HEAD:
                raise ProtocolError("chunked response trailers from the daemon too large")
        self._eof = True
        return False

    def _broken(self, e: OSError) -> DaemonUnreachable:
        self.close()
        return DaemonUnreachable(f"error reading response from the daemon: {e}")

    def read(self) -> bytes:
        """The whole body (the rest of it, for a partly iterated stream)."""
        if self._body is None:
            try:
                want = self._left
                if self._mode == _LENGTH and want <= _PREALLOCATE and self._conn.sock is not None:
                    body, got = self._conn.recv_exact(want)
                    self._left -= got
                    if got < want:
                        raise _Disconnected(
                            f"connection closed with {want - got} bytes of the body missing"
                        )
                    self._eof = True
                else:
                    pieces: list[bytes] = []
                    while data := self._read_some(_BLOCK):
                        pieces.append(data)
                    body = b"".join(pieces)
            except OSError as e:
                raise self._broken(e) from None
            except ProtocolError:
                self.close()
                raise
            self._body = body
            self._finish()
        return self._body

    def text(self) -> str:
        return self.read().decode("utf-8", "replace")

    def json(self) -> Any:
        """Decoded JSON body; ``None`` for an empty body (204, HEAD)."""
        data = self.read()
        if not data.strip():
            return None
        from dockyard import jsonc as json  # the C _json only: no re, no enum

        try:
            return json.loads(data)
        except ValueError as e:
            raise ProtocolError(f"invalid JSON in daemon response: {e}") from None

    def iter_chunks(self, size: int = _BLOCK) -> Iterator[bytes]:
        """Body bytes as they arrive (one ``recv``: no waiting for a full block)."""
        if self._body is not None:
            if self._body:
                yield self._body
            return
        try:
            while True:
                chunk = self._read_some(size)
                if not chunk:
                    break
                yield chunk
        except OSError as e:
            raise self._broken(e) from None
        except (ProtocolError, GeneratorExit):
            self.close()
            raise
        self._finish()

    def iter_json(self) -> Iterator[Any]:
        """Decoded JSON values from a stream of concatenated or newline-delimited
        JSON (progress messages, events, stats), yielded as each one completes."""
        import codecs

        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        splitter = _JSONSplitter()
        for chunk in self.iter_chunks():
            for text in splitter.feed(decoder.decode(chunk)):
                yield _loads(text)
        for text in splitter.feed(decoder.decode(b"", final=True)) + splitter.finish():
            yield _loads(text)


def _loads(text: str) -> Any:
    from dockyard import jsonc as json  # the C _json only: no re, no enum

    try:
        return json.loads(text)
    except ValueError as e:
        raise ProtocolError(f"invalid JSON in daemon response stream: {e}") from None


def _error_message(status: int, reason: str, body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    if text:
        from dockyard import jsonc as json  # the C _json only: no re, no enum

        try:
            doc = json.loads(text)
        except ValueError:
            return text
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
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
        self._idle: _Connection | None = None
        if self.kind == "unix":
            self._host_header = "localhost"
        else:
            name, port = self.address
            self._host_header = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"

    # -- connections
    def _connect_socket(self, mod: Any, timeout: float | None) -> Any:
        try:
            return _open_socket(self.kind, self.address, timeout, mod)
        except PermissionError as e:
            raise DaemonUnreachable(
                "permission denied while trying to connect to the dockyard daemon socket at "
                f"{self.display_host}: {e.strerror or e}"
            ) from None
        except OSError:
            raise DaemonUnreachable(self.unreachable_message()) from None

    def _acquire(self, fresh: bool = False) -> tuple[_Connection, bool]:
        """The idle keep-alive connection if it is still good (reused=True), else a new one."""
        conn, self._idle = self._idle, None
        if conn is not None:
            if not fresh and conn.idle_ok():
                return conn, True
            conn.close()
        return _Connection(self._connect_socket(_socket_module(), self.timeout)), False

    def unreachable_message(self) -> str:
        return (
            f"Cannot connect to the dockyard daemon at {self.display_host}. "
            "Is the dockyard daemon running?"
        )

    def _release(self, conn: _Connection) -> None:
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
        if not _has_version_prefix(path):
            path = API_PREFIX + path
        query = encode_params(params)
        return self.base_path + path + ("?" + query if query else "")

    def _headers(self, body: Any, headers: Mapping[str, str] | None) -> tuple[Any, dict[str, str]]:
        hdrs = {"User-Agent": USER_AGENT}
        if isinstance(body, (dict, list)):
            from dockyard import jsonc as json  # the C _json only: no re, no enum

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
        meanwhile: Callable[[], object] | None = None,
    ) -> Response:
        """One API call. ``body``: dict/list (sent as JSON), str, bytes, None, or a
        file/iterable of bytes (sent chunked, like :meth:`post_stream`). ``meanwhile``
        runs once the request is sent, while the daemon works on it (work the caller
        needs next, such as imports, overlaps the daemon's instead of following it).

        Raises :class:`APIError` for status >= 400 (docker's client treats 1xx-3xx,
        e.g. 304 "already started", as success), :class:`DaemonUnreachable` when
        the daemon can't be reached.
        """
        payload, hdrs = self._headers(body, headers)
        return self._exchange(method, self.url(path, params), payload, hdrs, stream, meanwhile)

    def _exchange(
        self, method: str, url: str, payload: Any, hdrs: dict[str, str], stream: bool,
        meanwhile: Callable[[], object] | None = None,
    ) -> Response:
        names = {k.lower() for k in hdrs}
        framed = "content-length" in names or "transfer-encoding" in names
        replayable = payload is None or isinstance(payload, (bytes, bytearray, memoryview))
        if not replayable:
            if not framed:
                hdrs["Transfer-Encoding"] = "chunked"
        elif not framed and (payload is not None or method in ("POST", "PUT", "PATCH")):
            hdrs["Content-Length"] = str(len(payload) if payload is not None else 0)
        head = _request_head(method, url, self._host_header, hdrs)
        if not replayable:
            return self._exchange_streamed(method, url, head, payload, stream)
        if payload and len(payload) <= _BLOCK:
            head, payload = head + payload, None
        for attempt in range(2):
            conn, reused = self._acquire()
            mark = conn.received
            try:
                conn.sock.sendall(head)
                if payload:
                    conn.sock.sendall(payload)
                if meanwhile is not None:
                    meanwhile()
                    meanwhile = None
                resp = self._response(conn, method)
            except OSError as e:
                conn.close()
                # An idle keep-alive connection the daemon closed just now fails
                # on first use without an answer: retry once on a fresh one.
                if reused and attempt == 0 and isinstance(e, ConnectionError) and conn.received == mark:
                    continue
                raise DaemonUnreachable(f"error during connect: {method} {url}: {e}") from None
            except BaseException:
                conn.close()
                raise
            return self._wrap(resp, stream)
        raise AssertionError("unreachable")

    def _exchange_streamed(
        self, method: str, url: str, head: bytes, body: Any, stream: bool
    ) -> Response:
        # A body that can't be replayed gets a fresh connection: no stale
        # keep-alive socket to fail halfway through the upload.
        conn, _ = self._acquire(fresh=True)
        try:
            send_error = _send_chunked(conn.sock.sendall, head, body)
            # After a send error too: the daemon may have rejected the request and
            # closed before taking the whole body, and its answer says more than EPIPE.
            try:
                resp = self._response(conn, method)
            except (OSError, ProtocolError) as e:
                if send_error is None and isinstance(e, ProtocolError):
                    raise
                conn.close()
                raise DaemonUnreachable(
                    f"error during connect: {method} {url}: {send_error or e}"
                ) from None
        except BaseException:
            conn.close()
            raise
        return self._wrap(resp, stream)

    def _response(self, conn: _Connection, method: str) -> Response:
        """Reads the response head (skipping interim 1xx ones but 101)."""
        while True:
            version, status, reason, headers = _parse_head(conn.read_head())
            if not 100 <= status < 200 or status == 101:
                return Response(self, conn, status, reason, headers, version, method)

    def _wrap(self, resp: Response, stream: bool) -> Response:
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
        meanwhile: Callable[[], object] | None = None,
    ) -> Response:
        return self.request("POST", path, params, body, headers, stream, meanwhile)

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
        hdrs = {
            "User-Agent": USER_AGENT,
            "Content-Type": content_type,
            "Transfer-Encoding": "chunked",
        }
        if headers:
            hdrs.update(headers)
        url = self.url(path, params)
        head = _request_head(method, url, self._host_header, hdrs)
        return self._exchange_streamed(method, url, head, fileobj, stream)

    # -- hijacking (attach, exec start)
    def _open_socket(self) -> socket.socket:
        import socket  # the caller gets a full socket.socket (and attach.py needs the module)

        return self._connect_socket(socket, None)

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
        hdrs.update({"Connection": "Upgrade", "Upgrade": "tcp", "Content-Length": str(len(payload))})
        request = _request_head(method, url, self._host_header, hdrs) + payload
        sock = self._open_socket()
        try:
            sock.sendall(request)
            version, status, reason, resp_headers = _parse_head(_read_head_exactly(sock))
            if status in (101, 200):
                return sock, status, {k.lower(): v for k, v in resp_headers.items()}
            # An error: read its body like any response's (bounded in time: the
            # daemon may leave the connection open).
            sock.settimeout(5)
            resp = Response(None, _Connection(sock), status, reason, resp_headers, version, method)
            try:
                body_bytes = resp.read()
            except DaemonUnreachable:
                body_bytes = b""  # the status alone says what went wrong
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


def _read_head_exactly(sock: socket.socket) -> bytes:
    """Read an HTTP response head without consuming a byte past it: peek, then
    recv exactly up to the blank line (which is not returned)."""
    import socket

    head = b""
    while True:
        peek = sock.recv(4096, socket.MSG_PEEK)
        if not peek:
            if head:
                raise _Disconnected("connection closed in the middle of the response head")
            raise _Disconnected("Remote end closed connection without response")
        # The terminator may straddle what we already took and what we peek.
        window = head[-3:] + peek
        idx = window.find(b"\r\n\r\n")
        if idx >= 0:
            need = idx + 4 - len(head[-3:])
            while need > 0:
                got = sock.recv(need)
                if not got:
                    raise _Disconnected("connection closed in the middle of the response head")
                head += got
                need -= len(got)
            return head[:-4]
        head += sock.recv(len(peek))
        if len(head) > _MAX_HEAD:
            raise ProtocolError("response head from the daemon too large")
