"""Wires the stores and services from a DaemonConfig. Everything the API needs hangs here."""

from __future__ import annotations

import os
import time
import uuid

from dockyard.content.local import LocalStore
from dockyard.daemon.config import DaemonConfig
from dockyard.images.metadata import MetadataStore
from dockyard.images.service import ImageService
from dockyard.snapshots import detect, open_snapshotter


class Engine:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.started = time.time()
        root = config.data_root
        os.makedirs(root, mode=0o711, exist_ok=True)
        os.makedirs(config.exec_root, mode=0o700, exist_ok=True)
        self.id = self._engine_id(root)
        self.content = LocalStore(os.path.join(root, "content"))
        driver = config.storage_driver or detect(root)
        self.snapshotter = open_snapshotter(driver, os.path.join(root, "snapshots", driver))
        self.metadata = MetadataStore(os.path.join(root, "metadata.db"))
        self.images = ImageService(self.content, self.snapshotter, self.metadata)

    @staticmethod
    def _engine_id(root: str) -> str:
        path = os.path.join(root, "engine-id")
        try:
            with open(path) as f:
                return f.read().strip()
        except FileNotFoundError:
            value = str(uuid.uuid4())
            with open(path + ".tmp", "w") as f:
                f.write(value)
            os.rename(path + ".tmp", path)
            return value

    def close(self) -> None:
        self.metadata.close()
        self.snapshotter.close()
