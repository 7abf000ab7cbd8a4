"""Snapshot metadata in SQLite, shared by every directory-based snapshotter.

One row per snapshot: its key (or name, once committed), kind, parent, labels, times, and
the numeric id that names its directory on disk. Every change is one transaction, so a
crash leaves either the old or the new metadata, never half of it; the snapshotter orders
its directory work around those transactions (see ``storage.py``).

One connection guarded by a lock: the daemon calls from a thread pool, and every
statement here is short (slow work such as copying trees happens outside the lock).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.snapshots.base import Info, Kind, Usage

SCHEMA_VERSION = 1

# Statements are split on ";" (see MetaStore.__init__): keep semicolons out of comments.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    -- AUTOINCREMENT: an id (and so a directory name) is never handed out twice.
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    -- NULL once the row is marked 'removing', so the key is free for reuse at once.
    key     TEXT UNIQUE,
    kind    TEXT NOT NULL CHECK (kind IN ('view', 'active', 'committed')),
    parent  INTEGER REFERENCES snapshots(id),
    labels  TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    -- disk usage of a committed snapshot, measured the first time it is asked for (it is
    -- immutable): a commit does not walk the tree on the way of a pull or a build
    size    INTEGER,
    inodes  INTEGER,
    state   TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'removing'))
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
"""

_SELECT = """
SELECT s.id, s.key, s.kind, s.parent, p.key, s.labels, s.created, s.updated, s.size, s.inodes
FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent
"""


@dataclass(frozen=True)
class Record:
    id: int
    key: str
    kind: Kind
    parent_id: int | None
    parent_key: str | None
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0
    usage: Usage | None = None  # only for committed snapshots

    def info(self) -> Info:
        return Info(
            name=self.key,
            kind=self.kind,
            parent=self.parent_key,
            labels=dict(self.labels),
            created=self.created,
            updated=self.updated,
        )


def _record(row: tuple) -> Record:
    id_, key, kind, parent, parent_key, labels, created, updated, size, inodes = row
    return Record(
        id=id_,
        key=key,
        kind=Kind(kind),
        parent_id=parent,
        parent_key=parent_key,
        labels=json.loads(labels),
        created=created,
        updated=updated,
        usage=Usage(size, inodes) if size is not None else None,
    )


def _check_labels(labels: dict[str, str] | None) -> dict[str, str]:
    labels = dict(labels or {})
    for k, v in labels.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgument(f"snapshot labels must map str to str, got {k!r}: {v!r}")
    return labels


def _check_key(key: str) -> None:
    if not key or not isinstance(key, str):
        raise InvalidArgument("snapshot key must be a non-empty string")


class MetaStore:
    def __init__(self, path: str, backend: str) -> None:
        # autocommit mode (isolation_level=None): transactions are explicit BEGIN/COMMIT.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we report success (a row must not vanish on
        # power loss while its directory, already renamed into place, survives).
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._tx() as db:
            # not executescript(): it would COMMIT the open transaction first
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise InvalidArgument(
                    f"snapshot metadata {path!r} has schema {version}, newer than {SCHEMA_VERSION}"
                )
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            row = db.execute("SELECT value FROM meta WHERE name='backend'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta (name, value) VALUES ('backend', ?)", (backend,))
            elif row[0] != backend:
                # overlay stores diffs, native full trees: one can't read the other's data.
                raise InvalidArgument(
                    f"snapshot root {path!r} belongs to the {row[0]!r} snapshotter, not {backend!r}"
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            # IMMEDIATE takes the write lock up front, so a check-then-write sequence inside
            # the transaction cannot interleave with another writer.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------------ reads

    def _get(self, db: sqlite3.Connection, key: str) -> Record | None:
        row = db.execute(_SELECT + "WHERE s.key = ? AND s.state = 'ok'", (key,)).fetchone()
        return _record(row) if row else None

    def _require(self, db: sqlite3.Connection, key: str) -> Record:
        rec = self._get(db, key)
        if rec is None:
            raise NotFound(f"snapshot {key} does not exist")
        return rec

    def get(self, key: str) -> Record:
        """The record for ``key``; NotFound if there is none."""
        with self._lock:
            return self._require(self._db, key)

    def chain(self, key: str) -> list[Record]:
        """``key``'s record followed by its parent, grandparent, ... (top-most first)."""
        with self._lock:
            rec = self._require(self._db, key)
            rows = self._db.execute(
                """
                WITH RECURSIVE up(id, depth) AS (
                    SELECT parent, 1 FROM snapshots WHERE id = ? AND parent IS NOT NULL
                    UNION ALL
                    SELECT s.parent, up.depth + 1 FROM snapshots s JOIN up ON s.id = up.id
                    WHERE s.parent IS NOT NULL
                )
                SELECT s.id, s.key, s.kind, s.parent, p.key, s.labels, s.created, s.updated,
                       s.size, s.inodes
                FROM up JOIN snapshots s ON s.id = up.id
                LEFT JOIN snapshots p ON p.id = s.parent
                ORDER BY up.depth
                """,
                (rec.id,),
            ).fetchall()
            return [rec, *(_record(r) for r in rows)]

    def records(self) -> list[Record]:
        with self._lock:
            rows = self._db.execute(_SELECT + "WHERE s.state = 'ok' ORDER BY s.id").fetchall()
        return [_record(r) for r in rows]

    def live_ids(self) -> set[int]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM snapshots WHERE state = 'ok'")}

    def removing_ids(self) -> list[int]:
        with self._lock:
            rows = self._db.execute("SELECT id FROM snapshots WHERE state = 'removing'")
            return [r[0] for r in rows]

    # ------------------------------------------------------------------ writes

    def check_new(self, key: str, parent: str | None) -> Record | None:
        """Validate a prepare/view before doing any slow work; returns the parent record."""
        _check_key(key)
        with self._lock:
            return self._check_new(self._db, key, parent)

    def _check_new(self, db: sqlite3.Connection, key: str, parent: str | None) -> Record | None:
        if self._get(db, key) is not None:
            raise Conflict(f"snapshot {key} already exists")
        if parent is None:
            return None
        prec = self._get(db, parent)
        if prec is None:
            raise NotFound(f"parent snapshot {parent} does not exist")
        if prec.kind is not Kind.COMMITTED:
            raise InvalidArgument(f"parent snapshot {parent} is not committed")
        return prec

    def create(
        self,
        key: str,
        kind: Kind,
        parent: Record | None,
        labels: dict[str, str] | None,
        place: Callable[[int], None],
    ) -> Record:
        """Insert a snapshot row and call ``place(id)`` before the row commits.

        ``place`` moves the snapshot's already-populated directory into place; if it
        raises, the row is rolled back. A crash between the two leaves a directory without
        a row, which startup cleanup removes.
        """
        labels = _check_labels(labels)
        now = time.time()
        with self._tx() as db:
            prec = self._check_new(db, key, parent.key if parent else None)
            if parent is not None and (prec is None or prec.id != parent.id):
                raise NotFound(f"parent snapshot {parent.key} does not exist")
            cur = db.execute(
                "INSERT INTO snapshots (key, kind, parent, labels, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, kind.value, parent.id if parent else None, json.dumps(labels), now, now),
            )
            id_ = cur.lastrowid
            assert id_ is not None
            place(id_)
            return self._require(db, key)

    def commit(self, name: str, key: str, labels: dict[str, str] | None) -> None:
        """Turn active ``key`` into committed ``name``; ``labels`` None keeps the old ones."""
        _check_key(name)
        new_labels = _check_labels(labels) if labels is not None else None
        with self._tx() as db:
            rec = self._require(db, key)
            if rec.kind is not Kind.ACTIVE:
                raise InvalidArgument(f"snapshot {key} is {rec.kind.value}, only an active snapshot can be committed")
            if name != key and self._get(db, name) is not None:
                raise Conflict(f"snapshot {name} already exists")
            db.execute(
                "UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, updated = ? WHERE id = ?",
                (name, json.dumps(new_labels if new_labels is not None else rec.labels), time.time(), rec.id),
            )

    def set_usage(self, id_: int, usage: Usage) -> None:
        """Record a committed snapshot's measured disk usage."""
        with self._tx() as db:
            db.execute("UPDATE snapshots SET size = ?, inodes = ? WHERE id = ? AND kind = 'committed'",
                       (usage.size, usage.inodes, id_))

    def rebase(self, key: str, parent: str) -> None:
        """Give active ``key``, made without a parent, the committed ``parent``."""
        with self._tx() as db:
            rec = self._require(db, key)
            if rec.kind is not Kind.ACTIVE or rec.parent_id is not None:
                raise InvalidArgument(f"snapshot {key} is not an active snapshot without a parent")
            prec = self._require(db, parent)
            if prec.kind is not Kind.COMMITTED:
                raise InvalidArgument(f"parent snapshot {parent} is not committed")
            db.execute("UPDATE snapshots SET parent = ?, updated = ? WHERE id = ?", (prec.id, time.time(), rec.id))

    def begin_remove(self, key: str) -> int:
        """Mark ``key`` as being removed (it vanishes from every read) and return its id."""
        with self._tx() as db:
            rec = self._require(db, key)
            child = db.execute(
                "SELECT key FROM snapshots WHERE parent = ? AND state = 'ok' LIMIT 1", (rec.id,)
            ).fetchone()
            if child is not None:
                raise Conflict(f"snapshot {key} has children (e.g. {child[0]}); remove them first")
            # parent = NULL too: the row no longer pins its parent, whose own removal must
            # not wait for this directory to be deleted.
            db.execute(
                "UPDATE snapshots SET state = 'removing', key = NULL, parent = NULL WHERE id = ?",
                (rec.id,),
            )
            return rec.id

    def finish_remove(self, id_: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM snapshots WHERE id = ? AND state = 'removing'", (id_,))
