"""The runtime's ``--init`` mode (config.json annotation ``org.dockyard.init: "true"``):
PID 1 stays a minimal init that reaps orphans and forwards signals, the command runs as
its child, exit statuses come through, exec still works, and the init keeps nothing of
the host (no fds, non-dumpable, its command line rewritten).

Synchronisation is by events: readiness lines on pipes, process exits, the console
master over a socket; the in-container loops that wait for an orphan to go poll /proc
until the event (bounded by the runtime call's timeout)."""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.bundles import (
    REPO,
    HostSnapshot,
    RuntimeCLI,
    cgroup_dirs,
    make_bundle,
    read_line,
    wait_exit,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]

INIT = {"org.dockyard.init": "true"}


NATIVE = os.uname().machine == "x86_64"  # where pid1.py has a native reaper


@pytest.fixture(params=["native", "python"])
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeCLI]:
    """The runtime CLI; every test runs with the native reaper and with the Python loop
    (DOCKYARD_PID1=python) that stands in for it where it cannot run."""
    if request.param == "native" and not NATIVE:
        pytest.skip("no native reaper on this architecture")
    snap = HostSnapshot()
    cli = RuntimeCLI(tmp_path / "state")
    cli.mode = request.param
    if request.param == "python":
        cli.env["DOCKYARD_PID1"] = "python"
    yield cli
    left = cli.cleanup()
    assert left == [], f"containers left behind: {left}"
    cgroups = [d for cid in cli.ids for d in cgroup_dirs(cid)]
    assert cgroups == [], f"cgroups left behind: {cgroups}"
    assert snap.new_mounts(under=tmp_path) == [], "mounts left behind"
    assert snap.new_processes(marker=str(tmp_path), ids=cli.ids) == [], "processes left behind"


def _bundle(tmp_path: Path, args: list[str], init: bool = True, **overrides) -> Path:
    if init:
        overrides["annotations"] = INIT
    return make_bundle(tmp_path, args, **overrides)


def _run(rt: RuntimeCLI, tmp_path: Path, args: list[str], init: bool = True, **overrides) -> subprocess.CompletedProcess:
    return rt("run", "--bundle", _bundle(tmp_path, args, init, **overrides), rt.new_id(), check=False)


def _ps(text: str) -> dict[int, tuple[int, str, str]]:
    """``ps -o pid,ppid,comm,args`` -> pid: (ppid, comm, args)."""
    rows = {}
    for line in text.splitlines()[1:]:
        pid, ppid, comm, args = line.split(None, 3)
        rows[int(pid)] = (int(ppid), comm, args)
    return rows


def _start(rt: RuntimeCLI, tmp_path: Path, args: list[str], **overrides) -> tuple[str, int]:
    """create + start a detached init container; returns (id, the init's host pid)."""
    cid = rt.new_id()
    rt("create", "--bundle", _bundle(tmp_path, args, **overrides), cid)
    rt("start", cid)
    return cid, int(rt.state(cid)["pid"])


# --------------------------------------------------------------------------- process tree


def test_pid1_is_the_init_and_the_command_its_child(rt: RuntimeCLI, tmp_path: Path) -> None:
    res = _run(rt, tmp_path, ["ps", "-o", "pid,ppid,comm,args"])
    assert res.returncode == 0, res.stderr
    rows = _ps(res.stdout)
    assert rows[1][1] == "docker-init"
    assert rows[1][2].startswith("/sbin/docker-init -- ps -o pid,ppid,comm,args"), rows[1]
    ps = [pid for pid, row in rows.items() if row[1] == "ps"]
    assert len(ps) == 1 and ps[0] >= 2 and rows[ps[0]][0] == 1, rows
    # nothing of the runtime that forked the init shows in its command line
    assert "python" not in rows[1][2] and str(REPO) not in rows[1][2]


def test_without_the_annotation_the_command_is_pid1(rt: RuntimeCLI, tmp_path: Path) -> None:
    res = _run(rt, tmp_path, ["ps", "-o", "pid,ppid,comm,args"], init=False)
    assert res.returncode == 0, res.stderr
    rows = _ps(res.stdout)
    assert rows[1][1] == "ps" and "docker-init" not in res.stdout


@pytest.mark.parametrize(("script", "status"), [
    ("exit 7", 7),
    ("exit 0", 0),
    ("kill -KILL $$", 137),  # killed by a signal: 128 + n, as tini reports it
    ("kill -TERM $$", 143),
])
def test_exit_status_comes_through(rt: RuntimeCLI, tmp_path: Path, script: str, status: int) -> None:
    res = _run(rt, tmp_path, ["sh", "-c", script])
    assert res.returncode == status, res.stderr


def test_command_not_found_is_127(rt: RuntimeCLI, tmp_path: Path) -> None:
    res = _run(rt, tmp_path, ["no-such-command"])
    assert res.returncode == 127
    assert 'exec: "no-such-command": executable file not found in $PATH' in res.stderr


# --------------------------------------------------------------------------- reaping

# The inner sh exits at once, leaving `true` (running or already a zombie) to be re-parented
# to the init; the script then waits until the orphan is gone from /proc, which only a
# reaping init makes happen (the command, pid 2, is not its parent).
ORPHAN = ('sh -c "true & echo \\$! > /tmp/orphan"; p=$(cat /tmp/orphan); '
          'while [ -e /proc/$p ]; do usleep 10000; done; echo "reaped $p"; ps -o pid,stat,comm')


def test_orphans_are_reaped(rt: RuntimeCLI, tmp_path: Path) -> None:
    res = _run(rt, tmp_path, ["sh", "-c", ORPHAN])
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("reaped "), res.stdout
    states = [line.split()[1] for line in res.stdout.splitlines()[2:]]
    assert states and not any(s.startswith("Z") for s in states), res.stdout


def test_orphans_are_reaped_without_a_pid_namespace(rt: RuntimeCLI, tmp_path: Path) -> None:
    """Not PID 1 (the host's pid namespace): the init makes itself a child subreaper, so
    the orphan is still its to reap (not the runtime's, which reaps only at the end)."""
    from tests.fixtures.bundles import default_config

    namespaces = [n for n in default_config(["true"])["linux"]["namespaces"] if n["type"] != "pid"]
    script = ('sh -c "true & echo \\$! > /tmp/orphan"; p=$(cat /tmp/orphan); '
              'while [ -e /proc/$p ]; do usleep 10000; done; echo reaped')
    res = _run(rt, tmp_path, ["sh", "-c", script], linux={"namespaces": namespaces})
    assert res.returncode == 0, res.stderr
    assert res.stdout == "reaped\n"


# --------------------------------------------------------------------------- signals


def test_term_is_forwarded_and_the_status_is_the_commands(rt: RuntimeCLI, tmp_path: Path) -> None:
    """`sleep` as PID 1 would ignore SIGTERM (no handler in a pid namespace's init); as the
    init's child it dies of it, and the init exits 128 + 15."""
    cid = rt.new_id()
    bundle = _bundle(tmp_path, ["sh", "-c", "echo ready; exec sleep 1000"])
    r, w = os.pipe()
    proc = rt.popen("run", "--bundle", bundle, cid, stdout=w)
    os.close(w)
    try:
        assert read_line(r) == "ready"
        rt("kill", cid, "TERM")
        assert proc.wait(timeout=30) == 143
    finally:
        os.close(r)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_other_signals_are_forwarded(rt: RuntimeCLI, tmp_path: Path) -> None:
    cid = rt.new_id()
    script = 'trap "echo got-usr1; exit 3" USR1; trap "echo got-hup" HUP; echo ready; sleep 1000 & wait; wait'
    bundle = _bundle(tmp_path, ["sh", "-c", script])
    r, w = os.pipe()
    proc = rt.popen("run", "--bundle", bundle, cid, stdout=w)
    os.close(w)
    try:
        assert read_line(r) == "ready"
        rt("kill", cid, "HUP")
        assert read_line(r) == "got-hup"
        rt("kill", cid, "USR1")
        assert read_line(r) == "got-usr1"
        assert proc.wait(timeout=30) == 3
    finally:
        os.close(r)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kill_all_and_delete(rt: RuntimeCLI, tmp_path: Path) -> None:
    cid, pid = _start(rt, tmp_path, ["sleep", "1000"])
    rt("kill", "--all", cid, "KILL")
    wait_exit(pid)
    assert rt.state(cid)["status"] == "stopped"
    rt("delete", cid)


# --------------------------------------------------------------------------- isolation


def test_init_keeps_nothing_of_the_host(rt: RuntimeCLI, tmp_path: Path) -> None:
    cid, pid = _start(rt, tmp_path, ["sleep", "1000"], process={"user": {"uid": 1000, "gid": 1000}})
    try:
        assert os.listdir(f"/proc/{pid}/fd") == []  # every fd closed, stdio included
        status = Path(f"/proc/{pid}/status").read_text()
        assert re.search(r"^Uid:\s+1000\s", status, re.M), status  # the container's user, as tini
        # non-dumpable: its /proc files stay root's although it runs as uid 1000
        assert os.stat(f"/proc/{pid}/fd").st_uid == 0
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0")
        assert cmdline == b"/sbin/docker-init\0--\0sleep\x001000"
        assert Path(f"/proc/{pid}/comm").read_text() == "docker-init\n"
        if rt.mode == "native":
            # no host file behind it, and a few pages of memory (the Python loop: megabytes)
            assert os.readlink(f"/proc/{pid}/exe") == "/memfd:docker-init (deleted)"
            rollup = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
            assert int(rollup["Pss"].split()[0]) <= 64, rollup
        # the container (uid 1000, or root without CAP_SYS_PTRACE) cannot reach the host's
        # interpreter through /proc/1/exe, nor its environment; it has no fd to open
        script = ("readlink /proc/1/exe || echo exe-denied; cat /proc/1/environ >/dev/null 2>&1 || echo environ-denied; "
                  "ls /proc/1/fd 2>/dev/null | wc -l")
        for user in ("1000:1000", "0:0"):
            res = rt("exec", "--user", user, cid, "sh", "-c", script)
            assert res.stdout.split() == ["exe-denied", "environ-denied", "0"], (user, res.stdout, res.stderr)
    finally:
        rt("delete", "-f", cid)


def test_exec_in_an_init_container(rt: RuntimeCLI, tmp_path: Path) -> None:
    cid, _pid = _start(rt, tmp_path, ["sleep", "1000"])
    try:
        res = rt("exec", cid, "ps", "-o", "pid,ppid,comm,args")
        rows = _ps(res.stdout)
        assert rows[1][1] == "docker-init"
        assert any(row[1] == "sleep" and row[0] == 1 and pid >= 2 for pid, row in rows.items()), rows
        # an exec'd process's orphan is re-parented to the init, which reaps it
        res = rt("exec", cid, "sh", "-c", ORPHAN)
        assert res.stdout.startswith("reaped "), res.stdout
        assert rt("exec", cid, "sh", "-c", "exit 4", check=False).returncode == 4
    finally:
        rt("delete", "-f", cid)


def _console(tmp_path: Path) -> tuple[socket.socket, str]:
    sock_path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1)
    listener.settimeout(30)
    return listener, sock_path


def test_terminal_foreground_group_is_the_commands(rt: RuntimeCLI, tmp_path: Path) -> None:
    """The command gets a process group of its own, and it is the terminal's foreground
    group (a ^C goes to the command's group only, not also to the init)."""
    from dockyard.runtime.console import recv_master

    listener, sock_path = _console(tmp_path)
    script = "set -- $(cat /proc/$$/stat); echo pid=$1 pgrp=$5 tpgid=$8"  # sh -c: no job control of its own
    bundle = _bundle(tmp_path, ["sh", "-c", script], process={"terminal": True})
    proc = rt.popen("run", "--console-socket", sock_path, "--bundle", bundle, rt.new_id())
    master = -1
    try:
        conn, _ = listener.accept()
        master, _name = recv_master(conn)
        conn.close()
        out = b""
        while not out.endswith(b"\n"):
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, out
            chunk = os.read(master, 4096)
            assert chunk, out
            out += chunk
        assert proc.wait(timeout=30) == 0
        m = re.search(rb"pid=(\d+) pgrp=(\d+) tpgid=(\d+)", out)
        assert m, out
        pid, pgrp, tpgid = (int(g) for g in m.groups())
        assert pid >= 2 and pgrp == pid and tpgid == pid, out
    finally:
        listener.close()
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_terminal_job_control(rt: RuntimeCLI, tmp_path: Path) -> None:
    """An interactive shell under the init on a terminal: ^C reaches its foreground job
    and the shell goes on."""
    from dockyard.runtime.console import recv_master

    listener, sock_path = _console(tmp_path)
    bundle = _bundle(tmp_path, ["sh"], process={"terminal": True})
    proc = rt.popen("run", "--console-socket", sock_path, "--bundle", bundle, rt.new_id())
    master = -1
    out = b""

    def read_until(pattern: bytes) -> None:
        nonlocal out
        while not re.search(pattern, out):
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, f"no {pattern!r} on the terminal (so far {out!r})"
            chunk = os.read(master, 4096)
            assert chunk, out
            out += chunk

    try:
        conn, _ = listener.accept()
        master, _name = recv_master(conn)
        conn.close()
        os.write(master, b"sh -c 'echo started; exec sleep 1000'\n")
        read_until(rb"(^|\n)started\r?\n")
        os.write(master, b"\x03")  # ^C: SIGINT to the foreground job, the shell survives
        os.write(master, b"echo status=$?\n")
        read_until(rb"(^|\n)status=130\r?\n")
        os.write(master, b"exit 5\n")
        assert proc.wait(timeout=30) == 5
    finally:
        listener.close()
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- the native reaper


def test_falls_back_to_python_when_memfd_is_refused(rt: RuntimeCLI, tmp_path: Path) -> None:
    """A seccomp profile refusing memfd_create: the native reaper cannot be made, the
    Python loop does the same job."""
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
               "syscalls": [{"names": ["memfd_create"], "action": "SCMP_ACT_ERRNO"}]}
    cid, pid = _start(rt, tmp_path, ["sleep", "1000"], linux={"seccomp": profile})
    try:
        assert os.readlink(f"/proc/{pid}/exe") != "/memfd:docker-init (deleted)"
        assert Path(f"/proc/{pid}/comm").read_text() == "docker-init\n"
        res = rt("exec", cid, "sh", "-c", ORPHAN)
        assert res.stdout.startswith("reaped "), res.stdout
        rt("kill", cid, "TERM")
        wait_exit(pid)
    finally:
        rt("delete", "-f", cid)


@pytest.mark.skipif(not (shutil.which("as") and shutil.which("objcopy")), reason="binutils (as, objcopy) not installed")
def test_native_reaper_bytes_are_its_source(tmp_path: Path) -> None:
    """The bytes pid1.py execs are exactly pid1_x86_64.s assembled."""
    from dockyard.runtime import pid1

    src = REPO / "dockyard" / "runtime" / "pid1_x86_64.s"
    obj, out = tmp_path / "pid1.o", tmp_path / "pid1.bin"
    subprocess.run(["as", "--64", "-o", str(obj), str(src)], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(obj), str(out)], check=True)
    assert out.read_bytes() == pid1._X86_64
    image = pid1.reaper_image(1234, machine="x86_64")
    assert image is not None and image.endswith((1234).to_bytes(4, "little"))
    assert pid1.reaper_image(1234, machine="aarch64") is None
