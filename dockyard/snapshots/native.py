"""The native snapshotter: every active snapshot is a full copy of its parent.

Works on any filesystem (reflinks make copies cheap on btrfs/xfs) and is the oracle the
overlay snapshotter is tested against. Mounts are always a single bind mount.
"""

from __future__ import annotations

import os

from dockyard.snapshots.base import Kind, Mount
from dockyard.snapshots.fsutil import copy_tree
from dockyard.snapshots.metadata import Record
from dockyard.snapshots.storage import DirectorySnapshotter


class NativeSnapshotter(DirectorySnapshotter):
    name = "native"

    def _populate(self, path: str, kind: Kind, parent: Record | None) -> None:
        fs = os.path.join(path, "fs")
        os.mkdir(fs, 0o755)
        # A view needs no copy: it is a read-only bind of its parent, which is committed
        # (immutable) and cannot be removed while the view exists.
        if parent is not None and kind is Kind.ACTIVE:
            copy_tree(self._fs(parent.id), fs)

    def _mounts(self, rec: Record, ancestors: list[Record]) -> list[Mount]:
        if rec.kind is Kind.VIEW:
            source = self._fs(ancestors[0].id) if ancestors else self._fs(rec.id)
            return [Mount("bind", source, ["ro", "rbind"])]
        return [Mount("bind", self._fs(rec.id), ["rw", "rbind"])]
