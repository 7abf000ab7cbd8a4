"""Filesystem helpers for snapshot directories: usage, copying, removal."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

from dockyard.errors import Conflict
from dockyard.snapshots.base import Usage


def disk_usage(path: str) -> Usage:
    """Like ``du -sx --block-size=1``: allocated bytes and inodes below ``path``.

    Hardlinked inodes count once; symlinks are not followed; directories on another
    filesystem (something mounted inside) are neither counted nor entered.
    """
    top = os.lstat(path)
    seen = {(top.st_dev, top.st_ino)}
    size = top.st_blocks * 512
    inodes = 1
    stack = [path]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if st.st_dev != top.st_dev:
                    continue
                ident = (st.st_dev, st.st_ino)
                if ident in seen:
                    continue
                seen.add(ident)
                size += st.st_blocks * 512
                inodes += 1
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return Usage(size=size, inodes=inodes)


def copy_tree(src: str, dst: str) -> None:
    """Copy the contents *and attributes* of directory ``src`` onto existing ``dst``.

    GNU ``cp -a`` keeps owners, modes (incl. setuid after chown), times, symlinks,
    hardlinks within the tree, device nodes, fifos, sparse files and xattrs (file
    capabilities among them), and reflinks where the filesystem can. ``--preserve=xattr``
    on top of ``-a`` makes a failure to copy an xattr an error instead of a silent loss.
    ``src/.`` copies the directory itself onto ``dst``, so dst gets src's mode/owner/times.
    """
    cmd = ["cp", "-a", "--preserve=xattr", "--reflink=auto", "--", os.path.join(src, "."), dst]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise OSError(f"copying {src!r} to {dst!r} failed: {proc.stderr.strip()}")


def remove_tree(path: str) -> None:
    """Delete a snapshot directory; refuse if anything is still mounted inside it.

    rmtree would otherwise descend into the mount and delete *its* files (a container's
    volume, say).
    """
    from dockyard.mount import mounts_under  # lazy: dockyard.mount imports this package

    mounted = mounts_under(path)
    if mounted:
        raise Conflict(f"cannot remove {path}: still mounted at {', '.join(mounted)}")
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass


def fsync_dir(path: str) -> None:
    """Make a rename/create in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
