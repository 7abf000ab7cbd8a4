"""Image metadata in SQLite (WAL): image records, tags and repo digests.

Each write is one transaction, so a crash leaves either the old or the new state."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dockyard.errors import NotFound
from dockyard.images.model import Descriptor

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,            -- sha256 of the config bytes
    manifest_digest TEXT NOT NULL,
    manifest_type TEXT NOT NULL,
    manifest_size INTEGER NOT NULL,
    size INTEGER NOT NULL,          -- unpacked bytes of all layers
    parent TEXT NOT NULL DEFAULT '',
    added REAL NOT NULL,
    last_tag_time REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,          -- normalised name:tag, e.g. docker.io/library/busybox:latest
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS repo_digests (
    name TEXT PRIMARY KEY,          -- normalised name@digest
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS tags_by_image ON tags(image_id);
CREATE INDEX IF NOT EXISTS digests_by_image ON repo_digests(image_id);
"""


@dataclass
class ImageRecord:
    id: str
    manifest: Descriptor
    size: int
    parent: str = ""
    added: float = 0.0
    last_tag_time: float = 0.0
    tags: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)


class MetadataStore:
    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()
        self._db().executescript(_SCHEMA)  # executescript runs its own transaction

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ------------------------------------------------------------------ reads

    def _record(self, row: tuple) -> ImageRecord:
        db = self._db()
        image_id = row[0]
        tags = [r[0] for r in db.execute("SELECT name FROM tags WHERE image_id=? ORDER BY added, name", (image_id,))]
        digests = [r[0] for r in db.execute("SELECT name FROM repo_digests WHERE image_id=? ORDER BY name", (image_id,))]
        return ImageRecord(
            id=image_id,
            manifest=Descriptor(row[2], row[1], row[3]),
            size=row[4], parent=row[5], added=row[6], last_tag_time=row[7],
            tags=tags, digests=digests,
        )

    _COLS = "id, manifest_digest, manifest_type, manifest_size, size, parent, added, last_tag_time"

    def get(self, image_id: str) -> ImageRecord:
        row = self._db().execute(f"SELECT {self._COLS} FROM images WHERE id=?", (image_id,)).fetchone()
        if row is None:
            raise NotFound(f"No such image: {image_id}")
        return self._record(row)

    def exists(self, image_id: str) -> bool:
        return self._db().execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone() is not None

    def list(self) -> list[ImageRecord]:
        rows = self._db().execute(f"SELECT {self._COLS} FROM images ORDER BY added DESC").fetchall()
        return [self._record(r) for r in rows]

    def ids_with_prefix(self, hex_prefix: str) -> list[str]:
        like = "sha256:" + hex_prefix.replace("%", "").replace("_", "") + "%"
        return [r[0] for r in self._db().execute("SELECT id FROM images WHERE id LIKE ?", (like,))]

    def by_tag(self, name: str) -> str | None:
        row = self._db().execute("SELECT image_id FROM tags WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def by_digest(self, name: str) -> str | None:
        row = self._db().execute("SELECT image_id FROM repo_digests WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def by_manifest(self, digest: str) -> list[str]:
        return [r[0] for r in self._db().execute("SELECT id FROM images WHERE manifest_digest=?", (digest,))]

    def count(self) -> int:
        return self._db().execute("SELECT count(*) FROM images").fetchone()[0]

    # ------------------------------------------------------------------ writes

    def add(self, rec: ImageRecord, tags: list[str] = (), digests: list[str] = ()) -> None:
        """Insert or update an image and move the given tags / repo digests onto it."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO images (id, manifest_digest, manifest_type, manifest_size, size, parent, added)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET manifest_digest=excluded.manifest_digest,"
                " manifest_type=excluded.manifest_type, manifest_size=excluded.manifest_size, size=excluded.size",
                (rec.id, rec.manifest.digest, rec.manifest.media_type, rec.manifest.size, rec.size, rec.parent, rec.added or now),
            )
            for name in tags:
                self._tag(db, name, rec.id, now)
            for name in digests:
                db.execute("INSERT OR REPLACE INTO repo_digests (name, image_id) VALUES (?,?)", (name, rec.id))

    @staticmethod
    def _tag(db: sqlite3.Connection, name: str, image_id: str, now: float) -> None:
        db.execute("INSERT OR REPLACE INTO tags (name, image_id, added) VALUES (?,?,?)", (name, image_id, now))
        db.execute("UPDATE images SET last_tag_time=? WHERE id=?", (now, image_id))

    def tag(self, name: str, image_id: str) -> str | None:
        """Point ``name`` at ``image_id``; returns the image it pointed at before, if any."""
        with self._tx() as db:
            row = db.execute("SELECT image_id FROM tags WHERE name=?", (name,)).fetchone()
            self._tag(db, name, image_id, time.time())
        return row[0] if row else None

    def untag(self, name: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM tags WHERE name=?", (name,))

    def remove_digest(self, name: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM repo_digests WHERE name=?", (name,))

    def delete(self, image_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM tags WHERE image_id=?", (image_id,))
            db.execute("DELETE FROM repo_digests WHERE image_id=?", (image_id,))
            db.execute("DELETE FROM images WHERE id=?", (image_id,))

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
