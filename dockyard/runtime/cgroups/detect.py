"""Which cgroup version the host runs, and where its hierarchies are mounted.

Read from /proc/self/mountinfo rather than probing files: a hybrid host has a cgroup2
mount (and so a cgroup.controllers file) under /sys/fs/cgroup/unified while the
controllers live in v1 hierarchies; only the filesystem type of /sys/fs/cgroup itself says
which version owns the controllers.
"""

from __future__ import annotations

import os

from dockyard.runtime.mounts import unescape_octal as _unescape
from dockyard.runtime.values import Value

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the supervisor keeps what it imports for life
    from typing import Any

CGROUP_ROOT = "/sys/fs/cgroup"

# mount options of a v1 cgroup mount that are not controller names
_V1_FLAGS = {"rw", "ro", "noprefix", "xattr", "clone_children", "cpuset_v2_mode", "favordynmods",
             "nofavordynmods", "none", "all"}


class CgroupMount(Value):
    """One cgroup (v1) or cgroup2 mount of the host."""

    __slots__ = ("mount_point", "fstype", "options")

    def __init__(self, mount_point: str, fstype: str, options: tuple[str, ...]) -> None:
        self.mount_point = mount_point
        self.fstype = fstype  # cgroup or cgroup2
        self.options = options  # super options (v1: controllers, name=..., flags)


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup and cgroup2 mounts listed in a mountinfo text, in mount order."""
    mounts = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields, tail = pre.split(), post.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append(CgroupMount(_unescape(fields[4]), tail[0], tuple(tail[2].split(","))))
    return mounts


class _MountinfoCache:
    """This process's cgroup mounts, re-read only when the mount table changed: the kernel
    flags an open mountinfo file with POLLPRI on every change in its namespace. A
    long-lived caller (the supervisor) otherwise parses the whole table several times
    per container. Keyed by pid: a forked child (maybe in a new mount namespace) reads
    afresh."""

    def __init__(self) -> None:
        self.pid = -1
        self.fd = -1
        self.poll: Any = None
        self.mounts: list[CgroupMount] = []

    def get(self) -> list[CgroupMount]:
        import select

        if self.pid != os.getpid():
            self.pid, self.fd = os.getpid(), os.open(_SELF_MOUNTINFO, os.O_RDONLY | os.O_CLOEXEC)
            self.poll = select.poll()
            self.poll.register(self.fd, select.POLLPRI | select.POLLERR)
        elif not self.poll.poll(0):
            return list(self.mounts)
        # read from the start: this clears the change flag until the next change
        os.lseek(self.fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self.fd, 1 << 16):
            chunks.append(chunk)
        self.mounts = parse_mountinfo(b"".join(chunks).decode(errors="surrogateescape"))
        return list(self.mounts)


_SELF_MOUNTINFO = "/proc/self/mountinfo"
_cache = _MountinfoCache()


def read_mounts(mountinfo: str = _SELF_MOUNTINFO) -> list[CgroupMount]:
    if mountinfo == _SELF_MOUNTINFO:
        return _cache.get()
    with open(mountinfo) as f:
        return parse_mountinfo(f.read())


def detect_version(mountinfo: str = "/proc/self/mountinfo") -> int:
    """2 when /sys/fs/cgroup is a cgroup2 mount (a pure v2 host), else 1 (v1 or hybrid)."""
    mounts = read_mounts(mountinfo)
    at_root = [m for m in mounts if m.mount_point == CGROUP_ROOT]
    if at_root:
        return 2 if at_root[-1].fstype == "cgroup2" else 1  # the last mount there wins
    # cgroup2 mounted elsewhere with no v1 hierarchy at all still means v2
    if any(m.fstype == "cgroup2" for m in mounts) and not any(m.fstype == "cgroup" for m in mounts):
        return 2
    return 1


def v2_mount_point(mounts: list[CgroupMount]) -> str | None:
    """The cgroup2 hierarchy: /sys/fs/cgroup on a v2 host, else e.g. .../unified."""
    v2 = [m.mount_point for m in mounts if m.fstype == "cgroup2"]
    if CGROUP_ROOT in v2:
        return CGROUP_ROOT
    return v2[0] if v2 else None


def v1_hierarchies(mounts: list[CgroupMount]) -> dict[str, str]:
    """Controller (or ``name=systemd``-style named hierarchy) -> mount point; the first
    mount of a hierarchy wins (later ones are usually bind mounts of it)."""
    out: dict[str, str] = {}
    for m in mounts:
        if m.fstype != "cgroup":
            continue
        for opt in m.options:
            if opt in _V1_FLAGS or opt.startswith("release_agent="):
                continue
            out.setdefault(opt, m.mount_point)
    return out


def v1_hierarchies_under(root: str) -> dict[str, str]:
    """The v1 hierarchies of a tree laid out like /sys/fs/cgroup: one directory per
    hierarchy named after its controllers ("cpu,cpuacct"), "systemd" for name=systemd."""
    out: dict[str, str] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir(follow_symlinks=True) or entry.name == "unified":
            continue
        real = os.path.realpath(entry.path)
        names = os.path.basename(real).split(",")
        for name in names:
            key = "name=systemd" if name == "systemd" else name
            out.setdefault(key, real)
    return out
