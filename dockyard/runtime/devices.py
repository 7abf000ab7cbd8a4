"""/dev inside the container: device nodes, the standard symlinks, ptmx and the console.

Nodes are made with mknod(2). Where that is refused (EPERM: a user namespace has no
CAP_MKNOD over the host's devices), the host's node is bind-mounted onto an empty file
instead, as runc does. Every path is created and opened inside the root (see mounts.py).
"""

from __future__ import annotations

import errno
import os
import stat

from dockyard import syscalls
from dockyard.errors import InvalidArgument
from dockyard.runtime.mounts import MS_BIND, create_in_root, fd_path

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the supervisor keeps what it imports for life
    from typing import Any

# The nodes every container gets (docker's and runc's defaults), mode 0666, owned by root.
DEFAULT_DEVICES: tuple[dict[str, Any], ...] = tuple(
    {"path": f"/dev/{name}", "type": "c", "major": major, "minor": minor, "fileMode": 0o666, "uid": 0, "gid": 0}
    for name, major, minor in (
        ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
    )
)

# name in /dev -> target
DEV_SYMLINKS: tuple[tuple[str, str], ...] = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)

_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def _int(dev: dict[str, Any], key: str, default: int | None = None) -> int:
    value = dev.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(f"device {dev.get('path')!r}: {key} must be a non-negative integer")
    return value


def _check_device(dev: dict[str, Any]) -> str:
    path = dev.get("path")
    if not isinstance(path, str) or not path.startswith("/dev/") or os.path.normpath(path) != path:
        raise InvalidArgument(f"device path {path!r} must be a normalized path under /dev/")
    if dev.get("type") not in _TYPES:
        raise InvalidArgument(f"device {path!r}: type must be one of c, b, u, p, not {dev.get('type')!r}")
    return path


def setup_dev(rootfd: int, devices: list[dict[str, Any]]) -> None:
    """The default devices plus ``devices`` (linux.devices; same path replaces a default),
    then /dev/fd & co., /dev/core and /dev/ptmx -> pts/ptmx."""
    wanted: dict[str, dict[str, Any]] = {d["path"]: d for d in DEFAULT_DEVICES}
    for dev in devices:
        wanted[_check_device(dev)] = dev
    # mknod applies the umask; the modes in the spec are meant exactly.
    old_umask = os.umask(0)
    try:
        for dev in wanted.values():
            try:
                create_device(rootfd, dev)
            except OSError as e:
                raise OSError(e.errno, f"device {dev['path']}: {e.strerror or e}") from None
    finally:
        os.umask(old_umask)
    devfd = create_in_root(rootfd, "/dev")
    try:
        links = list(DEV_SYMLINKS)
        if os.path.exists("/proc/kcore"):  # CONFIG_PROC_KCORE may be off
            links.append(("core", "/proc/kcore"))
        for name, target in links:
            try:
                os.symlink(target, name, dir_fd=devfd)
            except FileExistsError:
                pass
        # devpts(newinstance) has its own ptmx; /dev/ptmx must lead to it, not to the host's.
        try:
            os.unlink("ptmx", dir_fd=devfd)
        except FileNotFoundError:
            pass
        os.symlink("pts/ptmx", "ptmx", dir_fd=devfd)
    finally:
        os.close(devfd)


def create_device(rootfd: int, dev: dict[str, Any]) -> None:
    path = _check_device(dev)
    kind = _TYPES[dev["type"]]
    major = minor = 0
    if kind != stat.S_IFIFO:
        major, minor = _int(dev, "major"), _int(dev, "minor")
    mode = _int(dev, "fileMode", 0o666) & 0o7777
    uid, gid = _int(dev, "uid", 0), _int(dev, "gid", 0)
    parent = create_in_root(rootfd, os.path.dirname(path))
    name = os.path.basename(path)
    try:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISDIR(st.st_mode):
                raise OSError(errno.EISDIR, "a directory is in the way")
            # whatever the image had there (a regular file, a symlink) is not the device
            os.unlink(name, dir_fd=parent)
        try:
            os.mknod(name, kind | mode, os.makedev(major, minor), dir_fd=parent)
        except PermissionError:
            _bind_host_node(parent, name, path)
            return
        os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


def _bind_host_node(parent: int, name: str, host_path: str) -> None:
    """mknod refused: bind the host's node of the same path onto an empty file."""
    if not os.path.exists(host_path):
        raise OSError(errno.ENOENT, f"mknod not permitted and the host has no {host_path} to bind")
    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=parent))
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        syscalls.mount(host_path, fd_path(fd), None, MS_BIND)
    finally:
        os.close(fd)


def bind_console(slave_path: str, rootfs: str = "/") -> None:
    """Bind the terminal's pty slave onto /dev/console.

    Called in the container after ``pivot_to`` (``rootfs`` "/", where the container may have
    no /proc for magic links yet every path is already confined), or before it with the
    rootfs path (then resolved in-root like every mount).
    """
    if rootfs == "/":
        try:
            st = os.lstat("/dev/console")
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            os.unlink("/dev/console")
            st = None
        if st is None:
            os.close(os.open("/dev/console", os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        syscalls.mount(slave_path, "/dev/console", None, MS_BIND)
        return
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = create_in_root(rootfd, "/dev/console", file=True)
        try:
            syscalls.mount(slave_path, fd_path(fd), None, MS_BIND)
        finally:
            os.close(fd)
    finally:
        os.close(rootfd)

