"""Spare network namespaces (runtime/netns_pool.py): each is a fresh namespace with only
lo, up, held by an fd; the helpers that made them are gone; a Runtime with a pool gives a
new container a spare and leaves containers that must make their own alone."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import struct
import time
import uuid

import pytest

from dockyard import syscalls
from dockyard.runtime.netns_pool import NetnsPool
from tests.conftest import Daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

_NS_GET_NSTYPE = 0xB703
_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1


def _inside(fd: int) -> tuple[list[str], bool]:
    """The interfaces of the namespace ``fd`` and whether lo is up, seen from a child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            syscalls.setns(fd, syscalls.CloneFlag.NEWNET)
            with open("/proc/self/net/dev") as f:
                names = [line.split(":")[0].strip() for line in f.readlines()[2:]]
            import socket

            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0)))[1]
            os.write(w, (",".join(names) + ("|up" if flags & _IFF_UP else "|down")).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    names, state = out.split("|")
    return names.split(","), state == "up"


def _children() -> list[int]:
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
        return [int(p) for p in f.read().split()]


def test_spares_are_fresh_namespaces_with_lo_up() -> None:
    pool = NetnsPool(size=2)
    before = _children()
    assert pool.missing() == 2
    pool.fill(limit=1)
    assert len(pool) == 1 and pool.missing() == 1
    pool.fill()
    assert len(pool) == 2 and pool.missing() == 0
    assert _children() == before  # the helpers exited and were reaped
    host = os.stat("/proc/self/ns/net").st_ino
    fds = [pool.take(), pool.take()]
    assert pool.take() is None
    try:
        inodes = set()
        for fd in fds:
            assert fd is not None
            assert fcntl.ioctl(fd, _NS_GET_NSTYPE) == syscalls.CloneFlag.NEWNET
            inodes.add(os.fstat(fd).st_ino)
            assert _inside(fd) == (["lo"], True)
        assert host not in inodes and len(inodes) == 2
    finally:
        for fd in fds:
            if fd is not None:
                os.close(fd)


def test_close_releases_the_spares() -> None:
    pool = NetnsPool(size=1)
    pool.fill()
    fd = pool._fds[0]
    pool.close()
    assert len(pool) == 0
    with pytest.raises(OSError) as e:
        os.fstat(fd)
    assert e.value.errno == errno.EBADF


def _spares(supervisor_pid: int) -> set[int]:
    """The network namespaces the supervisor holds open: its spares."""
    out = set()
    for fd in os.listdir(f"/proc/{supervisor_pid}/fd"):
        try:
            link = os.readlink(f"/proc/{supervisor_pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("net:["):
            out.add(int(link[5:-1]))
    return out


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed")
def test_supervisor_gives_containers_spares(cli: Daemon) -> None:
    """A container with a network namespace of its own gets one of the supervisor's spares
    (made ahead of time, when no request came for a moment); --network host does not take
    one; the pool is refilled."""
    cli.cli("run", "--rm", "busybox", "true")  # the supervisor runs
    sup = int((cli.root / "exec" / "supervisor.pid").read_text())
    deadline = time.monotonic() + 30
    while len(_spares(sup)) < NetnsPool().size:  # refilled a moment after a create: no event to wait on
        assert time.monotonic() < deadline, "the supervisor did not make its spare network namespaces"
        time.sleep(0.01)
    spares = _spares(sup)
    name = "netns-" + uuid.uuid4().hex[:8]
    cli.cli("run", "-d", "--name", name, "busybox", "sleep", "60")
    try:
        pid = json.loads(cli.cli("inspect", name).stdout)[0]["State"]["Pid"]
        assert os.stat(f"/proc/{pid}/ns/net").st_ino in spares
        out = cli.cli("exec", name, "cat", "/proc/net/dev").stdout
        assert sorted(line.split(":")[0].strip() for line in out.splitlines()[2:]) == ["eth0", "lo"]
    finally:
        cli.cli("rm", "-f", name)
    host = cli.cli("run", "--rm", "--network", "host", "busybox", "readlink", "/proc/self/ns/net").stdout.strip()
    assert host == os.readlink("/proc/self/ns/net")
