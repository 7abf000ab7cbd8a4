"""The archive API (``docker cp``): stat, read and write a path of a container's filesystem.

Safe against a container that fights back (the CVE-2018-15664 class): every path is
resolved by the kernel inside the container's root (openat2 RESOLVE_IN_ROOT: ``..`` and
absolute symlinks stop at the container's root), and everything below it is reached through
directory fds with O_NOFOLLOW, so a symlink swapped in while a copy runs can redirect it
inside the container at worst, never to a host path. Nothing of the container is executed
or loaded (the CVE-2019-14271 class): this is the daemon's own code, reading and writing
files. Paths are those of the container's root filesystem (its writable layer over the
image); volumes mounted in the container are not reached (a later step)."""

from __future__ import annotations

import base64
import errno
import json
import os
import posixpath
import shutil
import stat
import tarfile
from typing import Any, BinaryIO

from dockyard.errors import InvalidArgument, NotFound
from dockyard.logs import format_time
from dockyard.runtime.mounts import open_in_root

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PARENT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# Go's os.FileMode type bits, which docker's stat header carries
_GO_TYPE = {stat.S_IFDIR: 1 << 31, stat.S_IFLNK: 1 << 27, stat.S_IFIFO: 1 << 25, stat.S_IFSOCK: 1 << 24,
            stat.S_IFBLK: 1 << 26, stat.S_IFCHR: (1 << 26) | (1 << 21)}


def _clean(path: str) -> str:
    """An absolute, normalized container path (normpath keeps a leading "//": not here)."""
    return posixpath.normpath("/" + path.lstrip("/"))


def _locate(svc: Any, ref: str, path: str) -> tuple[str, str, bool]:
    """(the root directory to resolve in, the path inside it, whether it is writable):
    the container's root filesystem, or the volume or bind mounted at the path's deepest
    mount point (the container sees that, not what lies under it in its root)."""
    rec = svc.lookup(ref)
    clean = _clean(path)
    best = None
    for mp in rec.extra.get("MountPoints") or []:
        dest = mp["Destination"]
        inside = clean == dest or clean.startswith(dest.rstrip("/") + "/")
        if mp["Type"] in ("volume", "bind") and inside and (best is None or len(dest) > len(best["Destination"])):
            best = mp
    if best is None:
        return os.path.join(rec.bundle, "rootfs"), clean, not rec.host_config.get("ReadonlyRootfs")
    return best["Source"], "/" + clean[len(best["Destination"]):].lstrip("/"), bool(best["RW"])



def _open(rootfs: str, path: str, flags: int, cid: str) -> int:
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return open_in_root(rootfd, path, flags)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise NotFound(f"Could not find the file {path} in container {cid}") from None
        raise
    finally:
        os.close(rootfd)


def _lstat_in_root(rootfs: str, path: str, cid: str, asked: str) -> tuple[os.stat_result, str]:
    """lstat of ``path`` (its parent resolved in the root, the last component not
    followed) and, for a symlink, its target; ``asked``: the path the client named."""
    try:
        return _lstat(rootfs, path, cid)
    except NotFound:
        raise NotFound(f"Could not find the file {asked} in container {cid}") from None


def _lstat(rootfs: str, path: str, cid: str) -> tuple[os.stat_result, str]:
    clean = _clean(path)
    parent, name = posixpath.split(clean)
    if not name:
        fd = _open(rootfs, "/", os.O_PATH | os.O_CLOEXEC, cid)
        try:
            return os.fstat(fd), ""
        finally:
            os.close(fd)
    pfd = _open(rootfs, parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, cid)
    try:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"Could not find the file {path} in container {cid}") from None
        target = os.readlink(name, dir_fd=pfd) if stat.S_ISLNK(st.st_mode) else ""
        return st, target
    finally:
        os.close(pfd)


def _go_mode(mode: int) -> int:
    go = stat.S_IMODE(mode) & 0o777
    go |= _GO_TYPE.get(stat.S_IFMT(mode), 0)
    if mode & stat.S_ISUID:
        go |= 1 << 23
    if mode & stat.S_ISGID:
        go |= 1 << 22
    if mode & stat.S_ISVTX:
        go |= 1 << 20
    return go


def stat_header(svc: Any, ref: str, path: str) -> str:
    """``X-Docker-Container-Path-Stat``: base64 of the JSON stat docker sends."""
    if not path:
        raise InvalidArgument("Path cannot be empty")
    rootfs, inner, _ = _locate(svc, ref, path)
    st, target = _lstat_in_root(rootfs, inner, ref, path)
    mtime = format_time(st.st_mtime_ns)
    name = posixpath.basename(_clean(path)) or "/"
    doc = {"name": name, "size": st.st_size, "mode": _go_mode(st.st_mode), "mtime": mtime, "linkTarget": target}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def get_archive(svc: Any, ref: str, path: str, out: BinaryIO) -> None:
    """A tar of ``path`` (named by its base name; ``dir/.``: the directory's contents)."""
    rootfs, inner, _ = _locate(svc, ref, path)
    clean = _clean(path)
    contents_only = path.endswith("/.")
    st, target = _lstat_in_root(rootfs, inner, ref, path)
    top = "." if contents_only else (posixpath.basename(clean) or ".")
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        if stat.S_ISDIR(st.st_mode):
            fd = _open(rootfs, inner, _DIR_FLAGS, ref)  # the directory lstat saw: never a symlink now
            try:
                _add_dir(tf, fd, top, os.fstat(fd))
            finally:
                os.close(fd)
        elif stat.S_ISLNK(st.st_mode):
            tf.addfile(_info(top, st, target))
        else:
            parent, name = posixpath.split(inner)
            pfd = _open(rootfs, parent, _PARENT_FLAGS, ref)  # symlinks on the way: followed, in the root
            try:
                _add_entry(tf, pfd, name, top)
            finally:
                os.close(pfd)


def _info(name: str, st: os.stat_result, target: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFDIR:
        ti.type = tarfile.DIRTYPE
    elif fmt == stat.S_IFLNK:
        ti.type, ti.linkname = tarfile.SYMTYPE, target
    elif fmt == stat.S_IFREG:
        ti.size = st.st_size
    elif fmt == stat.S_IFIFO:
        ti.type = tarfile.FIFOTYPE
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
        ti.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return ti


def _add_entry(tf: tarfile.TarFile, dirfd: int, name: str, arcname: str) -> None:
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        fd = os.open(name, _DIR_FLAGS, dir_fd=dirfd)
        try:
            _add_dir(tf, fd, arcname, os.fstat(fd))
        finally:
            os.close(fd)
    elif stat.S_ISLNK(st.st_mode):
        tf.addfile(_info(arcname, st, os.readlink(name, dir_fd=dirfd)))
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())  # the file opened, not what the name showed before
            tf.addfile(_info(arcname, st), f)
    elif not stat.S_ISSOCK(st.st_mode):
        tf.addfile(_info(arcname, st))


def _add_dir(tf: tarfile.TarFile, fd: int, arcname: str, st: os.stat_result) -> None:
    tf.addfile(_info(arcname, st))
    with os.scandir(fd) as entries:
        names = sorted(e.name for e in entries)
    for name in names:
        _add_entry(tf, fd, name, f"{arcname}/{name}")


def put_archive(svc: Any, ref: str, path: str, stream: BinaryIO, *, copy_uid_gid: bool = False,
                no_overwrite_dir_non_dir: bool = False) -> None:
    """Extract a tar into the directory ``path``; each member is placed through an fd of
    its parent directory, resolved in the container's root."""
    rootfs, inner, writable = _locate(svc, ref, path)
    if not writable:
        raise InvalidArgument("mounted volume is marked read-only" if inner != _clean(path)
                              else "container rootfs is marked read-only")
    st, _ = _lstat_in_root(rootfs, inner, ref, path)
    dest = _open(rootfs, inner, _PARENT_FLAGS, ref) if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode) \
        else None
    if dest is None:
        raise InvalidArgument("extraction point is not a directory")
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tf:
            for member in tf:
                _extract(tf, member, dest, copy_uid_gid, no_overwrite_dir_non_dir)
    except tarfile.TarError as e:
        raise InvalidArgument(f"invalid tar archive: {e}") from None
    finally:
        os.close(dest)


def _parent_fd(dest: int, parts: list[str]) -> int:
    """The directory ``parts`` below ``dest``, each component opened without following a
    symlink (made when missing, as tar does)."""
    fd = os.dup(dest)
    try:
        for part in parts:
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=fd)
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise InvalidArgument(f"cannot extract {'/'.join(parts)}: not a directory in the container") from None
        raise


def _extract(tf: tarfile.TarFile, m: tarfile.TarInfo, dest: int, keep_owner: bool, no_overwrite: bool) -> None:
    parts = [p for p in posixpath.normpath(m.name).split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidArgument(f"invalid tar entry {m.name!r}: it leaves the extraction point")
    if not parts:  # "." itself: the destination's own metadata is left as it is
        return
    *dirs, name = parts
    pfd = _parent_fd(dest, dirs)
    try:
        try:
            old = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None:
            if stat.S_ISDIR(old.st_mode) and m.isdir():
                _meta(pfd, name, m, keep_owner)
                return
            if no_overwrite and stat.S_ISDIR(old.st_mode) != m.isdir():
                raise InvalidArgument(f"cannot overwrite {'directory' if stat.S_ISDIR(old.st_mode) else 'non-directory'} "
                                      f"{m.name!r} with {'directory' if m.isdir() else 'non-directory'}")
            if stat.S_ISDIR(old.st_mode):
                shutil.rmtree(name, dir_fd=pfd)  # fd-based: symlinks inside are not followed
            else:
                os.unlink(name, dir_fd=pfd)
        if m.isdir():
            os.mkdir(name, 0o700, dir_fd=pfd)
        elif m.issym():
            os.symlink(m.linkname, name, dir_fd=pfd)
        elif m.islnk():
            target = [p for p in posixpath.normpath(m.linkname).split("/") if p not in ("", ".")]
            tpfd = _parent_fd(dest, target[:-1])
            try:
                os.link(target[-1], name, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(tpfd)
            return
        elif m.isreg():
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
            with os.fdopen(fd, "wb") as f:
                src = tf.extractfile(m)
                while src is not None and (chunk := src.read(1 << 20)):
                    f.write(chunk)
        elif m.isfifo():
            os.mkfifo(name, 0o600, dir_fd=pfd)
        elif m.ischr() or m.isblk():
            os.mknod(name, (stat.S_IFCHR if m.ischr() else stat.S_IFBLK) | 0o600, os.makedev(m.devmajor, m.devminor),
                     dir_fd=pfd)
        else:
            return
        _meta(pfd, name, m, keep_owner)
    finally:
        os.close(pfd)


def _meta(pfd: int, name: str, m: tarfile.TarInfo, keep_owner: bool) -> None:
    """Owner, mode and times of what was just made, through an O_PATH fd of it: a name the
    container swapped for a symlink meanwhile is never followed."""
    uid, gid = (m.uid, m.gid) if keep_owner else (0, 0)
    if m.issym():
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        os.utime(name, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)
        return
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            return  # swapped under us: leave it
        proc = f"/proc/self/fd/{fd}"  # the inode opened, whatever the name points at now
        os.chown(proc, uid, gid)
        os.chmod(proc, m.mode & 0o7777)
        os.utime(proc, (m.mtime, m.mtime))
    finally:
        os.close(fd)
