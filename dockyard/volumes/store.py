"""Named volumes of the ``local`` driver, as docker keeps them: a directory
``<root>/<name>/_data`` per volume and a row of metadata (driver, labels, options, creation
time) in SQLite. The driver's options (``type``, ``device``, ``o``: a tmpfs volume, say) are
checked here and kept for the mount made when a container uses the volume.

A volume's row is written after its directory exists and deleted before it goes, so a crash
leaves at most a directory without a row, which ``open`` removes."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import Conflict, InvalidArgument, NotFound

LOCAL = "local"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"  # docker marks unnamed volumes with it
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_LOCAL_OPTIONS = ("type", "device", "o", "size")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    labels TEXT NOT NULL,
    options TEXT NOT NULL,
    created TEXT NOT NULL
)
"""


@dataclass
class Volume:
    name: str
    driver: str
    mountpoint: str
    created: str
    labels: dict[str, str] | None = None
    options: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in (self.labels or {})

    def to_api(self) -> dict[str, Any]:
        """docker's Volume object."""
        return {"CreatedAt": self.created, "Driver": self.driver, "Labels": self.labels,
                "Mountpoint": self.mountpoint, "Name": self.name, "Options": self.options,
                "Scope": "local"}


def validate_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
            "use absolute path")


def _check_options(name: str, driver: str, options: dict[str, str] | None) -> None:
    if driver != LOCAL:
        raise NotFound(f'create {name}: error looking up volume plugin {driver}: plugin "{driver}" not found')
    if not options:
        return
    for key in options:
        if key not in _LOCAL_OPTIONS:
            raise InvalidArgument(f'create {name}: invalid option: "{key}"')
    if ("type" in options or "device" in options or "o" in options) and not options.get("device"):
        raise InvalidArgument(f'create {name}: missing required option: "device"')
    if options.get("device") and not options.get("type"):
        raise InvalidArgument(f'create {name}: missing required option: "type"')


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class VolumeStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        self._db = sqlite3.connect(os.path.join(self.root, "metadata.db"), check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._lock = threading.RLock()
        self._remove_rowless()

    def _remove_rowless(self) -> None:
        names = {r[0] for r in self._db.execute("SELECT name FROM volumes")}
        for entry in os.listdir(self.root):
            path = os.path.join(self.root, entry)
            if entry not in names and os.path.isdir(path) and _NAME.fullmatch(entry):
                shutil.rmtree(path, ignore_errors=True)

    def mountpoint(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def _volume(self, row: tuple[str, str, str, str, str]) -> Volume:
        name, driver, labels, options, created = row
        return Volume(name=name, driver=driver, mountpoint=self.mountpoint(name), created=created,
                      labels=json.loads(labels), options=json.loads(options))

    def create(self, name: str | None = None, driver: str = LOCAL, labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None) -> tuple[Volume, bool]:
        """The volume ``name`` (a new anonymous one without a name); True if it was made now.
        docker answers a create of an existing name with that volume, as it is."""
        driver = driver or LOCAL
        if name:
            validate_name(name)
        else:
            name = secrets.token_hex(32)
            labels = {**(labels or {}), ANONYMOUS_LABEL: ""}
        _check_options(name, driver, options)
        with self._lock:
            existing = self._db.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
            if existing:
                vol = self._volume(existing)
                if vol.driver != driver:
                    raise Conflict(f"create {name}: a volume with the name {name} already exists with driver "
                                   f'"{vol.driver}"')
                return vol, False
            path = self.mountpoint(name)
            os.makedirs(path, mode=0o755)
            os.chmod(os.path.dirname(path), 0o701)
            created = _now()
            self._db.execute("INSERT INTO volumes (name, driver, labels, options, created) VALUES (?, ?, ?, ?, ?)",
                             (name, driver, json.dumps(labels), json.dumps(options), created))
        return Volume(name=name, driver=driver, mountpoint=path, created=created, labels=labels,
                      options=options), True

    def get(self, name: str) -> Volume:
        with self._lock:
            row = self._db.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"get {name}: no such volume")
        return self._volume(row)

    def list(self) -> list[Volume]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM volumes ORDER BY name").fetchall()
        return [self._volume(r) for r in rows]

    def remove(self, name: str) -> None:
        """Delete the volume and its data (the caller checks that nothing uses it)."""
        with self._lock:
            if self._db.execute("DELETE FROM volumes WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"get {name}: no such volume")
        shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            self._db.close()
