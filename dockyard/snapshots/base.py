"""Snapshotter protocol and its value types."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


class Kind(enum.Enum):
    VIEW = "view"
    ACTIVE = "active"
    COMMITTED = "committed"


@dataclass
class Info:
    name: str
    kind: Kind
    parent: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0


@dataclass
class Usage:
    size: int = 0  # bytes used by this snapshot alone (not its parents)
    inodes: int = 0


@dataclass
class Mount:
    """One mount(2) call: ``mount -t type source <target> -o options``."""

    type: str  # "bind" or "overlay"
    source: str
    options: list[str] = field(default_factory=list)

    def option(self, key: str) -> str | None:
        prefix = key + "="
        for opt in self.options:
            if opt.startswith(prefix):
                return opt[len(prefix):]
        return None


class Snapshotter(Protocol):
    name: str
    # Whether an active snapshot's own directory never depends on its parent's content, so
    # that it can be prepared without a parent, filled, then given one (``rebase``): true
    # for overlay (a layer is an upperdir), false where a snapshot copies its parent.
    independent_layers: bool

    def stat(self, key: str) -> Info: ...
    def mounts(self, key: str) -> list[Mount]: ...
    def prepare(self, key: str, parent: str | None = None, labels: dict[str, str] | None = None) -> list[Mount]: ...
    def view(self, key: str, parent: str | None = None, labels: dict[str, str] | None = None) -> list[Mount]: ...
    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None: ...
    def rebase(self, key: str, parent: str) -> list[Mount]: ...
    def remove(self, key: str) -> None: ...
    def walk(self) -> Iterator[Info]: ...
    def usage(self, key: str) -> Usage: ...
    def close(self) -> None: ...
