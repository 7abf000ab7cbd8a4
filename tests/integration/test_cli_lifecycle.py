"""The dockyard CLI's restart, pause, unpause, rename, top, stats, events and ``ps -s``
against the session daemon, with docker's output shapes, messages and exit codes."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import Daemon

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]

TRAP = "trap 'exit 3' TERM; echo up; sleep 1000 & wait"


def _name() -> str:
    return "cl-" + uuid.uuid4().hex[:10]


def _popen(d: Daemon, *args: str, **kw: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "-H", d.host, *args], env=d.env,
                            **kw)  # type: ignore[call-overload]


def test_pause_unpause_restart_rename(cli: Daemon) -> None:
    a, b = _name(), _name()
    cid = cli.cli("run", "-d", "--name", a, "busybox", "sh", "-c", TRAP).stdout.strip()
    assert cli.cli("pause", a).stdout == f"{a}\n"
    assert cli.cli("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", a).stdout.strip() == "paused true"
    assert re.fullmatch(r"Up .+ \(Paused\)", cli.cli("ps", "--filter", f"name={a}", "--format", "{{.Status}}").stdout.strip())
    res = cli.cli("pause", a, "nope-" + a, check=False)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.splitlines() == [f"Error response from daemon: Container {cid} is already paused",
                                       f"Error response from daemon: No such container: nope-{a}"]
    assert cli.cli("container", "unpause", a).stdout == f"{a}\n"
    res = cli.cli("unpause", a, check=False)
    assert res.returncode == 1 and res.stderr.strip() == f"Error response from daemon: Container {cid} is not paused"
    started = cli.cli("inspect", "-f", "{{.State.StartedAt}}", a).stdout
    assert cli.cli("restart", "-t", "5", a).stdout == f"{a}\n"
    assert cli.cli("inspect", "-f", "{{.State.StartedAt}}", a).stdout > started
    assert cli.cli("rename", a, b).stdout == ""
    assert cli.cli("inspect", "-f", "{{.Name}}", b).stdout.strip() == f"/{b}"
    res = cli.cli("rename", b, b, check=False)
    assert res.returncode == 1
    assert res.stderr.splitlines() == ["Error response from daemon: Renaming a container with the same name as its "
                                       "current name", f"Error: failed to rename container named {b}"]
    res = cli.cli("restart", "--time", "1", "-t", "1", b, check=False)
    assert res.returncode == 1 and "cannot specify both --timeout and --time" in res.stderr
    cli.cli("rm", "-f", b)


def test_top(cli: Daemon) -> None:
    name = _name()
    cli.cli("run", "-d", "--name", name, "busybox", "sh", "-c", "sleep 600 & exec sleep 700")
    deadline = time.monotonic() + 30
    while True:  # until both sleeps have been exec'd (no event says so)
        out = cli.cli("top", name).stdout.splitlines()
        if sorted(line.split(None, 7)[-1] for line in out[1:]) == ["sleep 600", "sleep 700"]:
            break
        assert time.monotonic() < deadline, out
    assert out[0] == "UID                 PID                 PPID                C                   " \
                     "STIME               TTY                 TIME                CMD"
    custom = cli.cli("container", "top", name, "-o", "pid,comm").stdout.splitlines()
    assert custom[0] == "PID                 COMMAND" and [line.split()[1] for line in custom[1:]] == ["sleep", "sleep"]
    res = cli.cli("top", check=False)
    assert res.returncode == 1 and '"dockyard top" requires at least 1 argument' in res.stderr
    cli.cli("rm", "-f", name)
    res = cli.cli("top", name, check=False)
    assert res.returncode == 1 and res.stderr.strip() == f"Error response from daemon: No such container: {name}"


def test_stats_no_stream(cli: Daemon) -> None:
    busy, idle = _name(), _name()
    cid = cli.cli("run", "-d", "--name", busy, "busybox", "sh", "-c", "while :; do :; done").stdout.strip()
    cli.cli("create", "--name", idle, "busybox", "true")
    out = cli.cli("stats", "--no-stream", busy).stdout.splitlines()
    assert re.split(r"\s{2,}", out[0].strip()) == ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %",
                                                  "NET I/O", "BLOCK I/O", "PIDS"]
    fields = re.split(r"\s{2,}", out[1].strip())
    assert fields[:2] == [cid[:12], busy]
    assert float(fields[2].rstrip("%")) > 20, out
    assert re.fullmatch(r"[\d.]+[KMG]?i?B / [\d.]+[KMG]iB", fields[3]) and fields[-1] == "1", fields
    rows = [json.loads(line) for line in cli.cli("stats", "--no-stream", "--no-trunc", "--format", "json", busy,
                                                 idle).stdout.splitlines()]
    assert [r["Name"] for r in rows] == [busy, idle] and rows[0]["ID"] == cid
    assert rows[1]["CPUPerc"] == "0.00%" and rows[1]["PIDs"] == "0" and rows[1]["MemUsage"] == "0B / 0B"
    assert sorted(rows[0]) == ["BlockIO", "CPUPerc", "Container", "ID", "MemPerc", "MemUsage", "Name", "NetIO", "PIDs"]
    listed = cli.cli("container", "stats", "--no-stream", "--format", "{{.Name}}").stdout.split()
    assert busy in listed and idle not in listed
    assert idle in cli.cli("stats", "--no-stream", "-a", "--format", "{{.Name}}").stdout.split()
    res = cli.cli("stats", "--no-stream", "nope-" + busy, check=False)
    assert res.returncode == 1 and res.stderr.strip() == f"Error response from daemon: No such container: nope-{busy}"
    res = cli.cli("stats", "--no-stream", "--format", "{{.Name", busy, check=False)
    assert res.returncode == 1 and res.stderr.startswith("template parsing error")
    cli.cli("rm", "-f", busy, idle)


def _read_until(fd: int, pattern: bytes, deadline: float) -> bytes:
    out = b""
    while pattern not in out:
        left = deadline - time.monotonic()
        assert left > 0, out
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, out
            out += chunk
    return out


def test_stats_streams(cli: Daemon) -> None:
    name = _name()
    cli.cli("run", "-d", "--name", name, "busybox", "sleep", "600")
    # not a terminal: whole tables, one after the other, no escape sequences
    proc = _popen(cli, "stats", "--format", "table {{.Name}}\t{{.PIDs}}", name, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        out = _read_until(proc.stdout.fileno(), f"{name}   1\n".encode(), time.monotonic() + 30)
        out += _read_until(proc.stdout.fileno(), b"NAME", time.monotonic() + 30)
        assert b"\x1b" not in out and out.count(b"NAME") >= 2
    finally:
        proc.kill()
        proc.wait()
    # a terminal: redrawn in place
    master, slave = pty.openpty()
    proc = _popen(cli, "stats", name, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        out = _read_until(master, f"{name}".encode(), time.monotonic() + 30)
        out += _read_until(master, b"\x1b[J", time.monotonic() + 30)
        assert out.startswith(b"\x1b[HCONTAINER ID") and b"\x1b[K" in out
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    cli.cli("rm", "-f", name)


def test_events(cli: Daemon) -> None:
    name = _name()
    t0 = f"{time.time():.3f}"
    cli.cli("run", "--rm", "--name", name, "--label", "cl.test=events", "busybox", "true")
    t1 = f"{time.time():.3f}"
    actions = cli.cli("events", "--since", t0, "--until", t1, "--filter", f"container={name}",
                      "--format", "{{.Action}}").stdout.split()
    assert actions[:2] == ["create", "attach"] and actions[-3:] == ["start", "die", "destroy"], actions
    (line,) = cli.cli("events", "--since", t0, "--until", t1, "-f", f"container={name}", "-f", "event=die").stdout.splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d) container die [0-9a-f]{64} "
                        rf"\(cl\.test=events, execDuration=\d+, exitCode=0, image=busybox, name={name}\)", line), line
    docs = [json.loads(x) for x in cli.cli("events", "--since", "5m", "--until", t1, "--filter", "label=cl.test=events",
                                           "--filter", f"container={name}", "--format", "json").stdout.splitlines()]
    assert docs[0]["status"] == "create" and docs[0]["Type"] == "container" and list(docs[0])[:3] == ["status", "id", "from"]
    assert docs[-1]["Actor"]["Attributes"]["name"] == name and docs[-1]["Action"] == "destroy"
    res = cli.cli("events", "--format", "{{.Action", check=False)
    assert res.returncode == 64 and res.stderr.startswith("Error parsing format: template: :1:")
    # streamed: --since covers what happens before the subscription is made
    proc = _popen(cli, "events", "--since", f"{time.time():.3f}", "--filter", f"container={name}-2",
                  "--format", "{{.Action}}", stdout=subprocess.PIPE)
    try:
        cli.cli("run", "--name", f"{name}-2", "busybox", "true")
        assert proc.stdout is not None
        out = _read_until(proc.stdout.fileno(), b"die\n", time.monotonic() + 30)
        assert out.split()[-1] == b"die" and b"start" in out.split()
    finally:
        proc.kill()
        proc.wait()
    cli.cli("rm", f"{name}-2")


def test_ps_size(cli: Daemon) -> None:
    name = _name()
    cli.cli("run", "--name", name, "busybox", "sh", "-c", "head -c 1500 /dev/zero > /payload")
    out = cli.cli("ps", "-a", "-s", "--filter", f"name={name}").stdout.splitlines()
    assert out[0].rstrip().endswith("SIZE")
    assert re.search(r"   1\.5kB \(virtual [\d.]+MB\)$", out[1]), out
    # a --format using .Size asks for the sizes, as docker's does
    assert re.fullmatch(r"1\.5kB \(virtual [\d.]+MB\)\n", cli.cli("ps", "-a", "--filter", f"name={name}", "--format",
                                                                 "{{.Size}}").stdout)
    cli.cli("rm", "-v", name)
