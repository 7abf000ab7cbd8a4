"""The official docker CLI and docker-py on dockyardd: restart, pause/unpause, rename, top,
stats, events and ``ps -s``, with docker's output shapes and messages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]

TRAP = "trap 'exit 3' TERM; echo up; sleep 1000 & wait"


@pytest.fixture
def dk(daemon: Daemon, busybox_image: str) -> Iterator[Daemon]:
    before = set(daemon.docker("ps", "-aq", "--no-trunc", check=False).stdout.split())
    try:
        yield daemon
    finally:
        left = set(daemon.docker("ps", "-aq", "--no-trunc", check=False).stdout.split()) - before
        if left:
            daemon.docker("rm", "-f", *sorted(left), check=False)


def _name(prefix: str = "dl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _inspect(dk: Daemon, fmt: str, name: str) -> str:
    return dk.docker("inspect", "-f", fmt, name).stdout.strip()


def test_pause_unpause_restart_rename(dk: Daemon) -> None:
    a, b = _name(), _name()
    dk.docker("run", "-d", "--name", a, "busybox", "sh", "-c", TRAP)
    assert dk.docker("pause", a).stdout == f"{a}\n"
    assert _inspect(dk, "{{.State.Status}} {{.State.Paused}} {{.State.Running}}", a) == "paused true true"
    status = dk.docker("ps", "--filter", f"name={a}", "--format", "{{.Status}}").stdout.strip()
    assert re.fullmatch(r"Up .+ \(Paused\)", status), status
    cid = _inspect(dk, "{{.Id}}", a)
    res = dk.docker("pause", a, check=False)
    assert res.returncode == 1 and f"Container {cid} is already paused" in res.stderr
    assert dk.docker("unpause", a).stdout == f"{a}\n"
    res = dk.docker("unpause", a, check=False)
    assert res.returncode == 1 and f"Container {cid} is not paused" in res.stderr
    started = _inspect(dk, "{{.State.StartedAt}}", a)
    assert dk.docker("restart", "-t", "5", a).stdout == f"{a}\n"
    assert _inspect(dk, "{{.State.Status}}", a) == "running"
    assert _inspect(dk, "{{.State.StartedAt}}", a) > started
    dk.docker("rename", a, b)
    names = dk.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert b in names and a not in names
    res = dk.docker("rename", b, b, check=False)
    assert res.returncode == 1 and "Renaming a container with the same name as its current name" in res.stderr
    # a paused container stops (thawed for its stop signal: the trap's exit 3)
    dk.docker("pause", b)
    dk.docker("stop", "-t", "10", b)
    assert dk.docker("wait", b).stdout.strip() == "3"
    res = dk.docker("pause", b, check=False)
    assert res.returncode == 1 and f"Container {cid} is not running" in res.stderr
    dk.docker("rm", b)


def test_rm_force_of_paused(dk: Daemon) -> None:
    name = _name()
    dk.docker("run", "-d", "--name", name, "busybox", "sleep", "600")
    dk.docker("pause", name)
    res = dk.docker("rm", name, check=False)
    assert res.returncode == 1 and "You cannot remove a paused container" in res.stderr
    assert dk.docker("rm", "-f", name).stdout == f"{name}\n"
    assert name not in dk.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()


def test_top(dk: Daemon) -> None:
    name = _name()
    dk.docker("run", "-d", "--name", name, "busybox", "sh", "-c", "sleep 600 & exec sleep 700")
    deadline = time.monotonic() + 30
    while True:  # until both sleeps have been exec'd (no event says so)
        out = dk.docker("top", name).stdout
        if sorted(line.split(None, 7)[-1] for line in out.splitlines()[1:]) == ["sleep 600", "sleep 700"]:
            break
        assert time.monotonic() < deadline, out
    assert out.splitlines()[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert out.splitlines()[0].startswith("UID" + " " * 17 + "PID")  # docker's tabwriter: min width 20
    custom = dk.docker("top", name, "-o", "pid,comm").stdout.splitlines()
    assert custom[0].split() == ["PID", "COMMAND"] and [line.split()[1] for line in custom[1:]] == ["sleep", "sleep"]
    dk.docker("rm", "-f", name)
    res = dk.docker("top", name, check=False)
    assert res.returncode == 1 and f"No such container: {name}" in res.stderr


def test_stats_no_stream(dk: Daemon) -> None:
    busy, idle = _name(), _name()
    dk.docker("run", "-d", "--name", busy, "busybox", "sh", "-c", "while :; do :; done")
    dk.docker("create", "--name", idle, "busybox", "true")
    out = dk.docker("stats", "--no-stream", busy).stdout.splitlines()
    assert re.split(r"\s{2,}", out[0].strip()) == ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %",
                                                  "NET I/O", "BLOCK I/O", "PIDS"]
    fields = re.split(r"\s{2,}", out[1].strip())
    assert fields[1] == busy
    assert float(fields[2].rstrip("%")) > 20, out  # the busy loop, over two samples a second apart
    assert re.fullmatch(r"[\d.]+\w?i?B / [\d.]+\w?i?B", fields[3]), fields
    assert fields[-1] == "1"  # one process
    fmt = dk.docker("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.NetIO}}", busy, idle).stdout
    assert fmt.splitlines() == [f"{busy} 1 0B / 0B", f"{idle} 0 0B / 0B"]
    everything = dk.docker("stats", "--no-stream", "--all", "--format", "{{.Name}}").stdout.split()
    assert busy in everything and idle in everything
    running = dk.docker("stats", "--no-stream", "--format", "{{.Name}}").stdout.split()
    assert busy in running and idle not in running
    res = dk.docker("stats", "--no-stream", "nope-" + busy, check=False)
    assert res.returncode == 1 and "No such container" in res.stderr
    dk.docker("rm", "-f", busy, idle)


def test_stats_streamed(dk: Daemon) -> None:
    """docker stats keeps a container's row filled: it gives up on a container (and shows
    "--") when no record came for two seconds."""
    name = _name()
    dk.docker("run", "-d", "--name", name, "busybox", "sleep", "600")
    env = {**dk.env, "DOCKER_HOST": dk.host, "DOCKER_CONFIG": str(dk.root / "docker-config")}
    proc = subprocess.Popen([shutil.which("docker") or "docker", "stats", "--format", "{{.Name}} {{.PIDs}} {{.CPUPerc}}",
                             name], stdout=subprocess.PIPE, text=True, env=env)
    rows: list[str] = []
    try:
        assert proc.stdout is not None
        began = time.monotonic()
        while time.monotonic() - began < 4:  # redrawn twice a second: about eight frames
            line = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", proc.stdout.readline()).strip()
            if line:
                rows.append(line)
    finally:
        proc.kill()
        proc.wait()
    assert len(rows) >= 6 and all(re.fullmatch(rf"{name} 1 \d+\.\d\d%", r) for r in rows), rows
    dk.docker("rm", "-f", name)


def test_events_since_until(dk: Daemon) -> None:
    name = _name()
    t0 = f"{time.time():.3f}"
    dk.docker("run", "--rm", "--name", name, "--label", "dl.test=events", "busybox", "true")
    t1 = f"{time.time():.3f}"
    actions = dk.docker("events", "--since", t0, "--until", t1, "--filter", f"container={name}",
                        "--format", "{{.Action}}").stdout.split()
    assert actions == ["create", "attach", "start", "die", "destroy"]
    lines = dk.docker("events", "--since", t0, "--until", t1, "--filter", "event=die",
                      "--filter", f"container={name}").stdout.splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d) container die [0-9a-f]{64} "
                        rf"\(dl\.test=events, execDuration=\d+, exitCode=0, image=busybox, name={name}\)", lines[0]), lines
    # a relative time, as the CLI turns it into a timestamp (whole seconds: an "until" of "0s"
    # would end before the events of this very second, with docker too)
    recent = dk.docker("events", "--since", "10m", "--until", t1, "--filter", "label=dl.test=events",
                       "--filter", f"container={name}", "--format", "{{json .}}").stdout.splitlines()
    assert len(recent) == 5 and all('"Type":"container"' in line for line in recent)


def test_events_streamed(dk: Daemon) -> None:
    name = _name()
    env = {**dk.env, "DOCKER_HOST": dk.host, "DOCKER_CONFIG": str(dk.root / "docker-config")}
    # --since: whatever happens before the CLI has subscribed comes from the history
    proc = subprocess.Popen([shutil.which("docker") or "docker", "events", "--since", f"{time.time():.3f}",
                             "--filter", f"container={name}", "--format", "{{.Action}} {{.Actor.Attributes.name}}"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        dk.docker("run", "-d", "--name", name, "busybox", "sh", "-c", "exit 0")
        assert proc.stdout is not None
        seen = []
        while "die" not in (seen[-1].split()[0] if seen else ""):
            line = proc.stdout.readline()
            assert line, "docker events ended"
            seen.append(line.strip())
        assert seen == [f"create {name}", f"start {name}", f"die {name}"]
    finally:
        proc.kill()
        proc.wait()
    dk.docker("rm", name)


def test_ps_size(dk: Daemon) -> None:
    name = _name()
    dk.docker("run", "--name", name, "busybox", "sh", "-c", "head -c 2000 /dev/zero > /payload")
    out = dk.docker("ps", "-a", "-s", "--filter", f"name={name}").stdout.splitlines()
    assert out[0].rstrip().endswith("SIZE")
    assert re.search(r"2kB \(virtual [\d.]+MB\)$", out[1].rstrip()), out
    size_rw = dk.docker("inspect", "-s", "-f", "{{.SizeRw}}", name).stdout.strip()
    assert size_rw == "2000"
    dk.docker("rm", "-v", name)


def test_docker_py(dk: Daemon) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=dk.host, timeout=60)
    name, renamed = _name(), _name()
    t0 = time.time()
    ct = client.containers.create("busybox", ["sh", "-c", TRAP], name=name)
    # by ID: the rename event carries the new name
    events = client.events(decode=True, filters={"container": ct.id, "event": ["pause", "unpause", "rename"]})
    try:
        ct.start()
        ct.pause()
        ct.reload()
        assert ct.status == "paused"
        ct.unpause()
        ct.restart(timeout=5)
        ct.reload()
        assert ct.status == "running"
        ct.rename(renamed)
        ct.reload()
        assert ct.name == renamed
        top = ct.top()
        assert "PID" in top["Titles"] and top["Processes"]
        stats = ct.stats(stream=False)
        assert stats["name"] == "/" + renamed and stats["cpu_stats"]["cpu_usage"]["total_usage"] > 0
        assert stats["memory_stats"]["usage"] > 0
        got = [next(events)["Action"] for _ in range(3)]
        assert got == ["pause", "unpause", "rename"]
        ct.remove(force=True)
        history = list(client.events(since=t0, until=time.time(), filters={"container": ct.id}, decode=True))
        assert [e["Action"] for e in history][-3:] == ["kill", "die", "destroy"]
    finally:
        events.close()
        client.close()
