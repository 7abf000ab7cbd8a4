"""dockyard-runtime exec: a process joining a running container's namespaces, cgroup
and root, with the process settings of the config or of the command line."""

from __future__ import annotations

import json
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


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[RuntimeCLI]:
    snap = HostSnapshot()
    cli = RuntimeCLI(tmp_path / "state")
    yield cli
    left = cli.cleanup()
    assert left == [], f"containers left behind: {left}"
    assert [d for cid in cli.ids for d in cgroup_dirs(cid)] == [], "cgroups left behind"
    assert snap.new_mounts(under=tmp_path) == [], "mounts left behind"
    assert snap.new_processes(marker=str(tmp_path), ids=cli.ids) == [], "processes left behind"


@pytest.fixture
def box(rt: RuntimeCLI, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A running container that wrote a marker file and said so: (id, init pid)."""
    bundle = make_bundle(tmp_path, ["sh", "-c", "echo from-init > /tmp/marker; echo ready; exec sleep 1000"])
    cid = rt.new_id()
    r, w = os.pipe()
    try:
        rt("run", "-d", "--bundle", bundle, cid, stdout=w)
        os.close(w)
        w = -1
        assert read_line(r) == "ready"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    pid = rt.state(cid)["pid"]
    yield cid, pid
    rt("delete", "-f", cid)
    wait_exit(pid)


def test_exec_joins_the_container(rt: RuntimeCLI, box: tuple[str, int]) -> None:
    cid, pid = box
    names = ("pid", "mnt", "net", "uts", "ipc", "cgroup")
    script = "cat /tmp/marker; hostname; for n in " + " ".join(names) + "; do readlink /proc/self/ns/$n; done"
    out = rt("exec", cid, "sh", "-c", script).stdout.splitlines()
    assert out[0] == "from-init", "exec sees the container's filesystem"
    assert out[1] == "dockyard"
    for name, inside in zip(names, out[2:], strict=True):
        assert inside == os.readlink(f"/proc/{pid}/ns/{name}"), f"{name} namespace differs from the init's"
    # it is in the container's pid namespace: PID 1 there is the init (sleep)
    assert rt("exec", cid, "cat", "/proc/1/comm").stdout.strip() == "sleep"
    # and in its cgroup
    own = rt("exec", cid, "cat", "/proc/self/cgroup").stdout
    host_view = Path(f"/proc/{pid}/cgroup").read_text()
    assert own.count("\n") == host_view.count("\n")


def test_exec_process_settings(rt: RuntimeCLI, box: tuple[str, int]) -> None:
    cid, _ = box
    assert rt("exec", "-u", "65534", cid, "id", "-u").stdout.strip() == "65534"
    assert rt("exec", "--user", "65534:65534", cid, "id", "-g").stdout.strip() == "65534"
    assert rt("exec", "-e", "FOO=bar", "-e", "EMPTY=", cid, "sh", "-c", 'echo "$FOO|$EMPTY|$PATH"').stdout.strip() \
        == "bar||/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert rt("exec", "--cwd", "/tmp", cid, "pwd").stdout.strip() == "/tmp"
    # default capabilities of the config; --cap adds one
    caps = rt("exec", cid, "grep", "CapEff", "/proc/self/status").stdout.split()[1]
    assert int(caps, 16) == 0xA80425FB, caps  # Docker's default 14
    caps = rt("exec", "--cap", "CAP_SYS_ADMIN", cid, "grep", "CapEff", "/proc/self/status").stdout.split()[1]
    assert int(caps, 16) & (1 << 21)
    assert rt("exec", cid, "grep", "Seccomp:", "/proc/self/status").stdout.split()[1] == "2"
    assert rt("exec", "--no-new-privs", cid, "grep", "NoNewPrivs", "/proc/self/status").stdout.split()[1] == "1"


def test_exec_exit_codes(rt: RuntimeCLI, box: tuple[str, int]) -> None:
    cid, _ = box
    assert rt("exec", cid, "true", check=False).returncode == 0
    assert rt("exec", cid, "sh", "-c", "exit 7", check=False).returncode == 7
    res = rt("exec", cid, "no-such-command", check=False)
    assert res.returncode == 127
    assert 'exec: "no-such-command": executable file not found in $PATH' in res.stderr
    res = rt("exec", cid, "/etc/passwd", check=False)
    assert res.returncode == 126 and "permission denied" in res.stderr
    res = rt("exec", "--cwd", "/no/such/dir", cid, "true", check=False)
    assert res.returncode != 0 and "/no/such/dir" in res.stderr
    assert rt("exec", cid, "sh", "-c", "kill -9 $$", check=False).returncode == 137


def test_exec_with_process_json_and_detach(rt: RuntimeCLI, box: tuple[str, int], tmp_path: Path) -> None:
    cid, _ = box
    process = {"args": ["sh", "-c", "echo $X > /tmp/from-process-json"], "env": ["X=json", "PATH=/bin"],
               "cwd": "/", "user": {"uid": 0, "gid": 0}}
    (tmp_path / "process.json").write_text(json.dumps(process))
    rt("exec", "--process", tmp_path / "process.json", cid)
    assert rt("exec", cid, "cat", "/tmp/from-process-json").stdout.strip() == "json"
    # -d: returns once the process runs; it is found by its pid file
    pid_file = tmp_path / "exec.pid"
    rt("exec", "-d", "--pid-file", pid_file, cid, "sleep", "1000")
    pid = int(pid_file.read_text())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "sleep"
    assert pid in json.loads(rt("ps", "--format", "json", cid).stdout)


def test_exec_does_not_leak_fds(rt: RuntimeCLI, box: tuple[str, int], tmp_path: Path) -> None:
    cid, _ = box
    leaked = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    extra = os.dup2(leaked, 60, inheritable=True)
    try:
        out = rt("exec", cid, "ls", "/proc/self/fd", pass_fds=(extra,)).stdout.split()
    finally:
        os.close(extra)
        os.close(leaked)
    assert out == ["0", "1", "2", "3"], out
    # PID 1 holds nothing but its stdio (the CVE-2024-21626 class)
    assert rt("exec", cid, "ls", "/proc/1/fd").stdout.split() == ["0", "1", "2"]


def test_exec_with_terminal(rt: RuntimeCLI, box: tuple[str, int], tmp_path: Path) -> None:
    from dockyard.runtime.console import recv_master

    cid, _ = box
    sock_path = str(tmp_path / "exec-console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1)
    listener.settimeout(30)
    proc = rt.popen("exec", "-t", "--console-socket", sock_path, cid, "sh")
    master = -1
    try:
        conn, _ = listener.accept()
        master, _name = recv_master(conn)
        conn.close()
        os.write(master, b"tty; echo hi-exec; exit 6\n")
        out = b""
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, out
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        assert re.search(rb"(^|\n)hi-exec\r?\n", out), out
        assert re.search(rb"(^|\n)/dev/pts/\d+\r?\n", out), out
        assert proc.wait(timeout=30) == 6
    finally:
        listener.close()
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_exec_into_stopped_or_missing_container_fails(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, ["sleep", "1000"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", bundle, cid, stdout=subprocess.DEVNULL)
    pid = rt.state(cid)["pid"]
    assert "console-socket" in rt.fail("exec", "-t", cid, "sh")
    rt("kill", cid, "KILL")
    wait_exit(pid)
    assert rt.fail("exec", cid, "true") == "cannot exec in a stopped container"
    rt("delete", cid)
    assert rt.fail("exec", cid, "true") == f'container "{cid}" does not exist'


def test_exec_into_a_user_namespace(rt: RuntimeCLI) -> None:
    import tempfile

    from tests.fixtures.bundles import read_config, write_config

    top = Path(tempfile.mkdtemp(prefix="dyrt-userns-exec-", dir="/tmp"))
    os.chmod(top, 0o755)  # traversable by the container's (unprivileged) host uid
    try:
        bundle = make_bundle(top, ["sh", "-c", "echo ready; exec sleep 1000"])
        config = read_config(bundle)
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        write_config(bundle, config)
        cid = rt.new_id()
        r, w = os.pipe()
        try:
            rt("run", "-d", "--bundle", bundle, cid, stdout=w)
            os.close(w)
            w = -1
            assert read_line(r) == "ready"
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        pid = rt.state(cid)["pid"]
        out = rt("exec", cid, "sh", "-c", "id -u; readlink /proc/self/ns/user; cat /proc/self/uid_map").stdout.split("\n")
        assert out[0] == "0"
        assert out[1] == os.readlink(f"/proc/{pid}/ns/user")
        assert out[2].split() == ["0", "200000", "65536"]
        assert rt("exec", "-u", "1000", cid, "id", "-u").stdout.strip() == "1000"
        rt("delete", "-f", cid)
        wait_exit(pid)
    finally:
        shutil.rmtree(top, ignore_errors=True)
