"""Container cgroups on cgroup v1 (one hierarchy per controller) and v2 (unified).

    cg = open_cgroup("/dockyard/<id>")          # the host's version, from mountinfo
    warnings = cg.create(spec["linux"]["resources"])
    cg.add(pid); cg.freeze(); cg.thaw(); cg.stats(); cg.kill_all(); cg.destroy()

See ``base.Cgroup`` for the interface and ``resources`` for how OCI values map to files.
"""

from __future__ import annotations

import os

from dockyard.errors import InvalidArgument, Unavailable

from .base import (
    REAL_FS,
    Cgroup,
    CgroupFs,
    CpuStats,
    MemoryStats,
    PidsStats,
    Stats,
    parse_cgroup_path,
)
from .detect import (
    detect_version,
    read_mounts,
    v1_hierarchies,
    v1_hierarchies_under,
    v2_mount_point,
)
from .notify import OomWatcher
from .v1 import V1Cgroup
from .v2 import V2Cgroup

__all__ = [
    "Cgroup", "CgroupFs", "CpuStats", "MemoryStats", "OomWatcher", "PidsStats", "Stats",
    "V1Cgroup", "V2Cgroup", "detect_version", "open_cgroup", "parse_cgroup_path",
]


def open_cgroup(path: str, *, version: int | None = None, root: str | None = None,
                fs: CgroupFs | None = None) -> Cgroup:
    """The cgroup at OCI cgroupsPath ``path`` (``/a/b``, ``a/b`` or ``slice:prefix:name``).

    ``version`` defaults to the host's (``detect_version``). ``root`` replaces the mounted
    hierarchies with a tree laid out like /sys/fs/cgroup (v1: one directory per hierarchy;
    v2: the unified root), its version then read from the tree (cgroup.controllers at the
    top means v2). ``fs`` replaces the file operations (tests emulate the kernel with it).
    Nothing is touched until a method is called.
    """
    fs = fs or REAL_FS
    if version is None:
        if root is None:
            version = detect_version()
        else:
            version = 2 if os.path.exists(os.path.join(root, "cgroup.controllers")) else 1
    if version == 2:
        mount = root if root is not None else v2_mount_point(read_mounts())
        if mount is None:
            raise Unavailable("no cgroup2 hierarchy is mounted")
        return V2Cgroup(path, mount.rstrip("/") or "/", fs)
    if version == 1:
        hierarchies = v1_hierarchies_under(root) if root is not None else v1_hierarchies(read_mounts())
        if not hierarchies:
            raise Unavailable("no cgroup v1 hierarchy is mounted")
        return V1Cgroup(path, hierarchies, fs)
    raise InvalidArgument(f"cgroup version must be 1 or 2, got {version!r}")
