"""The version-independent part of cgroup management: the ``Cgroup`` interface, the stats
value types, cgroup path parsing, and the one seam through which every cgroupfs file
operation goes (``CgroupFs``), so tests can run the same code against a scratch tree."""

from __future__ import annotations

import _signal
import errno
import os
import time
from abc import ABC, abstractmethod

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.suppress import suppress

from .notify import FileWatch, KernfsWatch, OomWatcher

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the supervisor keeps what it imports for life
    from collections.abc import Iterator, Mapping

FREEZE_TIMEOUT = 10.0
DESTROY_TIMEOUT = 10.0

# cgroup v1 reports "no limit" as the largest page-aligned signed 64-bit value
V1_UNLIMITED = 0x7FFFFFFFFFFFF000

# --------------------------------------------------------------------------- stats

# The value types are for the type checker only: at run time they are plain dicts and
# str, so typing is never imported (the supervisor keeps every module it imports for life).
TYPE_CHECKING = False
if not TYPE_CHECKING:
    FreezerState = str
    MemoryStats = CpuStats = PidsStats = Stats = dict
else:
    from typing import Any, Literal, TypedDict

    FreezerState = Literal["frozen", "thawed"]

    class MemoryStats(TypedDict):
        usage: int | None
        limit: int | None  # None: unlimited
        max_usage: int | None  # v1 max_usage_in_bytes, v2 memory.peak (5.19+)
        cache: int | None  # page cache: v1 total_cache, v2 file
        rss: int | None  # anonymous memory: v1 total_rss, v2 anon
        swap: int | None
        stat: dict[str, int]  # memory.stat as the kernel reports it

    class CpuStats(TypedDict):
        usage: int | None  # total CPU time in ns
        per_cpu: list[int]  # ns per CPU (v1 cpuacct only; [] on v2)
        user: int | None  # ns
        system: int | None  # ns
        nr_periods: int | None
        nr_throttled: int | None
        throttled_time: int | None  # ns

    class PidsStats(TypedDict):
        current: int | None
        limit: int | None  # None: unlimited

    class Stats(TypedDict):
        memory: MemoryStats
        cpu: CpuStats
        pids: PidsStats


# --------------------------------------------------------------------------- paths


def parse_cgroup_path(path: str) -> str:
    """An OCI ``linux.cgroupsPath`` as a normalised absolute cgroupfs path.

    ``/a/b`` stays; a relative ``a/b`` is taken as ``/a/b`` (runc makes it relative to its
    own cgroup; dockyard runs from the daemon, whose cgroup is not the containers' parent).
    The systemd form ``slice:prefix:name`` maps to ``/slice/prefix-name.scope``: the
    directory systemd would create, without asking systemd over D-Bus.
    """
    if not isinstance(path, str) or not path.strip():
        raise InvalidArgument(f"cgroupsPath: must be a non-empty string, got {path!r}")
    if "\0" in path or "\n" in path:
        raise InvalidArgument(f"cgroupsPath: invalid character in {path!r}")
    if not path.startswith("/") and path.count(":") == 2:
        slice_, prefix, name = path.split(":")
        if not name or any("/" in part for part in (slice_, prefix, name)):
            raise InvalidArgument(f"cgroupsPath: bad systemd form {path!r} (want slice:prefix:name)")
        scope = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
        path = f"/{slice_ or 'system.slice'}/{scope}"
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InvalidArgument(f"cgroupsPath: {path!r} must not contain '.' or '..' components")
    if not parts:
        raise InvalidArgument("cgroupsPath: refusing to manage the root cgroup")
    return "/" + "/".join(parts)


# --------------------------------------------------------------------------- file seam


class CgroupFs:
    """The file operations on cgroupfs. Writes never create files: a missing control file
    means a missing controller, never something to invent."""

    def read(self, path: str) -> str:
        with open(path) as f:
            return f.read()

    def write(self, path: str, value: str) -> None:
        # one write(2) per value: the kernel parses each write as a unit
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def subdirs(self, path: str) -> list[str]:
        with os.scandir(path) as it:
            return [e.path for e in it if e.is_dir(follow_symlinks=False)]

    def watch(self, path: str) -> FileWatch:
        return KernfsWatch(path)


REAL_FS = CgroupFs()


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat, memory.events, cgroup.events ...)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2:
            with suppress(ValueError):
                out[fields[0]] = int(fields[1])
    return out


# --------------------------------------------------------------------------- interface


MKDIR_ATTEMPTS = 3  # a shared parent removed under a create (see mkdir_shared) is remade


def mkdir_shared(fs: CgroupFs, d: str, created: list[str], *, last: bool) -> None:
    """One level of a cgroup path whose parents other creators share: a parent made
    meanwhile by a sibling's create is fine; one removed meanwhile (its owner giving an
    empty /dockyard back) raises FileNotFoundError so the caller walks the path again,
    and on the ``last`` attempt a DockyardError like any other failure."""
    try:
        fs.mkdir(d)
        created.append(d)
    except FileExistsError:
        pass
    except FileNotFoundError as e:
        if last:
            raise DockyardError(f"cgroup: mkdir {d}: {e.strerror}") from None
        raise
    except OSError as e:
        raise DockyardError(f"cgroup: mkdir {d}: {e.strerror}") from None


class Cgroup(ABC):
    """One container's cgroup, in every hierarchy of the host's cgroup version."""

    version: int

    def __init__(self, path: str, fs: CgroupFs) -> None:
        self.path = parse_cgroup_path(path)
        self.fs = fs

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"

    # ---------------------------------------------------------------- per version

    @abstractmethod
    def dirs(self) -> list[str]:
        """The directories backing this cgroup: one per hierarchy (v1) or one (v2)."""

    @abstractmethod
    def create(self, resources: Mapping[str, Any] | None = None) -> list[str]:
        """Make the cgroup (and missing parents) and apply ``resources`` (OCI
        ``linux.resources``). Returns warnings about settings this host cannot honour.
        On error nothing this call created is left behind."""

    @abstractmethod
    def update(self, resources: Mapping[str, Any]) -> list[str]:
        """Apply ``resources`` to an existing cgroup; unset fields stay as they are."""

    @abstractmethod
    def freeze(self, timeout: float = FREEZE_TIMEOUT) -> None:
        """Freeze every task; returns once the kernel reports the cgroup frozen."""

    @abstractmethod
    def thaw(self) -> None:
        """Thaw the cgroup; a no-op where there is no freezer (nothing can be frozen)."""

    @abstractmethod
    def state(self) -> FreezerState: ...

    @abstractmethod
    def stats(self) -> Stats: ...

    @abstractmethod
    def oom_kills(self) -> int:
        """How many tasks the OOM killer has killed in this cgroup."""

    @abstractmethod
    def oom_watcher(self) -> OomWatcher:
        """A watcher that wakes on this cgroup's OOM events (open it before the work)."""

    @abstractmethod
    def _procs_dir(self) -> str | None:
        """The directory whose cgroup.procs lists this cgroup's tasks."""

    @abstractmethod
    def _has_freezer(self) -> bool: ...

    # ---------------------------------------------------------------- shared

    def exists(self) -> bool:
        return any(self.fs.exists(d) for d in self.dirs())

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the cgroup in every hierarchy."""
        for d in self.dirs():
            procs = os.path.join(d, "cgroup.procs")
            try:
                self.fs.write(procs, str(pid))
            except OSError as e:
                if e.errno == errno.ESRCH:
                    raise NotFound(f"cgroup {self.path}: no such process {pid}") from None
                if e.errno == errno.ENOENT:
                    raise NotFound(f"cgroup {self.path}: {d} does not exist") from None
                raise InvalidArgument(f"cgroup: writing {str(pid)!r} to {procs}: {e.strerror}") from None

    def pids(self) -> list[int]:
        """Every process in the cgroup and its descendant cgroups."""
        top = self._procs_dir()
        if top is None or not self.fs.exists(top):
            return []
        found: set[int] = set()
        for d in self._walk(top):
            with suppress(FileNotFoundError):
                found.update(int(x) for x in self.fs.read(os.path.join(d, "cgroup.procs")).split())
        return sorted(found)

    def kill_all(self, sig: int = _signal.SIGKILL) -> None:
        """Signal every process. Frozen first where a freezer exists, so no task can fork
        a child that escapes the signal; thawed after unless the cgroup was frozen before
        (after SIGKILL it is thawed regardless: a frozen v1 task cannot die)."""
        was_frozen = self._has_freezer() and self.state() == "frozen"
        froze = False
        if self._has_freezer() and not was_frozen:
            try:
                self.freeze()
                froze = True
            except DockyardError:
                pass  # freeze() thawed again; signal what is there
        try:
            for pid in self.pids():
                with suppress(ProcessLookupError):
                    os.kill(pid, sig)
        finally:
            if froze or (was_frozen and sig == _signal.SIGKILL):
                self.thaw()

    def destroy(self, timeout: float = DESTROY_TIMEOUT) -> None:
        """Remove the cgroup, descendants first, in every hierarchy. Retries while the
        kernel still holds exiting tasks (EBUSY) for at most ``timeout`` seconds, then
        raises Conflict; carries on with the other hierarchies first so no empty
        directory is left where removal could succeed. Succeeds if already gone."""
        deadline = time.monotonic() + timeout
        failures: list[str] = []
        for top in self.dirs():
            if not self.fs.exists(top):
                continue
            for d in reversed(list(self._walk(top))):
                err = self._rmdir_retry(d, deadline)
                if err:
                    failures.append(err)
                    break
        if failures:
            raise Conflict(f"cgroup {self.path}: cannot remove: " + "; ".join(failures))

    def remove_if_empty(self) -> bool:
        """Remove this cgroup's directories where nothing (no task, no child cgroup) is in
        them — a shared parent like /dockyard, whose owner gives it back when it stops.
        Never waits: a busy hierarchy keeps its directory. True if none is left."""
        left = False
        for d in self.dirs():
            try:
                self.fs.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise
                left = True
        return not left

    def _rmdir_retry(self, d: str, deadline: float) -> str | None:
        delay = 0.001
        while True:
            try:
                self.fs.rmdir(d)
                return None
            except FileNotFoundError:
                return None
            except OSError as e:
                # EBUSY: tasks still in it (exiting ones leave within moments); kernel gives
                # no event for "cgroup now removable" on v1, so back off briefly and retry
                if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                    left = self._pids_in(d)
                    return f"{d}: {e.strerror}" + (f" (pids {left})" if left else "")
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def _pids_in(self, d: str) -> list[int]:
        try:
            return [int(x) for x in self.fs.read(os.path.join(d, "cgroup.procs")).split()]
        except OSError:
            return []

    def _walk(self, top: str) -> Iterator[str]:
        """``top`` and its descendant directories, parents before children."""
        stack = [top]
        while stack:
            d = stack.pop()
            yield d
            with suppress(FileNotFoundError):
                stack.extend(sorted(self.fs.subdirs(d), reverse=True))

    # ---------------------------------------------------------------- helpers

    def _rollback(self, created: list[str]) -> None:
        """Remove directories ``create`` made, deepest first (best effort: a sibling
        created concurrently keeps a shared parent busy, which is fine)."""
        for d in sorted(created, key=lambda p: p.count("/"), reverse=True):
            with suppress(OSError):
                self.fs.rmdir(d)

    def _write(self, path: str, value: str, missing_ok: bool = False) -> None:
        try:
            self.fs.write(path, value)
        except FileNotFoundError:
            if missing_ok:
                return
            raise InvalidArgument(f"cgroup: writing {value!r} to {path}: no such file") from None
        except OSError as e:
            raise InvalidArgument(f"cgroup: writing {value!r} to {path}: {e.strerror}") from None

    def _read_int(self, path: str) -> int | None:
        try:
            text = self.fs.read(path).strip()
        except OSError:
            return None
        if text == "max":
            return None
        try:
            return int(text)
        except ValueError:
            return None

    def _read_keyed(self, path: str) -> dict[str, int]:
        try:
            return parse_flat_keyed(self.fs.read(path))
        except OSError:
            return {}
