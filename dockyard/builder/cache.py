"""The build cache: which image a build step made, by what the step depends on.

A step's key is a digest of its parent image, its kind, its expanded instruction, the build
args it can see and — for COPY/ADD — the content and metadata of its sources. Each entry also
keeps those parts themselves, so that a miss can be explained: among the entries on the same
parent for the same instruction kind, the nearest one tells what changed (the instruction,
an arg, which files) — or, with none on this parent, that the parent itself is new.

Entries live in SQLite (``<data-root>/builder/cache.db``); one whose image was removed is
ignored (and dropped)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field


@dataclass
class StepKey:
    parent: str  # image ID, or "scratch"
    kind: str  # the instruction ("run", "copy", "env"...)
    text: str  # the expanded instruction (and what else defines the step: workdir, user...)
    args: dict[str, str] = field(default_factory=dict)  # build args the step sees (see keyed_args)
    sources: dict[str, str] = field(default_factory=dict)  # COPY/ADD: path -> content+metadata digest
    # whether the args are part of the key (RUN: they are its environment) or only kept to
    # explain a miss (a metadata step: its expanded result is in ``text`` already)
    keyed_args: bool = True

    def digest(self) -> str:
        args = sorted(self.args.items()) if self.keyed_args else []
        doc = json.dumps([self.parent, self.kind, self.text, args, sorted(self.sources.items())])
        return "sha256:" + hashlib.sha256(doc.encode()).hexdigest()


class BuildCache:
    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self._path = path
        self._local = threading.local()
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS steps (key TEXT PRIMARY KEY, image TEXT NOT NULL, parent TEXT NOT NULL,"
                       " kind TEXT NOT NULL, text TEXT NOT NULL, args TEXT NOT NULL, sources TEXT NOT NULL,"
                       " created REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS steps_parent ON steps (parent, kind)")
            # file digests of contexts read in place, by path and identity
            db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, ident TEXT NOT NULL,"
                       " digest TEXT NOT NULL)")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self._path, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
        return db

    def get(self, key: StepKey, exists: callable) -> str | None:  # type: ignore[valid-type]
        row = self._db().execute("SELECT image FROM steps WHERE key=?", (key.digest(),)).fetchone()
        if row is None:
            return None
        if not exists(row[0]):
            with self._db() as db:
                db.execute("DELETE FROM steps WHERE image=?", (row[0],))
            return None
        return row[0]

    def file_digests(self, root: str) -> dict[str, tuple[tuple[int, ...], str]]:
        """path -> (identity, digest) of the files remembered under ``root``."""
        rows = self._db().execute("SELECT path, ident, digest FROM files WHERE path >= ? AND path < ?",
                                  (root + "/", root + "0"))  # "0" sorts right after "/"
        return {path: (tuple(json.loads(ident)), digest) for path, ident, digest in rows}

    def put_file_digests(self, entries: list[tuple[str, tuple[int, ...], str]]) -> None:
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?)",
                           [(path, json.dumps(list(ident)), digest) for path, ident, digest in entries])

    def put(self, key: StepKey, image: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO steps VALUES (?,?,?,?,?,?,?,?)",
                       (key.digest(), image, key.parent, key.kind, key.text, json.dumps(key.args),
                        json.dumps(key.sources), time.time()))

    def prune(self, exists: callable, everything: bool = False) -> list[str]:  # type: ignore[valid-type]
        """Forget the steps whose image is gone (every step with ``everything``: their images
        stay, as images) and the remembered file digests; returns the forgotten steps' keys."""
        with self._db() as db:
            rows = db.execute("SELECT key, image FROM steps").fetchall()
            gone = [key for key, image in rows if everything or not exists(image)]
            db.executemany("DELETE FROM steps WHERE key=?", [(key,) for key in gone])
            db.execute("DELETE FROM files")
        return gone

    def explain(self, key: StepKey, exists: callable) -> str | None:  # type: ignore[valid-type]
        """Why ``key`` missed, in one line; None when nothing was ever built on its parent
        (the caller knows whether that parent is itself new)."""
        rows = self._db().execute("SELECT image, text, args, sources FROM steps WHERE parent=? AND kind=?"
                                  " ORDER BY created DESC", (key.parent, key.kind)).fetchall()
        rows = [r for r in rows if exists(r[0])]
        if not rows:
            return None
        best = rows[0]
        for row in rows:  # the nearest: same text first
            if row[1] == key.text:
                best = row
                break
        image, text, args, sources = best[0], best[1], json.loads(best[2]), json.loads(best[3])
        changed_args = sorted(k for k in set(args) | set(key.args) if args.get(k) != key.args.get(k))
        added = sorted(set(key.sources) - set(sources))
        removed = sorted(set(sources) - set(key.sources))
        modified = sorted(p for p in set(sources) & set(key.sources) if sources[p] != key.sources[p])
        parts = []
        for label, paths in (("changed", modified), ("added", added), ("removed", removed)):
            if paths:
                shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
                parts.append(f"{label}: {shown}")
        if parts:
            return "source files " + "; ".join(parts)
        if changed_args:  # before the text: a changed arg is also why an expanded instruction differs
            return "build arg " + ", ".join(
                f"{k} changed ({args.get(k, '<unset>')!r} -> {key.args.get(k, '<unset>')!r})" for k in changed_args)
        if text != key.text:
            return "the instruction or the image config before it changed"
        return f"an earlier result ({image[7:19]}) was made differently"


__all__ = ["BuildCache", "StepKey"]
