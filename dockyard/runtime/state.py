"""The runtime's state directory: ``<root>/<id>/`` with ``state.json`` and ``exec.fifo``.

One directory per container. It is created with mkdir(2), so two ``create`` calls with
the same ID race safely (the loser gets "container with id exists"); every operation
holds a flock(2) on the directory itself while it reads and changes the container,
so ``start`` and ``delete`` cannot interleave. ``state.json`` is replaced atomically
(write a temporary file, then rename) so a reader never sees half a document.

The status is never stored: it is derived every time from the kernel (is the init
alive, and is it still the same process?), the FIFO (still there means ``start`` has not
happened) and the cgroup freezer. A stored status would go stale the moment the
container's process exits on its own.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from dockyard import jsonc
from dockyard.errors import Conflict, InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing only: importing it costs start-up time
    from typing import Any

DEFAULT_ROOT = "/run/dockyard-runtime"
OCI_VERSION = "1.0.2"
STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"

# runc's rule for container IDs, its regex ^[\w+-\.]+$ in Go: ASCII word characters and
# the range '+' to '.' ("+,-."). Checked without `re`: the CLI's `state` should not pay
# for importing it.
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+,-.")

CREATING, CREATED, RUNNING, PAUSED, STOPPED = "creating", "created", "running", "paused", "stopped"


def validate_id(container_id: str) -> None:
    if not container_id or not _ID_CHARS.issuperset(container_id) or container_id in (".", ".."):
        raise InvalidArgument(f"invalid container ID format: {container_id!r}")


class ContainerState:
    """What state.json holds. Public OCI fields first, private ones after.

    (A plain class, not a dataclass: building a dataclass costs start-up time, and
    every container start pays for it.)
    """

    FIELDS = ("id", "bundle", "rootfs", "pid", "created", "owner", "annotations",
              "init_start_time", "cgroup_path", "config")

    def __init__(self, id: str, bundle: str, rootfs: str, pid: int = 0, created: str = "",
                 owner: str = "", annotations: dict[str, str] | None = None,
                 init_start_time: int = 0, cgroup_path: str = "",
                 config: dict[str, Any] | None = None) -> None:
        self.id, self.bundle, self.rootfs, self.pid = id, bundle, rootfs, pid
        self.created, self.owner = created, owner
        self.annotations = annotations or {}
        # private: the init's start time (/proc/<pid>/stat field 22) tells a live init
        # from an unrelated process that later got the same pid
        self.init_start_time = init_start_time
        self.cgroup_path = cgroup_path
        self.config = config or {}
        self.status = CREATING  # derived on load, never trusted from disk

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def __repr__(self) -> str:
        return f"ContainerState(id={self.id!r}, pid={self.pid}, status={self.status!r})"

    def public(self) -> dict[str, Any]:
        """The OCI state document, as ``runc state`` prints it."""
        doc: dict[str, Any] = {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": self.pid if self.status != STOPPED else 0,
            "status": self.status,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
        }
        if self.annotations:
            doc["annotations"] = self.annotations
        return doc

    @property
    def has_pid_namespace(self) -> bool:
        """True when the container has a pid namespace of its own (init's death kills all)."""
        for ns in self.config.get("linux", {}).get("namespaces", []):
            if ns.get("type") == "pid" and not ns.get("path"):
                return True
        return False


def now_rfc3339() -> str:
    """UTC time with nanoseconds, the form runc writes into "created"."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


# --------------------------------------------------------------------------- /proc helpers


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of ``pid``, or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    rest = raw[raw.rfind(b")") + 2:].split()
    return rest[0].decode(), int(rest[19])


def start_time(pid: int) -> int:
    st = proc_stat(pid)
    return st[1] if st else 0


def init_alive(state: ContainerState) -> bool:
    """The recorded init still exists, is not a zombie, and is the same process."""
    if state.pid <= 0:
        return False
    st = proc_stat(state.pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return st[1] == state.init_start_time


# --------------------------------------------------------------------------- the store


class StateStore:
    """The container directories under ``root``."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = os.path.abspath(root)

    def dir(self, container_id: str) -> str:
        return os.path.join(self.root, container_id)

    def fifo_path(self, container_id: str) -> str:
        return os.path.join(self.dir(container_id), EXEC_FIFO)

    def ids(self) -> list[str]:
        try:
            return sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []

    def reserve(self, container_id: str) -> _Reserved:
        """``with store.reserve(id) as fd``: create the container's directory (failing if
        it exists) and hold its lock; ``fd`` is the locked directory. The caller writes
        state.json before leaving; if it raises, the directory is removed again so nothing
        is left behind."""
        validate_id(container_id)
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        path = self.dir(container_id)
        try:
            os.mkdir(path, 0o711)
        except FileExistsError:
            raise Conflict(f"container with id exists: {container_id}") from None
        return _Reserved(path)

    def locked(self, container_id: str) -> _Locked:
        """``with store.locked(id) as state``: lock the container, with its state and a
        freshly derived status."""
        validate_id(container_id)
        path = self.dir(container_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f'container "{container_id}" does not exist') from None
        return _Locked(self, container_id, fd)

    def load(self, container_id: str) -> ContainerState:
        """The state without taking the lock (for ``state`` and ``list``: read-only)."""
        validate_id(container_id)
        return self._load(container_id)

    def _load(self, container_id: str) -> ContainerState:
        try:
            with open(os.path.join(self.dir(container_id), STATE_FILE), "rb") as f:
                raw = jsonc.loads(f.read())
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f'container "{container_id}" does not exist') from None
        except ValueError as e:
            raise NotFound(f'container "{container_id}": corrupt {STATE_FILE}: {e}') from None
        state = ContainerState(**{k: v for k, v in raw.items() if k in ContainerState.FIELDS})
        state.status = self.derive_status(state)
        return state

    def save(self, state: ContainerState) -> None:
        path = os.path.join(self.dir(state.id), STATE_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(jsonc.dumps(state.to_dict()))
        os.rename(tmp, path)

    def remove(self, container_id: str) -> None:
        remove_tree(self.dir(container_id))

    def derive_status(self, state: ContainerState) -> str:
        if not init_alive(state):
            return STOPPED
        if os.path.exists(self.fifo_path(state.id)):
            return CREATED
        if state.cgroup_path and cgroup_frozen(state.cgroup_path):
            return PAUSED
        return RUNNING


def cgroup_frozen(cgroup_path: str) -> bool:
    # Fast path for `state`/`list` on a v1 host: one read of freezer.state at the standard
    # mount, instead of importing the cgroups package (~20 ms of start-up) to ask it.
    # FREEZING is not frozen, as the cgroups module counts it.
    try:
        with open(f"/sys/fs/cgroup/freezer/{cgroup_path.strip('/')}/freezer.state") as f:
            return f.read().strip() == "FROZEN"
    except OSError:
        pass
    from dockyard.runtime.cgroups import open_cgroup  # v2, or an unusual layout

    try:
        return str(open_cgroup(cgroup_path).state()).lower() in ("frozen", "paused", "freezing")
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENODEV):
            return False
        raise


def remove_tree(path: str) -> None:
    """rm -rf for the small state directories (shutil drags in zlib, bz2 and lzma: a
    few milliseconds of every ``run``)."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        os.unlink(path)
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            remove_tree(entry.path)
        else:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def write_pid_file(path: str, pid: int) -> None:
    """Atomically, like runc: a reader never sees an empty or partial pid file."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


# Context managers as classes, not contextlib generators: the supervisor keeps contextlib
# (and the collections and functools it brings) out of its memory.


class _Reserved:
    def __init__(self, path: str) -> None:
        self._path = path
        self._fd = -1

    def __enter__(self) -> int:
        self._fd = os.open(self._path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self._fd)
            remove_tree(self._path)
            raise
        return self._fd

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if exc_type is not None:
                remove_tree(self._path)
        finally:
            os.close(self._fd)


class _Locked:
    def __init__(self, store: StateStore, container_id: str, fd: int) -> None:
        self._store = store
        self._id = container_id
        self._fd = fd

    def __enter__(self) -> ContainerState:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            # a concurrent delete may have removed the directory while we waited
            return self._store._load(self._id)
        except BaseException:
            os.close(self._fd)
            raise

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)
