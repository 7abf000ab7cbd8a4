"""Mounting the ``Mount`` specs that snapshotters return (the consumer side).

Snapshotters never mount; the container runtime, the layer differ and the tests do, with
``mount_all`` / ``unmount_all`` / ``temp_mount``. Mount points are read back from
``/proc/self/mountinfo`` (``mounts_under``, ``is_mounted``), which is the only reliable
source: a bind mount of a directory on the same filesystem has the same ``st_dev``.

Overlay and the one-page limit
------------------------------
mount(2) copies at most one page (4096 bytes, NUL included) of option data. Anything past
that is *silently truncated*: a lowerdir list cut at a ``:`` would mount fewer layers
without any error. So an overlay is mounted with one of three strategies:

``page``      plain mount(2); only when the option string fits in a page.
``fsconfig``  the new mount API, one ``lowerdir+`` fsconfig call per layer (Linux >= 6.8),
              then fsmount + move_mount. fsconfig takes strings of at most 255 bytes, so
              a longer layer path goes in as an O_PATH fd (FSCONFIG_SET_FD, 6.13+) or, on
              older kernels, as the short ``/proc/self/fd/N`` magic link to it.
``relative``  lowerdirs relative to their common parent, mounted by util-linux ``mount``
              in a subprocess whose cwd is that parent. The kernel resolves relative
              overlay paths against the mounting process's cwd; a subprocess keeps the
              multi-threaded daemon's own cwd untouched. Still bounded by one page, and
              mount(8) is told to use mount(2) (LIBMOUNT_FORCE_MOUNT2=always), since its
              own fsconfig path caps the whole lowerdir string at 255 bytes.

``auto`` (the default) picks them in that order. ``DOCKYARD_OVERLAY_MOUNT`` or the
``overlay_strategy=`` argument forces one (tests use that to exercise every path).
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from dockyard import syscalls
from dockyard.errors import InvalidArgument
from dockyard.snapshots.base import Mount
from dockyard.syscalls import MountFlag, UmountFlag

OVERLAY_STRATEGIES = ("page", "fsconfig", "relative")
STRATEGY_ENV = "DOCKYARD_OVERLAY_MOUNT"

# mount(2) data must fit in one page *including* its NUL terminator.
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_UMOUNT_NOFOLLOW = 0x8  # don't follow a symlink planted at the mount point

# MOUNT_ATTR_* for fsmount(2): the per-mount flags of the new API.
_MOUNT_ATTR = {
    MountFlag.RDONLY: 0x1,
    MountFlag.NOSUID: 0x2,
    MountFlag.NODEV: 0x4,
    MountFlag.NOEXEC: 0x8,
    MountFlag.NOATIME: 0x10,
    MountFlag.STRICTATIME: 0x20,
}

# option word -> (flag, set?) ; "rw"/"suid"/... clear what their opposite sets.
_FLAG_OPTIONS: dict[str, tuple[int, bool]] = {
    "ro": (MountFlag.RDONLY, True),
    "rw": (MountFlag.RDONLY, False),
    "nosuid": (MountFlag.NOSUID, True),
    "suid": (MountFlag.NOSUID, False),
    "nodev": (MountFlag.NODEV, True),
    "dev": (MountFlag.NODEV, False),
    "noexec": (MountFlag.NOEXEC, True),
    "exec": (MountFlag.NOEXEC, False),
    "noatime": (MountFlag.NOATIME, True),
    "strictatime": (MountFlag.STRICTATIME, True),
    "bind": (MountFlag.BIND, True),
    "rbind": (MountFlag.BIND | MountFlag.REC, True),
}
_PROPAGATION: dict[str, int] = {
    "private": MountFlag.PRIVATE,
    "rprivate": MountFlag.PRIVATE | MountFlag.REC,
    "slave": MountFlag.SLAVE,
    "rslave": MountFlag.SLAVE | MountFlag.REC,
    "shared": MountFlag.SHARED,
    "rshared": MountFlag.SHARED | MountFlag.REC,
}


@dataclass
class _Parsed:
    flags: int
    propagation: int
    data: list[str]  # filesystem-specific options, in order


def _parse_options(options: list[str]) -> _Parsed:
    flags = 0
    propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAG_OPTIONS:
            flag, on = _FLAG_OPTIONS[opt]
            flags = flags | flag if on else flags & ~flag
        elif opt in _PROPAGATION:
            propagation |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return _Parsed(flags, propagation, data)


# --------------------------------------------------------------------------- mountinfo


def _unescape(field: bytes) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field))


def _mount_points() -> list[str]:
    """Mount points of this mount namespace, in mountinfo order (parents before children)."""
    with open("/proc/self/mountinfo", "rb") as f:
        return [_unescape(line.split()[4]) for line in f if line.strip()]


def _is_at_or_below(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top + "/")


def mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path`` (one entry per stacked mount), mountinfo order."""
    top = os.path.realpath(path)
    return [mp for mp in _mount_points() if _is_at_or_below(mp, top)]


def is_mounted(path: str) -> bool:
    """Whether something is mounted exactly at ``path``."""
    return os.path.realpath(path) in _mount_points()


# --------------------------------------------------------------------------- unmount


def _umount_one(mount_point: str) -> None:
    try:
        syscalls.umount(mount_point, _UMOUNT_NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.ENOENT):
            return  # raced with another unmount: already gone
        if e.errno != errno.EBUSY:
            raise
        # Busy (an open file or a cwd inside it): detach it from the tree now and let the
        # kernel finish when the last user goes, so cleanup never leaves it visible.
        syscalls.umount(mount_point, UmountFlag.DETACH | _UMOUNT_NOFOLLOW)


def unmount_all(target: str) -> None:
    """Unmount everything mounted at or below ``target``, deepest first.

    Repeats until mountinfo shows nothing left, because unmounting can uncover mounts that
    were stacked on the same path.
    """
    for _ in range(1000):
        points = mounts_under(target)
        if not points:
            return
        # Deepest path first; for equal paths, the later (upper) mount first.
        order = sorted(enumerate(points), key=lambda ip: (ip[1].count("/"), ip[0]), reverse=True)
        for _, mount_point in order:
            _umount_one(mount_point)
    raise OSError(errno.EBUSY, f"mounts remain under {target!r}: {mounts_under(target)}")


# --------------------------------------------------------------------------- mount


def mount_all(mounts: list[Mount], target: str, *, overlay_strategy: str | None = None) -> None:
    """Mount ``mounts`` in order onto ``target`` (later ones stack on earlier ones).

    On failure whatever this call mounted is unmounted again; ``target`` is expected to be
    a directory nothing else is mounted on.
    """
    target = os.path.abspath(target)
    try:
        for m in mounts:
            _mount_one(m, target, overlay_strategy)
    except BaseException:
        with suppress(OSError):
            unmount_all(target)
        raise


@contextmanager
def temp_mount(
    mounts: list[Mount], *, dir: str | None = None, overlay_strategy: str | None = None
) -> Iterator[str]:
    """Mount ``mounts`` on a fresh temporary directory; always unmount and remove it."""
    path = tempfile.mkdtemp(prefix="dockyard-mount-", dir=dir)
    try:
        mount_all(mounts, path, overlay_strategy=overlay_strategy)
        try:
            yield path
        finally:
            unmount_all(path)
    finally:
        os.rmdir(path)


def _mount_one(m: Mount, target: str, overlay_strategy: str | None) -> None:
    opts = _parse_options(m.options)
    if m.type == "bind" or opts.flags & MountFlag.BIND:
        _mount_bind(m.source, target, opts.flags | MountFlag.BIND)
    elif m.type == "overlay":
        _mount_overlay(m, target, opts, overlay_strategy)
    else:
        data = ",".join(opts.data)
        _check_page(data, m)
        syscalls.mount(m.source, target, m.type, opts.flags, data or None)
    if opts.propagation:
        syscalls.mount(None, target, None, opts.propagation)


def _mount_bind(source: str, target: str, flags: int) -> None:
    syscalls.mount(source, target, None, flags & (MountFlag.BIND | MountFlag.REC))
    # MS_BIND ignores every other flag: ro/nosuid/... need a second, remount call.
    extra = flags & ~(MountFlag.BIND | MountFlag.REC)
    if extra:
        try:
            syscalls.mount(None, target, None, MountFlag.REMOUNT | MountFlag.BIND | extra)
        except BaseException:
            unmount_all(target)
            raise


def _check_page(data: str, m: Mount) -> None:
    size = len(data.encode())
    if size >= _PAGE_SIZE:
        raise InvalidArgument(
            f"{m.type} mount options are {size} bytes; mount(2) takes at most {_PAGE_SIZE - 1}"
        )


# --------------------------------------------------------------------------- overlay

_lowerdir_append: bool | None = None
_lowerdir_append_lock = threading.Lock()


def supports_lowerdir_append() -> bool:
    """Whether overlay accepts ``lowerdir+`` through fsconfig (Linux >= 6.8); probed once.

    The probe only configures a filesystem context (``lowerdir+=/`` is resolved right
    away) and closes it without creating a superblock, so nothing is mounted.
    """
    global _lowerdir_append
    with _lowerdir_append_lock:
        if _lowerdir_append is None:
            try:
                fd = syscalls.fsopen("overlay")
            except OSError:
                _lowerdir_append = False
            else:
                try:
                    syscalls.fsconfig(fd, syscalls.FSCONFIG_SET_STRING, "lowerdir+", "/")
                    _lowerdir_append = True
                except OSError:
                    _lowerdir_append = False
                finally:
                    os.close(fd)
        return _lowerdir_append


def _split_lowerdir(value: str) -> list[str]:
    """Split overlay's ``a:b:c`` honouring its backslash escapes (``\\:``)."""
    layers: list[str] = []
    cur: list[str] = []
    chars = iter(value)
    for ch in chars:
        if ch == "\\":
            cur.append(next(chars, ""))
        elif ch == ":":
            layers.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    layers.append("".join(cur))
    return layers


def _escape_layer(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def overlay_strategy_for(m: Mount, strategy: str | None = None) -> str:
    """The strategy ``mount_all`` will use for overlay mount ``m``."""
    requested = strategy or os.environ.get(STRATEGY_ENV) or "auto"
    if requested != "auto" and requested not in OVERLAY_STRATEGIES:
        raise InvalidArgument(
            f"unknown overlay mount strategy {requested!r} (want auto, {', '.join(OVERLAY_STRATEGIES)})"
        )
    if requested != "auto":
        return requested
    if len(",".join(_parse_options(m.options).data).encode()) < _PAGE_SIZE:
        return "page"
    return "fsconfig" if supports_lowerdir_append() else "relative"


def _mount_overlay(m: Mount, target: str, opts: _Parsed, strategy: str | None) -> None:
    chosen = overlay_strategy_for(m, strategy)
    source = m.source or "overlay"
    if chosen == "page":
        data = ",".join(opts.data)
        _check_page(data, m)
        syscalls.mount(source, target, "overlay", opts.flags, data)
    elif chosen == "fsconfig":
        if not supports_lowerdir_append():
            raise InvalidArgument("overlay 'lowerdir+' (fsconfig) needs Linux >= 6.8")
        _mount_overlay_fsconfig(source, target, opts)
    else:
        _mount_overlay_relative(source, target, opts)


def _fs_context_log(fd: int) -> str:
    """The kernel's messages for a filesystem context (why fsconfig failed, in words)."""
    lines = []
    for _ in range(32):
        try:
            msg = os.read(fd, 4096)
        except OSError:
            break  # ENODATA: log drained
        lines.append(msg.decode(errors="replace").strip())
    return "; ".join(lines)


# fsconfig(2) copies a string value of at most 256 bytes, NUL included.
_FSCONFIG_STRING_MAX = 255
_PATH_KEYS = ("upperdir", "workdir")


def _fsconfig_path(fd: int, key: str, path: str) -> None:
    if len(os.fsencode(path)) <= _FSCONFIG_STRING_MAX:
        syscalls.fsconfig(fd, syscalls.FSCONFIG_SET_STRING, key, path)
        return
    dfd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            syscalls.fsconfig_fd(fd, key, dfd)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            # Linux 6.8-6.12 take overlay layers only as strings: a magic link to the
            # open directory is a short string the kernel resolves to the same place.
            syscalls.fsconfig(fd, syscalls.FSCONFIG_SET_STRING, key, f"/proc/self/fd/{dfd}")
    finally:
        os.close(dfd)


def _mount_overlay_fsconfig(source: str, target: str, opts: _Parsed) -> None:
    fd = syscalls.fsopen("overlay")
    try:
        try:
            syscalls.fsconfig(fd, syscalls.FSCONFIG_SET_STRING, "source", source)
            for opt in opts.data:
                key, sep, value = opt.partition("=")
                if key == "lowerdir":
                    # Top-most first, like the colon list; each layer is a raw path here.
                    for layer in _split_lowerdir(value):
                        _fsconfig_path(fd, "lowerdir+", layer)
                elif sep and key in _PATH_KEYS:
                    _fsconfig_path(fd, key, value)
                elif sep:
                    syscalls.fsconfig(fd, syscalls.FSCONFIG_SET_STRING, key, value)
                else:
                    syscalls.fsconfig(fd, syscalls.FSCONFIG_SET_FLAG, key)
            syscalls.fsconfig(fd, syscalls.FSCONFIG_CMD_CREATE)
        except OSError as e:
            log = _fs_context_log(fd)
            raise OSError(e.errno, f"{e.strerror} (overlay on {target!r}: {log})") from e
        attrs = 0
        for flag, attr in _MOUNT_ATTR.items():
            if opts.flags & flag:
                attrs |= attr
        mfd = syscalls.fsmount(fd, attrs)
        try:
            syscalls.move_mount(mfd, target)
        finally:
            os.close(mfd)
    finally:
        os.close(fd)


def _mount_overlay_relative(source: str, target: str, opts: _Parsed) -> None:
    dirs: dict[str, list[str]] = {}
    for opt in opts.data:
        key, sep, value = opt.partition("=")
        if sep and key == "lowerdir":
            dirs[key] = _split_lowerdir(value)
        elif sep and key in ("upperdir", "workdir"):
            dirs[key] = [value]
    if "lowerdir" not in dirs:
        raise InvalidArgument("overlay mount without lowerdir")
    base = os.path.commonpath([p for paths in dirs.values() for p in paths])
    words: list[str] = []
    for opt in opts.data:
        key = opt.partition("=")[0]
        if key in dirs:
            rel = ":".join(_escape_layer(os.path.relpath(p, base)) for p in dirs[key])
            words.append(f"{key}={rel}")
        else:
            words.append(opt)
    for word, (flag, on) in _FLAG_OPTIONS.items():
        # Per-mount flags go back into -o as words; mount(8) turns them into MS_* again.
        if on and not flag & MountFlag.BIND and (opts.flags & flag) == flag:
            words.append(word)
    data = ",".join(words)
    _check_page(data, Mount("overlay", source, words))
    # -i: no /sbin/mount.overlay helper; -n: no userspace mtab bookkeeping.
    cmd = ["mount", "-i", "-n", "-t", "overlay", "-o", data, source, target]
    # util-linux >= 2.39 would pass "lowerdir=..." through fsconfig(2), which takes at most
    # 255 bytes per value; this forces the classic mount(2) and its one page (older
    # versions ignore the variable).
    env = {**os.environ, "LIBMOUNT_FORCE_MOUNT2": "always"}
    proc = subprocess.run(cmd, cwd=base, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # mount(8) reports the kernel's reason only in words, so there is no errno to keep.
        raise OSError(
            f"mount -t overlay on {target!r} (cwd {base!r}) exited {proc.returncode}: "
            f"{proc.stderr.strip()}"
        )
