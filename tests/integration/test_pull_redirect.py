"""Registries on object storage answer blob requests with a redirect to a CDN or a signed URL
(Docker Hub, Quay, ECR do). docker-registry's redirect middleware does the same, pointing at
a plain file server here: pulls and pushes follow the redirects, and the registry's
credentials never go to the redirect's host."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon
from tests.fixtures.clients import unique
from tests.fixtures.registry import REGISTRY_BIN, LocalRegistry, push_fresh_image, start_registry
from tests.fixtures.tokenserver import TokenServer

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root"),
    pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry is not installed (apt install docker-registry)"),
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]


class FileServer:
    """The "CDN": serves the registry's storage directory; records each request's line and
    whether it carried an Authorization header."""

    def __init__(self, directory: Path) -> None:
        self.requests: list[tuple[str, bool]] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                server.requests.append((self.requestline, "Authorization" in self.headers))

        handler = functools.partial(Handler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def redirecting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRegistry, FileServer]]:
    root = tmp_path_factory.mktemp("redirecting")
    (root / "reg" / "data").mkdir(parents=True)
    files = FileServer(root / "reg" / "data")
    try:
        with TokenServer({"dora": "explorer"}, directory=root / "tokens") as tokens:
            for reg in start_registry(root / "reg", token=tokens, redirect=files.url + "/"):
                yield reg, files
    finally:
        files.close()


def test_pull_and_push_follow_blob_redirects(cli: Daemon, redirecting: tuple[LocalRegistry, FileServer],
                                             tmp_path: Path) -> None:
    reg, files = redirecting
    name = f"{reg.host}/dora/{unique('cdn')}:v1"
    cli.cli("save", "-o", str(tmp_path / "bb.tar"), "busybox:latest")
    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", "--dest-creds", "dora:explorer",
                    f"docker-archive:{tmp_path / 'bb.tar'}", f"docker://{name}"], check=True)
    files.requests.clear()
    cli.cli("rmi", "-f", name, check=False)
    # a blob the daemon lacks: pull a fresh layer through the redirect
    fresh = f"{reg.host}/dora/{unique('fresh')}:v1"
    push_fresh_image(cli, fresh, tmp_path, "dora:explorer")
    files.requests.clear()
    out = cli.cli("pull", fresh).stdout  # anonymous: the realm grants pulls
    assert out.splitlines()[-1] == fresh
    gets = [line for line, _ in files.requests if line.startswith("GET /docker/registry/v2/blobs/")]
    assert gets, files.requests  # the blobs came from the file server
    assert not any(auth for _, auth in files.requests)  # without the registry's credentials
    cli.cli("pull", name)
    assert cli.cli("run", "--rm", name, "echo", "via the cdn").stdout == "via the cdn\n"
    # a push's HEAD checks are redirected too: the layers are there already
    cli.cli("login", "-u", "dora", "--password-stdin", reg.host, input=b"explorer\n")
    target = f"{reg.host}/dora/{unique('again')}:v1"
    cli.cli("tag", name, target)
    pushed = cli.cli("push", target).stdout
    assert ": Pushed" not in pushed, pushed
    cli.cli("logout", reg.host)
    cli.cli("rmi", name, target, fresh)
