"""dockyard-runtime against the real kernel with busybox bundles: the OCI lifecycle,
exit codes, namespaces, user namespaces, pause/resume, terminals, fd hygiene and bad
input. Every test checks, on the way out, that no container, cgroup, mount or process
is left behind.

Synchronisation is by events only: a container says it is ready by writing a line to a
pipe, process exits are awaited with pidfds, the console master arrives over a socket.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.bundles import (
    HostSnapshot,
    RuntimeCLI,
    cgroup_dirs,
    make_bundle,
    read_config,
    read_line,
    wait_exit,
    write_config,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]

NAMESPACES = ("pid", "mnt", "uts", "ipc", "net", "cgroup")


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[RuntimeCLI]:
    snap = HostSnapshot()
    cli = RuntimeCLI(tmp_path / "state")
    yield cli
    left = cli.cleanup()
    assert left == [], f"containers left behind: {left}"
    cgroups = [d for cid in cli.ids for d in cgroup_dirs(cid)]
    assert cgroups == [], f"cgroups left behind: {cgroups}"
    assert snap.new_mounts(under=tmp_path) == [], "mounts left behind"
    assert snap.new_processes(marker=str(tmp_path), ids=cli.ids) == [], "processes left behind"


def _ns(pid: int | str, name: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{name}")


def _without_pid_ns(config: dict) -> dict:
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "pid"]
    return config


# --------------------------------------------------------------------------- lifecycle


def test_create_start_kill_delete(rt: RuntimeCLI, tmp_path: Path) -> None:
    cid = rt.new_id()
    bundle = make_bundle(tmp_path, ["sh", "-c", "echo started; exec sleep 1000"])
    r, w = os.pipe()
    try:
        rt("create", "--bundle", bundle, cid, stdout=w)  # the container's stdout is the pipe
        os.close(w)
        w = -1
        state = rt.state(cid)
        assert state["status"] == "created"
        assert state["id"] == cid and state["bundle"] == str(bundle) and state["ociVersion"]
        pid = state["pid"]
        assert pid > 0
        # blocked before the user's process: nothing printed, the exec FIFO still there
        assert select.select([r], [], [], 0)[0] == []
        assert (rt.root / cid / "exec.fifo").exists()
        assert cgroup_dirs(cid), "the container's cgroup exists once it is created"

        rt("start", cid)
        assert read_line(r) == "started"
        assert rt.state(cid)["status"] == "running"
        assert not (rt.root / cid / "exec.fifo").exists()
        assert os.readlink(f"/proc/{pid}/exe").endswith("/bin/busybox")

        rt("kill", cid, "KILL")
        wait_exit(pid)
        state = rt.state(cid)
        assert state["status"] == "stopped" and state["pid"] == 0

        rt("delete", cid)
        assert not (rt.root / cid).exists()
        assert cgroup_dirs(cid) == []
        assert "does not exist" in rt.fail("state", cid)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


@pytest.mark.parametrize(("args", "code", "pid_ns"), [
    (["true"], 0, True),
    (["false"], 1, True),
    (["sh", "-c", "exit 3"], 3, True),
    # PID 1 of a pid namespace is immune to SIGKILL from inside its namespace, so the
    # self-kill runs without one (with one, `kill -9 $$` is ignored and sh exits 0)
    (["sh", "-c", "kill -9 $$"], 137, False),
    (["no-such-program"], 127, True),
    (["/etc/passwd"], 126, True),
])
def test_run_exit_status(rt: RuntimeCLI, tmp_path: Path, args: list[str], code: int, pid_ns: bool) -> None:
    bundle = make_bundle(tmp_path, args)
    if not pid_ns:
        write_config(bundle, _without_pid_ns(read_config(bundle)))
    cid = rt.new_id()
    res = rt("run", "--bundle", bundle, cid, check=False)
    assert res.returncode == code, res.stderr
    if code == 127:
        assert 'exec: "no-such-program": executable file not found in $PATH' in res.stderr
    assert not (rt.root / cid).exists(), "run deletes the container after it exits"


def test_run_killed_from_outside_and_signal_forwarding(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, ["sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done"])
    # SIGTERM to `run` is forwarded to the container, whose trap decides the status
    cid = rt.new_id()
    proc = rt.popen("run", "--bundle", bundle, cid, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 42
    proc.stdout.close()
    # killed by a signal from outside: 128 + 9
    cid = rt.new_id()
    proc = rt.popen("run", "--bundle", bundle, cid, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    rt("kill", cid, "SIGKILL")
    assert proc.wait(timeout=30) == 137
    proc.stdout.close()


def test_run_detached_then_delete_force(rt: RuntimeCLI, tmp_path: Path) -> None:
    cid = rt.new_id()
    bundle = make_bundle(tmp_path, ["sleep", "1000"])
    pid_file = tmp_path / "pid"
    rt("run", "-d", "--pid-file", pid_file, "--bundle", bundle, cid, stdout=subprocess.DEVNULL)
    state = rt.state(cid)
    assert state["status"] == "running"
    assert int(pid_file.read_text()) == state["pid"]
    listing = json.loads(rt("list", "--format", "json").stdout)
    assert [c["id"] for c in listing] == [cid]
    assert cid in rt("list").stdout and "running" in rt("list").stdout
    rt("delete", "-f", cid)
    wait_exit(state["pid"])
    assert not (rt.root / cid).exists()


# --------------------------------------------------------------------------- isolation


def test_hostname_and_namespaces(rt: RuntimeCLI, tmp_path: Path) -> None:
    script = "hostname; echo $$; for n in " + " ".join(NAMESPACES) + "; do readlink /proc/self/ns/$n; done"
    bundle = make_bundle(tmp_path, ["sh", "-c", script], hostname="box-one")
    out = rt("run", "--bundle", bundle, rt.new_id()).stdout.split("\n")
    assert out[0] == "box-one"
    assert out[1] == "1", "the container's process is PID 1 of its pid namespace"
    inside = dict(zip(NAMESPACES, out[2:2 + len(NAMESPACES)], strict=True))
    for name in NAMESPACES:
        assert inside[name] != _ns("self", name), f"{name} namespace is shared with the host"


def test_join_network_namespace_by_path(rt: RuntimeCLI, tmp_path: Path) -> None:
    holder = subprocess.Popen(["unshare", "--net", "sh", "-c", "echo ready; exec sleep 1000"], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"ready\n"
        path = f"/proc/{holder.pid}/ns/net"
        bundle = make_bundle(tmp_path, ["readlink", "/proc/self/ns/net"])
        config = read_config(bundle)
        config["linux"]["namespaces"] = [
            {"type": "network", "path": path} if n["type"] == "network" else n for n in config["linux"]["namespaces"]
        ]
        write_config(bundle, config)
        out = rt("run", "--bundle", bundle, rt.new_id()).stdout.strip()
        assert out == os.readlink(path)
        assert out != _ns("self", "net")
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout:
            holder.stdout.close()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A bundle location a user-namespaced root (an unprivileged host uid) can traverse:
    pytest's tmp_path sits under a 0700 directory."""
    path = Path(tempfile.mkdtemp(prefix="dyrt-userns-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_user_namespace(rt: RuntimeCLI, open_dir: Path) -> None:
    bundle = make_bundle(open_dir, ["sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map"])
    config = read_config(bundle)
    config["linux"]["namespaces"].append({"type": "user"})
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    write_config(bundle, config)
    cid = rt.new_id()
    r, w = os.pipe()
    try:
        rt("create", "--bundle", bundle, cid, stdout=w)
        os.close(w)
        w = -1
        pid = rt.state(cid)["pid"]
        status = Path(f"/proc/{pid}/status").read_text()
        uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
        gids = re.search(r"^Gid:\s+(.*)$", status, re.M)
        assert uids and uids.group(1).split() == ["100000"] * 4, "on the host the init runs as the mapped uid"
        assert gids and gids.group(1).split() == ["100000"] * 4
        assert _ns(pid, "user") != _ns("self", "user")
        # non-dumpable until it execs: its /proc files belong to (host) root, not to the
        # uid it runs as, so nothing in the container can open them
        assert os.stat(f"/proc/{pid}/environ").st_uid == 0
        rt("start", cid)
        lines = [read_line(r) for _ in range(4)]
        assert lines[0:2] == ["0", "0"], "inside, the process is root"
        assert lines[2].split() == ["0", "100000", "65536"]
        assert lines[3].split() == ["0", "100000", "65536"]
        wait_exit(pid)
        rt("delete", cid)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_pause_resume(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, ["sh", "-c", "while :; do echo tick; sleep 0.05; done"])
    cid = rt.new_id()
    r, w = os.pipe()
    try:
        rt("run", "-d", "--bundle", bundle, cid, stdout=w)
        os.close(w)
        w = -1
        assert read_line(r) == "tick"
        rt("pause", cid)
        assert rt.state(cid)["status"] == "paused"
        os.set_blocking(r, False)
        while True:  # what was written before the freeze
            try:
                if not os.read(r, 65536):
                    break
            except BlockingIOError:
                break
        os.set_blocking(r, True)
        # a running loop ticks every 50 ms; a frozen one stays silent
        assert select.select([r], [], [], 0.5)[0] == [], "a paused container kept running"
        assert "is not running" in rt.fail("pause", cid)
        assert "cannot exec in a paused container" in rt.fail("exec", cid, "true")
        rt("resume", cid)
        assert rt.state(cid)["status"] == "running"
        assert read_line(r, timeout=30) == "tick"
        pids = json.loads(rt("ps", "--format", "json", cid).stdout)
        assert rt.state(cid)["pid"] in pids
        table = rt("ps", cid).stdout
        assert "PID" in table.splitlines()[0] and str(rt.state(cid)["pid"]) in table
        # a paused container can be force-deleted (SIGKILL only lands once thawed)
        pid = rt.state(cid)["pid"]
        rt("pause", cid)
        assert "not stopped: paused" in rt.fail("delete", cid)
        rt("delete", "-f", cid)
        wait_exit(pid)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_operations_in_the_wrong_state(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, ["sleep", "1000"])
    cid = rt.new_id()
    rt("create", "--bundle", bundle, cid, stdout=subprocess.DEVNULL)
    assert rt.fail("create", "--bundle", bundle, cid) == f"container with id exists: {cid}"
    assert rt.fail("pause", cid) == f'container "{cid}" is not running'
    assert rt.fail("resume", cid) == f'container "{cid}" is not paused'
    rt("start", cid)
    assert rt.fail("start", cid) == "cannot start an already running container"
    assert rt.fail("delete", cid) == f"cannot delete container {cid} that is not stopped: running"
    assert rt.fail("resume", cid) == f'container "{cid}" is not paused'
    pid = rt.state(cid)["pid"]
    rt("kill", cid, "9")
    wait_exit(pid)
    assert rt.fail("kill", cid) == f'container "{cid}" is not running'
    assert rt.fail("start", cid) == "cannot start a container that has stopped"
    assert rt.fail("pause", cid) == f'container "{cid}" is not running'
    rt("delete", cid)
    assert rt.fail("state", cid) == f'container "{cid}" does not exist'
    assert rt.fail("delete", cid) == f'container "{cid}" does not exist'
    rt("delete", "-f", cid)  # runc: forcing a missing container is not an error
    assert "invalid container ID format" in rt.fail("create", "--bundle", bundle, "bad/id")
    assert "invalid container ID format" in rt.fail("state", "..")
    assert "unknown signal" in rt.fail("kill", cid, "SIGBOGUS")


def test_created_container_can_be_deleted(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, ["sleep", "1000"])
    cid = rt.new_id()
    rt("create", "--bundle", bundle, cid, stdout=subprocess.DEVNULL)
    pid = rt.state(cid)["pid"]
    rt("delete", cid)  # as runc: a created container is killed and removed without -f
    wait_exit(pid)
    assert not (rt.root / cid).exists()


# --------------------------------------------------------------------------- terminal


def test_terminal_over_console_socket(rt: RuntimeCLI, tmp_path: Path) -> None:
    from dockyard.runtime.console import recv_master

    sock_path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1)
    listener.settimeout(30)
    bundle = make_bundle(tmp_path, ["sh"], process={"terminal": True})
    proc = rt.popen("run", "--console-socket", sock_path, "--bundle", bundle, rt.new_id())
    master = -1
    try:
        conn, _ = listener.accept()
        master, name = recv_master(conn)
        conn.close()
        assert name.startswith("/dev/pts/")
        os.write(master, b"tty; echo hi; exit 5\n")
        out = b""
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, f"no terminal output (so far {out!r})"
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every slave fd is closed, the shell is gone
                break
            if not chunk:
                break
            out += chunk
        assert re.search(rb"(^|\n)hi\r?\n", out), out
        assert re.search(rb"(^|\n)/dev/pts/\d+\r?\n", out), out  # stdin is the pty
        assert proc.wait(timeout=30) == 5
    finally:
        listener.close()
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_terminal_needs_console_socket(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, ["sh"], process={"terminal": True})
    cid = rt.new_id()
    assert "console-socket" in rt.fail("create", "--bundle", bundle, cid)
    assert not (rt.root / cid).exists()


# --------------------------------------------------------------------------- fds


def test_no_fd_leaks_into_the_container(rt: RuntimeCLI, tmp_path: Path) -> None:
    # an fd the runtime inherits (as from a careless caller) must not reach the container
    leaked = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    extra = os.dup2(leaked, 50, inheritable=True)
    try:
        bundle = make_bundle(tmp_path, ["ls", "/proc/self/fd"])
        out = rt("run", "--bundle", bundle, rt.new_id(), pass_fds=(extra,)).stdout.split()
        assert out == ["0", "1", "2", "3"], out  # 3 is ls's own directory fd
    finally:
        os.close(extra)
        os.close(leaked)


def test_preserve_fds_passes_exactly_those(rt: RuntimeCLI, tmp_path: Path) -> None:
    data = tmp_path / "passed.txt"
    data.write_text("through fd 3\n")
    bundle = make_bundle(tmp_path, ["sh", "-c", "ls /proc/self/fd; cat <&3"])
    # fd 3 (the file) is preserved; fd 4 (another inherited one) is not
    argv = " ".join(f"'{a}'" for a in [*rt.argv, "run", "--preserve-fds", "1", "--bundle", str(bundle), rt.new_id()])
    res = subprocess.run(["sh", "-c", f"exec 3<'{data}' 4</ ; exec {argv}"], env=rt.env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split()
    # ls (a child of sh): 0-2, the preserved 3, and 4 = ls's own directory fd
    assert lines[:5] == ["0", "1", "2", "3", "4"], res.stdout
    assert "through fd 3" in res.stdout


def test_blocked_init_holds_only_what_it_needs(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, ["true"])
    cid = rt.new_id()
    leaked = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        rt("create", "--bundle", bundle, cid, stdout=subprocess.DEVNULL, pass_fds=(leaked,))
    finally:
        os.close(leaked)
    pid = rt.state(cid)["pid"]
    fds = {int(f): os.readlink(f"/proc/{pid}/fd/{f}") for f in os.listdir(f"/proc/{pid}/fd")}
    # stdio, the sync socket and the exec FIFO (an O_PATH fd): nothing else of the runtime's
    extra = {fd: target for fd, target in fds.items() if fd > 2}
    assert len(extra) == 2, fds
    assert any(t.startswith("socket:") for t in extra.values()), fds
    assert any(t.endswith("exec.fifo") for t in extra.values()), fds
    rt("delete", cid)


# --------------------------------------------------------------------------- bad input


def _bad_json(bundle: Path) -> None:
    (bundle / "config.json").write_text('{"ociVersion": "1.0.2", "process": ')


def _edit(fn):  # type: ignore[no-untyped-def]
    def apply(bundle: Path) -> None:
        config = read_config(bundle)
        fn(config)
        write_config(bundle, config)
    return apply


def _userns(maps: list[dict]) -> object:
    def fn(c: dict) -> None:
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = maps
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    return fn


BAD_INPUT = {
    "malformed-json": (_bad_json, "invalid JSON"),
    "missing-rootfs": (_edit(lambda c: c["root"].update(path="no-such-rootfs")), "rootfs"),
    "unknown-capability": (_edit(lambda c: c["process"]["capabilities"]["bounding"].append("CAP_BOGUS")),
                           "unknown capability"),
    "unknown-seccomp-action": (_edit(lambda c: c["linux"]["seccomp"].update(defaultAction="SCMP_ACT_BOGUS")),
                               "seccomp action"),
    "unknown-syscall": (_edit(lambda c: c["linux"]["seccomp"]["syscalls"].append(
        {"names": ["no_such_syscall"], "action": "SCMP_ACT_ALLOW"})), "no_such_syscall"),
    "bad-uid-map-size": (_edit(_userns([{"containerID": 0, "hostID": 100000, "size": 0}])), "uidMappings"),
    # well-formed but refused by the kernel (overlapping ranges): fails after the
    # cgroup and the processes exist, so this exercises the rollback
    "bad-uid-map-overlap": (_edit(_userns([{"containerID": 0, "hostID": 100000, "size": 100},
                                           {"containerID": 50, "hostID": 200000, "size": 100}])), "uid_map"),
    "unknown-namespace": (_edit(lambda c: c["linux"]["namespaces"].append({"type": "bogus"})), "namespace"),
    "missing-namespace-path": (_edit(lambda c: c["linux"]["namespaces"].__setitem__(
        1, {"type": "network", "path": "/proc/999999999/ns/net"})), "network"),
    "hostname-without-uts": (_edit(lambda c: c["linux"].update(
        namespaces=[n for n in c["linux"]["namespaces"] if n["type"] != "uts"])), "UTS"),
    # fails inside the init, in its mount namespace, after the cgroup and the fork
    "failing-mount": (_edit(lambda c: c["mounts"].append(
        {"destination": "/mnt/x", "type": "nosuchfs", "source": "none"})), "/mnt/x"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_leaves_nothing(rt: RuntimeCLI, tmp_path: Path, case: str) -> None:
    breaker, needle = BAD_INPUT[case]
    bundle = make_bundle(tmp_path, ["true"])
    breaker(bundle)
    snap = HostSnapshot()
    cid = rt.new_id()
    for cmd in ("create", "run"):
        msg = rt.fail(cmd, "--bundle", bundle, cid)
        assert needle.lower() in msg.lower(), msg
        assert not (rt.root / cid).exists(), "state directory left behind"
        assert cgroup_dirs(cid) == [], "cgroup left behind"
        assert snap.new_mounts(under=tmp_path) == [], "mount left behind"
        assert snap.new_processes(marker=str(bundle), ids=[cid]) == [], "process left behind"


# --------------------------------------------------------------------------- Python API


def test_python_api_from_a_threaded_process(rt: RuntimeCLI, tmp_path: Path) -> None:
    """The engine is a threaded daemon: create/run/exec then go through the CLI in a
    subprocess (never a fork of a threaded program); the rest works in-process."""
    import threading

    from dockyard.errors import Conflict, InvalidArgument
    from dockyard.runtime.container import CreateOptions, ExecOptions, Runtime

    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        api = Runtime(str(rt.root))
        bundle = make_bundle(tmp_path, ["sh", "-c", "exit 4"])
        assert api.run(rt.new_id(), str(bundle)) == 4
        (bundle / "config.json").write_text("{")
        with pytest.raises(InvalidArgument, match="invalid JSON"):
            api.run(rt.new_id(), str(bundle))
        cid = rt.new_id()
        bundle = make_bundle(tmp_path, ["sleep", "1000"])
        with open(os.devnull, "wb") as devnull:
            saved = os.dup(1)
            os.dup2(devnull.fileno(), 1)  # the container keeps our stdout otherwise
            try:
                state = api.create(cid, str(bundle), CreateOptions())
            finally:
                os.dup2(saved, 1)
                os.close(saved)
        assert state["status"] == "created" and state["pid"] > 0
        with pytest.raises(Conflict, match="exists"):
            api.create(cid, str(bundle))
        api.start(cid)
        assert api.state(cid)["status"] == "running"
        assert api.exec(cid, {"args": ["sh", "-c", "exit 9"], "cwd": "/"}, ExecOptions()) == 9
        assert [c["id"] for c in api.list()] == [cid]
        assert state["pid"] in api.ps(cid)
        api.pause(cid)
        assert api.state(cid)["status"] == "paused"
        api.resume(cid)
        api.kill(cid, signal.SIGKILL)
        wait_exit(state["pid"])
        assert api.state(cid)["status"] == "stopped"
        api.delete(cid)
        assert not (rt.root / cid).exists()
    finally:
        stop.set()
        worker.join()


# --------------------------------------------------------------------------- spec, features, --no-pivot


def test_spec_writes_docker_defaults(rt: RuntimeCLI, tmp_path: Path) -> None:
    from dockyard.runtime.capabilities import DEFAULT_CAPS

    out = tmp_path / "specdir"
    out.mkdir()
    rt("spec", "--bundle", out)
    config = json.loads((out / "config.json").read_text())
    assert config["process"]["capabilities"]["bounding"] == list(DEFAULT_CAPS)
    assert config["root"]["path"] == "rootfs"
    assert "/proc/kcore" in config["linux"]["maskedPaths"] and "/proc/sys" in config["linux"]["readonlyPaths"]
    assert config["linux"]["seccomp"]["syscalls"], "Docker's default seccomp profile"
    assert {m["destination"] for m in config["mounts"]} >= {"/proc", "/dev", "/dev/pts", "/sys", "/dev/shm"}
    assert "exists" in rt.fail("spec", "--bundle", out)
    features = json.loads(rt("features").stdout)
    assert "user" in features["linux"]["namespaces"]


def test_no_pivot(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, ["sh", "-c", "cat /etc/passwd | head -1; ls /"])
    out = rt("run", "--no-pivot", "--bundle", bundle, rt.new_id()).stdout.split()
    assert out[0] == "root:x:0:0:root:/root:/bin/sh"
    assert "busybox" not in out and "bin" in out


def test_oom_killed_flag_and_stats(rt: RuntimeCLI, tmp_path: Path) -> None:
    """A container over its memory limit dies with 137 and its state says oomKilled;
    `events --stats` reports the cgroup's figures while it runs."""
    limit = 16 << 20
    hog = make_bundle(tmp_path, ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}"],
                      linux={"resources": {"memory": {"limit": limit, "swap": limit}}})
    cid = rt.new_id()
    res = rt("run", "--keep", "--bundle", hog, cid, check=False)
    assert res.returncode == 137, res.stderr
    state = rt.state(cid)
    assert state["status"] == "stopped" and state["oomKilled"] is True
    rt("delete", cid)

    idle = make_bundle(tmp_path, ["sleep", "3600"], linux={"resources": {"memory": {"limit": 64 << 20}, "pids": {"limit": 50}}})
    cid = rt.new_id()
    rt("run", "-d", "--bundle", idle, cid)
    assert rt.state(cid)["oomKilled"] is False
    stats = json.loads(rt("events", "--stats", cid).stdout)
    assert stats["type"] == "stats" and stats["id"] == cid
    assert stats["data"]["memory"]["limit"] == 64 << 20 and stats["data"]["memory"]["usage"] > 0
    assert stats["data"]["pids"] == {"current": 1, "limit": 50}
    assert stats["data"]["cpu"]["usage"] > 0
    rt("delete", "-f", cid)
    assert "does not exist" in rt.fail("events", "--stats", cid)


_STDIO_DRIVER = """
import os, sys
from dockyard.runtime.container import CreateOptions, ExecOptions, Runtime
root, bundle, cid = sys.argv[1:4]
rt = Runtime(root, delegate=False)
in_r, in_w = os.pipe()
out_r, out_w = os.pipe()
err_r, err_w = os.pipe()
os.write(in_w, b"from-stdin\\n")
os.close(in_w)
rt.create(cid, bundle, CreateOptions(stdio=(in_r, out_w, err_w)))
for fd in (in_r, out_w, err_w):
    os.close(fd)  # the container holds its own copies now
rt.start(cid)
out = os.read(out_r, 4096)
err = os.read(err_r, 4096)
print(repr(out), repr(err))
"""


def test_stdio_fds_become_the_containers(rt: RuntimeCLI, tmp_path: Path) -> None:
    """A caller (the engine's supervisor) hands the container its own stdin/stdout/stderr."""
    bundle = make_bundle(tmp_path, ["sh", "-c", "read line; echo out:$line; echo err >&2; exec sleep 3600"])
    cid = rt.new_id()
    res = subprocess.run([sys.executable, "-S", "-c", _STDIO_DRIVER, str(rt.root), str(bundle), cid],
                         capture_output=True, text=True, timeout=60, env=rt.env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "b'out:from-stdin\\n' b'err\\n'"
    rt("delete", "-f", cid)
