"""Volumes: named and anonymous volumes of the ``local`` driver (store.py)."""

from dockyard.volumes.store import ANONYMOUS_LABEL, LOCAL, Volume, VolumeStore, validate_name

__all__ = ["ANONYMOUS_LABEL", "LOCAL", "Volume", "VolumeStore", "validate_name"]
