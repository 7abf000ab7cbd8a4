"""The container service: records in SQLite, snapshots and bundles, the supervisor.

Who owns what:
- the record (config, host config, name, state as last seen) lives here, in
  ``<data-root>/containers.db``;
- the process, its pipes, the json-file log and the exit code live in the supervisor; the
  record's state is refreshed from it (a monitor thread per started container waits for
  the exit, so waiters here never poll);
- the writable layer is ``snapshotter.prepare(id, image chain top)``, mounted on the
  bundle's rootfs from create until remove.

Every method is blocking: the API calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import secrets
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dockyard.containers.config import (
    command_of,
    normalize_create,
    parse_signal,
    validate_host_config,
)
from dockyard.containers.mountspec import MountPoint, parse_mounts, volumes_from
from dockyard.containers.names import generate_name, validate_name
from dockyard.containers.ocispec import CGROUP_PARENT, build_spec, container_hostname, limits_of
from dockyard.daemon.health import HealthMonitor, probe_command
from dockyard.daemon.networks import PREDEFINED
from dockyard.errors import (
    Conflict,
    DockyardError,
    InvalidArgument,
    NotFound,
    NotModified,
    Unavailable,
)
from dockyard.faults import crash_point
from dockyard.humanize import human_duration
from dockyard.labels import label_matches
from dockyard.logs import LogRecord, format_time, read_logs
from dockyard.mount import is_mounted, mount_all, unmount_all
from dockyard.snapshots import Kind

log = logging.getLogger("dockyard.containers")

_ZERO_TIME = "0001-01-01T00:00:00Z"
_BACKOFF_FIRST, _BACKOFF_MAX, _BACKOFF_RESET = 0.1, 60.0, 10.0  # seconds (docker's restart manager)
_UNKNOWN_EXIT = 255
_SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    doc TEXT NOT NULL
);
"""


@dataclass
class Record:
    """One container. ``state`` mirrors docker's State fields we keep."""

    id: str
    name: str  # with docker's leading "/"
    image: str  # image ID
    config: dict[str, Any]
    host_config: dict[str, Any]
    created: str
    snapshot_key: str
    log_path: str
    bundle: str
    status: str = "created"  # created | running | exited | dead
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    started_at: str = _ZERO_TIME
    finished_at: str = _ZERO_TIME
    error: str = ""
    paused: bool = False  # running with its cgroup frozen (docker's State.Paused)
    restart_count: int = 0  # restarts by the restart policy (docker's RestartCount)
    restarting: bool = False  # exited, its policy's restart pending (State.Restarting)
    manually_stopped: bool = False  # stop/kill by a client: always / unless-stopped wait for a start
    extra: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_doc(cls, doc: str) -> Record:
        return cls(**json.loads(doc))

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def state(self) -> str:
        """docker's State.Status: ``paused`` for a running container that is frozen."""
        if self.restarting and self.status != "running":
            return "restarting"
        return "paused" if self.paused and self.status == "running" else self.status


def _console_size(host_config: dict[str, Any]) -> dict[str, int]:
    """HostConfig.ConsoleSize ([height, width], API 1.42+) as the supervisor's create takes it."""
    size = host_config.get("ConsoleSize")
    if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        return {"height": size[0], "width": size[1]}
    return {}


_MOUNT_KEYS = ("Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation")


def _inspect_mounts(rec: Record) -> list[dict[str, Any]]:
    """docker's ``Mounts``: volumes, binds and ``--mount type=tmpfs`` (not ``--tmpfs``)."""
    return [{k: mp[k] for k in _MOUNT_KEYS if k in mp}
            for mp in rec.extra.get("MountPoints") or [] if mp.get("Inspect", True)]


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _is_container_id(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def _now() -> str:
    return format_time(time.time_ns())


def _apparent_size(top: str) -> int:
    """Bytes in the files below ``top`` (not directories; hard links once; no mount crossed)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    dev = os.lstat(top).st_dev
    stack = [top]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != dev:
                continue
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            elif st.st_size and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _parse_ts(ts: str) -> float:
    """RFC3339(nano) UTC -> epoch seconds (0 for docker's zero time)."""
    if not ts or ts.startswith("0001-"):
        return 0.0
    from dockyard.logs import parse_time

    return parse_time(ts) / 1e9


class ContainerService:
    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.images = engine.images
        self.snapshotter = engine.snapshotter
        self.data_root = engine.config.data_root
        self.exec_root = engine.config.exec_root
        self._db = sqlite3.connect(os.path.join(self.data_root, "containers.db"), check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses nothing committed
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()  # the db connection and the records' state
        self._changed = threading.Condition(self._lock)  # state changes (exits, removals)
        self._exits: dict[str, int] = {}  # id -> exits seen by this daemon ("next-exit")
        self._monitored: set[str] = set()
        self._id_locks: dict[str, threading.Lock] = {}  # serialises operations per container
        self._creating: set[str] = set()  # records whose supervisor side is not made yet
        self._restarting: set[str] = set()  # a restart's stop must not trigger AutoRemove
        self._cgroups: dict[str, Any] = {}  # id -> its Cgroup (stats, top), opened on first use
        self._collecting: set[str] = set()  # removed containers whose files are being deleted
        self._removed_exits: dict[str, int] = {}  # the last removals' exit codes, for their waiters
        self._health: dict[str, HealthMonitor] = {}  # id -> the healthcheck of its current run
        self._created_pids: dict[str, int] = {}  # created, not started: their init's pid
        self._shutting_down = False  # waits end: the daemon stops (its containers may live on)

    # ------------------------------------------------------------------ records

    def _save(self, rec: Record) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO containers (id, name, doc) VALUES (?, ?, ?)",
                             (rec.id, rec.name, rec.to_doc()))
            self._changed.notify_all()

    def _all(self) -> list[Record]:
        with self._lock:
            rows = self._db.execute("SELECT doc FROM containers").fetchall()
        return [Record.from_doc(r[0]) for r in rows]

    def records(self) -> list[Record]:
        return self._all()

    def _by_id(self, cid: str) -> Record | None:
        with self._lock:
            row = self._db.execute("SELECT doc FROM containers WHERE id = ?", (cid,)).fetchone()
        return Record.from_doc(row[0]) if row else None

    def lookup(self, ref: str) -> Record:
        """Docker's order: full ID, exact name, then a unique ID prefix."""
        if not ref:
            raise NotFound("No such container: ")
        with self._lock:
            row = self._db.execute("SELECT doc FROM containers WHERE id = ?", (ref,)).fetchone()
            if row is None:
                name = ref if ref.startswith("/") else "/" + ref
                row = self._db.execute("SELECT doc FROM containers WHERE name = ?", (name,)).fetchone()
            if row is None and all(c in "0123456789abcdef" for c in ref):
                rows = self._db.execute("SELECT doc FROM containers WHERE id LIKE ?", (ref + "%",)).fetchall()
                if len(rows) > 1:
                    raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
                row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"No such container: {ref}")
        return Record.from_doc(row[0])

    @contextlib.contextmanager
    def _locked(self, cid: str) -> Iterator[None]:
        with self._lock:
            lk = self._id_locks.setdefault(cid, threading.Lock())
        with lk:
            yield

    def count(self) -> dict[str, int]:
        recs = [self._refresh(r) for r in self._all()]
        paused = sum(r.state == "paused" for r in recs)
        running = sum(r.running for r in recs) - paused
        return {"Containers": len(recs), "ContainersRunning": running, "ContainersPaused": paused,
                "ContainersStopped": len(recs) - running - paused}

    # ------------------------------------------------------------------ supervisor

    def _sup(self) -> Any:
        return self.engine.supervisor()

    def reconcile(self, client: Any) -> None:
        """After (re)connecting to a supervisor: record exits that happened meanwhile and
        watch the containers still running (live restore)."""
        for rec in self._all():
            if rec.status not in ("created", "running") or rec.id in self._creating or rec.extra.get("incomplete"):
                continue
            try:
                st = client.call("state", id=rec.id)
            except NotFound:
                was_running = rec.running
                rec.status, rec.exit_code, rec.pid, rec.paused = "exited", _UNKNOWN_EXIT, 0, False
                rec.finished_at = rec.finished_at if rec.finished_at != _ZERO_TIME else _now()
                if was_running:
                    self.event(rec, "die", self._die_attributes(rec))
                self._save(rec)
                continue
            except DockyardError:
                continue
            was_running = rec.running
            self._apply_state(rec, st)
            if was_running and not rec.running:
                self.event(rec, "die", self._die_attributes(rec))
            self._save(rec)
            if rec.running:
                self._monitor(rec.id)
                self._start_health(rec, reset=False)

    def restore_networks(self) -> None:
        """At daemon start: running containers keep their endpoints and ports; those that
        exited meanwhile give theirs back."""
        for rec in self.engine.networks.restore(self._all()):
            self._save_networks(rec)

    def _save_networks(self, rec: Record, stopped_only: bool = False) -> None:
        """Store ``rec``'s network settings and ports into the newest copy of its record
        (``stopped_only``: unless a new run has begun meanwhile)."""
        with self._lock:
            cur = self._by_id(rec.id)
            if cur is not None and not (stopped_only and cur.running):
                cur.extra["Networks"], cur.extra["Ports"] = rec.extra.get("Networks"), rec.extra.get("Ports")
                self._save(cur)

    def remove_incomplete(self) -> None:
        """At daemon start: a record whose create never completed (the previous daemon died
        in it) is torn down — whatever of its mount, bundle, snapshot, supervisor container
        and cgroup exists — as docker forgets a container whose create failed."""
        for rec in self._all():
            if rec.extra.get("incomplete") and rec.id not in self._creating:
                log.warning("removing container %s: its create did not complete", rec.id)
                self._teardown(rec)

    def _apply_state(self, rec: Record, st: dict[str, Any]) -> None:
        if st.get("exit_code") is not None:
            rec.status, rec.pid, rec.exit_code = "exited", 0, int(st["exit_code"])
            rec.oom_killed = bool(st.get("oom_killed"))
            rec.finished_at = st.get("finished_at") or _now()
            rec.paused = False
        elif st.get("status") in ("running", "paused"):
            rec.status, rec.pid = "running", int(st.get("pid") or 0)
            rec.paused = st.get("status") == "paused"  # the freezer's word: survives daemon restarts

    def _refresh(self, rec: Record) -> Record:
        """Records are updated by the monitors; re-read to get the newest copy."""
        return self._by_id(rec.id) or rec

    def _monitor(self, cid: str) -> None:
        """A thread blocked in the supervisor's ``wait`` until the container exits: it records
        the exit, wakes this service's waiters, and applies AutoRemove."""
        with self._lock:
            if cid in self._monitored:
                return
            self._monitored.add(cid)
        threading.Thread(target=self._watch, args=(cid,), name=f"monitor-{cid[:12]}", daemon=True).start()

    def _watch(self, cid: str) -> None:
        try:
            try:
                res = self._sup().call("wait", id=cid)
            except NotFound:
                res = {"exit_code": _UNKNOWN_EXIT, "oom_killed": False, "finished_at": _now()}
            except Unavailable:
                return  # the supervisor went away: reconcile() after reconnecting catches up
            with self._lock:
                rec = self._by_id(cid)
                if rec is None:
                    return
                rec.status, rec.pid, rec.paused = "exited", 0, False
                rec.exit_code = int(res.get("exit_code") if res.get("exit_code") is not None else _UNKNOWN_EXIT)
                rec.oom_killed = bool(res.get("oom_killed"))
                rec.finished_at = res.get("finished_at") or _now()
                self._exits[cid] = self._exits.get(cid, 0) + 1
                auto_remove = bool(rec.host_config.get("AutoRemove")) and cid not in self._restarting
                self.event(rec, "die", self._die_attributes(rec))
                delay = self._restart_delay(rec)
                rec.restarting = delay is not None
                monitor = self._health.pop(cid, None)
                if monitor is not None:
                    monitor.stop()
                self._save(rec)
                self._changed.notify_all()
            if not auto_remove:  # a removal releases them after answering its waiters
                with contextlib.suppress(DockyardError, OSError):
                    self._release_networks(cid)
            if delay is not None:
                timer = threading.Timer(delay, self._auto_restart, (cid,))
                timer.daemon = True
                timer.start()
            elif auto_remove:
                with contextlib.suppress(NotFound):
                    self.remove(cid, force=True, volumes=True)  # --rm takes its anonymous volumes
        except Exception:  # a monitor must never die silently with the waiters hanging
            log.exception("monitoring container %s failed", cid)
        finally:
            with self._lock:
                self._monitored.discard(cid)
                self._changed.notify_all()

    # ------------------------------------------------------------------ create

    def create(self, body: dict[str, Any], name: str | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidArgument("invalid JSON: the body must be an object")
        image_ref = body.get("Image")
        if not isinstance(image_ref, str) or not image_ref:
            raise InvalidArgument("Config cannot be empty in order to create a container")
        self.engine.warmer.kick()  # the supervisor's cgroup attach comes in ~10 ms
        img = self.images.resolve(image_ref)
        cid = secrets.token_hex(32)
        res = normalize_create(body, img.config.config, container_id=cid)
        networks = self.engine.networks.settings_for_create(res.host_config, body.get("NetworkingConfig"))
        if res.config.get("MacAddress") and networks:  # API < 1.44 sends it in Config
            first = next(iter(networks.values()))
            first["MacAddress"] = first.get("MacAddress") or res.config["MacAddress"]
        points = self._with_volumes_from(parse_mounts(res.config, res.host_config), res.host_config)
        with self._lock:
            if name:
                full = validate_name(name)
                row = self._db.execute("SELECT id FROM containers WHERE name = ?", (full,)).fetchone()
                if row:
                    raise Conflict(f'Conflict. The container name "{full}" is already in use by container '
                                   f'"{row[0]}". You have to remove (or rename) that container to be able to '
                                   "reuse that name.")
            else:
                taken = {r[0] for r in self._db.execute("SELECT name FROM containers")}
                full = "/" + generate_name(taken)
            bundle = os.path.join(self.exec_root, "bundles", cid)
            log_dir = os.path.join(self.data_root, "containers", cid)
            rec = Record(id=cid, name=full, image=img.id, config=res.config, host_config=res.host_config,
                         created=_now(), snapshot_key=cid, log_path=os.path.join(log_dir, f"{cid}-json.log"),
                         bundle=bundle, extra={"incomplete": True, "Networks": networks})
            # the record first: it reserves the name, and it is what remove() cleans up from
            # should anything below fail half-way — or what the next daemon removes, should
            # this one die before the create is complete
            self._save(rec)
            self._creating.add(cid)  # not "lost" to a reconcile() while the supervisor starts
        crash_point("create:record")
        try:
            self._setup(rec, img.chain[-1] if img.chain else None, points)
            crash_point("create:supervisor")
            with self._lock:
                rec.extra.pop("incomplete", None)
                self._save(rec)
        except BaseException:
            with contextlib.suppress(Exception):
                self._teardown(rec)
            raise
        finally:
            with self._lock:
                self._creating.discard(cid)
        self.event(rec, "create")
        return {"Id": cid, "Warnings": res.warnings}

    def _setup(self, rec: Record, parent: str | None, points: list[MountPoint]) -> None:
        mounts = self.snapshotter.prepare(rec.snapshot_key, self.images.init_layer(parent))
        rootfs = os.path.join(rec.bundle, "rootfs")
        os.makedirs(rootfs, mode=0o700, exist_ok=True)
        mount_all(mounts, rootfs)
        oci_mounts = self._make_mounts(rec, rootfs, points) if points else []
        oci_mounts += self._etc_mounts(rec, {m["destination"] for m in oci_mounts})
        spec = build_spec(rec.id, rec.config, rec.host_config, rootfs, mounts=oci_mounts,
                          default_init=bool(getattr(self.engine.config, "init", False)))
        with open(os.path.join(rec.bundle, "config.json"), "w") as f:
            f.write(json.dumps(spec))  # dumps: the C encoder (json.dump streams in Python)
        os.makedirs(os.path.dirname(rec.log_path), mode=0o700, exist_ok=True)
        crash_point("create:mounted")
        self._sup_create(rec)

    def _write_etc_files(self, rec: Record) -> dict[str, str]:
        """The container's /etc files in its bundle, as its network settings now are (its
        address once it runs; the embedded DNS server on a user network)."""
        from dockyard.network import etcfiles

        nets = self.engine.networks
        endpoint = nets.endpoint_of(rec)
        host_gateway = None
        if any(e.partition("=" if "=" in e else ":")[2] == "host-gateway" for e in rec.host_config.get("ExtraHosts") or []):
            host_gateway = nets.host_gateway()
        hostname = container_hostname(rec.id, rec.config, rec.host_config)
        return etcfiles.write_files(rec.bundle, hostname, rec.host_config,
                                    address=endpoint["IPAddress"] if endpoint else None,
                                    nameserver=nets.embedded_dns(rec), host_gateway=host_gateway)

    def _etc_mounts(self, rec: Record, taken: set[str]) -> list[dict[str, Any]]:
        """/etc/hosts, /etc/resolv.conf and /etc/hostname, written into the bundle and bound
        over the image's (not where the request mounts something itself; a container in
        another's network namespace keeps the image's files)."""
        if (rec.host_config.get("NetworkMode") or "").startswith("container:"):
            return []
        files = self._write_etc_files(rec)
        options = ["rbind", "rprivate", *(["ro"] if rec.host_config.get("ReadonlyRootfs") else [])]
        return [{"destination": dest, "type": "bind", "source": src, "options": options}
                for dest, src in files.items() if dest not in taken]

    def _with_volumes_from(self, points: list[MountPoint], host_config: dict[str, Any]) -> list[MountPoint]:
        """``--volumes-from c[:ro|rw]``: the volumes and binds of ``c`` at the same paths,
        unless the request mounts something there itself."""
        taken = {p.destination for p in points}
        for spec in host_config.get("VolumesFrom") or []:
            ref, readonly = volumes_from(spec)
            src = self.lookup(ref)
            for mp in src.extra.get("MountPoints") or []:
                if mp["Type"] not in ("volume", "bind") or mp["Destination"] in taken:
                    continue
                rw = mp["RW"] if readonly is None else not readonly
                source = mp["Name"] if mp["Type"] == "volume" else mp["Source"]
                points.append(MountPoint(mp["Type"], mp["Destination"], source, rw=rw, mode=mp.get("Mode", ""),
                                         propagation=mp.get("Propagation", ""), nocopy=True))
                taken.add(mp["Destination"])
        return points

    def _make_mounts(self, rec: Record, rootfs: str, points: list[MountPoint]) -> list[dict[str, Any]]:
        """Make what the mounts need (volumes, with the image's content copied into new
        ones; missing ``-v`` bind sources), record them, and return their OCI mounts."""
        from dockyard.volumes.copyup import copy_up

        recorded: list[dict[str, Any]] = []
        rec.extra["MountPoints"] = recorded
        oci = []
        for mp in points:
            entry: dict[str, Any] = {"Type": mp.type, "Source": mp.source, "Destination": mp.destination,
                                     "Mode": mp.mode, "RW": mp.rw, "Propagation": mp.propagation,
                                     "Anonymous": mp.type == "volume" and not mp.source}
            if mp.type == "volume":
                vol, made = self.engine.volumes.for_mount(mp.source, mp.volume_labels, mp.volume_options)
                entry.update(Name=vol.name, Source=vol.mountpoint, Driver=vol.driver, Made=made)
                recorded.append(entry)
                with self._lock:
                    self._save(rec)  # the volume is this container's now: a failed create removes it
                self.engine.volumes.acquire(vol)
                if not mp.nocopy and not os.listdir(vol.mountpoint):
                    copy_up(rootfs, mp.destination, vol.mountpoint)
            elif mp.type == "bind":
                if mp.create_source and not os.path.exists(mp.source):
                    os.makedirs(mp.source, mode=0o755)
                recorded.append(entry)
            else:
                entry["Inspect"] = mp.in_inspect
                recorded.append(entry)
            if mp.type == "tmpfs":
                oci.append({"destination": mp.destination, "type": "tmpfs", "source": "tmpfs",
                            "options": [*mp.tmpfs_options, "rw" if mp.rw else "ro"]})
            else:
                oci.append({"destination": mp.destination, "type": "bind", "source": entry["Source"],
                            "options": ["rbind", mp.propagation or "rprivate", "rw" if mp.rw else "ro"]})
        return oci

    def _release_volumes(self, rec: Record, remove_anonymous: bool) -> None:
        """After the container is gone: unmount the device of volumes nobody uses any
        more; remove its anonymous volumes (``rm -v``, ``--rm``) and, for a create that
        failed, the volumes it made."""
        failed = bool(rec.extra.get("incomplete"))
        for mp in rec.extra.get("MountPoints") or []:
            if mp["Type"] != "volume":
                continue
            name = mp["Name"]
            if (failed and mp.get("Made")) or (remove_anonymous and mp.get("Anonymous")):
                with contextlib.suppress(NotFound, Conflict):
                    self.engine.volumes.remove(name)
            else:
                self.engine.volumes.release(name)

    def _sup_create(self, rec: Record) -> None:
        log_cfg = rec.host_config.get("LogConfig") or {}
        created = self._sup().call("create", id=rec.id, bundle=rec.bundle, log_path=rec.log_path,
                         log_opts=log_cfg.get("Config") or {}, stdin=bool(rec.config.get("OpenStdin")),
                         tty=bool(rec.config.get("Tty")), **_console_size(rec.host_config))
        if rec.extra.get("Networks") and created.get("pid"):
            self._created_pids[rec.id] = int(created["pid"])  # where start attaches the networks

    # ------------------------------------------------------------------ start / stop / kill

    def start(self, ref: str) -> None:
        rec = self.lookup(ref)
        try:
            self._start(rec)
        except DockyardError:
            # docker: a --rm container that could not start is removed (its client waits
            # for the removal)
            cur = self._by_id(rec.id)
            if cur is not None and cur.host_config.get("AutoRemove") and not cur.running:
                with contextlib.suppress(DockyardError):
                    self.remove(rec.id, force=True, volumes=True)
            raise

    def _start(self, rec: Record) -> None:
        with self._locked(rec.id):
            rec = self._refresh(rec)
            if rec.running:
                raise NotModified("container already started")
            if rec.manually_stopped or rec.restarting:
                with self._lock:
                    rec.manually_stopped = rec.restarting = False
                    self._save(rec)
            sup = self._sup()
            if rec.status in ("exited", "dead"):
                # the supervisor keeps one run per create: a restart is a fresh create
                # (``restart``: attach streams waiting for this next run stay registered)
                with contextlib.suppress(NotFound):
                    sup.call("delete", id=rec.id, force=True, restart=True)
                self._sup_create(rec)
            if rec.extra.get("Networks"):
                self._attach_networks(rec, sup)
            try:
                try:
                    st = sup.call("start", id=rec.id)
                except NotFound:  # the supervisor lost it (e.g. a new one after a crash)
                    self._sup_create(rec)
                    if rec.extra.get("Networks"):
                        self._attach_networks(rec, sup)
                    st = sup.call("start", id=rec.id)
            except BaseException:
                self.engine.networks.detach(rec)
                self._save_networks(rec)
                raise
            crash_point("start:supervisor")
            if "pid" not in st:  # a supervisor from before start answered with the pid
                st = sup.call("state", id=rec.id)
            with self._lock:
                networks, ports = rec.extra.get("Networks"), rec.extra.get("Ports")
                rec = self._refresh(rec)
                rec.extra["Networks"], rec.extra["Ports"] = networks, ports
                rec.status, rec.pid, rec.error = "running", int(st.get("pid") or 0), ""
                rec.started_at = st.get("started_at") or _now()
                rec.exit_code, rec.oom_killed, rec.finished_at = 0, False, _ZERO_TIME
                rec.paused = False
                self._save(rec)
            self._monitor(rec.id)
            self._start_health(rec)
            self.event(rec, "start")

    def _attach_networks(self, rec: Record, sup: Any) -> None:
        """Endpoints into the created container's namespace (its init waits for start),
        its /etc files with its address; on failure nothing of them is left and the
        container stays created."""
        pid = self._created_pids.pop(rec.id, 0)
        if not pid:  # created by an earlier daemon
            try:
                pid = int(sup.call("state", id=rec.id)["pid"])
            except NotFound:
                self._sup_create(rec)
                pid = self._created_pids.pop(rec.id, 0) or int(sup.call("state", id=rec.id)["pid"])
        try:
            self.engine.networks.attach(rec, pid)
            self._write_etc_files(rec)
        except BaseException as e:
            self.engine.networks.detach(rec)
            with self._lock:
                cur = self._refresh(rec)
                cur.error = str(e)
                self._save(cur)
            raise

    def _release_networks(self, cid: str) -> None:
        """After an exit: the run's endpoints and ports go (unless a new run has begun)."""
        with self._locked(cid):
            rec = self._by_id(cid)
            if rec is None or rec.running or not rec.extra.get("Networks"):
                return
            self.engine.networks.detach(rec)
            self._save_networks(rec, stopped_only=True)

    def update_record(self, ref: str, fn: Callable[[Record], None]) -> Record:
        """Apply ``fn`` to a container's record under its lock, and save it (network
        connect / disconnect)."""
        rec = self.lookup(ref)
        with self._locked(rec.id):
            rec = self._refresh(rec)
            fn(rec)
            with self._lock:
                self._save(rec)
        return rec

    def resize(self, ref: str, height: int, width: int) -> None:
        """The container's terminal size (TIOCSWINSZ on the supervisor's pty master)."""
        rec = self._refresh(self.lookup(ref))
        if not rec.running:
            raise Conflict(f"Container {rec.id} is not running")
        if not rec.config.get("Tty"):
            return  # docker answers 200 and does nothing without a tty
        try:
            self._sup().call("resize", id=rec.id, h=height, w=width)
        except NotFound:
            raise Conflict(f"Container {rec.id} is not running") from None
        self.event(rec, "resize", {"height": str(height), "width": str(width)})

    def kill(self, ref: str, sig: str | int | None = None) -> None:
        rec = self._refresh(self.lookup(ref))
        signum = parse_signal(sig) if sig not in (None, "") else int(signal.SIGKILL)
        if not rec.running:
            raise Conflict(f"Cannot kill container: {ref}: Container {rec.id} is not running")
        self._manually_stopped(rec)
        try:
            self._signal(rec, signum)
        except Conflict:
            raise Conflict(f"Cannot kill container: {ref}: Container {rec.id} is not running") from None

    def stop(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        rec = self._refresh(self.lookup(ref))
        if rec.restarting:  # waiting for its policy's restart: that is cancelled
            self._manually_stopped(rec)
            self.event(rec, "stop")
            return
        if not rec.running:
            raise NotModified("container already stopped")
        if timeout is None:
            st = rec.config.get("StopTimeout")
            timeout = int(st) if st is not None else 10
        signum = parse_signal(sig or rec.config.get("StopSignal") or "SIGTERM")
        if rec.id not in self._restarting:
            self._manually_stopped(rec)
        with contextlib.suppress(Conflict, NotFound):
            self._signal(rec, signum)  # a paused container is thawed to act on it, as docker does
        if timeout >= 0 and self._wait_exited(rec.id, timeout):
            self.event(rec, "stop")
            return
        if timeout < 0:  # docker's -1: wait for ever
            self._wait_exited(rec.id, None)
            self.event(rec, "stop")
            return
        with contextlib.suppress(Conflict, NotFound):
            self._signal(self._refresh(rec), int(signal.SIGKILL))
        self._wait_exited(rec.id, None)
        self.event(rec, "stop")

    _UPDATABLE = ("RestartPolicy", "Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod",
                  "CpuQuota", "CpusetCpus", "CpusetMems", "PidsLimit", "BlkioWeight")

    def update(self, ref: str, body: Any) -> dict[str, Any]:
        """``docker update``: the restart policy and the resource limits, applied to the
        cgroup of a running container at once and kept for its next starts."""
        if not isinstance(body, dict):
            raise InvalidArgument("invalid JSON: the body must be an object")
        rec = self.lookup(ref)
        with self._locked(rec.id):
            rec = self._refresh(rec)
            hc = copy.deepcopy(rec.host_config)
            changed = {k: v for k, v in body.items() if k in self._UPDATABLE and v not in (None, 0, "", {})}
            if "RestartPolicy" in changed and hc.get("AutoRemove") and (changed["RestartPolicy"] or {}).get("Name", "no") != "no":
                raise InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled for the container")
            if changed.get("Memory") and not changed.get("MemorySwap") and hc.get("MemorySwap", 0) > 0:
                hc["MemorySwap"] = 0  # docker: a new memory limit without a swap limit gets swap = 2 x memory
            hc.update(copy.deepcopy(changed))
            warnings: list[str] = []
            validate_host_config(hc, warnings)
            limits = limits_of(hc)
            if rec.running and any(k != "RestartPolicy" for k in changed):
                warnings += [str(w) for w in self._cgroup(rec).update(limits) or []]
            self._store_limits(rec, limits)
            with self._lock:
                rec = self._refresh(rec)
                rec.host_config = hc
                self._save(rec)
        self.event(rec, "update")
        return {"Warnings": warnings or None}

    @staticmethod
    def _store_limits(rec: Record, limits: dict[str, Any]) -> None:
        """The new limits in the bundle's config.json, which the next start runs."""
        path = os.path.join(rec.bundle, "config.json")
        with open(path) as f:
            spec = json.load(f)
        resources = spec.setdefault("linux", {}).setdefault("resources", {})
        for key in ("memory", "cpu", "pids"):
            resources.pop(key, None)
        resources.update(limits)
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(json.dumps(spec))
        os.replace(tmp, path)

    def _start_health(self, rec: Record, reset: bool = True) -> None:
        """The healthcheck of the run that just started (``reset``: its state begins as
        "starting"; a restarted daemon keeps the state it finds)."""
        hc = rec.config.get("Healthcheck") or {}
        command = probe_command(hc)
        if command is None:
            return
        with self._lock:
            old = self._health.pop(rec.id, None)
            if old is not None:
                old.stop()
            cur = self._by_id(rec.id)
            if cur is None:
                return
            if reset or "Health" not in cur.extra:
                cur.extra["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
                self._save(cur)
            monitor = self._health[rec.id] = HealthMonitor(self, rec.id, cur.started_at, hc, command)
        monitor.start()

    def health_run_is(self, cid: str, run: str) -> bool:
        rec = self._by_id(cid)
        return rec is not None and rec.running and rec.started_at == run

    def update_health(self, cid: str, run: str, update: Callable[[dict[str, Any]], str]) -> None:
        """Apply a probe's result to the container's health (``update`` returns the new
        status); a change of status is docker's ``health_status: <status>`` event."""
        with self._lock:
            rec = self._by_id(cid)
            if rec is None or rec.started_at != run or not rec.running:
                return
            health = rec.extra.setdefault("Health", {"Status": "starting", "FailingStreak": 0, "Log": []})
            before = health.get("Status")
            after = update(health)
            self._save(rec)
            if after != before:
                self.event(rec, f"health_status: {after}")

    def _manually_stopped(self, rec: Record) -> None:
        """A client stopped it: no restart by its policy until it is started again."""
        with self._lock:
            cur = self._by_id(rec.id)
            if cur is not None:
                cur.manually_stopped, cur.restarting = True, False
                self._save(cur)

    def _restart_delay(self, rec: Record) -> float | None:
        """Seconds until the policy restarts the container that just exited, or None.
        docker's back-off: 100 ms, doubled at each restart up to a minute, back to 100 ms
        once a run lasted 10 s."""
        policy = rec.host_config.get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        if rec.manually_stopped or rec.id in self._restarting or name == "no":
            return None
        if name == "on-failure":
            retries = int(policy.get("MaximumRetryCount") or 0)
            if rec.exit_code == 0 or (retries and rec.restart_count >= retries):
                return None
        ran = _parse_ts(rec.finished_at) - _parse_ts(rec.started_at)
        previous = float(rec.extra.get("backoff") or 0)
        delay = _BACKOFF_FIRST if ran >= _BACKOFF_RESET or not previous else min(previous * 2, _BACKOFF_MAX)
        rec.extra["backoff"] = delay
        return delay

    def _auto_restart(self, cid: str) -> None:
        with self._lock:
            rec = self._by_id(cid)
            if rec is None or rec.running or not rec.restarting or rec.manually_stopped:
                return
            rec.restart_count += 1
            self._save(rec)
        try:
            self.start(cid)
        except DockyardError as e:
            log.warning("restarting container %s failed: %s", cid, e)

    def start_by_policy(self) -> None:
        """At daemon start: the containers their policy keeps running (always; unless-stopped
        unless a client stopped it; a restart that was pending) and that are not running."""
        for rec in self._all():
            name = (rec.host_config.get("RestartPolicy") or {}).get("Name")
            wanted = rec.restarting or name == "always" or (name == "unless-stopped" and not rec.manually_stopped)
            if rec.running or not wanted or rec.extra.get("incomplete"):
                continue
            if name == "always" and rec.manually_stopped:
                with self._lock:
                    rec.manually_stopped = False
                    self._save(rec)
            try:
                self.start(rec.id)
            except DockyardError as e:
                log.warning("starting container %s for its restart policy failed: %s", rec.id, e)

    def _wait_exited(self, cid: str, timeout: float | None) -> bool:
        """Until the record says not running (or is gone); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                rec = self._by_id(cid)
                if rec is None or not rec.running:
                    return True
                if cid not in self._monitored:
                    self._monitor(cid)  # e.g. after a daemon restart
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(left)

    # ------------------------------------------------------------------ wait

    def wait_registration(self, ref: str, condition: str) -> Callable[[], dict[str, Any]]:
        """Validate and register a wait; returns the blocking part. Split so the API can
        flush its response headers once the wait is registered (docker run relies on it)."""
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        rec = self.lookup(ref)
        cid = rec.id
        with self._lock:
            seen = self._exits.get(cid, 0)

        def block() -> dict[str, Any]:
            nonlocal last
            with self._changed:
                while True:
                    cur = self._by_id(cid)
                    if cur is None:  # removed: its exit code as the removal left it
                        return {"StatusCode": self._removed_exits.get(cid, last.exit_code), "Error": None}
                    if condition == "removed":
                        pass
                    elif condition == "next-exit":
                        if self._exits.get(cid, 0) > seen:
                            return {"StatusCode": cur.exit_code, "Error": None}
                    elif not cur.running:
                        return {"StatusCode": cur.exit_code, "Error": None}
                    last = cur
                    if self._shutting_down:
                        raise Unavailable("the daemon is shutting down")
                    if cur.running and cid not in self._monitored:
                        self._monitor(cid)
                    self._changed.wait()

        last = rec
        return block

    # ------------------------------------------------------------------ remove

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        rec = self.lookup(ref)
        with self._locked(rec.id):
            rec = self._refresh(rec)
            if rec.running:
                if not force:
                    if rec.paused:
                        raise Conflict(f"You cannot remove a paused container {rec.id}. Unpause and then stop the "
                                       "container before attempting removal or force remove")
                    raise Conflict(f"You cannot remove a running container {rec.id}. Stop the container "
                                   "before attempting removal or force remove")
                with contextlib.suppress(Conflict, NotFound):
                    self._signal(rec, int(signal.SIGKILL))
                self._wait_exited(rec.id, 30)
                rec = self._refresh(rec)  # with its exit code
            self._teardown(rec, destroyed=True, volumes=volumes)
        with self._lock:
            self._id_locks.pop(rec.id, None)
            self._created_pids.pop(rec.id, None)
            self._exits.pop(rec.id, None)
            self._cgroups.pop(rec.id, None)

    def _teardown(self, rec: Record, destroyed: bool = False, volumes: bool = False) -> None:
        """Remove everything a container has, whatever state create left it in
        (``destroyed``: a container clients knew of, whose removal is a "destroy" event;
        ``volumes``: its anonymous volumes go too).

        The record goes first: that answers ``wait?condition=removed`` (``docker run
        --rm``) without waiting for the supervisor's container (its cgroup) and the files
        to be deleted. Until they are, ``settle()`` waits for them; should the daemon die
        in between, ``remove_orphans()`` at the next start deletes what no record owns."""
        monitor = self._health.pop(rec.id, None)
        if monitor is not None:
            monitor.stop()
        with self._lock:
            self._db.execute("DELETE FROM containers WHERE id = ?", (rec.id,))
            self._removed_exits[rec.id] = rec.exit_code
            if len(self._removed_exits) > 256:
                del self._removed_exits[next(iter(self._removed_exits))]
            self._collecting.add(rec.id)
            if destroyed:  # published before any waiter can answer: its client sees it
                self.event(rec, "destroy")
            self._changed.notify_all()
        try:
            crash_point("remove:record")
            with contextlib.suppress(NotFound):
                self._sup().call("delete", id=rec.id, force=True)
            with contextlib.suppress(DockyardError, OSError):
                self.engine.networks.detach(rec)
            self._remove_files(rec.id, rec.bundle, rec.snapshot_key, os.path.dirname(rec.log_path))
            self._release_volumes(rec, remove_anonymous=volumes)
        finally:
            with self._lock:
                self._collecting.discard(rec.id)
                self._changed.notify_all()

    def _remove_files(self, cid: str, bundle: str, snapshot_key: str, log_dir: str) -> None:
        rootfs = os.path.join(bundle, "rootfs")
        if os.path.isdir(rootfs):
            unmount_all(rootfs)
        shutil.rmtree(bundle, ignore_errors=True)
        with contextlib.suppress(NotFound):
            self.snapshotter.remove(snapshot_key)
        shutil.rmtree(log_dir, ignore_errors=True)

    def prune(self, until_ns: int | None = None, labels: list[str] | None = None,
              not_labels: list[str] | None = None) -> dict[str, Any]:
        """``container prune``: remove the containers that are not running (created before
        ``until``, with / without the labels), counting their writable layers' bytes."""
        def has(rec: Record, wanted: str) -> bool:
            return label_matches(rec.config.get("Labels"), wanted)

        deleted, reclaimed = [], 0
        for rec in self._all():
            if rec.running or rec.extra.get("incomplete"):
                continue
            if until_ns is not None and _parse_ts(rec.created) * 1e9 >= until_ns:
                continue
            if not all(has(rec, w) for w in labels or []) or any(has(rec, w) for w in not_labels or []):
                continue
            size = self.sizes(rec)[0]
            try:
                self.remove(rec.id)
            except (NotFound, Conflict):
                continue  # removed or started meanwhile
            deleted.append(rec.id)
            reclaimed += size
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def image_user(self, image_id: str) -> tuple[str, bool] | None:
        """A container made from the image (a running one first), as (id, running)."""
        users = [(rec.id, rec.running) for rec in self._all() if rec.image == image_id]
        return max(users, key=lambda u: u[1]) if users else None

    def volume_users(self, name: str) -> list[str]:
        """The containers whose HostConfig mounts the volume ``name`` (Binds' ``name:/path``
        or a Mounts entry of type volume)."""
        return [rec.id for rec in self._all()
                if any(mp["Type"] == "volume" and mp["Name"] == name for mp in rec.extra.get("MountPoints") or [])]

    def settle(self, timeout: float = 60) -> None:
        """Wait until the files of removed containers are deleted (see ``_teardown``):
        whoever looks at containers, or removes the images under them, sees them gone."""
        with self._changed:
            self._changed.wait_for(lambda: not self._collecting, timeout)

    def remove_orphans(self) -> None:
        """At daemon start: delete the supervisor's containers, bundles, container
        snapshots and log directories no record owns (a daemon that died between a
        removal's record and the rest)."""
        with self._lock:
            ids = {row[0] for row in self._db.execute("SELECT id FROM containers")}
        sup = self.engine.running_supervisor()
        if sup is not None:
            for c in sup.call("list")["containers"]:
                if c["id"] not in ids:
                    log.warning("removing container %s from the supervisor: it has no record", c["id"])
                    with contextlib.suppress(NotFound):
                        sup.call("delete", id=c["id"], force=True)
        bundles = os.path.join(self.exec_root, "bundles")
        logs = os.path.join(self.data_root, "containers")
        found = set(_listdir(bundles)) | set(_listdir(logs))
        found |= {i.name for i in self.snapshotter.walk() if i.kind is Kind.ACTIVE}
        for cid in sorted(found - ids):
            if _is_container_id(cid):
                log.warning("removing the files of container %s: it has no record", cid)
                self._remove_files(cid, os.path.join(bundles, cid), cid, os.path.join(logs, cid))

    # ------------------------------------------------------------------ inspect / list

    def inspect(self, ref: str, size: bool = False) -> dict[str, Any]:
        rec = self._refresh(self.lookup(ref))
        args = command_of(rec.config)
        st = rec.status
        out = {
            "Id": rec.id,
            "Created": rec.created,
            "Path": args[0] if args else "",
            "Args": args[1:],
            "State": {
                "Status": rec.state, "Running": st == "running", "Paused": rec.state == "paused",
                "Restarting": rec.state == "restarting",
                **({"Health": rec.extra["Health"]} if "Health" in rec.extra and probe_command(
                    rec.config.get("Healthcheck")) else {}),
                "OOMKilled": rec.oom_killed, "Dead": st == "dead", "Pid": rec.pid if st == "running" else 0,
                "ExitCode": rec.exit_code, "Error": rec.error, "StartedAt": rec.started_at,
                "FinishedAt": rec.finished_at,
            },
            "Image": rec.image,
            "ResolvConfPath": "", "HostnamePath": "", "HostsPath": "",
            "LogPath": rec.log_path,
            "Name": rec.name,
            "RestartCount": rec.restart_count,
            "Driver": self.snapshotter.name,
            "Platform": "linux",
            "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
            "ExecIDs": self.engine.execs.live_ids(rec.id) if st == "running" else None,
            "HostConfig": rec.host_config,
            "GraphDriver": {"Name": self.snapshotter.name, "Data": None},
            "Mounts": _inspect_mounts(rec),
            "Config": rec.config,
            "NetworkSettings": self._network_settings(rec),
        }
        if size:
            out["SizeRw"], out["SizeRootFs"] = self.sizes(rec)
        return out

    @staticmethod
    def _published(rec: Record) -> dict[str, Any]:
        """NetworkSettings.Ports of a running container: each exposed port, with its host
        bindings or None."""
        if not rec.running:
            return {}
        out: dict[str, Any] = {key: None for key in rec.config.get("ExposedPorts") or {}}
        for b in rec.extra.get("Ports") or []:
            key = f"{b['container_port']}/{b['proto']}"
            out[key] = (out.get(key) or []) + [{"HostIp": b["host_ip"] or "0.0.0.0", "HostPort": str(b["host_port"])}]
        return out

    @staticmethod
    def _endpoints(rec: Record) -> dict[str, dict[str, Any]]:
        """NetworkSettings.Networks: per network, what was asked for and, while the
        container runs, its endpoint."""
        mode = rec.host_config.get("NetworkMode") or "default"
        out: dict[str, dict[str, Any]] = {}
        for name, cfg in (rec.extra.get("Networks") or {}).items():
            live = rec.running and bool(cfg.get("EndpointID"))
            user = name not in PREDEFINED
            out[name] = {
                "IPAMConfig": cfg.get("IPAMConfig"), "Links": None, "Aliases": cfg.get("Aliases"),
                "MacAddress": (cfg.get("Mac") if live else cfg.get("MacAddress")) or "",
                "DriverOpts": None, "NetworkID": cfg.get("NetworkID") or "",
                "EndpointID": cfg["EndpointID"] if live else "", "Gateway": cfg["Gateway"] if live else "",
                "IPAddress": cfg["IPAddress"] if live else "", "IPPrefixLen": cfg["IPPrefixLen"] if live else 0,
                "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "DNSNames": [rec.name.lstrip("/"), rec.id[:12], *(cfg.get("Aliases") or [])] if live and user else None,
            }
        if mode in ("host", "none"):
            out[mode] = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
                         "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                         "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}
        return out

    def _network_settings(self, rec: Record) -> dict[str, Any]:
        networks = self._endpoints(rec)
        bridge = networks.get("bridge") or {}
        return {"Bridge": "", "SandboxID": "", "SandboxKey": f"/proc/{rec.pid}/ns/net" if rec.running else "",
                "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                "Ports": self._published(rec), "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
                "EndpointID": bridge.get("EndpointID", ""), "Gateway": bridge.get("Gateway", ""),
                "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": bridge.get("IPAddress", ""),
                "IPPrefixLen": bridge.get("IPPrefixLen", 0), "IPv6Gateway": "",
                "MacAddress": bridge.get("MacAddress", ""), "Networks": networks}

    @staticmethod
    def _port_list(rec: Record) -> list[dict[str, Any]]:
        """``ps``'s Ports: the bindings, then exposed ports without one."""
        if not rec.running:
            return []
        out, bound = [], set()
        for b in rec.extra.get("Ports") or []:
            out.append({"IP": b["host_ip"] or "0.0.0.0", "PrivatePort": b["container_port"],
                        "PublicPort": b["host_port"], "Type": b["proto"]})
            bound.add(f"{b['container_port']}/{b['proto']}")
        for key in rec.config.get("ExposedPorts") or {}:
            port, _, proto = key.partition("/")
            if f"{port}/{proto or 'tcp'}" not in bound:
                out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
        return out

    def status_text(self, rec: Record, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if rec.status == "running":
            up = "Up " + human_duration(now - _parse_ts(rec.started_at))
            if rec.paused:
                return up + " (Paused)"
            status = (rec.extra.get("Health") or {}).get("Status")
            if status and probe_command(rec.config.get("Healthcheck")):
                return up + (" (health: starting)" if status == "starting" else f" ({status})")
            return up
        if rec.state == "restarting":
            return f"Restarting ({rec.exit_code}) {human_duration(now - _parse_ts(rec.finished_at))} ago"
        if rec.status == "exited":
            if rec.finished_at == _ZERO_TIME:
                return "Created"
            return f"Exited ({rec.exit_code}) {human_duration(now - _parse_ts(rec.finished_at))} ago"
        if rec.status == "dead":
            return "Dead"
        return "Created"

    def list(self, all: bool = False, filters: dict[str, list[str]] | None = None,
             limit: int | None = None, size: bool = False) -> list[dict[str, Any]]:
        self.settle()
        flt = filters or {}
        recs = sorted(self._all(), key=lambda r: r.created, reverse=True)
        if limit is not None and limit <= 0:
            limit = None  # docker-py sends -1 for "no limit"
        if not all and limit is None and "status" not in flt and "exited" not in flt:
            recs = [r for r in recs if r.running]
        out = []
        for r in recs:
            if not self._matches(r, flt):
                continue
            args = command_of(r.config)
            out.append({
                "Id": r.id, "Names": [r.name], "Image": r.config.get("Image") or r.image,
                "ImageID": r.image, "Command": " ".join(args),
                "Created": int(_parse_ts(r.created)), "Ports": self._port_list(r),
                "Labels": r.config.get("Labels") or {}, "State": r.state,
                "Status": self.status_text(r),
                "HostConfig": {"NetworkMode": r.host_config.get("NetworkMode") or "default"},
                "NetworkSettings": {"Networks": self._endpoints(r)}, "Mounts": [],
            })
            if size:
                out[-1]["SizeRw"], out[-1]["SizeRootFs"] = self.sizes(r)
            if limit and limit > 0 and len(out) >= limit:
                break
        return out

    def _matches(self, r: Record, flt: dict[str, list[str]]) -> bool:
        for key, values in flt.items():
            if key == "status":
                if r.state not in values:
                    return False
            elif key == "name":
                if not any(v.lstrip("/") in r.name.lstrip("/") for v in values):
                    return False
            elif key == "id":
                if not any(r.id.startswith(v) for v in values):
                    return False
            elif key == "exited":
                if r.status != "exited" or str(r.exit_code) not in values:
                    return False
            elif key == "label":
                if not all(label_matches(r.config.get("Labels"), v) for v in values):
                    return False
            elif key == "ancestor":
                ids = set()
                for v in values:
                    with contextlib.suppress(DockyardError):
                        ids.add(self.images.resolve_id(v))
                if r.image not in ids:
                    return False
            else:
                raise InvalidArgument(f"invalid filter '{key}'")
        return True

    # ------------------------------------------------------------------ events

    def event(self, rec: Record, action: str, attributes: dict[str, str] | None = None) -> None:
        """Emit a container event with docker's attributes: the given ones, the container's
        labels over them, then ``image`` (as the user named it) and ``name``."""
        bus = getattr(self.engine, "events", None)
        if bus is None:
            return
        attrs = dict(attributes or {})
        attrs.update(rec.config.get("Labels") or {})
        if rec.config.get("Image"):
            attrs["image"] = rec.config["Image"]
        attrs["name"] = rec.name.lstrip("/")
        bus.emit("container", action, rec.id, attrs)

    @staticmethod
    def _die_attributes(rec: Record) -> dict[str, str]:
        started, finished = _parse_ts(rec.started_at), _parse_ts(rec.finished_at)
        duration = int(finished - started) if started and finished > started else 0
        return {"exitCode": str(rec.exit_code), "execDuration": str(duration)}

    # ------------------------------------------------------------------ signals, pause

    def _signal(self, rec: Record, signum: int) -> None:
        """Signal the container's init; a paused container is thawed afterwards when docker
        would (SIGKILL, or its stop signal): the signal is delivered as it resumes."""
        self._sup().call("kill", id=rec.id, signal=signum)
        self.event(rec, "kill", {"signal": str(signum)})
        stop_signal = rec.config.get("StopSignal")
        thaw = signum == signal.SIGKILL or not stop_signal
        if not thaw:
            with contextlib.suppress(DockyardError):
                thaw = parse_signal(stop_signal) == signum
        if thaw and self._refresh(rec).paused:
            with contextlib.suppress(Conflict, NotFound):
                self._sup().call("resume", id=rec.id)
            self._set_paused(rec.id, False)

    def _set_paused(self, cid: str, paused: bool) -> Record | None:
        with self._lock:
            rec = self._by_id(cid)
            if rec is None or not rec.running or rec.paused == paused:
                return None
            rec.paused = paused
            self._save(rec)
            return rec

    def pause(self, ref: str) -> None:
        """Freeze every process of the container (its cgroup's freezer)."""
        rec = self.lookup(ref)
        with self._locked(rec.id):
            rec = self._refresh(rec)
            if not rec.running:
                raise Conflict(f"Container {rec.id} is not running")
            if rec.paused:
                raise Conflict(f"Container {rec.id} is already paused")
            try:
                self._sup().call("pause", id=rec.id)
            except (Conflict, NotFound):  # it exited meanwhile
                raise Conflict(f"Container {rec.id} is not running") from None
            changed = self._set_paused(rec.id, True)
        if changed is not None:
            self.event(changed, "pause")

    def unpause(self, ref: str) -> None:
        rec = self.lookup(ref)
        with self._locked(rec.id):
            rec = self._refresh(rec)
            if not rec.paused or not rec.running:
                raise Conflict(f"Container {rec.id} is not paused")
            try:
                self._sup().call("resume", id=rec.id)
            except (Conflict, NotFound):
                raise Conflict(f"Container {rec.id} is not paused") from None
            changed = self._set_paused(rec.id, False)
        if changed is not None:
            self.event(changed, "unpause")

    # ------------------------------------------------------------------ restart / rename

    def restart(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        """stop (if running) then start, as one operation: an AutoRemove container survives."""
        rec = self.lookup(ref)
        with self._lock:
            self._restarting.add(rec.id)
        try:
            if self._refresh(rec).running:
                with contextlib.suppress(NotModified):
                    self.stop(rec.id, timeout, sig)
            with contextlib.suppress(NotModified):
                self.start(rec.id)
        except DockyardError as e:
            raise type(e)(f"Cannot restart container {ref}: {e}") from None
        finally:
            with self._lock:
                self._restarting.discard(rec.id)
        self.event(self._refresh(rec), "restart")

    def rename(self, ref: str, new_name: str) -> None:
        old_ref, new_name = (ref or "").strip(), (new_name or "").strip()
        if not old_ref.lstrip("/") or not new_name.lstrip("/"):
            raise InvalidArgument("Neither old nor new names may be empty")
        rec = self.lookup(old_ref)
        full = validate_name(new_name)
        if full == rec.name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        with self._lock:
            row = self._db.execute("SELECT id FROM containers WHERE name = ?", (full,)).fetchone()
            if row:
                raise Conflict(f'Error when allocating new name: Conflict. The container name "{full}" is already '
                               f'in use by container "{row[0]}". You have to remove (or rename) that container to '
                               "be able to reuse that name.")
            rec = self._refresh(rec)
            old = rec.name
            rec.name = full
            self._save(rec)
        self.event(rec, "rename", {"oldName": old})

    # ------------------------------------------------------------------ top / stats / size

    def _cgroup(self, rec: Record) -> Any:
        """The container's cgroup, from the cgroupsPath of the config.json we wrote."""
        cg = self._cgroups.get(rec.id)
        if cg is None:
            from dockyard.runtime.cgroups import open_cgroup

            try:
                with open(os.path.join(rec.bundle, "config.json")) as f:
                    path = (json.load(f).get("linux") or {}).get("cgroupsPath")
            except (OSError, ValueError):
                path = None
            cg = open_cgroup(path or f"{CGROUP_PARENT}/{rec.id}")
            self._cgroups[rec.id] = cg
        return cg

    def pids(self, ref: str) -> list[int]:
        """Every process of the running container (its cgroup's, children included)."""
        rec = self._refresh(self.lookup(ref))
        if not rec.running:
            raise Conflict(f"Container {rec.id} is not running")
        return self._cgroup(rec).pids()

    def top(self, ref: str, ps_args: str = "") -> dict[str, Any]:
        from dockyard.daemon.top import top, validate_ps_args

        validate_ps_args(ps_args or "")
        rec = self.lookup(ref)
        result = top(self.pids(rec.id), ps_args)
        self.event(rec, "top")
        return result

    def stats(self, ref: str) -> dict[str, Any]:
        """One sample in docker's shape (zeros for a container that is not running)."""
        from dockyard.daemon import stats

        rec = self._refresh(self.lookup(ref))
        if rec.running:
            cg = self._cgroup(rec)
            with contextlib.suppress(OSError, DockyardError):
                if cg.exists():
                    return stats.sample(cg, rec.name, rec.id)
        return stats.empty(rec.name, rec.id)

    def sizes(self, rec: Record) -> tuple[int, int]:
        """(SizeRw: bytes of the files in the container's writable layer, SizeRootFs: that
        plus the image's size), as docker counts them: apparent sizes of non-directories,
        each hard-linked inode once."""
        rw = 0
        try:
            for m in self.snapshotter.mounts(rec.snapshot_key):
                top = m.option("upperdir") or (m.source if m.type == "bind" and "rw" in m.options else None)
                if top:
                    rw += _apparent_size(top)
        except (OSError, DockyardError):
            pass
        try:
            image_size = int(self.images.resolve(rec.image).record.size or 0)
        except DockyardError:
            image_size = 0
        return rw, image_size + rw

    # ------------------------------------------------------------------ logs and stdin

    def log_records(self, ref: str, *, stdout: bool, stderr: bool, since: float | None, until: float | None,
                    tail: str | None) -> Iterator[LogRecord]:
        rec = self.lookup(ref)
        return read_logs(rec.log_path, stdout=stdout, stderr=stderr, since=since, until=until, tail=tail)

    def write_stdin(self, cid: str, data: bytes) -> None:
        import base64

        self._sup().call("write_stdin", id=cid, data_b64=base64.b64encode(data).decode())

    def close_stdin(self, cid: str) -> None:
        with contextlib.suppress(NotFound):
            self._sup().call("close_stdin", id=cid)

    def supervisor_socket(self) -> str:
        """The supervisor's socket (started if need be), for the API's attach streams."""
        return str(self._sup().path)

    def is_mounted(self, rec: Record) -> bool:
        return is_mounted(os.path.join(rec.bundle, "rootfs"))

    def end_waits(self) -> None:
        """The daemon stops serving: pending waits answer now (their clients, if still
        there, see the daemon go); the containers keep running (live restore)."""
        with self._changed:
            self._shutting_down = True
            self._changed.notify_all()

    def close(self) -> None:
        """On daemon shutdown: give back the empty parent cgroup (a host without dockyard
        containers keeps no trace of it; running ones — live restore — keep it)."""
        from dockyard.runtime.cgroups import open_cgroup

        self.settle()
        with contextlib.suppress(DockyardError, OSError):
            open_cgroup(CGROUP_PARENT).remove_if_empty()
        with self._lock:
            self._db.close()
