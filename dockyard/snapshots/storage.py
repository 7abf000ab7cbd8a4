"""The directory-per-snapshot machinery shared by the overlay and native snapshotters.

Layout under ``root``::

    lock              flock'd while a snapshotter has the root open
    metadata.db       SQLite (see metadata.py)
    snapshots/<id>/   one directory per snapshot, named by its integer id (short paths
                      keep overlay option strings short); backends put ``fs`` (and
                      ``work``) inside
    snapshots/new-*   a snapshot being populated, not yet in the metadata

Crash safety: a directory is fully populated under ``new-*`` and renamed to ``<id>``
inside the transaction that inserts its row, so a crash leaves at worst a directory
without a row. Removal first marks the row ``removing`` (hiding it), then deletes the
directory, then the row. Startup deletes every directory without a live row and finishes
every ``removing`` row. The root lock makes that safe: no other process can be midway.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from collections.abc import Iterator

from dockyard.errors import Conflict, InvalidArgument, NotImplementedYet, Unavailable
from dockyard.snapshots.base import Info, Kind, Mount, Usage
from dockyard.snapshots.fsutil import disk_usage, fsync_dir, remove_tree
from dockyard.snapshots.metadata import MetaStore, Record

log = logging.getLogger(__name__)


class DirectorySnapshotter:
    """Base class; subclasses set ``name`` and implement ``_populate`` and ``_mounts``."""

    name = ""
    independent_layers = False

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._snapshots = os.path.join(self.root, "snapshots")
        os.makedirs(self.root, exist_ok=True)
        # 0700: layers contain setuid binaries and device nodes that other users of the
        # host must not reach through the snapshot directories.
        os.makedirs(self._snapshots, mode=0o700, exist_ok=True)
        os.chmod(self._snapshots, 0o700)
        self._lock_fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise Unavailable(f"snapshot root {self.root} is in use by another snapshotter") from None
        try:
            self._meta = MetaStore(os.path.join(self.root, "metadata.db"), self.name)
            self._cleanup()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._closed = False

    # ------------------------------------------------------------------ layout

    def _dir(self, id_: int) -> str:
        return os.path.join(self._snapshots, str(id_))

    def _fs(self, id_: int) -> str:
        return os.path.join(self._dir(id_), "fs")

    def _work(self, id_: int) -> str:
        return os.path.join(self._dir(id_), "work")

    def _cleanup(self) -> None:
        # Best effort: a leftover that cannot go now (say, something is mounted inside it)
        # must not stop the snapshotter from opening; the next start tries again.
        for id_ in self._meta.removing_ids():
            log.info("finishing interrupted removal of snapshot dir %s", id_)
            try:
                remove_tree(self._dir(id_))
            except Exception:
                log.exception("could not remove snapshot dir %s", id_)
                continue
            self._meta.finish_remove(id_)
        live = {str(id_) for id_ in self._meta.live_ids()}
        for entry in os.listdir(self._snapshots):
            if entry not in live:
                log.info("removing orphaned snapshot dir %s", entry)
                try:
                    remove_tree(os.path.join(self._snapshots, entry))
                except Exception:
                    log.exception("could not remove orphaned snapshot dir %s", entry)
        for id_ in live:
            if not os.path.isdir(self._dir(int(id_))):
                log.warning("snapshot dir %s is missing; its mounts will fail", id_)

    # ------------------------------------------------------------------ backend hooks

    def _populate(self, path: str, kind: Kind, parent: Record | None) -> None:
        """Fill the new snapshot directory ``path`` (not yet named by its id)."""
        raise NotImplementedError

    def _mounts(self, rec: Record, ancestors: list[Record]) -> list[Mount]:
        """Mounts for active/view ``rec``; ``ancestors`` are parent, grandparent, ..."""
        raise NotImplementedError

    # ------------------------------------------------------------------ protocol

    def stat(self, key: str) -> Info:
        return self._meta.get(key).info()

    def walk(self) -> Iterator[Info]:
        for rec in self._meta.records():
            yield rec.info()

    def mounts(self, key: str) -> list[Mount]:
        rec, *ancestors = self._meta.chain(key)
        if rec.kind is Kind.COMMITTED:
            raise InvalidArgument(f"snapshot {key} is committed; prepare or view it to mount it")
        return self._mounts(rec, ancestors)

    def prepare(self, key: str, parent: str | None = None, labels: dict[str, str] | None = None) -> list[Mount]:
        return self._create(key, Kind.ACTIVE, parent, labels)

    def view(self, key: str, parent: str | None = None, labels: dict[str, str] | None = None) -> list[Mount]:
        return self._create(key, Kind.VIEW, parent, labels)

    def _create(self, key: str, kind: Kind, parent: str | None, labels: dict[str, str] | None) -> list[Mount]:
        # Fail fast on a taken key or a bad parent before any (possibly slow) copying;
        # MetaStore.create checks again under the write lock.
        parent_rec = self._meta.check_new(key, parent)
        tmp = tempfile.mkdtemp(prefix="new-", dir=self._snapshots)
        placed: str | None = None

        def place(id_: int) -> None:
            nonlocal placed
            os.rename(tmp, self._dir(id_))
            placed = self._dir(id_)
            fsync_dir(self._snapshots)  # the rename must be durable before the row is

        try:
            self._populate(tmp, kind, parent_rec)
            self._meta.create(key, kind, parent_rec, labels, place)
        except BaseException:
            try:
                remove_tree(placed or tmp)
            except Exception:
                # Keep the original error; startup cleanup retries the leftover.
                log.exception("could not remove leftover snapshot dir %s", placed or tmp)
            raise
        return self.mounts(key)

    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        # the active snapshot must not be written to once it is committed, as in containerd
        self._meta.commit(name, key, labels)

    def rebase(self, key: str, parent: str) -> list[Mount]:
        """Put active ``key``, prepared without a parent, on top of committed ``parent``
        (a layer unpacked while its parent was still being unpacked); returns its mounts."""
        if not self.independent_layers:
            raise NotImplementedYet(f"the {self.name} snapshotter cannot rebase a snapshot: its layers copy their parents")
        self._meta.rebase(key, parent)
        return self.mounts(key)

    def remove(self, key: str) -> None:
        from dockyard.mount import mounts_under  # lazy: dockyard.mount imports this package

        rec = self._meta.get(key)
        mounted = mounts_under(self._dir(rec.id))
        if mounted:
            raise Conflict(f"snapshot {key} is still mounted inside its directory: {', '.join(mounted)}")
        id_ = self._meta.begin_remove(key)
        remove_tree(self._dir(id_))
        self._meta.finish_remove(id_)

    def usage(self, key: str) -> Usage:
        rec = self._meta.get(key)
        if rec.usage is not None:
            return rec.usage
        usage = disk_usage(self._fs(rec.id))  # outside the metadata lock: it walks the tree
        if rec.kind is Kind.COMMITTED:
            self._meta.set_usage(rec.id, usage)  # immutable: measured once
        return usage

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._meta.close()
        os.close(self._lock_fd)

    def __enter__(self) -> DirectorySnapshotter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"
