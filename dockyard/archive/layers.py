"""Snapshot mounts as layer directories, and a read-only merged view of overlay layers.

Nothing here mounts anything: ``LayerView`` reproduces overlayfs' lookup rules (upper
entries hide lower ones, char 0/0 whiteouts, opaque directories) on plain directories, so
apply can look up a parent in the lowerdirs and diff can compare two snapshots directly.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument, NotImplementedYet
from dockyard.snapshots.base import Mount

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
META_PREFIX = ".wh..wh."  # aufs metadata (.wh..wh.plnk, ...), never content


def is_whiteout(st: os.stat_result) -> bool:
    """An overlayfs whiteout: a character device 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_overlay_xattr(name: str) -> bool:
    """xattrs overlayfs keeps for itself; never copied from a tar nor into one."""
    return name.startswith(("trusted.overlay.", "user.overlay."))


def _split_lowerdir(value: str) -> list[str]:
    # overlay separates layers with ':' and lets a path escape one as '\:'
    out, cur, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            cur.append(value[i + 1])
            i += 2
            continue
        if ch == ":":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return [p for p in out if p]


def _is_bind(m: Mount) -> bool:
    return m.type == "bind" or "bind" in m.options or "rbind" in m.options


@dataclass(frozen=True)
class Stack:
    """A snapshot as layer directories, topmost first."""

    dirs: list[str] = field(default_factory=list)
    overlay: bool = False  # whether whiteouts/opaque xattrs in ``dirs`` mean anything
    upper: str | None = None  # overlay upperdir (dirs[0]) if the snapshot is writable
    xattr_prefix: str = "trusted.overlay."
    options: tuple[str, ...] = ()

    @property
    def lowers(self) -> list[str]:
        return self.dirs[1:] if self.upper is not None else list(self.dirs)


def stack_of(mounts: Sequence[Mount]) -> Stack:
    """The layer directories behind ``mounts`` (as returned by a Snapshotter)."""
    if not mounts:
        return Stack()
    if len(mounts) != 1:
        raise InvalidArgument(f"unsupported snapshot mounts: expected one mount, got {len(mounts)}")
    m = mounts[0]
    if _is_bind(m):
        return Stack([m.source], options=tuple(m.options))
    if m.type != "overlay":
        raise InvalidArgument(f"unsupported snapshot mount type {m.type!r}")
    lowers: list[str] = []
    upper = None
    for opt in m.options:
        key, _, value = opt.partition("=")
        if key == "lowerdir":
            lowers.extend(_split_lowerdir(value))
        elif key == "lowerdir+":
            lowers.append(value)
        elif key == "upperdir":
            upper = value
    prefix = "user.overlay." if "userxattr" in m.options else "trusted.overlay."
    dirs = ([upper] if upper else []) + lowers
    return Stack(dirs, overlay=True, upper=upper, xattr_prefix=prefix, options=tuple(m.options))


def check_plain_overlay(s: Stack) -> None:
    """Refuse overlays whose upper may hold redirects or metacopy-only files: their upperdir
    is not a self-contained layer and we would silently produce a wrong diff."""
    if not s.overlay:
        return
    for feature in ("redirect_dir", "metacopy"):
        value = None
        for opt in s.options:
            if opt.startswith(feature + "="):
                value = opt.split("=", 1)[1]
        if value is None:  # the module parameter is the default
            try:
                with open(f"/sys/module/overlay/parameters/{feature}") as f:
                    value = "on" if f.read().strip() in ("Y", "on") else "off"
            except OSError:
                value = "off"
        if value == "on":  # "follow"/"nofollow" never create redirects in the upper
            raise NotImplementedYet(f"diff of an overlay with {feature}=on is not supported")


@dataclass
class Node:
    """One entry of a merged view: metadata of its topmost occurrence."""

    name: str
    st: os.stat_result
    path: str  # real path of the topmost occurrence
    layers: list[str] = field(default_factory=list)  # dirs: contributing dirs, topmost first

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


class LayerView:
    """Read-only merged view of layer dirs (topmost first), following overlayfs rules when
    ``overlay`` is true; a single non-overlay dir is just that directory."""

    def __init__(self, dirs: Sequence[str], overlay: bool, xattr_prefix: str = "trusted.overlay.") -> None:
        self.dirs = list(dirs)
        self.overlay = overlay
        self._opaque_name = xattr_prefix + "opaque"

    @classmethod
    def of(cls, s: Stack) -> LayerView:
        return cls(s.dirs, s.overlay, s.xattr_prefix)

    def is_opaque(self, path: str) -> bool:
        if not self.overlay:
            return False
        try:
            return os.getxattr(path, self._opaque_name, follow_symlinks=False) == b"y"
        except OSError:
            return False

    def root(self) -> Node | None:
        if not self.dirs:
            return None
        layers: list[str] = []
        for d in self.dirs:
            layers.append(d)
            if self.is_opaque(d):
                break
        return Node("", os.lstat(self.dirs[0]), self.dirs[0], layers)

    def child(self, node: Node, name: str) -> Node | None:
        """The merged entry ``name`` in directory ``node``, or None if absent/whited out."""
        res: Node | None = None
        for d in node.layers:
            p = os.path.join(d, name)
            try:
                st = os.lstat(p)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if res is None:
                if self.overlay and is_whiteout(st):
                    return None
                res = Node(name, st, p)
                if not stat.S_ISDIR(st.st_mode):
                    return res
                res.layers.append(p)
            elif stat.S_ISDIR(st.st_mode):
                res.layers.append(p)
            else:
                break  # a non-dir (or whiteout) below a dir ends the merge
            if self.is_opaque(p):
                break
        return res

    def lookup(self, parts: Sequence[str]) -> Node | None:
        """The merged entry at ``parts`` (no symlink is followed)."""
        node = self.root()
        for name in parts:
            if node is None or not node.is_dir:
                return None
            node = self.child(node, name)
        return node

    def children(self, node: Node) -> dict[str, Node]:
        """All merged entries of directory ``node``."""
        entries: dict[str, Node] = {}
        closed: set[str] = set()  # names whose lower occurrences no longer matter
        for d in node.layers:
            try:
                it = os.scandir(d)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with it:
                for e in it:
                    name = e.name
                    if name in closed:
                        continue
                    st = e.stat(follow_symlinks=False)
                    is_dir = stat.S_ISDIR(st.st_mode)
                    cur = entries.get(name)
                    if cur is not None:  # an open directory from a higher layer
                        if is_dir:
                            cur.layers.append(e.path)
                            if self.is_opaque(e.path):
                                closed.add(name)
                        else:
                            closed.add(name)
                        continue
                    if self.overlay and is_whiteout(st):
                        closed.add(name)
                        continue
                    entries[name] = Node(name, st, e.path, [e.path] if is_dir else [])
                    if not is_dir or self.is_opaque(e.path):
                        closed.add(name)
        return entries
