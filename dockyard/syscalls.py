"""The one ctypes seam for raw syscalls that the stdlib ``os`` module does not offer.

Every wrapper raises ``OSError(errno, strerror, context)`` on failure so the caller's
message says what was being done. Nothing else in dockyard calls ``ctypes`` directly.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

# syscall numbers for the calls glibc may not wrap (same on x86_64 and aarch64: the new
# mount API and openat2 were allocated in the unified 4xx range).
_NR = {
    "openat2": 437,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "move_mount": 429,
    "pivot_root": 155 if os.uname().machine == "x86_64" else 41,
}


def flag_names(cls: type, value: int) -> str:
    """``A|B`` for the members of a flags class (as ``enum.IntFlag(value).name`` gave), or
    the number when none matches."""
    names = [name for name, bit in vars(cls).items()
             if not name.startswith("_") and isinstance(bit, int) and bit and value & bit == bit]
    return "|".join(names) or str(value)


def _check(ret: int, context: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)}: {context}")
    return ret


def _syscall(name: str, *args, context: str) -> int:
    _libc.syscall.restype = ctypes.c_long
    return _check(_libc.syscall(ctypes.c_long(_NR[name]), *args), context)


# --------------------------------------------------------------------------- mounts


class MountFlag:  # these flag classes hold plain ints: enum would cost the supervisor ~0.8 MB
    RDONLY = 0x1
    NOSUID = 0x2
    NODEV = 0x4
    NOEXEC = 0x8
    REMOUNT = 0x20
    NOATIME = 0x400
    BIND = 0x1000
    MOVE = 0x2000
    REC = 0x4000
    PRIVATE = 1 << 18
    SLAVE = 1 << 19
    SHARED = 1 << 20
    STRICTATIME = 1 << 24


class UmountFlag:
    FORCE = 1
    DETACH = 2


_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            int(flags),
            data.encode() if data is not None else None,
        ),
        f"mount {source!r} on {target!r} type {fstype!r} flags {int(flags):#x} data {data!r}",
    )


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), int(flags)), f"umount {target!r}")


# The new mount API (Linux >= 5.2; overlay's "lowerdir+" needs >= 6.8). Used to build an
# overlay mount with more lower layers than fit in one page of mount(2) options.
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSOPEN_CLOEXEC = 1
FSMOUNT_CLOEXEC = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100


def fsopen(fstype: str) -> int:
    return _syscall("fsopen", ctypes.c_char_p(fstype.encode()), ctypes.c_uint(FSOPEN_CLOEXEC), context=f"fsopen {fstype}")


def fsconfig(fd: int, cmd: int, key: str | None = None, value: str | None = None) -> None:
    _syscall(
        "fsconfig",
        ctypes.c_int(fd),
        ctypes.c_uint(cmd),
        ctypes.c_char_p(key.encode() if key is not None else None),
        ctypes.c_char_p(value.encode() if value is not None else None),
        ctypes.c_int(0),
        context=f"fsconfig {key}={value}",
    )


def fsmount(fd: int, attr_flags: int = 0) -> int:
    return _syscall("fsmount", ctypes.c_int(fd), ctypes.c_uint(FSMOUNT_CLOEXEC), ctypes.c_uint(attr_flags), context="fsmount")


def move_mount(from_fd: int, target: str) -> None:
    _syscall(
        "move_mount",
        ctypes.c_int(from_fd),
        ctypes.c_char_p(b""),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(target.encode()),
        ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
        context=f"move_mount to {target!r}",
    )


def pivot_root(new_root: str, put_old: str) -> None:
    _syscall("pivot_root", ctypes.c_char_p(new_root.encode()), ctypes.c_char_p(put_old.encode()), context=f"pivot_root {new_root!r}")


# --------------------------------------------------------------------------- openat2


class Resolve:
    NO_XDEV = 0x01
    NO_MAGICLINKS = 0x02
    NO_SYMLINKS = 0x04
    BENEATH = 0x08
    IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open ``path`` relative to ``dirfd`` with RESOLVE_* scoping.

    Raises OSError(ENOSYS) on kernels older than 5.6; callers detect that once and fall back.
    """
    how = _OpenHow(flags | os.O_CLOEXEC, mode, int(resolve))
    return _syscall(
        "openat2",
        ctypes.c_int(dirfd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
        context=f"openat2 {path!r}",
    )


_openat2_supported: bool | None = None


def has_openat2() -> bool:
    global _openat2_supported
    if _openat2_supported is None:
        try:
            os.close(openat2(AT_FDCWD, "/", os.O_PATH, resolve=Resolve.IN_ROOT))
            _openat2_supported = True
        except OSError:
            _openat2_supported = False
    return _openat2_supported


# --------------------------------------------------------------------------- fsconfig by fd
# (added for dockyard.mount) fsconfig(2) copies a string value of at most 255 bytes, so a
# layer at a longer path is handed to overlay as an open O_PATH fd instead (overlay takes
# FSCONFIG_SET_FD for lowerdir+/upperdir/workdir since Linux 6.13; EINVAL before).
FSCONFIG_SET_FD = 5


def fsconfig_fd(fd: int, key: str, value_fd: int) -> None:
    _syscall(
        "fsconfig",
        ctypes.c_int(fd),
        ctypes.c_uint(FSCONFIG_SET_FD),
        ctypes.c_char_p(key.encode()),
        ctypes.c_char_p(None),
        ctypes.c_int(value_fd),
        context=f"fsconfig {key}=<fd {value_fd}>",
    )


# --------------------------------------------------------------------------- namespaces, process


class CloneFlag:
    NEWNS = 0x00020000
    NEWCGROUP = 0x02000000
    NEWUTS = 0x04000000
    NEWIPC = 0x08000000
    NEWUSER = 0x10000000
    NEWPID = 0x20000000
    NEWNET = 0x40000000
    NEWTIME = 0x00000080


# OCI namespace type -> clone flag
NAMESPACE_FLAGS = {
    "mount": CloneFlag.NEWNS,
    "cgroup": CloneFlag.NEWCGROUP,
    "uts": CloneFlag.NEWUTS,
    "ipc": CloneFlag.NEWIPC,
    "user": CloneFlag.NEWUSER,
    "pid": CloneFlag.NEWPID,
    "network": CloneFlag.NEWNET,
    "time": CloneFlag.NEWTIME,
}
# OCI namespace type -> the file under /proc/<pid>/ns/
NAMESPACE_FILES = {
    "mount": "mnt", "cgroup": "cgroup", "uts": "uts", "ipc": "ipc", "user": "user",
    "pid": "pid", "network": "net", "time": "time",
}

_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def unshare(flags: int) -> None:
    _check(_libc.unshare(int(flags)), f"unshare {flag_names(CloneFlag, flags)}")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, int(nstype)), f"setns fd {fd} type {nstype:#x}")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), f"sethostname {name!r}")


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), f"setdomainname {name!r}")


class Prctl:
    SET_PDEATHSIG = 1
    SET_DUMPABLE = 4
    SET_KEEPCAPS = 8
    SET_NAME = 15
    CAPBSET_READ = 23
    CAPBSET_DROP = 24
    SET_CHILD_SUBREAPER = 36
    SET_NO_NEW_PRIVS = 38
    GET_NO_NEW_PRIVS = 39
    CAP_AMBIENT = 47


PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(int(option), arg2, arg3, arg4, arg5), f"prctl {option}")


_NR["seccomp"] = 317 if os.uname().machine == "x86_64" else 277
_SECCOMP_SET_MODE_FILTER = 1


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_filter(program: ctypes.Array, instructions: int, flags: int = 0) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER): install a BPF program (``program`` holds
    ``instructions`` struct sock_filter entries) in the calling thread."""
    fprog = _SockFprog(instructions, ctypes.addressof(program))
    _syscall("seccomp", ctypes.c_uint(_SECCOMP_SET_MODE_FILTER), ctypes.c_uint(flags), ctypes.byref(fprog),
             context="seccomp(SECCOMP_SET_MODE_FILTER)")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_libc.capget.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
_libc.capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]


def capget(pid: int = 0) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) as 64-bit masks."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(hdr), data), "capget")
    return tuple(data[0].__getattribute__(f) | (data[1].__getattribute__(f) << 32) for f in ("effective", "permitted", "inheritable"))  # type: ignore[return-value]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(hdr), data), "capset")


# --------------------------------------------------------------------------- close_range
# (added for dockyard.runtime) close_range(2), Linux >= 5.9 (CLOEXEC flag >= 5.11): the
# container's init closes every inherited fd in one call instead of walking /proc/self/fd,
# which may not be mounted where the init runs.
_NR["close_range"] = 436  # unified syscall table: same on x86_64 and aarch64
CLOSE_RANGE_CLOEXEC = 1 << 2
_libc.syscall.restype = ctypes.c_long


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    _syscall("close_range", ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(flags),
             context=f"close_range {first}..{last}")


# --------------------------------------------------------------------------- mount_setattr
# (added for dockyard.runtime.rootfs) Recursive per-mount attributes (Linux >= 5.12): the
# "rro"/"rnosuid"/... bind options and a read-only /sys bind need every submount changed,
# which a MS_REMOUNT cannot do. Same number on x86_64 and aarch64 (unified 4xx range).
_NR["mount_setattr"] = 442

AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000


class MountAttr:
    RDONLY = 0x1
    NOSUID = 0x2
    NODEV = 0x4
    NOEXEC = 0x8
    ATIME_MASK = 0x70  # MOUNT_ATTR__ATIME: clear it to set one of the three below
    RELATIME = 0x0
    NOATIME = 0x10
    STRICTATIME = 0x20
    NODIRATIME = 0x80
    NOSYMFOLLOW = 0x200000


class _MountAttrStruct(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(fd: int, attr_set: int, attr_clr: int = 0, *, recursive: bool = True) -> None:
    """mount_setattr(2) on the mount ``fd`` (an O_PATH fd of a mount root) and, if
    ``recursive``, every mount below it. Raises OSError(ENOSYS) before Linux 5.12."""
    attr = _MountAttrStruct(int(attr_set), int(attr_clr), 0, 0)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _syscall(
        "mount_setattr",
        ctypes.c_int(fd),
        ctypes.c_char_p(b""),
        ctypes.c_uint(flags),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
        context=f"mount_setattr fd {fd} set {int(attr_set):#x} clear {int(attr_clr):#x}",
    )
# --------------------------------------------------------------------------- end mount_setattr


# --------------------------------------------------------------------------- inotify
# (added for dockyard.logs) inotify(7): `logs -f` follows a json-file log that another
# process (the supervisor) appends to and rotates; the follower blocks on this fd instead
# of polling. The stdlib has no wrapper; events are parsed from os.read() on the fd.


class InotifyMask:
    MODIFY = 0x00000002
    ATTRIB = 0x00000004
    CLOSE_WRITE = 0x00000008
    MOVED_FROM = 0x00000040
    MOVED_TO = 0x00000080
    CREATE = 0x00000100
    DELETE = 0x00000200
    DELETE_SELF = 0x00000400
    MOVE_SELF = 0x00000800
    Q_OVERFLOW = 0x00004000
    IGNORED = 0x00008000
    ONLYDIR = 0x01000000
    ISDIR = 0x40000000


IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
import struct as _struct  # noqa: E402 - kept inside this appended section

_INOTIFY_EVENT_HEADER = 16  # struct inotify_event: int wd; u32 mask, cookie, len; char name[len]

_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]


def inotify_init1(flags: int = IN_NONBLOCK | IN_CLOEXEC) -> int:
    return _check(_libc.inotify_init1(int(flags)), "inotify_init1")


def inotify_add_watch(fd: int, path: str, mask: int) -> int:
    return _check(_libc.inotify_add_watch(fd, os.fsencode(path), int(mask)), f"inotify_add_watch {path!r}")


def inotify_rm_watch(fd: int, wd: int) -> None:
    _check(_libc.inotify_rm_watch(fd, wd), f"inotify_rm_watch wd {wd}")


def inotify_read(fd: int, bufsize: int = 65536) -> list[tuple[int, int, int, bytes]]:
    """Every queued event as (wd, mask, cookie, name); [] when none is queued (non-blocking fd)."""
    try:
        buf = os.read(fd, bufsize)
    except BlockingIOError:
        return []
    events = []
    pos = 0
    while pos + _INOTIFY_EVENT_HEADER <= len(buf):
        wd, mask, cookie, length = _struct.unpack_from("iIII", buf, pos)  # native byte order
        name = buf[pos + 16:pos + 16 + length].rstrip(b"\0")
        events.append((wd, mask, cookie, name))
        pos += _INOTIFY_EVENT_HEADER + length
    return events
# --------------------------------------------------------------------------- end inotify


# --------------------------------------------------------------------------- fstatfs
# (added for dockyard.runtime.mounts) the filesystem type of an open fd in one syscall,
# instead of parsing /proc/self/mountinfo to learn whether a mount target is on procfs.
PROC_SUPER_MAGIC = 0x9FA0
_libc.fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]


def fstatfs_type(fd: int) -> int:
    buf = ctypes.create_string_buffer(256)  # struct statfs; f_type is its first field (a long)
    _check(_libc.fstatfs(fd, buf), f"fstatfs fd {fd}")
    return ctypes.c_long.from_buffer(buf).value


# --------------------------------------------------------------------------- malloc_trim
# (added for dockyard.supervisor) a long-lived process gives the free pages of its C heap
# back to the kernel: imports and container starts leave freed chunks behind that would
# otherwise stay resident (and count in its proportional set size) for its whole life.


def malloc_trim() -> bool:
    """glibc's ``malloc_trim(0)``: True if memory was released; False when nothing was, or
    the C library has no such call (musl)."""
    fn = getattr(_libc, "malloc_trim", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_size_t]
    return bool(fn(0))
