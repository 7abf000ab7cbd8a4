"""What a snapshot changed relative to its parent: ``docker diff`` lists and layer tars.

Two strategies, chosen from the mounts:

* overlay fast path -- the upper is an overlay whose lowerdirs are exactly the lower
  snapshot: its upperdir *is* the change set. Whiteouts (char 0/0) become ``.wh.<name>``,
  opaque directories get ``.wh..wh..opq`` right after their header.
* double walk -- anything else (native snapshots, or unrelated snapshots): both sides are
  read through ``LayerView`` and compared entry by entry like containerd's continuity
  (type/mode/owner/rdev/xattrs, then size and mtime, content only when both mtimes look
  truncated to whole seconds). Directories are emitted as "C" when a descendant changed.

Tars are PAX, sorted depth-first by name, with mtimes truncated to seconds, no uname/gname
and hardlinks within the layer kept, so equal trees give equal diff_ids.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Literal

from dockyard.archive.layers import (
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    LayerView,
    Node,
    check_plain_overlay,
    is_overlay_xattr,
    is_whiteout,
    stack_of,
)
from dockyard.archive.scoped import join
from dockyard.errors import Conflict, InvalidArgument
from dockyard.snapshots.base import Mount

_CHUNK = 1 << 20
_BLOCK = 512


@dataclass(frozen=True)
class Change:
    kind: Literal["A", "C", "D"]  # as `docker diff` prints: added, changed, deleted
    path: str  # absolute in the container: "/etc/hosts"


@dataclass(frozen=True)
class DiffResult:
    diff_id: str  # "sha256:..." of exactly the bytes written
    size: int  # number of bytes written (the uncompressed tar)


# Walk events: (op, relative path, upper node). op is "A"/"C"/"D", "OPQ" (opaque marker
# for the directory ``rel``) or "D-" (a deletion the preceding OPQ already covers: listed
# by changes() but needs no tar entry).
_Event = tuple[str, str, Node | None]
_Frame = Iterator[tuple[_Event | None, "tuple[Iterator, _Event | None] | None"]]


def changes(lower_mounts: Sequence[Mount], upper_mounts: Sequence[Mount]) -> list[Change]:
    """What ``upper`` adds, changes and deletes relative to ``lower`` (empty: nothing)."""
    return [Change("D" if op == "D-" else op, "/" + rel)  # type: ignore[arg-type]
            for op, rel, _ in _events(lower_mounts, upper_mounts) if op != "OPQ"]


def write_diff(lower_mounts: Sequence[Mount], upper_mounts: Sequence[Mount], out: BinaryIO) -> DiffResult:
    """Write the uncompressed layer tar of ``upper`` relative to ``lower`` to ``out``."""
    writer = _TarWriter(out)
    for op, rel, node in _events(lower_mounts, upper_mounts):
        if op in ("A", "C"):
            assert node is not None
            writer.entry(rel, node)
        elif op == "D":
            parent, _, name = rel.rpartition("/")
            writer.marker(join(parent, WHITEOUT_PREFIX + name))
        elif op == "OPQ":
            writer.marker(join(rel, OPAQUE_MARKER))
    return writer.close()


# --------------------------------------------------------------------------- walking


def _events(lower_mounts: Sequence[Mount], upper_mounts: Sequence[Mount]) -> Iterator[_Event]:
    lower, upper = stack_of(lower_mounts), stack_of(upper_mounts)
    if not upper.dirs:
        raise InvalidArgument("cannot diff: no upper mounts")
    check_plain_overlay(lower)
    check_plain_overlay(upper)
    lview = LayerView.of(lower)
    if upper.upper is not None and _same_dirs(upper.lowers, lower.dirs):
        uview = LayerView([upper.upper], True, upper.xattr_prefix)
        return _drive(_upper_dir("", upper.upper, lview.root(), uview, lview))
    uview = LayerView.of(upper)
    uroot = uview.root()
    assert uroot is not None
    return _drive(_double_dir("", lview.root(), uroot, lview, uview))


def _same_dirs(a: Sequence[str], b: Sequence[str]) -> bool:
    return [os.path.realpath(p) for p in a] == [os.path.realpath(p) for p in b]


def _drive(top: _Frame) -> Iterator[_Event]:
    """Depth-first driver without recursion (trees can be deeper than Python's stack).
    Each frame yields (event or None, child frame to enter or None); a child frame may
    carry a pending "C" for its directory, emitted only if something below it changes."""
    frames: list[list] = [[top, None]]
    while frames:
        item = next(frames[-1][0], None)
        if item is None:
            frames.pop()
            continue
        event, child = item
        if event is not None:
            for frame in frames:
                if frame[1] is not None:
                    yield frame[1]
                    frame[1] = None
            yield event
        if child is not None:
            frames.append([child[0], child[1]])


def _upper_dir(rel: str, path: str, lnode: Node | None, uview: LayerView, lview: LayerView) -> _Frame:
    """Fast path: one upperdir directory, classified against the lower view."""
    opaque = uview.is_opaque(path)
    if opaque:
        yield ("OPQ", rel, None), None
    lower_dir = lnode if lnode is not None and lnode.is_dir else None
    with os.scandir(path) as it:
        entries = {e.name: e.stat(follow_symlinks=False) for e in it}
    covered = lview.children(lower_dir) if opaque and lower_dir is not None else {}
    for name in sorted(entries.keys() | covered.keys()):
        if name.startswith(WHITEOUT_PREFIX):
            continue  # a file literally named .wh.* cannot be expressed in a layer
        crel = join(rel, name)
        st = entries.get(name)
        if st is None or is_whiteout(st):
            if opaque:
                if name in covered:
                    yield ("D-", crel, None), None
            elif lower_dir is not None and lview.child(lower_dir, name) is not None:
                yield ("D", crel, None), None
            continue
        lchild = lview.child(lower_dir, name) if lower_dir is not None else None
        node = Node(name, st, os.path.join(path, name))
        event = ("C" if lchild is not None else "A", crel, node)
        if node.is_dir:
            yield event, (_upper_dir(crel, node.path, lchild, uview, lview), None)
        else:
            yield event, None


def _double_dir(rel: str, lnode: Node | None, unode: Node, lview: LayerView, uview: LayerView) -> _Frame:
    """Generic path: compare one directory of two merged views."""
    uc = uview.children(unode)
    lc = lview.children(lnode) if lnode is not None and lnode.is_dir else {}
    for name in sorted(uc.keys() | lc.keys()):
        if name.startswith(WHITEOUT_PREFIX):
            continue
        crel = join(rel, name)
        u, low = uc.get(name), lc.get(name)
        if u is None:
            yield ("D", crel, None), None
        elif low is None:
            yield ("A", crel, u), ((_double_dir(crel, None, u, lview, uview), None) if u.is_dir else None)
        elif not u.is_dir:
            if not _same(low, u):
                yield ("C", crel, u), None
        elif _same(low, u):
            yield None, (_double_dir(crel, low, u, lview, uview), ("C", crel, u))
        else:
            yield ("C", crel, u), (_double_dir(crel, low, u, lview, uview), None)


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in names:
        if not is_overlay_xattr(name):
            try:
                out[name] = os.getxattr(path, name, follow_symlinks=False)
            except OSError:
                pass
    return out


def _same(a: Node, b: Node) -> bool:
    sa, sb = a.st, b.st
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    if (sa.st_mode, sa.st_uid, sa.st_gid) != (sb.st_mode, sb.st_uid, sb.st_gid):
        return False
    if (stat.S_ISCHR(sa.st_mode) or stat.S_ISBLK(sa.st_mode)) and sa.st_rdev != sb.st_rdev:
        return False
    if _xattrs(a.path) != _xattrs(b.path):
        return False
    if stat.S_ISDIR(sa.st_mode):
        return True  # a directory's size and mtime only reflect its children
    if stat.S_ISLNK(sa.st_mode):
        return os.readlink(a.path) == os.readlink(b.path)
    if sa.st_size != sb.st_size or sa.st_mtime_ns // 10**9 != sb.st_mtime_ns // 10**9:
        return False
    na, nb = sa.st_mtime_ns % 10**9, sb.st_mtime_ns % 10**9
    if na or nb:
        return na == nb
    # both mtimes are whole seconds (e.g. extracted from a tar): only the bytes can tell
    return not stat.S_ISREG(sa.st_mode) or _same_content(a.path, b.path)


def _same_content(a: str, b: str) -> bool:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(os.open(a, flags), "rb") as fa, open(os.open(b, flags), "rb") as fb:
        while True:
            da, db = fa.read(_CHUNK), fb.read(_CHUNK)
            if da != db:
                return False
            if not da:
                return True


# --------------------------------------------------------------------------- tar output


class _TarWriter:
    """Minimal PAX writer: tarfile's header encoding, but no record padding at the end
    (just the two zero blocks, like Go's archive/tar) and hashing of every byte."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self._size = 0
        self._links: dict[tuple[int, int], str] = {}

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._hash.update(data)
        self._size += len(data)

    def _header(self, info: tarfile.TarInfo) -> None:
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def marker(self, name: str) -> None:
        """An empty regular file: a whiteout or the opaque marker."""
        self._header(tarfile.TarInfo(name))

    def entry(self, rel: str, node: Node) -> None:
        st = node.st
        info = tarfile.TarInfo(rel)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = st.st_mtime_ns // 10**9
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(node.path)
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            first = self._links.get(key) if st.st_nlink > 1 else None
            if first is not None:
                info.type, info.linkname = tarfile.LNKTYPE, first
                self._header(info)
                return
            if st.st_nlink > 1:
                self._links[key] = rel
            info.type, info.size = tarfile.REGTYPE, st.st_size
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            return  # sockets cannot be archived (docker skips them too)
        info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                            for k, v in sorted(_xattrs(node.path).items())}
        self._header(info)
        if info.type == tarfile.REGTYPE and info.size:
            self._content(node, info.size)

    def _content(self, node: Node, size: int) -> None:
        fd = os.open(node.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            fst = os.fstat(fd)
            # the inode we listed, not whatever a racing rename put at that path
            if (fst.st_dev, fst.st_ino) != (node.st.st_dev, node.st.st_ino):
                raise Conflict(f"{node.path} changed while writing the layer")
            left = size
            while left:
                data = f.read(min(left, _CHUNK))
                if not data:
                    raise Conflict(f"{node.path} shrank while writing the layer")
                self._write(data)
                left -= len(data)
        if size % _BLOCK:
            self._write(b"\0" * (_BLOCK - size % _BLOCK))

    def close(self) -> DiffResult:
        self._write(b"\0" * (2 * _BLOCK))
        self._out.flush()
        return DiffResult("sha256:" + self._hash.hexdigest(), self._size)
