"""Wires the stores and services from a DaemonConfig. Everything the API needs hangs here."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
import uuid

from dockyard.builder.cache import BuildCache
from dockyard.content.local import LocalStore
from dockyard.daemon.config import DaemonConfig
from dockyard.daemon.containers import ContainerService
from dockyard.daemon.events import EventBus
from dockyard.daemon.execs import ExecService
from dockyard.daemon.networks import NetworkService
from dockyard.daemon.volumes import VolumeService
from dockyard.distribution.hosts import RegistryHosts
from dockyard.errors import Unavailable
from dockyard.images.metadata import MetadataStore
from dockyard.images.service import ImageService
from dockyard.runtime.prewarm import Warmer
from dockyard.snapshots import detect, open_snapshotter
from dockyard.supervisor import SOCKET_NAME
from dockyard.supervisor import command as supervisor_command
from dockyard.supervisor.client import SupervisorClient

log = logging.getLogger("dockyard.engine")
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Engine:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.started = time.time()
        root = config.data_root
        os.makedirs(root, mode=0o711, exist_ok=True)
        os.makedirs(config.exec_root, mode=0o700, exist_ok=True)
        self.id = self._engine_id(root)
        self.events = EventBus()
        self.warmer = Warmer()  # see prewarm: hides the first cgroup attach's RCU wait
        self.content = LocalStore(os.path.join(root, "content"))
        driver = config.storage_driver or detect(root)
        self.snapshotter = open_snapshotter(driver, os.path.join(root, "snapshots", driver))
        self.metadata = MetadataStore(os.path.join(root, "metadata.db"))
        self.images = ImageService(self.content, self.snapshotter, self.metadata)
        self.build_cache = BuildCache(os.path.join(root, "builder", "cache.db"))
        self.registries = RegistryHosts(config.insecure_registries, config.registry_mirrors,
                                        config.registry_certs_dir)
        self.supervisor_root = os.path.join(config.exec_root, "supervisor")
        self.runtime_root = os.path.join(config.exec_root, "runtime")
        self._sup_lock = threading.Lock()
        self._sup_client: SupervisorClient | None = None
        self.networks = NetworkService(self)
        self.containers = ContainerService(self)
        self.execs = ExecService(self)
        self.volumes = VolumeService(self)
        # live restore: a supervisor that outlived the previous daemon keeps the containers
        if self._socket_answers():
            self._connect()
        self.containers.remove_incomplete()
        self.containers.remove_orphans()
        self.containers.restore_networks()
        self.containers.start_by_policy()

    # ------------------------------------------------------------------ supervisor

    @property
    def _socket(self) -> str:
        return os.path.join(self.supervisor_root, SOCKET_NAME)

    def _socket_answers(self) -> bool:
        try:
            SupervisorClient(self._socket, timeout=5).call("list")
        except (Unavailable, OSError):
            return False
        return True

    def _connect(self) -> SupervisorClient:
        client = SupervisorClient(self._socket)
        self._sup_client = client
        self.containers.reconcile(client)
        return client

    def running_supervisor(self) -> SupervisorClient | None:
        """The client of a supervisor already connected to, without starting one."""
        return self._sup_client

    def supervisor(self) -> SupervisorClient:
        """The supervisor's client; the supervisor is started on first use."""
        client = self._sup_client
        if client is not None and os.path.exists(client.path):
            return client
        with self._sup_lock:
            if self._sup_client is not None and self._socket_answers():
                return self._sup_client
            if not self._socket_answers():
                self._spawn_supervisor()
            return self._connect()

    def _spawn_supervisor(self) -> None:
        os.makedirs(self.supervisor_root, mode=0o700, exist_ok=True)
        env = dict(os.environ)
        # -S skips site for a fast start, so the package must be on PYTHONPATH
        env["PYTHONPATH"] = _PKG_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        log_path = os.path.join(self.config.exec_root, "supervisor.log")
        proc = subprocess.Popen(
            supervisor_command(sys.executable, self.supervisor_root, self.runtime_root),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
            cwd="/", start_new_session=True)  # its own session: it must outlive us (live restore)
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if line != b"ready\n":
            rest = b""
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
                rest = proc.stderr.read()
            raise Unavailable(f"the supervisor did not start: {(line + rest).decode(errors='replace').strip()}")
        with open(os.path.join(self.config.exec_root, "supervisor.pid"), "w") as f:
            f.write(str(proc.pid))

        # Keep its stderr flowing into a log file while we live; a pipe nobody reads
        # would block it on a long traceback.
        def drain(stream: object = proc.stderr) -> None:
            with open(log_path, "ab") as out:
                for chunk in stream:  # type: ignore[attr-defined]
                    out.write(chunk)
                    out.flush()

        threading.Thread(target=drain, name="supervisor-stderr", daemon=True).start()

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
        self.containers.close()
        self.networks.close()
        self.volumes.close()
        self.metadata.close()
        self.snapshotter.close()
