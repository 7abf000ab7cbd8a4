"""The container's root filesystem: what its init does between unshare and exec.

    setup_rootfs(spec, bundle)   mounts, /dev, sysctls; still in the host's view of paths
    pivot_to(rootfs)             pivot_root (or the MS_MOVE + chroot fallback)
    bind_console(slave)          only when the process has a terminal
    finish_rootfs(spec)          masked and read-only paths, read-only /dev and root, chdir /

All of it runs in the container's init: single-threaded, already in its own mount namespace
(and whatever other namespaces the spec asks for). Nothing is undone on failure: the
namespace, and every mount in it, dies with the process.

Mount propagation: the first step turns every mount of the new namespace into a slave
(or what ``linux.rootfsPropagation`` says), so nothing done here reaches the host, while
mounts the host makes later under an ``rshared``/``rslave`` bind source still arrive.
See mounts.py for how destinations are kept inside the root.
"""

from __future__ import annotations

import errno
import os
import stat

from dockyard import syscalls
from dockyard.errors import InvalidArgument
from dockyard.runtime.devices import bind_console, setup_dev
from dockyard.runtime.mounts import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    RootContext,
    describe,
    is_under,
    kept_flags,
    mount_entry,
    mountinfo,
    parse_options,
    propagation_flags,
    remount,
)
from dockyard.syscalls import MountFlag, Resolve, UmountFlag

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the supervisor keeps what it imports for life
    from collections.abc import Callable, Collection
    from typing import Any

__all__ = [
    "DOCKER_MASKED_PATHS", "DOCKER_READONLY_PATHS", "bind_console", "default_mounts",
    "finish_rootfs", "mask_path", "move_root", "pivot_to", "readonly_path", "rootfs_path",
    "setup_rootfs", "validate_sysctls", "write_sysctls",
]

# Docker's defaults: kernel interfaces that leak host information or let a container poke
# the hardware are hidden (masked) or frozen (read-only).
DOCKER_MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
DOCKER_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)


def _m(dest: str, fstype: str, source: str, *options: str) -> dict[str, Any]:
    return {"destination": dest, "type": fstype, "source": source, "options": list(options)}


_DEFAULT_MOUNTS: tuple[dict[str, Any], ...] = (
    _m("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
    _m("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
    _m("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
    _m("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
    _m("/sys/fs/cgroup", "cgroup", "cgroup", "ro", "nosuid", "noexec", "nodev"),
    _m("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
    _m("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=64m"),
)


def default_mounts() -> list[dict[str, Any]]:
    """Docker's default mount list (a fresh copy: callers append to it). Copied by hand:
    importing ``copy`` (and weakref with it) would stay in the supervisor's memory."""
    return [{**m, "options": list(m["options"])} for m in _DEFAULT_MOUNTS]


# --------------------------------------------------------------------------- errors


def _in_context(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn``; re-raise its error as one line that says which step failed."""
    try:
        return fn(*args)
    except InvalidArgument as e:
        raise InvalidArgument(f"{what}: {e}") from None
    except OSError as e:
        if e.errno is None:
            raise OSError(f"{what}: {e}") from None
        reason = e.strerror or os.strerror(e.errno)
        if e.filename is not None:
            reason += f": {e.filename!r}"
        raise OSError(e.errno, f"{what}: {reason}") from None


# --------------------------------------------------------------------------- sysctl

# Docker's rule: only sysctls a kernel namespace makes per-container, each only when the
# container really has that namespace (otherwise it would change the host).
_SYSCTL_RULES: tuple[tuple[str, bool, str], ...] = (  # (name or prefix, is prefix, namespace)
    ("kernel.msg", True, "ipc"),
    ("kernel.shm", True, "ipc"),
    ("kernel.sem", False, "ipc"),
    ("fs.mqueue.", True, "ipc"),
    ("net.", True, "network"),
)


def _sysctl_relpath(key: str) -> str:
    # '.' separates components; a '/' in a name stands for a literal '.' (sysctl(8)'s
    # convention: net.ipv4.conf.eth0/1.rp_filter is interface "eth0.1"), so they swap.
    rel = key.translate(str.maketrans("./", "/."))
    if not key or "\0" in key or any(part in ("", ".", "..") for part in rel.split("/")):
        raise InvalidArgument(f"invalid sysctl name {key!r}")
    return rel


def validate_sysctls(sysctls: Any, namespaces: Collection[str]) -> None:
    """InvalidArgument unless every sysctl is namespaced and its namespace is the
    container's own (``namespaces``: the OCI namespace types the container has)."""
    if not isinstance(sysctls, dict):
        raise InvalidArgument("linux.sysctl must map names to values")
    for key, value in sysctls.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgument(f"sysctl {key!r}: name and value must be strings")
        _sysctl_relpath(key)
        ns = next((n for name, prefix, n in _SYSCTL_RULES if key.startswith(name) if prefix or key == name), None)
        if ns is None:
            raise InvalidArgument(
                f"sysctl {key!r} is not allowed: only namespaced sysctls "
                "(net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*) can be set")
        if ns not in namespaces:
            raise InvalidArgument(f"sysctl {key!r} needs the container's own {ns} namespace")


def write_sysctls(sysctls: dict[str, str]) -> None:
    """Write them under /proc/sys.

    Through the init's current /proc (the host's, before pivot): the kernel picks the
    namespace a sysctl file acts on from the *writing task*, not from the proc mount, so
    this reaches the container's namespaces whether or not the spec mounts a proc, and
    before /proc/sys is made read-only. Each name is opened beneath /proc/sys with no
    symlinks and no crossing into another mount.
    """
    if not sysctls:
        return
    dirfd = os.open("/proc/sys", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for key, value in sysctls.items():
            resolve = Resolve.BENEATH | Resolve.NO_SYMLINKS | Resolve.NO_MAGICLINKS | Resolve.NO_XDEV
            try:
                fd = syscalls.openat2(dirfd, _sysctl_relpath(key), os.O_WRONLY, resolve=resolve)
                try:
                    os.write(fd, value.encode())
                finally:
                    os.close(fd)
            except OSError as e:
                raise OSError(e.errno, f"sysctl {key}={value}: {os.strerror(e.errno or 0)}") from None
    finally:
        os.close(dirfd)


# --------------------------------------------------------------------------- setup


def rootfs_path(spec: dict[str, Any], bundle: str) -> str:
    """The real path of ``root.path`` (relative to the bundle unless absolute)."""
    root = spec.get("root")
    path = root.get("path") if isinstance(root, dict) else None
    if not isinstance(path, str) or not path:
        raise InvalidArgument("root.path is required")
    rootfs = os.path.realpath(os.path.join(bundle, path))
    if not os.path.isdir(rootfs):
        raise InvalidArgument(f"root.path {rootfs!r} is not a directory")
    return rootfs


def _namespaces(linux: dict[str, Any]) -> frozenset[str]:
    return frozenset(ns.get("type") for ns in linux.get("namespaces") or [] if isinstance(ns, dict))


def _is_dev(m: dict[str, Any]) -> bool:
    return os.path.normpath("/" + str(m.get("destination", "")).lstrip("/")) == "/dev"


def _is_bind(m: dict[str, Any]) -> bool:
    return m.get("type") == "bind" or bool(parse_options(m.get("options") or []).flags & MS_BIND)


def _make_parent_private(rootfs: str) -> None:
    # The mount holding the rootfs must not be shared: the rootfs bind below would be
    # propagated to its peers (possibly the host's), and pivot_root refuses a shared
    # parent. Only needed when rootfsPropagation asked for shared.
    parent = None
    for mi in mountinfo():
        if is_under(rootfs, mi.mount_point) and (parent is None or len(mi.mount_point) >= len(parent.mount_point)):
            parent = mi
    if parent is not None and parent.shared:
        syscalls.mount(None, parent.mount_point, None, MountFlag.PRIVATE)


def setup_rootfs(spec: dict[str, Any], bundle: str) -> None:
    """Assemble the container's root: propagation, the rootfs bind, every mount of the
    spec in order, /dev, then linux.sysctl. Call in the init, after unsharing the mount
    namespace, before ``pivot_to``."""
    linux = spec.get("linux") or {}
    rootfs = rootfs_path(spec, bundle)
    namespaces = _namespaces(linux)
    sysctls = linux.get("sysctl") or {}
    validate_sysctls(sysctls, namespaces)
    mounts = spec.get("mounts") or []
    if not isinstance(mounts, list) or not all(isinstance(m, dict) for m in mounts):
        raise InvalidArgument("mounts must be a list of objects")

    # 1. Nothing from here on may propagate to the host.
    propagation = propagation_flags(linux.get("rootfsPropagation") or "") or (MountFlag.SLAVE | MountFlag.REC)
    _in_context("making / " + (linux.get("rootfsPropagation") or "rslave"), syscalls.mount, None, "/", None, propagation)
    _in_context("making the rootfs' parent mount private", _make_parent_private, rootfs)
    # 2. The rootfs becomes a mount point of its own (pivot_root needs one).
    _in_context(f"binding the rootfs {rootfs}", syscalls.mount, rootfs, rootfs, None, MS_BIND | MS_REC)
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        ctx = RootContext(rootfs=rootfs, rootfd=rootfd, bundle=os.path.abspath(bundle), namespaces=namespaces)
        # 3. The spec's mounts, in order (later ones may land inside earlier ones).
        for i, m in enumerate(mounts):
            _in_context(f"mounts[{i}] ({describe(m)})", mount_entry, ctx, m)
        # 4. /dev, unless the spec binds a whole /dev from somewhere.
        if not any(_is_dev(m) and _is_bind(m) for m in mounts):
            _in_context("setting up /dev", setup_dev, rootfd, linux.get("devices") or [])
    finally:
        os.close(rootfd)
    # 5.
    write_sysctls(sysctls)


# --------------------------------------------------------------------------- pivot


def pivot_to(rootfs: str, *, no_pivot: bool = False) -> None:
    """Make ``rootfs`` the process's ``/`` and drop the old root from the namespace.

    pivot_root(".", ".") stacks the old root on top of the new one; it is made a slave (so
    its unmount cannot reach the host) and detached. ``no_pivot`` (runc's --no-pivot), and
    pivot_root's EINVAL (a rootfs on the initramfs, which cannot be pivoted away from),
    use ``move_root`` instead.
    """
    rootfs = os.path.realpath(rootfs)
    if no_pivot or not _pivot_root(rootfs):
        move_root(rootfs)


def _pivot_root(rootfs: str) -> bool:
    """False, with nothing changed but the cwd, when pivot_root says EINVAL."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fchdir(new)
            try:
                syscalls.pivot_root(".", ".")
            except OSError as e:
                if e.errno == errno.EINVAL:
                    return False
                raise OSError(e.errno, f"pivot_root into {rootfs}: {os.strerror(e.errno)}") from None
        finally:
            os.close(new)
        # The old root now sits on top of "/"; our cwd (".") is the new root. Step onto
        # the old one to let go of it.
        os.fchdir(old)
        _in_context("making the old root a slave", syscalls.mount, None, ".", None, MountFlag.SLAVE | MountFlag.REC)
        _in_context("detaching the old root", syscalls.umount, ".", UmountFlag.DETACH)
    finally:
        os.close(old)
    os.chdir("/")
    return True


def move_root(rootfs: str) -> None:
    """The no-pivot fallback: MS_MOVE the rootfs onto / and chroot into it.

    The old root stays in the namespace underneath, so the host's procfs and sysfs mounts
    are detached first (or covered, where a user namespace locks them): with them gone
    the kernel's "a fully visible proc exists" check cannot be satisfied by a host mount,
    and a chroot escape would not find them. Weaker than pivot_root (a process with
    CAP_SYS_CHROOT can escape a chroot), which is why it is only a fallback.
    """
    rootfs = os.path.realpath(rootfs)
    victims = [mi for mi in mountinfo()
               if mi.fstype in ("proc", "sysfs")
               and not is_under(mi.mount_point, rootfs) and not is_under(rootfs, mi.mount_point)]
    # deepest first, so a parent's detach never hides a child we still want to handle
    for mi in sorted(victims, key=lambda mi: mi.mount_point.count("/"), reverse=True):
        try:
            syscalls.mount(None, mi.mount_point, None, MountFlag.SLAVE | MountFlag.REC)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EINVAL):
                continue  # already gone with its parent
            raise
        try:
            syscalls.umount(mi.mount_point, UmountFlag.DETACH)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM):
                raise
            _in_context(f"covering {mi.mount_point}", syscalls.mount, "tmpfs", mi.mount_point, "tmpfs",
                        MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    os.chdir(rootfs)
    _in_context(f"moving {rootfs} onto /", syscalls.mount, rootfs, "/", None, MountFlag.MOVE)
    os.chroot(".")
    os.chdir("/")


# --------------------------------------------------------------------------- finish
# After the pivot every path is the container's own: symlinks resolve inside it, so plain
# paths are safe here, and they work even without a /proc (no magic links needed).


def mask_path(path: str) -> None:
    """Hide ``path``: /dev/null over a file, an empty read-only tmpfs over a directory.
    A path that does not exist needs no hiding."""
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return
    if is_dir:  # an empty read-only tmpfs; the same flags as runc's, so mounts compare equal
        _in_context(f"masking {path}", syscalls.mount, "tmpfs", path, "tmpfs", MS_RDONLY, None)
    else:
        _in_context(f"masking {path}", syscalls.mount, "/dev/null", path, None, MS_BIND)


def readonly_path(path: str) -> None:
    """Make ``path`` (and everything mounted below it) a read-only bind of itself."""
    try:
        syscalls.mount(path, path, None, MS_BIND | MS_REC)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return
        raise OSError(e.errno, f"read-only path {path}: {os.strerror(e.errno)}") from None
    _in_context(f"read-only path {path}", _remount_ro, path)


def _remount_ro(path: str) -> None:
    remount(path, MS_RDONLY, keep=kept_flags(path))


def finish_rootfs(spec: dict[str, Any]) -> None:
    """After ``pivot_to``: rootfsPropagation on the new /, masked paths, read-only paths,
    a read-only /dev if asked, the read-only root (root.readonly), then chdir("/")."""
    linux = spec.get("linux") or {}
    prop = propagation_flags(linux.get("rootfsPropagation") or "")
    if prop:
        _in_context(f"making / {linux['rootfsPropagation']}", syscalls.mount, None, "/", None, prop)
    for path in linux.get("maskedPaths") or []:
        mask_path(path)
    for path in linux.get("readonlyPaths") or []:
        readonly_path(path)
    # A read-only /dev was mounted writable so the devices could be made in it.
    if any(_is_dev(m) and not _is_bind(m) and parse_options(m.get("options") or []).flags & MS_RDONLY
           for m in spec.get("mounts") or []):
        _in_context("making /dev read-only", _remount_ro, "/dev")
    if (spec.get("root") or {}).get("readonly"):
        _in_context("making the root read-only", _remount_ro, "/")
    os.chdir("/")
