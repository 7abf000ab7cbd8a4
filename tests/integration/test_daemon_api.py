"""dockyardd's API surface: ping, version prefixes, error shapes, flags and config file."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Daemon, _stop_and_check, start_daemon


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def call(d: Daemon, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = UnixConnection(d.socket)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("prefix", ["", "/v1.24", "/v1.44", "/v1.51"])
def test_ping(daemon: Daemon, method: str, prefix: str) -> None:
    status, headers, body = call(daemon, method, f"{prefix}/_ping")
    assert status == 200
    assert headers["api-version"] == "1.51"
    assert headers["ostype"] == "linux"
    assert headers["builder-version"] == "1"
    assert body == (b"OK" if method == "GET" else b"")


def test_version_and_info(daemon: Daemon) -> None:
    status, _, body = call(daemon, "GET", "/v1.51/version")
    doc = json.loads(body)
    assert status == 200 and doc["ApiVersion"] == "1.51" and doc["MinAPIVersion"] == "1.24"
    assert doc["Os"] == "linux" and doc["Components"][0]["Name"] == "Engine"
    status, _, body = call(daemon, "GET", "/info")
    info = json.loads(body)
    assert status == 200 and isinstance(info["Images"], int) and info["DockerRootDir"].endswith("/data")


@pytest.mark.parametrize("path,status,message", [
    ("/v1.99/version", 400, "client version 1.99 is too new. Maximum supported API version is 1.51"),
    ("/v1.12/version", 400, "client version 1.12 is too old. Minimum supported API version is 1.24"),
    ("/v1.51/nonsense", 404, "page not found"),
    ("/images/nosuch/json", 404, "No such image: nosuch:latest"),
    ("/images/Bad%20Name/json", 400, "invalid reference format"),
])
def test_errors_have_docker_shape(daemon: Daemon, path: str, status: int, message: str) -> None:
    got, headers, body = call(daemon, "GET", path)
    assert got == status
    assert headers["content-type"].startswith("application/json")
    assert message in json.loads(body)["message"]


def test_wrong_method(daemon: Daemon) -> None:
    got, _, body = call(daemon, "PUT", "/v1.51/images/json")
    assert got == 405 and json.loads(body)["message"] == "method not allowed"


def test_tcp_and_unix_hosts_together(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = start_daemon(tmp_path / "d", "-H", f"tcp://127.0.0.1:{port}")
    try:
        res = d.cli("version")
        assert "API version:       1.51" in res.stdout
        over_tcp = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H", f"tcp://127.0.0.1:{port}", "images", "-q"],
                                  capture_output=True, text=True, env=d.env, timeout=60)
        assert over_tcp.returncode == 0, over_tcp.stderr
    finally:
        _stop_and_check(d)


def _daemon_cmd(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dockyard.daemon.main", *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )


def test_config_file_conflicts_with_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"data-root": str(tmp_path / "a")}))
    res = _daemon_cmd(tmp_path, "--config-file", str(cfg), "--data-root", str(tmp_path / "b"))
    assert res.returncode == 1
    assert "specified both as a flag and in the configuration file: data-root" in res.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_config_file_unknown_key_and_bad_json(tmp_path: Path) -> None:
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"no-such-option": 1}))
    res = _daemon_cmd(tmp_path, "--config-file", str(cfg))
    assert res.returncode == 1 and "don't match any configuration option: no-such-option" in res.stderr
    cfg.write_text("{broken")
    res = _daemon_cmd(tmp_path, "--config-file", str(cfg))
    assert res.returncode == 1 and "unable to configure the Docker daemon with file" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_config_file_values_are_used(tmp_path: Path) -> None:
    root = tmp_path / "d"
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"data-root": str(root / "data"), "storage-driver": "native", "debug": True}))
    # start_daemon passes --data-root itself; this one takes it from the file alone
    sock = root / "exec" / "d.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard.daemon.main", "--config-file", str(cfg), "--exec-root", str(root / "exec"),
         "-H", f"unix://{sock}"], stderr=subprocess.PIPE, cwd=REPO,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if b"ready" in line:
                break
        daemon = Daemon(root=root, socket=str(sock), proc=proc, log=root / "none")
        daemon.env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
        info = json.loads(daemon.cli("info", "--format", "json").stdout)
        assert info["Driver"] == "native" and info["Debug"] is True
        assert info["DockerRootDir"] == str(root / "data")
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_pidfile_prevents_second_daemon(daemon: Daemon, tmp_path: Path) -> None:
    pidfile = Path(daemon.root) / "exec" / "dockyardd.pid"
    assert pidfile.read_text().strip() == str(daemon.proc.pid)
    res = _daemon_cmd(tmp_path, "--data-root", str(tmp_path / "x"), "--exec-root", str(Path(daemon.root) / "exec"),
                      "-H", f"unix://{tmp_path}/other.sock")
    assert res.returncode == 1
    assert "pid file found, ensure dockyardd is not running" in res.stderr
    # the running daemon is untouched
    assert daemon.cli("version").returncode == 0


def test_cli_finds_daemon_through_dockyard_host(daemon: Daemon) -> None:
    env = {**daemon.env, "DOCKYARD_HOST": daemon.host}
    res = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "version", "--format", "{{.Server.ApiVersion}}"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "1.51", res.stderr
    env["DOCKYARD_HOST"] = "unix:///nonexistent/dockyard.sock"
    res = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "images"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 1
    assert res.stderr.strip() == ("Cannot connect to the dockyard daemon at unix:///nonexistent/dockyard.sock. "
                                  "Is the dockyard daemon running?")
