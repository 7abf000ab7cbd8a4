"""The mounts of an OCI spec, made inside a container's root without ever leaving it.

Runs in the container's init, in its own mount namespace, before pivot_root (see
``rootfs.py`` for the order of things).

Destination safety (the CVE-2021-30465 class)
---------------------------------------------
A destination is a path *inside* the root, and the root is untrusted: the image, or a
volume mounted a moment ago, can hold symlinks to ``/``, to ``../../..`` or to a host path.
So no destination is ever joined onto the rootfs path and handed to mount(2). Instead:

* ``open_in_root`` resolves it with openat2(rootfd, dest, O_PATH, RESOLVE_IN_ROOT): the
  kernel treats ``/`` and every ``..`` met on the way, symlink targets included, as the
  root itself, so the result is inside the root however the path is built.
* The mount is made onto ``/proc/self/fd/N``. mount(2) follows that magic link to the exact
  (mount, dentry) the fd holds; nothing is looked up by name again, so a symlink swapped in
  after the check changes nothing.
* Missing components are created one at a time (``create_in_root``), each under a parent
  that was itself opened in-root, so directories and files are only ever made inside.

A magic link to an fd opened *before* a mount still names the directory underneath, so
remounts and propagation changes (which need the new mount's root) first open the
destination again, in-root again.
"""

from __future__ import annotations

import errno
import os
import stat

from dockyard import syscalls
from dockyard.errors import InvalidArgument
from dockyard.runtime.values import Value
from dockyard.syscalls import MountAttr, MountFlag, Resolve

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the supervisor keeps what it imports for life
    from collections.abc import Iterable
    from typing import Any

# MS_* values the shared MountFlag enum does not name.
MS_SYNCHRONOUS = 0x10
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NODIRATIME = 0x800
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_LAZYTIME = 1 << 25

MS_BIND = int(MountFlag.BIND)
MS_REC = int(MountFlag.REC)
MS_RDONLY = int(MountFlag.RDONLY)
MS_REMOUNT = int(MountFlag.REMOUNT)
MS_NOSUID = int(MountFlag.NOSUID)
MS_NODEV = int(MountFlag.NODEV)
MS_NOEXEC = int(MountFlag.NOEXEC)

# option word -> (MS_* flag, set it (True) or clear it (False)); later words win.
FLAG_OPTIONS: dict[str, tuple[int, bool]] = {
    "defaults": (0, True),
    "ro": (MS_RDONLY, True), "rw": (MS_RDONLY, False),
    "nosuid": (MS_NOSUID, True), "suid": (MS_NOSUID, False),
    "nodev": (MS_NODEV, True), "dev": (MS_NODEV, False),
    "noexec": (MS_NOEXEC, True), "exec": (MS_NOEXEC, False),
    "sync": (MS_SYNCHRONOUS, True), "async": (MS_SYNCHRONOUS, False),
    "dirsync": (MS_DIRSYNC, True),
    "remount": (MS_REMOUNT, True),
    "mand": (MS_MANDLOCK, True), "nomand": (MS_MANDLOCK, False),
    "noatime": (int(MountFlag.NOATIME), True), "atime": (int(MountFlag.NOATIME), False),
    "nodiratime": (MS_NODIRATIME, True), "diratime": (MS_NODIRATIME, False),
    "relatime": (MS_RELATIME, True), "norelatime": (MS_RELATIME, False),
    "strictatime": (int(MountFlag.STRICTATIME), True), "nostrictatime": (int(MountFlag.STRICTATIME), False),
    "lazytime": (MS_LAZYTIME, True), "nolazytime": (MS_LAZYTIME, False),
    "iversion": (MS_I_VERSION, True), "noiversion": (MS_I_VERSION, False),
    "silent": (MS_SILENT, True), "loud": (MS_SILENT, False),
    "nosymfollow": (MS_NOSYMFOLLOW, True), "symfollow": (MS_NOSYMFOLLOW, False),
    "bind": (MS_BIND, True), "rbind": (MS_BIND | MS_REC, True),
}
PROPAGATION_OPTIONS: dict[str, int] = {
    "private": int(MountFlag.PRIVATE), "rprivate": int(MountFlag.PRIVATE) | MS_REC,
    "shared": int(MountFlag.SHARED), "rshared": int(MountFlag.SHARED) | MS_REC,
    "slave": int(MountFlag.SLAVE), "rslave": int(MountFlag.SLAVE) | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
# Recursive attribute options (runc's "rro" & co., applied with mount_setattr AT_RECURSIVE
# because MS_REMOUNT only ever changes one mount): word -> (attributes set, cleared).
RECURSIVE_OPTIONS: dict[str, tuple[int, int]] = {
    "rro": (MountAttr.RDONLY, 0), "rrw": (0, MountAttr.RDONLY),
    "rnosuid": (MountAttr.NOSUID, 0), "rsuid": (0, MountAttr.NOSUID),
    "rnodev": (MountAttr.NODEV, 0), "rdev": (0, MountAttr.NODEV),
    "rnoexec": (MountAttr.NOEXEC, 0), "rexec": (0, MountAttr.NOEXEC),
    "rnodiratime": (MountAttr.NODIRATIME, 0), "rdiratime": (0, MountAttr.NODIRATIME),
    "rnosymfollow": (MountAttr.NOSYMFOLLOW, 0), "rsymfollow": (0, MountAttr.NOSYMFOLLOW),
    # the atime mode is one field: clear the whole of it, set one value
    "rrelatime": (MountAttr.RELATIME, MountAttr.ATIME_MASK),
    "rnoatime": (MountAttr.NOATIME, MountAttr.ATIME_MASK),
    "rstrictatime": (MountAttr.STRICTATIME, MountAttr.ATIME_MASK),
}
# Options of other runtimes' features we do not implement. A bind mount ignores unknown
# data, so passing them through would silently drop what was asked for.
UNSUPPORTED_OPTIONS = frozenset({"tmpcopyup", "idmap", "ridmap"})

# Paths inside procfs that may be mounted over (lxcfs-style emulated files); anything else
# there could hide or redirect the kernel's own controls (runc's rule).
PROC_MOUNT_ALLOWLIST = frozenset({
    "/cpuinfo", "/diskstats", "/meminfo", "/stat", "/swaps", "/uptime", "/loadavg",
    "/slabinfo", "/net/dev", "/sys/kernel/ns_last_pid",
})

_MAX_SYMLINKS = 40  # the kernel's own limit for one path walk


# --------------------------------------------------------------------------- options


# Plain classes rather than dataclasses: importing dataclasses pulls in inspect (~12 ms),
# and every container start imports this module.


class MountOptions:
    __slots__ = ("flags", "cleared", "propagation", "attr_set", "attr_clr", "data")

    def __init__(self, flags: int = 0, cleared: int = 0, propagation: list[int] | None = None,
                 attr_set: int = 0, attr_clr: int = 0, data: list[str] | None = None) -> None:
        self.flags = flags                # MS_* for mount(2)
        self.cleared = cleared            # MS_* explicitly turned off (rw, suid, ...)
        self.propagation = [] if propagation is None else propagation  # applied in order, after mounting
        self.attr_set = attr_set          # recursive MOUNT_ATTR_* to set
        self.attr_clr = attr_clr          # ... and to clear
        self.data = [] if data is None else data  # filesystem options, in order

    def copy(self, **changes: Any) -> MountOptions:
        """A shallow copy with some fields changed (as ``dataclasses.replace``)."""
        new = MountOptions(self.flags, self.cleared, self.propagation, self.attr_set,
                           self.attr_clr, self.data)
        for name, value in changes.items():
            setattr(new, name, value)
        return new

    def _key(self) -> tuple[Any, ...]:
        return (self.flags, self.cleared, self.propagation, self.attr_set, self.attr_clr, self.data)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was

    def __repr__(self) -> str:
        return ("MountOptions(flags={!r}, cleared={!r}, propagation={!r}, attr_set={!r}, "
                "attr_clr={!r}, data={!r})".format(*self._key()))

    @property
    def data_str(self) -> str | None:
        return ",".join(self.data) or None


def parse_options(options: Iterable[str]) -> MountOptions:
    """Split OCI mount options into MS_* flags, propagation, recursive attributes and the
    filesystem's own data (every word we do not know, as runc does)."""
    out = MountOptions()
    for opt in options:
        if opt in FLAG_OPTIONS:
            flag, on = FLAG_OPTIONS[opt]
            if on:
                out.flags, out.cleared = out.flags | flag, out.cleared & ~flag
            else:
                out.flags, out.cleared = out.flags & ~flag, out.cleared | flag
        elif opt in PROPAGATION_OPTIONS:
            out.propagation.append(PROPAGATION_OPTIONS[opt])
        elif opt in RECURSIVE_OPTIONS:
            s, c = (int(v) for v in RECURSIVE_OPTIONS[opt])
            out.attr_set = (out.attr_set & ~c) | s
            out.attr_clr = (out.attr_clr & ~s) | c
        elif opt in UNSUPPORTED_OPTIONS:
            raise InvalidArgument(f"mount option {opt!r} is not supported")
        else:
            out.data.append(opt)
    return out


def propagation_flags(value: str) -> int:
    """MS_* for a propagation word (``linux.rootfsPropagation``); 0 for ''."""
    if not value:
        return 0
    try:
        return PROPAGATION_OPTIONS[value]
    except KeyError:
        raise InvalidArgument(f"unknown mount propagation {value!r}") from None


# --------------------------------------------------------------------------- mountinfo


class MountInfo(Value):
    """One line of /proc/self/mountinfo (read-only by convention)."""

    __slots__ = ("mount_id", "parent_id", "root", "mount_point", "options", "optional", "fstype",
                 "source", "super_options")

    def __init__(self, mount_id: int, parent_id: int, root: str, mount_point: str, options: str,
                 optional: tuple[str, ...], fstype: str, source: str, super_options: str) -> None:
        self.mount_id, self.parent_id, self.root = mount_id, parent_id, root
        self.mount_point, self.options, self.optional = mount_point, options, optional
        self.fstype, self.source, self.super_options = fstype, source, super_options

    @property
    def shared(self) -> bool:
        return any(o.startswith("shared:") for o in self.optional)


def unescape_octal(field_: str) -> str:
    """A mountinfo field with its ``\\ooo`` escapes (space, tab, newline, backslash) decoded;
    a backslash not followed by three octal digits stays. Without ``re``: the supervisor keeps
    what it imports for life."""
    if "\\" not in field_:
        return field_
    out, i = [], 0
    while (j := field_.find("\\", i)) != -1:
        digits = field_[j + 1:j + 4]
        if len(digits) == 3 and all(c in "01234567" for c in digits):
            out += (field_[i:j], chr(int(digits, 8)))
            i = j + 4
        else:
            out.append(field_[i:j + 1])
            i = j + 1
    out.append(field_[i:])
    return "".join(out)



def mountinfo() -> list[MountInfo]:
    """This mount namespace's mounts, parents before children."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            sep = fields.index("-", 6)
            out.append(MountInfo(
                mount_id=int(fields[0]), parent_id=int(fields[1]), root=unescape_octal(fields[3]),
                mount_point=unescape_octal(fields[4]), options=fields[5], optional=tuple(fields[6:sep]),
                fstype=fields[sep + 1], source=unescape_octal(fields[sep + 2]),
                super_options=fields[sep + 3] if len(fields) > sep + 3 else "",
            ))
    return out


def is_under(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")


def mount_id_of(fd: int) -> int:
    """The id of the mount an open fd is on (its ``mnt_id`` in /proc/self/fdinfo)."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OSError(errno.ENOTSUP, f"no mnt_id in /proc/self/fdinfo/{fd}")


# --------------------------------------------------------------------------- in-root paths


def fd_path(fd: int) -> str:
    """The magic link mount(2) and friends follow to exactly what ``fd`` holds."""
    return f"/proc/self/fd/{fd}"


def _rel(path: str) -> str:
    return path.lstrip("/") or "."


def open_in_root(rootfd: int, path: str, flags: int = os.O_PATH, *, no_symlinks: bool = False) -> int:
    """Open ``path`` as seen from the root ``rootfd``: symlinks and ``..`` never leave it."""
    resolve = Resolve.IN_ROOT | Resolve.NO_MAGICLINKS
    if no_symlinks:
        resolve |= Resolve.NO_SYMLINKS
    return syscalls.openat2(rootfd, _rel(path), flags, resolve=resolve)


def create_in_root(rootfd: int, path: str, *, file: bool = False, mode: int = 0o755,
                   no_symlinks: bool = False) -> int:
    """``open_in_root`` after creating whatever is missing: directories on the way and, at
    the end, a directory or (``file``) an empty regular file.

    The walk follows symlinks the way RESOLVE_IN_ROOT does (an absolute target restarts at
    the root, ``..`` stops at it), so a dangling ``/var/run -> /run`` gets ``/run`` made
    inside the root. Each component is created under a parent opened in-root without
    symlinks, and the final open is the kernel's in-root resolution again, so a race with
    a concurrent rename can make this fail but never escape.
    """
    try:
        return open_in_root(rootfd, path, no_symlinks=no_symlinks)
    except FileNotFoundError:
        pass
    done: list[str] = []  # symlink-free components walked so far
    todo = [c for c in path.split("/") if c]
    links = 0
    while todo:
        name = todo.pop(0)
        if name == ".":
            continue
        if name == "..":
            if done:
                done.pop()
            continue
        parent = open_in_root(rootfd, "/".join(done), os.O_PATH | os.O_DIRECTORY, no_symlinks=True)
        try:
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                _create(parent, name, file=file and not todo, mode=mode)
                done.append(name)
                continue
            if stat.S_ISLNK(st.st_mode):
                if no_symlinks:
                    raise OSError(errno.ELOOP, f"{path!r} must not contain symlinks ({name!r} is one)")
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, f"too many symlinks in {path!r}")
                target = os.readlink(name, dir_fd=parent)
                if target.startswith("/"):
                    done = []
                todo = [c for c in target.split("/") if c] + todo
                continue
            done.append(name)
        finally:
            os.close(parent)
    return open_in_root(rootfd, path, no_symlinks=no_symlinks)


def _create(parent: int, name: str, *, file: bool, mode: int) -> None:
    try:
        if file:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644, dir_fd=parent))
        else:
            os.mkdir(name, mode, dir_fd=parent)
    except FileExistsError:
        pass  # someone else made it meanwhile; the final in-root open decides what it is


def path_in_root(fd: int, rootfs: str) -> str:
    """Where ``fd`` is, as a path inside the root (the kernel's own name for it)."""
    real = os.readlink(fd_path(fd))
    if real == rootfs:
        return "/"
    if real.startswith(rootfs.rstrip("/") + "/"):
        return real[len(rootfs.rstrip("/")):]
    raise OSError(errno.EXDEV, f"{real!r} is outside the container root {rootfs!r}")


# --------------------------------------------------------------------------- flags of a mount

# statvfs f_flag -> the MS_* flag a remount must repeat to keep it. A bind remount sets
# the per-mount flags to exactly what it is given, so anything not repeated is dropped;
# in a user namespace the kernel locks these on mounts inherited from the host and a
# remount that drops one fails with EPERM.
_ST_TO_MS = [(os.ST_RDONLY, MS_RDONLY), (os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV),
             (os.ST_NOEXEC, MS_NOEXEC)]
if hasattr(os, "ST_NOSYMFOLLOW"):
    _ST_TO_MS.append((os.ST_NOSYMFOLLOW, MS_NOSYMFOLLOW))


def kept_flags(fd_or_path: int | str) -> int:
    """ro/nosuid/nodev/noexec(/nosymfollow) the mount already has, as MS_* flags.

    Access-time flags are deliberately not repeated: a remount that names none of them
    keeps the mount's current atime mode (the kernel's default for remounts)."""
    f = os.fstatvfs(fd_or_path).f_flag if isinstance(fd_or_path, int) else os.statvfs(fd_or_path).f_flag
    out = 0
    for st, ms in _ST_TO_MS:
        if f & st:
            out |= ms
    return out


def remount(target: str, flags: int, *, keep: int = 0) -> None:
    """MS_BIND|MS_REMOUNT ``target`` (a mount root) with per-mount ``flags`` plus ``keep``
    (normally ``kept_flags`` of the mount: what it has and must not lose)."""
    flags &= ~(MS_BIND | MS_REC | MS_REMOUNT)
    syscalls.mount(None, target, None, MS_BIND | MS_REMOUNT | flags | keep)


def _apply_attrs(fd: int, opts: MountOptions) -> None:
    """Recursive attributes, then propagation, on the mount whose root ``fd`` is."""
    if opts.attr_set or opts.attr_clr:
        syscalls.mount_setattr(fd, opts.attr_set, opts.attr_clr, recursive=True)
    for prop in opts.propagation:
        syscalls.mount(None, fd_path(fd), None, prop)


# --------------------------------------------------------------------------- the mounts


class RootContext:
    __slots__ = ("rootfs", "rootfd", "bundle", "namespaces")

    def __init__(self, rootfs: str, rootfd: int, bundle: str, namespaces: frozenset[str]) -> None:
        self.rootfs = rootfs          # real path of the root, in the init's (pre-pivot) view
        self.rootfd = rootfd          # O_PATH fd of the root's own bind mount
        self.bundle = bundle          # relative bind sources are relative to it
        self.namespaces = namespaces  # OCI namespace types the container has (new or joined)

    def __repr__(self) -> str:
        return (f"RootContext(rootfs={self.rootfs!r}, rootfd={self.rootfd!r}, bundle={self.bundle!r}, "
                f"namespaces={self.namespaces!r})")


def describe(m: dict[str, Any]) -> str:
    return f"{m.get('type') or 'bind'} {m.get('source') or ''!r} on {m.get('destination')!r}"


def mount_entry(ctx: RootContext, m: dict[str, Any]) -> None:
    """Mount one entry of ``spec["mounts"]`` inside the root."""
    dest = m.get("destination")
    if not isinstance(dest, str) or not dest:
        raise InvalidArgument("mount destination is required")
    # The OCI spec: a relative destination is relative to "/" (old configurations).
    dest = "/" + dest.lstrip("/")
    mtype = m.get("type") or ""
    source = m.get("source") or ""
    opts = parse_options(m.get("options") or [])
    if mtype == "bind" or opts.flags & MS_BIND:
        opts.flags |= MS_BIND
        mount_bind(ctx, source, dest, opts)
    elif mtype in ("cgroup", "cgroup2"):
        mount_cgroup(ctx, mtype, dest, opts)
    elif mtype == "sysfs" and "network" not in ctx.namespaces:
        # sysfs shows the network devices of the mounter's network namespace and cannot be
        # mounted at all in a user namespace that does not own one: runc binds the host's
        # /sys instead. "ro" must then cover its submounts too, hence recursive.
        bind = opts.copy(flags=opts.flags | MS_BIND | MS_REC)
        if opts.flags & MS_RDONLY:
            bind.attr_set |= int(MountAttr.RDONLY)
        mount_bind(ctx, "/sys", dest, bind)
    elif not mtype:
        raise InvalidArgument("mount type is required unless the mount is a bind")
    else:
        # /dev is filled with devices after the mounts; finish_rootfs makes it read-only.
        mount_fs(ctx, mtype, source or mtype, dest, opts, defer_readonly=os.path.normpath(dest) == "/dev")


def _check_destination(ctx: RootContext, fd: int, dest: str, fstype: str) -> str:
    where = path_in_root(fd, ctx.rootfs)
    if where == "/":
        raise InvalidArgument(f"destination {dest!r} resolves to the container's root")
    if fstype != "proc" and syscalls.fstatfs_type(fd) == syscalls.PROC_SUPER_MAGIC:
        info = {mi.mount_id: mi for mi in mountinfo()}.get(mount_id_of(fd))
        if info is not None and info.fstype == "proc":
            real = os.readlink(fd_path(fd))
            inside = "/" + real[len(info.mount_point):].lstrip("/")
            if inside not in PROC_MOUNT_ALLOWLIST:
                raise InvalidArgument(
                    f"destination {dest!r} ({where}) is inside procfs; only "
                    f"{', '.join('/proc' + p for p in sorted(PROC_MOUNT_ALLOWLIST))} may be mounted over")
    return where


def mount_fs(ctx: RootContext, fstype: str, source: str, dest: str, opts: MountOptions, *,
             defer_readonly: bool = False) -> None:
    """A filesystem of type ``fstype`` (proc, tmpfs, devpts, mqueue, ...) at ``dest``.

    ``defer_readonly``: mount it writable even if "ro" was asked; it is filled later and
    made read-only by someone else (/dev: devices first, then finish_rootfs)."""
    # proc and sysfs are trusted afterwards (masked paths, sysctls): their mount point must
    # be a plain directory, not wherever a symlink in the image points.
    plain = fstype in ("proc", "sysfs")
    flags = opts.flags
    readonly_later = fstype == "tmpfs" and bool(flags & MS_RDONLY)
    if readonly_later or defer_readonly:
        # A tmpfs is mounted writable first so its mode can be set; then made read-only.
        flags &= ~MS_RDONLY
    try:
        fd = create_in_root(ctx.rootfd, dest, no_symlinks=plain)
    except OSError as e:
        if plain and e.errno == errno.ELOOP:
            raise InvalidArgument(f"{fstype} must be mounted on a plain directory, {dest!r} has a symlink in it") from None
        raise
    try:
        _check_destination(ctx, fd, dest, fstype)
        old_mode = stat.S_IMODE(os.fstat(fd).st_mode)
        try:
            syscalls.mount(source, fd_path(fd), fstype, flags, opts.data_str)
        except OSError as e:
            if e.errno == errno.ENODEV:
                raise InvalidArgument(f"unknown filesystem type {fstype!r}") from None
            if fstype == "mqueue" and e.errno == errno.EPERM and os.path.isdir("/dev/mqueue"):
                # a user namespace that does not own the IPC namespace: runc binds the host's
                os.close(fd)
                fd = -1
                mount_bind(ctx, "/dev/mqueue", dest, opts.copy(flags=opts.flags | MS_BIND))
                return
            raise
    finally:
        if fd >= 0:
            os.close(fd)
    new = open_in_root(ctx.rootfd, dest, no_symlinks=plain)
    try:
        if fstype == "tmpfs" and not any(d.startswith("mode=") for d in opts.data):
            # A tmpfs over an image directory keeps that directory's mode (/tmp stays 1777).
            os.chmod(fd_path(new), old_mode)
        if readonly_later and not defer_readonly:
            remount(fd_path(new), flags | MS_RDONLY, keep=kept_flags(new))
        _apply_attrs(new, opts)
    finally:
        os.close(new)


def mount_bind(ctx: RootContext, source: str, dest: str, opts: MountOptions) -> None:
    if not source:
        raise InvalidArgument("a bind mount needs a source")
    src = source if os.path.isabs(source) else os.path.join(ctx.bundle, source)
    try:
        is_dir = stat.S_ISDIR(os.stat(src).st_mode)
    except FileNotFoundError:
        raise OSError(errno.ENOENT, f"bind source {src!r} does not exist") from None
    fd = create_in_root(ctx.rootfd, dest, file=not is_dir)
    try:
        _check_destination(ctx, fd, dest, "bind")
        syscalls.mount(src, fd_path(fd), None, opts.flags & (MS_BIND | MS_REC))
    finally:
        os.close(fd)
    new = open_in_root(ctx.rootfd, dest)
    try:
        # MS_BIND ignores every other flag: ro/nosuid/... take a second, remount call. It
        # keeps what the source mount has (a read-only bind of a nosuid source stays
        # nosuid; in a user namespace dropping it would be EPERM) unless an option turns
        # it off explicitly ("rw", "suid", "dev", "exec").
        if opts.flags & ~(MS_BIND | MS_REC | MS_REMOUNT):
            remount(fd_path(new), opts.flags, keep=kept_flags(new) & ~opts.cleared)
        _apply_attrs(new, opts)
    finally:
        os.close(new)


# --------------------------------------------------------------------------- cgroups


def own_cgroups() -> list[tuple[str, str]]:
    """(controllers, path) per line of /proc/self/cgroup; controllers '' is cgroup v2."""
    out = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) == 3:
                out.append((parts[1], parts[2]))
    return out


def _own_line(mi: MountInfo, own: list[tuple[str, str]]) -> tuple[str, str] | None:
    if mi.fstype == "cgroup2":
        return next((line for line in own if line[0] == ""), None)
    supers = set(mi.super_options.split(","))
    for controllers, path in own:
        if controllers and set(controllers.split(",")) <= supers:
            return controllers, path
    return None


def _own_dir(mi: MountInfo, path: str) -> str | None:
    """The host directory of our cgroup ``path`` in hierarchy ``mi``, if mounted there."""
    rel = os.path.relpath(path, mi.root)
    if rel == ".." or rel.startswith("../"):
        return None
    return os.path.normpath(os.path.join(mi.mount_point, rel))


def _host_hierarchies(ctx: RootContext) -> list[MountInfo]:
    seen: dict[str, MountInfo] = {}
    for mi in mountinfo():
        if mi.fstype not in ("cgroup", "cgroup2") or is_under(mi.mount_point, ctx.rootfs):
            continue
        if mi.mount_point == "/sys/fs/cgroup" or os.path.dirname(mi.mount_point) == "/sys/fs/cgroup":
            seen.setdefault(mi.mount_point, mi)
    return list(seen.values())


def mount_cgroup(ctx: RootContext, mtype: str, dest: str, opts: MountOptions) -> None:
    hierarchies = _host_hierarchies(ctx)
    unified = any(mi.fstype == "cgroup2" and mi.mount_point == "/sys/fs/cgroup" for mi in hierarchies)
    if mtype == "cgroup2" or unified:
        _mount_cgroup2(ctx, dest, opts, hierarchies)
    else:
        _mount_cgroup1(ctx, dest, opts, hierarchies)


def _mount_cgroup2(ctx: RootContext, dest: str, opts: MountOptions, hierarchies: list[MountInfo]) -> None:
    try:
        mount_fs(ctx, "cgroup2", "cgroup2", dest, opts)
        return
    except OSError as e:
        # EPERM: a user namespace without its own cgroup namespace; EBUSY: cgroup2 is not
        # mountable here. Either way the container gets its own part of the host's tree.
        if e.errno not in (errno.EPERM, errno.EBUSY):
            raise
        err = e
    own = own_cgroups()
    for mi in hierarchies:
        line = _own_line(mi, own) if mi.fstype == "cgroup2" else None
        src = _own_dir(mi, line[1]) if line else None
        if src and os.path.isdir(src):
            mount_bind(ctx, src, dest, opts.copy(flags=opts.flags | MS_BIND | MS_REC))
            return
    raise err


def _mount_cgroup1(ctx: RootContext, dest: str, opts: MountOptions, hierarchies: list[MountInfo]) -> None:
    """v1: a tmpfs with one directory per hierarchy. In a cgroup namespace each hierarchy
    is mounted afresh (the kernel roots it at the container's cgroup); otherwise, or where
    that is refused, the container's own directory of the host's hierarchy is bound."""
    per_mount = opts.flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
    tmpfs = MountOptions(flags=(per_mount | MS_NOSUID | MS_NODEV | MS_NOEXEC) & ~MS_RDONLY,
                         propagation=list(opts.propagation), data=["mode=755"])
    mount_fs(ctx, "tmpfs", "cgroup", dest, tmpfs)
    own = own_cgroups()
    cgroupns = "cgroup" in ctx.namespaces
    for mi in hierarchies:
        # on a hybrid host the v1 container sees the v1 hierarchies only, as with runc
        line = _own_line(mi, own) if mi.fstype == "cgroup" else None
        if line is None:
            continue
        name = os.path.basename(mi.mount_point)
        sub = f"{dest.rstrip('/')}/{name}"
        fresh = MountOptions(flags=per_mount, propagation=list(opts.propagation),
                             data=[line[0]] if mi.fstype == "cgroup" else [])
        if cgroupns:
            try:
                mount_fs(ctx, mi.fstype, "cgroup", sub, fresh)
                _comount_links(ctx, dest, name)
                continue
            except OSError as e:
                if e.errno != errno.EPERM:  # v1 is not mountable in a user namespace
                    raise
        src = _own_dir(mi, line[1])
        if src is None or not os.path.isdir(src):
            continue
        mount_bind(ctx, src, sub, fresh.copy(flags=per_mount | MS_BIND | MS_REC, data=[]))
        _comount_links(ctx, dest, name)
    # The tmpfs itself stays writable, as runc leaves it: the hierarchies in it are
    # read-only, and what a container writes there is its own tmpfs.


def _comount_links(ctx: RootContext, dest: str, name: str) -> None:
    # "cpu,cpuacct" is also reachable as "cpu" and "cpuacct", as on the host.
    if "," not in name:
        return
    dfd = open_in_root(ctx.rootfd, dest, os.O_PATH | os.O_DIRECTORY)
    try:
        for part in name.split(","):
            try:
                os.symlink(name, part, dir_fd=dfd)
            except FileExistsError:
                pass
    finally:
        os.close(dfd)
