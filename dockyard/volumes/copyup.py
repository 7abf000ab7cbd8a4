"""Populate a new, empty volume from the image content at its mount point, as docker does
the first time a volume is mounted over a directory of the image.

The image is untrusted: its path is resolved inside the container's root (openat2
RESOLVE_IN_ROOT) and then walked only through directory fds with O_NOFOLLOW, so no symlink
in the image, even one swapped during the copy, makes this read a host file. Symlinks are
copied as symlinks; owners, modes and times are kept."""

from __future__ import annotations

import errno
import os
import stat

from dockyard.runtime.mounts import open_in_root

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def copy_up(rootfs: str, path: str, dest: str) -> bool:
    """Copy the directory ``path`` of the root ``rootfs`` into the directory ``dest``;
    False when the image has no directory there (nothing to copy)."""
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            src = open_in_root(rootfd, path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return False
            raise
    finally:
        os.close(rootfd)
    try:
        dst = os.open(dest, _DIR)
        try:
            _copy_tree(src, dst)
            _copy_meta(os.fstat(src), dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return True


def _copy_meta(st: os.stat_result, fd: int) -> None:
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_data(fin: int, fout: int, size: int) -> None:
    """copy_file_range where the filesystems allow it (reflinks, in-kernel copies), else
    sendfile (overlayfs to another filesystem: EXDEV)."""
    copy = os.copy_file_range
    remaining = size
    while remaining > 0:
        try:
            n = copy(fin, fout, remaining)
        except OSError as e:
            if copy is _sendfile or e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            copy = _sendfile
            continue
        if n == 0:
            break
        remaining -= n


def _sendfile(fin: int, fout: int, count: int) -> int:
    return os.sendfile(fout, fin, None, count)


def _copy_tree(src: int, dst: int) -> None:
    with os.scandir(src) as entries:
        names = [e.name for e in entries]
    for name in names:
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dst)
            sub_src = os.open(name, _DIR, dir_fd=src)
            try:
                sub_dst = os.open(name, _DIR, dir_fd=dst)
                try:
                    _copy_tree(sub_src, sub_dst)
                    _copy_meta(st, sub_dst)
                finally:
                    os.close(sub_dst)
            finally:
                os.close(sub_src)
        elif stat.S_ISREG(mode):
            fin = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
            try:
                fout = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                               dir_fd=dst)
                try:
                    _copy_data(fin, fout, st.st_size)
                    _copy_meta(st, fout)
                finally:
                    os.close(fout)
            finally:
                os.close(fin)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)
        else:  # fifos, devices, sockets: the node itself
            os.mknod(name, mode, st.st_rdev, dir_fd=dst)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
            os.chmod(name, stat.S_IMODE(mode), dir_fd=dst)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)
