"""docker-compose (Debian's 1.29, a real compose client) against dockyardd: a project with two
services on its own networks — one reaching the other by service name through the embedded
DNS, a published port reached from the host — brought up and down, leaving no container
and no network behind."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import Daemon

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("docker-compose") is None,
                                 reason="docker-compose is not installed (apt install docker-compose)")]

COMPOSE = """\
version: "3.8"
services:
  db:
    image: busybox:latest
    command: ["httpd", "-f", "-p", "80", "-h", "/etc"]
    hostname: dbhost
    ports:
      - "{port}:80"
  web:
    image: busybox:latest
    command: ["sh", "-c", "while true; do sleep 1; done"]
    depends_on: [db]
    networks: [default, back]
networks:
  back: {{}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def test_compose_up_and_down(cli: Daemon, tmp_path: Path) -> None:
    project = "dy" + uuid.uuid4().hex[:8]
    port = _free_port()
    (tmp_path / "docker-compose.yml").write_text(COMPOSE.format(port=port))
    env = {**cli.env, "DOCKER_HOST": cli.host}

    def compose(*args: str) -> subprocess.CompletedProcess:
        res = subprocess.run(["docker-compose", "-p", project, *args], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=180)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res

    try:
        compose("up", "-d")
        ps = compose("ps").stdout
        assert f"{project}_db_1" in ps and f"{project}_web_1" in ps and f"0.0.0.0:{port}->80/tcp" in ps, ps
        out = compose("exec", "-T", "web", "sh", "-c",
                      "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 5 db 80; ip -4 -o addr").stdout
        assert "dbhost" in out and "eth1" in out, out  # by service name; on both networks
        nets = cli.cli("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert f"{project}_default" in nets and f"{project}_back" in nets
        # db's port is published on the host: its httpd answers there
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                    conn.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
                    reply = b""
                    while chunk := conn.recv(4096):
                        reply += chunk
                break
            except ConnectionRefusedError:  # httpd not listening yet: no event tells
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert reply.endswith(b"dbhost\n"), reply
        compose("down")
    finally:
        subprocess.run(["docker-compose", "-p", project, "down"], cwd=tmp_path, env=env, capture_output=True,
                       timeout=180)
    assert not [n for n in cli.cli("network", "ls", "--format", "{{.Name}}").stdout.split() if n.startswith(project)]
    assert project not in cli.cli("ps", "-a", "--format", "{{.Names}}").stdout
