"""Snapshotters, modelled on containerd's.

A snapshot is identified by a *key* while active (writable, or a read-only view) and by a
*name* once committed. Committed snapshots are immutable and may be parents. Snapshotters
never mount anything: ``prepare``/``view``/``mounts`` return ``Mount`` specs which the
consumer mounts with ``dockyard.mount.mount_all`` (or reads directly, e.g. the layer applier
writes into an overlay upperdir without mounting).

    class Snapshotter(Protocol):
        def stat(self, key) -> Info                              # NotFound
        def mounts(self, key) -> list[Mount]                     # active or view only
        def prepare(self, key, parent=None, labels=None) -> list[Mount]   # Conflict if key exists
        def view(self, key, parent=None, labels=None) -> list[Mount]
        def commit(self, name, key, labels=None) -> None         # active -> committed
        def rebase(self, key, parent) -> list[Mount]              # independent_layers only
        def remove(self, key) -> None                            # Conflict if it has children
        def walk(self) -> Iterator[Info]
        def usage(self, key) -> Usage
        def close(self) -> None

Backends: ``overlay`` (default where the kernel supports overlayfs on the data root) and
``native`` (full copies; fallback and test oracle). ``dockyard.snapshots.open_snapshotter(
name, root)`` builds one; ``detect(root)`` picks the default.

Both keep their metadata in SQLite (``metadata.py``) and one directory per snapshot, named
by a short integer id (``storage.py``): ``<root>/snapshots/<id>/fs``. Views are read-only
mounts (a write fails with EROFS). Committed snapshots cannot be mounted directly, a view
cannot be committed, and a snapshot with children cannot be removed (Conflict).

``independent_layers`` (overlay): an active snapshot's directory never depends on its
parent's content, so a pull can unpack a layer into a snapshot prepared without a parent
while the layer below is still being unpacked, then ``rebase`` it onto that parent once it
is committed. Native snapshots copy their parent: rebase raises NotImplementedYet.
"""

from dockyard.snapshots.base import Info, Kind, Mount, Snapshotter, Usage  # noqa: F401
from dockyard.snapshots.factory import detect, open_snapshotter  # noqa: F401
