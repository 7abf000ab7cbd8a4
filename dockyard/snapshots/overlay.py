"""The overlayfs snapshotter: each snapshot stores only its own changes.

``snapshots/<id>/fs`` is the snapshot's layer (the overlay upperdir while active, a
lowerdir once committed) and ``snapshots/<id>/work`` overlay's workdir.

Mount options, checked against Linux 6.18 running as root:

- ``index=off`` whenever the kernel knows the option (it defaults to off unless built
  with OVERLAY_FS_INDEX): with the index on, overlay records which lower a copy-up came
  from and then refuses to mount an upper with a different lower stack, while our
  committed layers are shared by many stacks.
- no ``userxattr``: that is for unprivileged (user-namespace) mounts; as root overlay uses
  the trusted.overlay.* xattrs, which container processes cannot forge.
- no ``metacopy``/``redirect_dir``: off by default, and a layer written with them needs
  them enabled again on every later mount.
"""

from __future__ import annotations

import os

from dockyard.errors import InvalidArgument
from dockyard.snapshots.base import Kind, Mount
from dockyard.snapshots.metadata import Record
from dockyard.snapshots.storage import DirectorySnapshotter


def _base_options() -> list[str]:
    return ["index=off"] if os.path.exists("/sys/module/overlay/parameters/index") else []


class OverlaySnapshotter(DirectorySnapshotter):
    name = "overlay"
    independent_layers = True  # rebase: the root keeps its own owner and mode (the caller's)

    def __init__(self, root: str) -> None:
        root = os.path.abspath(root)
        # The paths go into overlay's comma- and colon-separated option string unescaped.
        if any(c in root for c in ":,\\"):
            raise InvalidArgument(f"overlay snapshot root {root!r} must not contain ':', ',' or '\\'")
        super().__init__(root)
        self._options = _base_options()

    def _populate(self, path: str, kind: Kind, parent: Record | None) -> None:
        fs = os.path.join(path, "fs")
        os.mkdir(fs, 0o755)
        os.mkdir(os.path.join(path, "work"), 0o700)
        if parent is not None:
            # The merged root directory takes its owner and mode from the upperdir, so
            # carry the parent's over (an image may have a root dir not owned by root).
            st = os.lstat(self._fs(parent.id))
            os.chown(fs, st.st_uid, st.st_gid)
            os.chmod(fs, st.st_mode & 0o7777)

    def _mounts(self, rec: Record, ancestors: list[Record]) -> list[Mount]:
        fs = self._fs(rec.id)
        lowers = [self._fs(a.id) for a in ancestors]
        if rec.kind is Kind.ACTIVE:
            if not lowers:
                return [Mount("bind", fs, ["rw", "rbind"])]
            return [
                Mount(
                    "overlay",
                    "overlay",
                    [
                        *self._options,
                        "lowerdir=" + ":".join(lowers),
                        f"upperdir={fs}",
                        f"workdir={self._work(rec.id)}",
                    ],
                )
            ]
        # A view: read-only. Overlay without an upperdir is read-only by itself but needs
        # at least two lowers, so zero or one layer is a read-only bind instead.
        if not lowers:
            return [Mount("bind", fs, ["ro", "rbind"])]
        if len(lowers) == 1:
            return [Mount("bind", lowers[0], ["ro", "rbind"])]
        return [Mount("overlay", "overlay", [*self._options, "lowerdir=" + ":".join(lowers)])]
