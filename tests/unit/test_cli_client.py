"""APIClient against real HTTP servers on unix sockets: aiohttp for the API calls,
a plain socket server for the connection upgrade (hijack) used by attach/exec."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dockyard.cli.client import (
    DEFAULT_HOST,
    APIClient,
    APIError,
    DaemonUnreachable,
    ProtocolError,
    _JSONSplitter,
    encode_params,
    parse_host,
    quote,
)
from dockyard.errors import InvalidArgument


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="dy-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class AioServer:
    """An aiohttp app served on a unix socket from a background thread."""

    def __init__(self, path: str, keepalive_timeout: float = 75.0) -> None:
        self.path = path
        self.keepalive_timeout = keepalive_timeout
        self.transports: list[Any] = []  # strong refs: ids stay unique
        self.release = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1.51/info", self.info)
        app.router.add_get("/v1.51/_ping", self.ping)
        app.router.add_get("/v1.51/events", self.events)
        app.router.add_get("/v1.51/slow-events", self.slow_events)
        app.router.add_post("/v1.51/upload", self.upload)
        app.router.add_post("/v1.51/reject", self.reject)
        app.router.add_post("/v1.51/containers/{name}/start", self.start)
        app.router.add_get("/v1.51/containers/{name}/json", self.missing)
        app.router.add_get("/v1.51/plain-error", self.plain_error)
        app.router.add_get("/v1.51/big", self.big)
        return app

    def _note(self, request: web.Request) -> None:
        self.transports.append(request.transport)

    async def info(self, request: web.Request) -> web.Response:
        self._note(request)
        return web.json_response(
            {
                "Name": "dockyard",
                "query": request.raw_path.partition("?")[2],
                "t": request.query.getall("t", []),
                "ua": request.headers.get("User-Agent"),
            }
        )

    async def ping(self, request: web.Request) -> web.Response:
        self._note(request)
        return web.Response(text="OK", headers={"Api-Version": "1.51"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        payload = b"".join(
            json.dumps({"id": i, "status": "caf\u00e9 \u2603", "nested": {"a": [1, "}{"]}}).encode()
            + (b"\n" if i % 2 else b"")  # mix newline-delimited and concatenated
            for i in range(20)
        )
        # Small irregular pieces: values, strings and UTF-8 sequences all get
        # split across chunk boundaries.
        k, step = 0, 7
        while k < len(payload):
            await resp.write(payload[k : k + step])
            k += step
            step = 3 if step == 7 else 7
        await resp.write_eof()
        return resp

    async def slow_events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(b'{"status":"first"}\n')
        # Only continue once the client has seen the first message: proves
        # values are delivered as they arrive, not at end of stream.
        loop = asyncio.get_running_loop()
        released = await loop.run_in_executor(None, self.release.wait, 10)
        await resp.write(json.dumps({"status": "second", "released": released}).encode())
        await resp.write_eof()
        return resp

    async def upload(self, request: web.Request) -> web.Response:
        h = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(1 << 16):
            h.update(chunk)
            size += len(chunk)
        return web.json_response(
            {
                "size": size,
                "sha256": h.hexdigest(),
                "te": request.headers.get("Transfer-Encoding"),
                "ct": request.headers.get("Content-Type"),
                "cl": request.headers.get("Content-Length"),
            }
        )

    async def reject(self, request: web.Request) -> web.Response:
        return web.json_response({"message": "bad tarball"}, status=400)

    async def start(self, request: web.Request) -> web.Response:
        self._note(request)
        return web.Response(status=304)

    async def missing(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.json_response({"message": f"No such container: {name}"}, status=404)

    async def plain_error(self, request: web.Request) -> web.Response:
        return web.Response(text="something broke\n", status=500)

    async def big(self, request: web.Request) -> web.Response:
        return web.json_response({"data": "x" * 1_000_000})

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(self.app(), keepalive_timeout=self.keepalive_timeout)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.UnixSite(runner, self.path).start())
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def __enter__(self) -> AioServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def server(short_tmp: Path) -> Iterator[AioServer]:
    with AioServer(str(short_tmp / "d.sock")) as srv:
        yield srv


@pytest.fixture
def client(server: AioServer) -> Iterator[APIClient]:
    c = APIClient(f"unix://{server.path}")
    yield c
    c.close()


# ------------------------------------------------------------------ plain calls


def test_json_get_and_params(client: APIClient) -> None:
    resp = client.get(
        "/info",
        params={
            "all": True,
            "size": False,
            "filters": {"label": ["a=b"]},
            "t": ["x:1", "y:2"],
            "limit": 5,
            "skip": None,
        },
    )
    assert resp.status == 200
    assert resp.headers.get("content-type").startswith("application/json")
    doc = resp.json()
    assert doc["Name"] == "dockyard"
    assert doc["t"] == ["x:1", "y:2"]
    assert doc["ua"].startswith("dockyard-cli/")
    query = doc["query"]
    assert query.startswith("all=1&size=0&filters=")
    assert "filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D" in query
    assert query.endswith("&limit=5")
    assert "skip" not in query


def test_keep_alive_reuses_one_connection(client: APIClient, server: AioServer) -> None:
    for _ in range(3):
        assert client.get("/_ping").text() == "OK"
    assert len(server.transports) == 3
    assert server.transports[0] is server.transports[1] is server.transports[2]


def test_head_and_ping(client: APIClient) -> None:
    resp = client.head("/_ping")
    assert resp.status == 200
    assert resp.read() == b""
    assert resp.headers["Api-Version"] == "1.51"
    assert client.ping() is True


def test_304_is_not_an_error(client: APIClient) -> None:
    # docker's client accepts < 400: "container already started" is a 304
    assert client.post("/containers/c1/start").status == 304


def test_large_body(client: APIClient) -> None:
    assert len(client.get("/big").json()["data"]) == 1_000_000


def test_stale_keepalive_connection_is_retried(short_tmp: Path) -> None:
    with AioServer(str(short_tmp / "k.sock"), keepalive_timeout=0.1) as srv:
        c = APIClient(srv.path)  # bare path form
        assert c.get("/_ping").text() == "OK"
        import time

        time.sleep(0.5)  # the server drops the idle connection
        assert c.get("/_ping").text() == "OK"
        assert srv.transports[0] is not srv.transports[1]
        c.close()


# --------------------------------------------------------------------- errors


def test_api_error_message_from_json(client: APIClient) -> None:
    with pytest.raises(APIError) as info:
        client.get("/containers/nope/json")
    assert info.value.status == 404
    assert info.value.message == "No such container: nope"
    assert str(info.value) == "No such container: nope"
    # the connection is still usable afterwards
    assert client.get("/_ping").text() == "OK"


def test_api_error_plain_text_and_stream(client: APIClient) -> None:
    with pytest.raises(APIError) as info:
        client.get("/plain-error", stream=True)
    assert (info.value.status, info.value.message) == (500, "something broke")
    with pytest.raises(APIError, match="^404 Not Found$|Not Found"):
        client.get("/no/such/route")


def test_daemon_unreachable_missing_socket(short_tmp: Path) -> None:
    host = f"unix://{short_tmp}/missing.sock"
    with pytest.raises(DaemonUnreachable) as info:
        APIClient(host).get("/info")
    assert str(info.value) == (
        f"Cannot connect to the dockyard daemon at {host}. Is the dockyard daemon running?"
    )
    with pytest.raises(DaemonUnreachable, match="Cannot connect"):
        APIClient(host).hijack("POST", "/containers/x/attach")


def test_daemon_unreachable_refused_tcp() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(DaemonUnreachable) as info:
        APIClient(f"tcp://127.0.0.1:{port}").get("/info")
    assert str(info.value) == (
        f"Cannot connect to the dockyard daemon at tcp://127.0.0.1:{port}. "
        "Is the dockyard daemon running?"
    )


def test_host_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")  # deliberately ignored
    assert APIClient().host == DEFAULT_HOST == "unix:///run/dockyard/dockyard.sock"
    monkeypatch.setenv("DOCKYARD_HOST", "tcp://127.0.0.1:2376")
    assert APIClient().address == ("127.0.0.1", 2376)
    assert APIClient("unix:///x.sock").address == "/x.sock"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("unix:///run/d.sock", ("unix", "/run/d.sock", "unix:///run/d.sock", "")),
        ("/run/d.sock", ("unix", "/run/d.sock", "unix:///run/d.sock", "")),
        ("tcp://127.0.0.1:2375", ("tcp", ("127.0.0.1", 2375), "tcp://127.0.0.1:2375", "")),
        (
            "http://localhost:8080/base/",
            ("tcp", ("localhost", 8080), "http://localhost:8080/base/", "/base"),
        ),
        ("tcp://[::1]:99", ("tcp", ("::1", 99), "tcp://[::1]:99", "")),
        ("tcp://example", ("tcp", ("example", 2375), "tcp://example", "")),
    ],
)
def test_parse_host(host: str, expected: tuple[Any, ...]) -> None:
    assert parse_host(host) == expected


@pytest.mark.parametrize("host", ["ssh://x", "unix://", "tcp://h:99999", "nonsense"])
def test_parse_host_errors(host: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_host(host)


def test_url_building() -> None:
    c = APIClient("tcp://h:1/base")
    assert c.url("/containers/json", {"all": True}) == "/base/v1.51/containers/json?all=1"
    assert c.url("/v1.24/version") == "/base/v1.24/version"
    assert quote("a b/c:d") == "a%20b%2Fc%3Ad"
    assert quote("a/b", safe="/") == "a/b"
    assert encode_params({"a": [True, None, "x"], "b": {}}) == "a=1&a=x&b=%7B%7D"


# ----------------------------------------------------------------- streaming


def test_iter_json_across_chunk_boundaries(client: APIClient) -> None:
    resp = client.get("/events", stream=True)
    items = list(resp.iter_json())
    assert [m["id"] for m in items] == list(range(20))
    assert all(m["status"] == "caf\u00e9 \u2603" and m["nested"]["a"] == [1, "}{"] for m in items)
    # fully consumed: connection goes back for reuse
    assert client.get("/_ping").text() == "OK"


def test_iter_json_yields_as_values_arrive(client: APIClient, server: AioServer) -> None:
    with client.get("/slow-events", stream=True) as resp:
        it = resp.iter_json()
        assert next(it) == {"status": "first"}
        server.release.set()
        assert next(it) == {"status": "second", "released": True}
        assert list(it) == []


def test_iter_chunks_and_early_close(client: APIClient) -> None:
    resp = client.get("/big", stream=True)
    first = next(resp.iter_chunks(1024))
    assert first.startswith(b'{"data"')
    resp.close()  # abandoned: its connection is dropped, a new one serves next
    assert client.get("/_ping").text() == "OK"


def test_concurrent_stream_and_request(client: APIClient, server: AioServer) -> None:
    with client.get("/slow-events", stream=True) as resp:
        it = resp.iter_json()
        assert next(it)["status"] == "first"
        # while the stream holds its connection, another call opens a second one
        assert client.get("/_ping").text() == "OK"
        server.release.set()
        assert next(it)["status"] == "second"


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1}{"b":"x\\"}{"}\n[1,2]\n"str"  12 true null {"c":{"d":[{}]}}',
        '\n\n{"p":"\\\\"}\r\n{"q":"\\u00e9"}',
    ],
)
def test_json_splitter_every_split_point(text: str) -> None:
    whole = _JSONSplitter()
    expected = whole.feed(text) + whole.finish()
    assert [json.loads(v) for v in expected]  # all valid
    for cut in range(len(text) + 1):
        for cut2 in range(cut, len(text) + 1, 5):
            s = _JSONSplitter()
            got = s.feed(text[:cut]) + s.feed(text[cut:cut2]) + s.feed(text[cut2:]) + s.finish()
            assert got == expected, (cut, cut2)


def test_json_splitter_truncated() -> None:
    s = _JSONSplitter()
    assert s.feed('{"a": [1, 2') == []
    with pytest.raises(ProtocolError, match="truncated"):
        s.finish()


# ------------------------------------------------------------------- uploads


class CountingReader:
    """A file wrapper recording read sizes, to show the body is streamed."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.sizes: list[int] = []

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sizes.append(len(data))
        return data


def test_chunked_upload_from_file(client: APIClient, short_tmp: Path) -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)
    path = short_tmp / "layer.tar"
    path.write_bytes(data)
    with open(path, "rb", buffering=0) as f:
        reader = CountingReader(f)
        resp = client.post_stream("/upload", reader, "application/x-tar", stream=False)
    doc = resp.json()
    assert doc["size"] == len(data)
    assert doc["sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["te"] == "chunked"
    assert doc["cl"] is None
    assert doc["ct"] == "application/x-tar"
    assert max(reader.sizes) <= 64 * 1024 and len(reader.sizes) > 50


def test_chunked_upload_from_pipe(client: APIClient) -> None:
    r, w = os.pipe()
    data = os.urandom(777_777)

    def feed() -> None:
        with os.fdopen(w, "wb") as out:
            for k in range(0, len(data), 10_000):
                out.write(data[k : k + 10_000])

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(r, "rb") as stdin_like:
        doc = client.post_stream("/upload", stdin_like, "application/octet-stream").json()
    t.join()
    assert doc["size"] == len(data)
    assert doc["sha256"] == hashlib.sha256(data).hexdigest()


def test_upload_rejected_early(client: APIClient, short_tmp: Path) -> None:
    path = short_tmp / "big.bin"
    path.write_bytes(b"\0" * (8 * 1024 * 1024))
    with open(path, "rb") as f, pytest.raises(APIError) as info:
        client.post_stream("/reject", f, "application/x-tar")
    assert (info.value.status, info.value.message) == (400, "bad tarball")


# ------------------------------------------------------------------- hijack


class UpgradeServer:
    """Answers an upgrade request with 101, sends a greeting in the same packet
    as the response head, then echoes every byte back until EOF."""

    def __init__(self, path: str, status_line: bytes = b"HTTP/1.1 101 UPGRADED") -> None:
        self.path = path
        self.status_line = status_line
        self.request = b""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            while b"\r\n\r\n" not in self.request:
                self.request += conn.recv(4096)
            head, _, body = self.request.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(body) < length:
                body += conn.recv(4096)
            self.body = body
            if not self.status_line.startswith(b"HTTP/1.1 101"):
                msg = b'{"message":"No such container: x"}'
                conn.sendall(
                    self.status_line
                    + b"\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(msg)).encode()
                    + b"\r\n\r\n"
                    + msg
                )
                return
            conn.sendall(
                self.status_line + b"\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\nhello "
            )
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def test_hijack_upgrade_and_echo(short_tmp: Path) -> None:
    srv = UpgradeServer(str(short_tmp / "h.sock"))
    try:
        c = APIClient(f"unix://{srv.path}")
        sock, status, headers = c.hijack_response(
            "POST",
            "/containers/abc/attach",
            params={"stream": True, "stdin": True, "stdout": True},
            body={"Detach": False},
        )
        assert status == 101
        assert headers["content-type"] == "application/vnd.docker.raw-stream"
        with sock:
            # the greeting arrived with the 101 head and must not be lost
            got = b""
            while len(got) < 6:
                got += sock.recv(100)
            assert got == b"hello "
            sock.sendall(b"ping\n")
            echoed = b""
            while len(echoed) < 5:
                echoed += sock.recv(100)
            assert echoed == b"ping\n"
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == b""
        head = srv.request.split(b"\r\n\r\n")[0].decode()
        assert head.startswith(
            "POST /v1.51/containers/abc/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\n"
        )
        assert "\r\nConnection: Upgrade\r\n" in head
        assert "\r\nUpgrade: tcp\r\n" in head
        assert "\r\nContent-Type: application/json\r\n" in head
        assert json.loads(srv.body) == {"Detach": False}
    finally:
        srv.close()


def test_hijack_error_response(short_tmp: Path) -> None:
    srv = UpgradeServer(str(short_tmp / "e.sock"), b"HTTP/1.1 404 Not Found")
    try:
        with pytest.raises(APIError) as info:
            APIClient(srv.path).hijack("POST", "/containers/x/attach")
        assert (info.value.status, info.value.message) == (404, "No such container: x")
    finally:
        srv.close()


# ------------------------------------------------- the HTTP/1.1 layer, on the wire
#
# A scripted peer: each accepted connection runs a handler that reads requests and
# writes exact bytes, pausing on events the test sets once the client has shown
# what it received, so "delivered as soon as it arrives" is checked, not timed.
# Clients get a timeout: a client that waited for bytes never sent fails fast.

WAIT = 10


class Peer:
    """The server side of one connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.f = sock.makefile("rb")
        self.chunk_sizes: list[int] = []

    def request(self) -> tuple[str, dict[str, str], bytes] | None:
        """(request line, headers with lower-cased names, body), None at EOF."""
        line = self.f.readline()
        if not line:
            return None
        headers: dict[str, str] = {}
        while (h := self.f.readline()) not in (b"\r\n", b""):
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        body = b""
        if headers.get("transfer-encoding") == "chunked":
            while size := int(self.f.readline().split(b";")[0], 16):
                self.chunk_sizes.append(size)
                body += self.f.read(size)
                assert self.f.read(2) == b"\r\n"
            assert self.f.readline() == b"\r\n"  # no trailers
        elif "content-length" in headers:
            body = self.f.read(int(headers["content-length"]))
        return line.decode("latin-1").rstrip("\r\n"), headers, body

    def send(self, *pieces: bytes, pause: float = 0.0) -> None:
        for p in pieces:
            self.sock.sendall(p)
            if pause:
                time.sleep(pause)


class RawServer:
    """Serves handler(peer, n) for the n-th accepted connection (from 0), each in
    its own thread, on a unix socket (or TCP on 127.0.0.1 when path is None)."""

    def __init__(self, path: str | None, handler: Any) -> None:
        self.handler = handler
        self.requests: list[tuple[int, str, dict[str, str], bytes]] = []
        self.errors: list[BaseException] = []
        self.closed: list[threading.Event] = []
        if path is None:
            self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.lsock.bind(("127.0.0.1", 0))
            self.host = f"tcp://127.0.0.1:{self.lsock.getsockname()[1]}"
        else:
            self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.lsock.bind(path)
            self.host = f"unix://{path}"
        self.lsock.listen(8)
        self.lsock.settimeout(0.1)
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def accepted(self) -> int:
        return len(self.closed)

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            done = threading.Event()
            n = len(self.closed)
            self.closed.append(done)
            t = threading.Thread(target=self._serve, args=(conn, n, done), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, n: int, done: threading.Event) -> None:
        peer = Peer(conn)
        try:
            self.handler(peer, n)
        except BaseException as e:  # reported at teardown
            self.errors.append(e)
        finally:
            peer.f.close()
            conn.close()
            done.set()

    def client(self, timeout: float = WAIT) -> APIClient:
        return APIClient(self.host, timeout=timeout)

    def close(self) -> None:
        self._stop = True
        self._acceptor.join(5)
        self.lsock.close()
        for t in self._threads:
            t.join(WAIT)


@pytest.fixture
def raw(short_tmp: Path) -> Iterator[Any]:
    servers: list[RawServer] = []

    def start(handler: Any, tcp: bool = False) -> RawServer:
        srv = RawServer(None if tcp else str(short_tmp / f"raw{len(servers)}.sock"), handler)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()
    for srv in servers:
        assert not srv.errors, srv.errors


def serve_requests(peer: Peer, n: int, srv_requests: list[Any], answer: Any) -> None:
    """Answer every request on the connection with answer(request) until EOF."""
    while (req := peer.request()) is not None:
        srv_requests.append((n, *req))
        peer.send(answer(req))


def ok(body: bytes = b"OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def _events(k: int) -> list[threading.Event]:
    return [threading.Event() for _ in range(k)]


@pytest.mark.parametrize("tcp", [False, True])
def test_raw_chunked_stream_delivers_each_piece_at_once(raw: Any, tcp: bool) -> None:
    ev = _events(3)
    reqs: list[Any] = []

    def handler(peer: Peer, n: int) -> None:
        req = peer.request()
        reqs.append(req)
        peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n5\r\nhel")
        assert ev[0].wait(WAIT), "client never saw the first bytes of a chunk"
        peer.send(b"lo\r\n")
        assert ev[1].wait(WAIT), "client never saw the end of the chunk"
        peer.send(b"3;name=value\r\n", b"abc\r\n", pause=0.05)  # size line, data later
        assert ev[2].wait(WAIT)
        peer.send(b"0\r\nX-Trailer: yes\r\n", b"\r\n", pause=0.05)
        serve_requests(peer, n, reqs, lambda req: ok())

    srv = raw(handler, tcp=tcp)
    with srv.client() as c:
        resp = c.get("/events", stream=True)
        assert resp.headers.get("transfer-encoding") == "chunked"
        it = resp.iter_chunks()
        assert next(it) == b"hel"
        ev[0].set()
        assert next(it) == b"lo"
        ev[1].set()
        assert next(it) == b"abc"
        ev[2].set()
        assert list(it) == []  # terminating chunk and trailers consumed
        assert c.get("/_ping").text() == "OK"  # and the connection reused
    assert srv.accepted == 1
    line, headers, _ = reqs[0]
    assert line == "GET /v1.51/events HTTP/1.1"
    if tcp:
        assert headers["host"] == srv.host.removeprefix("tcp://")
    else:
        assert headers["host"] == "localhost"


def test_raw_content_length_body_in_pieces(raw: Any) -> None:
    ev = _events(1)
    body = b'{"data": "' + b"x" * 200_000 + b'"}'

    def handler(peer: Peer, n: int) -> None:
        peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        peer.send(body[:10])
        assert ev[0].wait(WAIT)
        peer.send(body[10:1000], body[1000:], pause=0.02)
        peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", b"cde", pause=0.02)
        serve_requests(peer, n, [], lambda req: ok())

    srv = raw(handler)
    with srv.client() as c:
        resp = c.get("/big", stream=True)
        it = resp.iter_chunks()
        assert next(it) == body[:10]  # not held back to fill a block
        ev[0].set()
        assert body[:10] + b"".join(it) == body
        assert c.get("/again").read() == b"abcde"
        assert c.get("/_ping").read() == b"OK"
    assert srv.accepted == 1


def test_raw_no_body_statuses_and_head_keep_the_connection(raw: Any) -> None:
    answers = {
        "/v1.51/a/start": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
        "/v1.51/b": b"HTTP/1.1 204 No Content\r\n\r\n",
        "/v1.51/_ping": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nApi-Version: 1.51\r\n\r\n",
        "/v1.51/c": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n" + ok(b"after 1xx"),
    }
    reqs: list[Any] = []
    srv = raw(lambda peer, n: serve_requests(peer, n, reqs, lambda req: answers[req[0].split()[1]]))
    with srv.client() as c:
        assert c.post("/a/start").status == 304
        assert c.delete("/b").status == 204
        resp = c.head("/_ping")
        assert (resp.status, resp.read(), resp.headers["API-VERSION"]) == (200, b"", "1.51")
        assert c.get("/c").read() == b"after 1xx"
        assert c.post("/a/start", stream=True).read() == b""
    assert srv.accepted == 1
    assert [r[1].split()[0] for r in reqs] == ["POST", "DELETE", "HEAD", "GET", "POST"]
    assert reqs[0][2]["content-length"] == "0"  # a POST without a body says so
    assert "content-length" not in reqs[1][2]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nOK",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nO",  # body runs to EOF
    ],
    ids=["connection-close", "http-1.0", "until-close"],
)
def test_raw_connection_not_reused_when_the_response_says_so(raw: Any, answer: bytes) -> None:
    ev = _events(1)

    def handler(peer: Peer, n: int) -> None:
        peer.request()
        peer.send(answer)
        if answer.endswith(b"O"):
            if n == 0:
                assert ev[0].wait(WAIT)
                peer.send(b"K")
            return  # EOF ends the body
        # the client must not send another request on this connection
        assert peer.request() is None

    srv = raw(handler)
    with srv.client() as c:
        resp = c.get("/x", stream=True)
        it = resp.iter_chunks()
        assert next(it) == (b"O" if answer.endswith(b"O") else b"OK")
        ev[0].set()
        assert b"".join(it) in (b"K", b"")
        assert c._idle is None
        resp2 = c.get("/x", stream=True)
        assert resp2.status == 200
        resp2.close()
    assert srv.accepted == 2


def test_raw_http10_keep_alive_is_honoured(raw: Any) -> None:
    srv = raw(lambda peer, n: serve_requests(
        peer, n, [], lambda req: b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nOK"))
    with srv.client() as c:
        assert [c.get("/x").text() for _ in range(3)] == ["OK"] * 3
    assert srv.accepted == 1


def test_raw_headers_are_case_insensitive_and_repeatable(raw: Any) -> None:
    srv = raw(lambda peer, n: serve_requests(
        peer, n, [], lambda req: ok(extra=b"X-Thing: one\r\nx-thing: two\r\nX-Folded: a\r\n  b\r\n")))
    with srv.client() as c:
        h = c.get("/x").headers
    assert h.get("x-THING") == "one" and h["X-Thing"] == "one"
    assert h.get_all("X-THING") == ["one", "two"]
    assert h["missing"] is None and h.get("missing", "d") == "d" and "missing" not in h
    assert "content-length" in h and h["Content-Length"] == "2"
    assert h.get("x-folded") == "a b"
    assert list(h)[0] == "Content-Length" and len(h) == 4


@pytest.mark.parametrize("chunked", [False, True])
def test_raw_connection_closed_mid_body(raw: Any, chunked: bool) -> None:
    def handler(peer: Peer, n: int) -> None:
        if n:
            serve_requests(peer, n, [], lambda req: ok())
            return
        peer.request()
        if chunked:
            peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n8\r\npart")
        else:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        # returning closes the connection mid-body

    srv = raw(handler)
    with srv.client() as c:
        with pytest.raises(DaemonUnreachable, match="^error reading response from the daemon: "):
            c.get("/x")
        assert c.get("/_ping").text() == "OK"  # a fresh connection serves the next call
        srv2 = raw(handler)
    with srv2.client() as c:
        got = b""
        with pytest.raises(DaemonUnreachable, match="error reading response"), c.get("/x", stream=True) as resp:
            for chunk in resp.iter_chunks():
                got += chunk
        assert got == (b"hellopart" if chunked else b"0123456789")
        assert c._idle is None


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"garbage\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/2 200\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nhi\r\n0\r\n\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXY\r\n0\r\n\r\n", "no CRLF"),
        (b"HTTP/1.1 200 OK\r\nX-Junk: " + b"j" * 70_000, "too large"),
    ],
    ids=["not-http", "bad-status", "http2", "header-line", "two-lengths", "negative-length",
         "chunk-size", "chunk-size-0x", "chunk-crlf", "huge-head"],
)
def test_raw_garbage_is_a_protocol_error(raw: Any, answer: bytes, match: str) -> None:
    def handler(peer: Peer, n: int) -> None:
        if n:
            serve_requests(peer, n, [], lambda req: ok())
            return
        peer.request()
        peer.send(answer)
        peer.request()  # until the client hangs up

    srv = raw(handler)
    with srv.client() as c:
        with pytest.raises(ProtocolError, match=match):
            c.get("/x")
        assert c.get("/_ping").text() == "OK"  # the broken connection was dropped
    assert srv.accepted == 2


def test_raw_idle_connection_closed_by_daemon_is_replaced(raw: Any) -> None:
    reqs: list[Any] = []

    def handler(peer: Peer, n: int) -> None:
        req = peer.request()
        reqs.append((n, req))
        peer.send(ok())  # keep-alive by default, but then the daemon hangs up
        if n:
            serve_requests(peer, n, reqs, lambda req: ok())

    srv = raw(handler)
    with srv.client() as c:
        assert c.get("/one").text() == "OK"
        assert srv.closed[0].wait(WAIT)
        assert c.post("/two", body={"a": 1}).text() == "OK"  # not sent into the dead socket
    assert [(n, req[0]) for n, req in reqs] == [(0, "GET /v1.51/one HTTP/1.1"), (1, "POST /v1.51/two HTTP/1.1")]


def test_raw_request_on_stale_connection_is_retried_once(raw: Any) -> None:
    seen: list[Any] = []

    def handler(peer: Peer, n: int) -> None:
        seen.append((n, peer.request()[0]))
        if n == 0:
            peer.send(ok())
            seen.append((n, peer.request()[0]))  # taken, then the connection drops unanswered
        else:
            peer.send(ok(b"second"))

    srv = raw(handler)
    with srv.client() as c:
        assert c.get("/one").text() == "OK"
        assert c.get("/two").text() == "second"
    assert seen == [(0, "GET /v1.51/one HTTP/1.1"), (0, "GET /v1.51/two HTTP/1.1"),
                    (1, "GET /v1.51/two HTTP/1.1")]


def test_raw_fresh_connection_closed_without_answer(raw: Any) -> None:
    srv = raw(lambda peer, n: peer.request())
    with pytest.raises(DaemonUnreachable) as info:
        srv.client().get("/x")
    assert str(info.value) == (
        "error during connect: GET /v1.51/x: Remote end closed connection without response"
    )
    assert srv.accepted == 1  # a new connection is not retried


def test_raw_timeout(raw: Any) -> None:
    release = threading.Event()

    def handler(peer: Peer, n: int) -> None:
        peer.request()
        release.wait(WAIT)

    srv = raw(handler)
    t = time.monotonic()
    with pytest.raises(DaemonUnreachable, match="timed out"):
        srv.client(timeout=0.3).get("/x")
    assert time.monotonic() - t < 5
    release.set()


def test_raw_request_wire_format(raw: Any) -> None:
    reqs: list[Any] = []
    srv = raw(lambda peer, n: serve_requests(peer, n, reqs, lambda req: ok()))
    with srv.client() as c:
        c.post("/containers/create", params={"name": "x y"}, body={"Image": "busybox"},
               headers={"X-Registry-Auth": "abc"})
        c.get("/images/caf\u00e9/json")
        c.put("/raw", body=b"\x00\x01")
        c.post("/text", body="t\u00e9xt")
    assert srv.accepted == 1
    (_, line, h, body), (_, line2, h2, _), (_, _, h3, body3), (_, _, h4, body4) = reqs
    assert line == "POST /v1.51/containers/create?name=x%20y HTTP/1.1"
    assert h["content-type"] == "application/json" and json.loads(body) == {"Image": "busybox"}
    assert h["content-length"] == str(len(body)) and h["x-registry-auth"] == "abc"
    assert h["user-agent"].startswith("dockyard-cli/") and h["host"] == "localhost"
    assert line2 == "GET /v1.51/images/caf%C3%A9/json HTTP/1.1" and "content-length" not in h2
    assert (h3["content-length"], body3) == ("2", b"\x00\x01")
    assert body4 == "t\u00e9xt".encode()


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/images/a b", None), ("/images/a\r\nX: y", None), ("/x", {"X-Bad": "a\r\nInjected: 1"})],
)
def test_request_injection_is_refused(path: str, headers: Any) -> None:
    # refused before connecting: no daemon needed
    with pytest.raises(InvalidArgument):
        APIClient("unix:///nonexistent/d.sock").get(path, headers=headers)


def test_raw_chunked_upload_framing(raw: Any) -> None:
    reqs: list[Any] = []
    peers: list[Peer] = []

    def handler(peer: Peer, n: int) -> None:
        peers.append(peer)
        serve_requests(peer, n, reqs, lambda req: ok(b'{"ok":true}'))

    srv = raw(handler)
    data = os.urandom(150_000)
    with srv.client() as c:
        assert c.get("/_ping").json() == {"ok": True}
        resp = c.post_stream("/images/load", io.BytesIO(data), "application/x-tar", params={"quiet": 1})
        assert list(resp.iter_json()) == [{"ok": True}]
        assert c.post("/gen", body=iter([b"a", b"", "bc"])).json() == {"ok": True}
    # the upload got its own connection (a stale keep-alive one can't fail halfway)
    assert srv.accepted >= 2
    line, h, body = reqs[1][1:]
    assert line == "POST /v1.51/images/load?quiet=1 HTTP/1.1"
    assert h["transfer-encoding"] == "chunked" and "content-length" not in h
    assert h["content-type"] == "application/x-tar"
    assert body == data
    assert peers[reqs[1][0]].chunk_sizes == [65536, 65536, 150_000 - 2 * 65536]
    assert reqs[2][3] == b"abc" and peers[reqs[2][0]].chunk_sizes[-2:] == [1, 2]


def test_raw_upload_rejected_before_the_body_is_read(raw: Any) -> None:
    def handler(peer: Peer, n: int) -> None:
        f = peer.f
        while f.readline() not in (b"\r\n", b""):
            pass
        msg = b'{"message":"bad tarball"}'
        peer.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(msg), msg))
        peer.sock.shutdown(socket.SHUT_WR)

    srv = raw(handler)
    big = io.BytesIO(b"\0" * (16 << 20))
    with pytest.raises(APIError) as info, srv.client() as c:
        c.post_stream("/images/load", big, "application/x-tar")
    assert (info.value.status, info.value.message) == (400, "bad tarball")


def test_raw_hijack_head_in_pieces(raw: Any) -> None:
    def handler(peer: Peer, n: int) -> None:
        line, headers, body = peer.request()
        assert headers["connection"] == "Upgrade" and headers["upgrade"] == "tcp"
        assert json.loads(body) == {"Tty": True}
        peer.send(b"HTTP/1.1 101 UPGRA", b"DED\r\nContent-Type: application/vnd.docker.raw-stream\r",
                  b"\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r", b"\nhello", pause=0.02)
        while data := peer.sock.recv(100):
            peer.sock.sendall(data.upper())

    srv = raw(handler)
    sock, status, headers = srv.client().hijack_response("POST", "/exec/e1/start", body={"Tty": True})
    assert isinstance(sock, socket.socket)
    with sock:
        got = b""
        while len(got) < 5:
            got += sock.recv(100)
        assert got == b"hello"  # stream bytes behind the head stay in the socket
        sock.sendall(b"abc")
        assert sock.recv(100) == b"ABC"
    assert status == 101
    assert headers == {"content-type": "application/vnd.docker.raw-stream",
                       "connection": "Upgrade", "upgrade": "tcp"}


def test_raw_hijack_chunked_error(raw: Any) -> None:
    def handler(peer: Peer, n: int) -> None:
        peer.request()
        peer.send(b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n",
                  b'1c\r\n{"message":"is no', b't running"}\r\n0\r\n\r\n')
        peer.request()

    srv = raw(handler)
    with pytest.raises(APIError) as info:
        srv.client().hijack("POST", "/containers/x/attach")
    assert (info.value.status, info.value.message) == (409, "is not running")


def test_import_and_requests_load_no_heavy_modules(raw: Any) -> None:
    srv = raw(lambda peer, n: serve_requests(
        peer, n, [], lambda req: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{}\n\r\n0\r\n\r\n"))
    root = str(Path(__file__).resolve().parents[2])
    code = (
        f"import sys; sys.path.insert(0, {root!r})\n"
        "import dockyard.cli.client as c\n"
        f"cl = c.APIClient({srv.host!r})\n"
        "at_import = set(sys.modules)\n"
        "assert list(cl.get('/x', stream=True).iter_json()) == [{}]\n"
        "assert cl.get('/x').json() == {}\n"
        "heavy = ('http', 'http.client', 'email', 'ssl', 'socket', 'typing', 'urllib', 're', 'json')\n"
        "print([m for m in heavy if m in at_import], [m for m in heavy if m in sys.modules])\n"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # JSON through dockyard.jsonc (the C _json alone); re only for the stream splitter
    assert out.stdout.split("\n")[0] == "[] ['re']"


def test_raw_upload_source_error_is_not_a_hang(raw: Any) -> None:
    class Failing:
        def __init__(self) -> None:
            self.calls = 0

        def read(self, n: int) -> bytes:
            self.calls += 1
            if self.calls > 1:
                raise OSError(5, "Input/output error")
            return b"x" * 100

    def handler(peer: Peer, n: int) -> None:
        while peer.sock.recv(65536):  # the client hangs up, with no response sent
            pass

    srv = raw(handler)
    with pytest.raises(OSError, match="Input/output error"), srv.client() as c:
        c.post_stream("/build", Failing(), "application/x-tar")
    deadline = time.monotonic() + WAIT
    while not srv.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.closed[0].wait(WAIT)  # the connection was dropped
