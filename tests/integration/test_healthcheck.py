"""Healthchecks (issue 5, item 6): --health-cmd / -interval / -timeout / -retries /
-start-period / --no-healthcheck and an image's healthcheck; State.Health in inspect,
``(healthy)`` in ps, health_status events; the transitions healthy -> unhealthy -> healthy,
through the dockyard CLI, the docker CLI and docker-py."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable

import docker
import pytest

from tests.conftest import Daemon
from tests.fixtures.clients import CLIS, unique

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]

_FAST = ["--health-interval", "100ms", "--health-retries", "2", "--health-timeout", "2s"]


def _health(d: Daemon, name: str) -> dict:
    return json.loads(d.cli("inspect", "-f", "{{json .State.Health}}", name).stdout)


def _until(d: Daemon, name: str, ok: Callable[[dict], bool], timeout: float = 30) -> dict:
    """Poll State.Health until ``ok`` (a probe runs every 100 ms; each poll is one API call)."""
    deadline = time.monotonic() + timeout
    while True:
        h = _health(d, name)
        if h and ok(h):
            return h
        assert time.monotonic() < deadline, f"{name}: health still {h}"
        time.sleep(0.05)


@pytest.mark.parametrize("kind", CLIS)
def test_transitions(cli: Daemon, kind: str) -> None:
    run = cli.client(kind)
    name = unique("hc")
    t0 = f"{time.time():.3f}"
    run("run", "-d", "--name", name, "--health-cmd", "test -f /tmp/ok && echo fine", *_FAST,
        "busybox", "sh", "-c", "touch /tmp/ok; exec sleep 600")
    try:
        doc = json.loads(cli.cli("inspect", name).stdout)[0]
        assert doc["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "test -f /tmp/ok && echo fine"],
                                                "Interval": 100_000_000, "Timeout": 2_000_000_000, "Retries": 2}
        h = _until(cli, name, lambda h: h["Status"] == "healthy")
        assert h["FailingStreak"] == 0
        last = h["Log"][-1]
        assert last["ExitCode"] == 0 and last["Output"] == "fine\n" and last["Start"] <= last["End"]
        assert run("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout.rstrip().endswith("(healthy)")
        cli.cli("exec", name, "rm", "/tmp/ok")
        h = _until(cli, name, lambda h: h["Status"] == "unhealthy")
        assert h["FailingStreak"] >= 2 and h["Log"][-1]["ExitCode"] == 1 and len(h["Log"]) <= 5
        assert run("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout.rstrip().endswith("(unhealthy)")
        cli.cli("exec", name, "touch", "/tmp/ok")
        _until(cli, name, lambda h: h["Status"] == "healthy")
        events = cli.cli("events", "--since", t0, "--until", f"{time.time():.3f}", "--filter", f"container={name}",
                         "--filter", "event=health_status", "--format", "{{.Action}}").stdout.splitlines()
        assert events == ["health_status: healthy", "health_status: unhealthy", "health_status: healthy"]
    finally:
        cli.cli("rm", "-f", name)


def test_timeout_and_start_period(cli: Daemon) -> None:
    name = unique("slow")
    cli.cli("run", "-d", "--name", name, "--health-cmd", "sleep 5", "--health-interval", "100ms",
            "--health-timeout", "200ms", "--health-retries", "1", "--health-start-period", "1h",
            "busybox", "sleep", "600")
    try:
        h = _until(cli, name, lambda h: len(h["Log"]) >= 2)
        assert h["Log"][0]["ExitCode"] == -1 and h["Log"][0]["Output"] == "Health check exceeded timeout (0.2s)"
        assert h["Status"] == "starting" and h["FailingStreak"] == 0  # failures in the start period don't count
    finally:
        cli.cli("rm", "-f", name)


def test_image_healthcheck_and_no_healthcheck(cli: Daemon) -> None:
    src = unique("src")
    image = unique("healthy-image")
    cli.cli("run", "--name", src, "--health-cmd", "true", *_FAST, "busybox", "true")
    cli.cli("commit", src, image)  # the container's healthcheck goes into the image's config
    cli.cli("rm", src)
    a, b = unique("inherits"), unique("disabled")
    try:
        cli.cli("run", "-d", "--name", a, image, "sleep", "600")
        _until(cli, a, lambda h: h["Status"] == "healthy")
        cli.cli("run", "-d", "--name", b, "--no-healthcheck", image, "sleep", "600")
        assert json.loads(cli.cli("inspect", b).stdout)[0]["State"].get("Health") is None
        res = cli.cli("run", "--no-healthcheck", "--health-cmd", "true", "busybox", "true", check=False)
        assert res.returncode == 125 and "--no-healthcheck conflicts with --health-* options" in res.stderr
        res = cli.cli("run", "--health-interval", "10us", "busybox", "true", check=False)
        assert res.returncode == 125 and "Interval in Healthcheck cannot be less than 1ms" in res.stderr
    finally:
        cli.cli("rm", "-f", a, b, check=False)
        cli.cli("rmi", image)


def test_docker_py_healthcheck(cli: Daemon) -> None:
    client = docker.DockerClient(base_url=cli.host, timeout=60)
    name = unique("py")
    try:
        ct = client.containers.run("busybox", "sleep 600", detach=True, name=name,
                                   healthcheck={"test": ["CMD", "true"], "interval": 100_000_000, "retries": 2})
        _until(cli, name, lambda h: h["Status"] == "healthy")
        ct.reload()
        assert ct.attrs["State"]["Health"]["Status"] == "healthy"
        assert ct.health == "healthy"
        ct.remove(force=True)
    finally:
        client.close()
