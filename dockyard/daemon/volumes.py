"""The volume service: docker's volume API over the local volume store, with volume events;
whether a volume is in use comes from the container records."""

from __future__ import annotations

import os
from typing import Any

from dockyard import syscalls
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.labels import label_matches
from dockyard.mount import is_mounted, unmount_all
from dockyard.volumes import LOCAL, Volume, VolumeStore

_LIST_FILTERS = ("dangling", "driver", "label", "name")
_PRUNE_FILTERS = ("label", "label!", "all")


def _string_map(value: Any, what: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidArgument(f"{what} must be an object of strings")
    return value


def _check_filters(flt: dict[str, list[str]], allowed: tuple[str, ...]) -> None:
    for key in flt:
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")


def _bool_filter(values: list[str], key: str) -> bool:
    value = values[-1].lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise InvalidArgument(f"invalid filter '{key}={values[-1]}'")


class VolumeService:
    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.store = VolumeStore(os.path.join(engine.config.data_root, "volumes"))

    def _event(self, action: str, vol: Volume) -> None:
        self.engine.events.emit("volume", action, vol.name, {"driver": vol.driver})

    def _users(self, name: str) -> list[str]:
        return self.engine.containers.volume_users(name)

    def create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidArgument("invalid JSON: the body must be an object")
        name = body.get("Name") or None
        if name is not None and not isinstance(name, str):
            raise InvalidArgument("Name must be a string")
        driver = body.get("Driver") or LOCAL
        labels = _string_map(body.get("Labels"), "Labels")
        options = _string_map(body.get("DriverOpts"), "DriverOpts")
        vol, made = self.store.create(name, driver, labels, options)
        if made:
            self._event("create", vol)
        return vol.to_api()

    def for_mount(self, name: str, labels: dict[str, str] | None = None,
                  options: dict[str, str] | None = None) -> tuple[Volume, bool]:
        """The volume a container mounts (``name`` "" for a new anonymous one), created if
        need be (as ``docker run -v name:/path`` does); True if it was made now."""
        vol, made = self.store.create(name or None, LOCAL, labels, options)
        if made:
            self._event("create", vol)
        return vol, made

    def acquire(self, vol: Volume) -> None:
        """Before a container uses ``vol``: the local driver's device (``type``/``device``/``o``,
        a tmpfs say) is mounted on its data directory, once for all its users."""
        opts = vol.options or {}
        if opts.get("device") and not is_mounted(vol.mountpoint):
            try:
                syscalls.mount(opts["device"], vol.mountpoint, opts.get("type"), 0, opts.get("o") or None)
            except OSError as e:
                raise InvalidArgument(f"error while mounting volume '{vol.mountpoint}': {e.strerror}") from None

    def release(self, name: str) -> None:
        """After a container that used the volume ``name`` is gone: its device is unmounted
        once no container uses it."""
        try:
            vol = self.store.get(name)
        except NotFound:
            return
        if (vol.options or {}).get("device") and not self._users(name) and is_mounted(vol.mountpoint):
            unmount_all(vol.mountpoint)

    def inspect(self, name: str) -> dict[str, Any]:
        return self.store.get(name).to_api()

    def list(self, flt: dict[str, list[str]] | None = None) -> dict[str, Any]:
        flt = flt or {}
        _check_filters(flt, _LIST_FILTERS)
        self.engine.containers.settle()  # a --rm container's volumes go after its waiter is answered
        out = []
        for vol in self.store.list():
            if "dangling" in flt and _bool_filter(flt["dangling"], "dangling") == bool(self._users(vol.name)):
                continue
            if "driver" in flt and vol.driver not in flt["driver"]:
                continue
            if "name" in flt and not any(n in vol.name for n in flt["name"]):
                continue
            if "label" in flt and not all(label_matches(vol.labels, w) for w in flt["label"]):
                continue
            out.append(vol.to_api())
        return {"Volumes": out, "Warnings": None}

    def remove(self, name: str, force: bool = False) -> None:
        try:
            vol = self.store.get(name)
        except NotFound:
            if force:
                return
            raise
        users = self._users(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        self._delete(vol)

    def _delete(self, vol: Volume) -> None:
        if is_mounted(vol.mountpoint):
            unmount_all(vol.mountpoint)
        self.store.remove(vol.name)
        self._event("destroy", vol)

    def prune(self, flt: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """Unused volumes: anonymous ones only, unless ``all`` (docker since API 1.42)."""
        flt = flt or {}
        _check_filters(flt, _PRUNE_FILTERS)
        everything = "all" in flt and _bool_filter(flt["all"], "all")
        deleted, reclaimed = [], 0
        for vol in self.store.list():
            if not (everything or vol.anonymous):
                continue
            if "label" in flt and not all(label_matches(vol.labels, w) for w in flt["label"]):
                continue
            if "label!" in flt and any(label_matches(vol.labels, w) for w in flt["label!"]):
                continue
            if self._users(vol.name):
                continue
            size = tree_size(os.path.dirname(vol.mountpoint))
            try:
                self._delete(vol)
            except NotFound:
                continue
            deleted.append(vol.name)
            reclaimed += size
        return {"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def close(self) -> None:
        self.store.close()


def tree_size(top: str) -> int:
    """Bytes the files under ``top`` occupy (allocated blocks)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(top):
        for n in filenames + dirnames:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
            except OSError:
                pass
    return total
