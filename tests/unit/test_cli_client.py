"""APIClient against real HTTP servers on unix sockets: aiohttp for the API calls,
a plain socket server for the connection upgrade (hijack) used by attach/exec."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
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
