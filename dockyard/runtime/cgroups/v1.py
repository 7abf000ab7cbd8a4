"""cgroup v1: one directory per hierarchy (cpu, cpuacct, cpuset, memory, devices, freezer,
blkio, pids, name=systemd ...), each mounted on its own."""

from __future__ import annotations

import os
import time

from dockyard.errors import InvalidArgument, Unavailable
from dockyard.suppress import suppress

from . import resources as R
from .base import (
    FREEZE_TIMEOUT,
    MKDIR_ATTEMPTS,
    V1_UNLIMITED,
    Cgroup,
    CgroupFs,
    FreezerState,
    Stats,
    mkdir_shared,
)
from .notify import EventfdOomWatcher, OomWatcher

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the supervisor keeps what it imports for life
    from collections.abc import Mapping
    from typing import Any

# where to read a v1 cgroup's task list: hierarchies every process is placed in alike
_PROCS_PREFERENCE = ("freezer", "pids", "memory", "cpu", "devices", "name=systemd")


class V1Cgroup(Cgroup):
    version = 1

    def __init__(self, path: str, hierarchies: Mapping[str, str], fs: CgroupFs) -> None:
        super().__init__(path, fs)
        self.hierarchies = dict(hierarchies)  # controller -> mount point

    # ---------------------------------------------------------------- layout

    def _mounts(self) -> list[str]:
        return list(dict.fromkeys(self.hierarchies.values()))

    def dirs(self) -> list[str]:
        return [m + self.path for m in self._mounts()]

    def dir(self, controller: str) -> str | None:
        mount = self.hierarchies.get(controller)
        return None if mount is None else mount + self.path

    def _file(self, controller: str, name: str) -> str | None:
        d = self.dir(controller)
        return None if d is None else os.path.join(d, name)

    def _procs_dir(self) -> str | None:
        for c in _PROCS_PREFERENCE:
            if c in self.hierarchies:
                return self.dir(c)
        mounts = self._mounts()
        return mounts[0] + self.path if mounts else None

    # ---------------------------------------------------------------- create / update

    def create(self, resources: Mapping[str, Any] | None = None) -> list[str]:
        res = R.parse_resources(resources)
        self._check_v1(res)
        created: list[str] = []
        try:
            for mount in self._mounts():
                self._mkdirs(mount, created)
            return self._apply(res)
        except BaseException:
            self._rollback(created)
            raise

    def update(self, resources: Mapping[str, Any]) -> list[str]:
        res = R.parse_resources(resources)
        self._check_v1(res)
        return self._apply(res)

    @staticmethod
    def _check_v1(res: R.Resources) -> None:
        if res.unified:
            raise InvalidArgument("linux.resources.unified: only supported on cgroup v2")

    def _mkdirs(self, mount: str, created: list[str]) -> None:
        is_cpuset = self.hierarchies.get("cpuset") == mount
        for attempt in range(MKDIR_ATTEMPTS):
            d = mount
            try:
                for part in self.path.strip("/").split("/"):
                    parent, d = d, os.path.join(d, part)
                    if not self.fs.exists(d):
                        mkdir_shared(self.fs, d, created, last=attempt == MKDIR_ATTEMPTS - 1)
                    if is_cpuset:
                        self._inherit_cpuset(parent, d)
                return
            except FileNotFoundError:
                continue  # a parent went away meanwhile: walk again

    def _inherit_cpuset(self, parent: str, d: str) -> None:
        """A new v1 cpuset starts with no CPUs and no memory nodes, and a task cannot join
        it so; fill each level from its parent, top-down, as runc does."""
        for name in ("cpuset.cpus", "cpuset.mems"):
            f = os.path.join(d, name)
            if self.fs.read(f).strip():
                continue
            self._write(f, self.fs.read(os.path.join(parent, name)).strip())

    def _set(self, controller: str, name: str, value: str, warning: str, w: R.Warnings) -> bool:
        f = self._file(controller, name)
        if f is None or not self.fs.exists(f):
            w.add(warning)
            return False
        self._write(f, value)
        return True

    def _apply(self, res: R.Resources) -> list[str]:
        w = R.Warnings()
        if res.cpus is not None:
            self._set("cpuset", "cpuset.cpus", res.cpus, R.WARN_CPUSET, w)
        if res.mems is not None:
            self._set("cpuset", "cpuset.mems", res.mems, R.WARN_CPUSET, w)
        self._apply_memory(res, w)
        # period before quota: the kernel checks a quota against the period in force
        if res.cpu_period is not None:
            self._set("cpu", "cpu.cfs_period_us", str(res.cpu_period), R.WARN_CFS, w)
        if res.cpu_quota is not None:
            self._set("cpu", "cpu.cfs_quota_us", str(res.cpu_quota), R.WARN_CFS, w)
        if res.cpu_shares is not None:
            self._set("cpu", "cpu.shares", str(res.cpu_shares), R.WARN_CPU_SHARES, w)
        if res.pids_limit is not None:
            self._set("pids", "pids.max", R.v2_value(res.pids_limit), R.WARN_PIDS, w)  # v1 pids also says "max"
        self._apply_blkio(res, w)
        if res.devices is not None:
            if self.dir("devices") is None:
                w.add(R.WARN_DEVICES_V1)
            else:
                for rule in res.devices:
                    name = "devices.allow" if rule.allow else "devices.deny"
                    self._set("devices", name, rule.v1_line(), R.WARN_DEVICES_V1, w)
        return list(w)

    def _apply_memory(self, res: R.Resources, w: R.Warnings) -> None:
        limit, swap = res.memory_limit, res.memory_swap
        wanted = (limit, swap, res.memory_reservation, res.swappiness, res.disable_oom_killer)
        if all(v is None for v in wanted):
            return
        mem = self.dir("memory")
        if mem is None:
            w.add(R.WARN_MEMORY)
            return
        limit_file = os.path.join(mem, "memory.limit_in_bytes")
        memsw = os.path.join(mem, "memory.memsw.limit_in_bytes")
        has_memsw = self.fs.exists(memsw)
        if swap is not None and not has_memsw:
            w.add(R.WARN_SWAP)  # swap accounting is off (swapaccount=0): docker ignores it too
            swap = None
        if swap is None and limit == -1 and has_memsw:
            swap = -1  # lifting the limit needs memory+swap lifted first
        if swap is not None:
            current = self._read_int(memsw) or V1_UNLIMITED
            # the kernel keeps memsw >= limit at every step: raise memsw first when it grows
            grow = swap == -1 or swap > current
            if grow:
                self._write(memsw, str(swap))
            if limit is not None:
                self._write(limit_file, str(limit))
            if not grow:
                self._write(memsw, str(swap))
        elif limit is not None:
            self._write(limit_file, str(limit))
        if res.memory_reservation is not None:
            self._set("memory", "memory.soft_limit_in_bytes", str(res.memory_reservation), R.WARN_RESERVATION, w)
        if res.swappiness is not None:
            self._set("memory", "memory.swappiness", str(res.swappiness), R.WARN_SWAPPINESS, w)
        if res.disable_oom_killer is not None:
            self._set("memory", "memory.oom_control", "1" if res.disable_oom_killer else "0",
                      R.WARN_OOM_KILL_DISABLE, w)

    def _apply_blkio(self, res: R.Resources, w: R.Warnings) -> None:
        # CFQ's blkio.weight is gone from current kernels; BFQ offers blkio.bfq.weight
        def first(*names: str) -> str:
            for name in names:
                f = self._file("blkio", name)
                if f is not None and self.fs.exists(f):
                    return name
            return names[0]

        if res.blkio_weight is not None:
            self._set("blkio", first("blkio.weight", "blkio.bfq.weight"), str(res.blkio_weight), R.WARN_BLKIO_WEIGHT, w)
        if res.blkio_weight_devices:
            name = first("blkio.weight_device", "blkio.bfq.weight_device")
            for dev in res.blkio_weight_devices:
                self._set("blkio", name, f"{dev.major}:{dev.minor} {dev.value}", R.WARN_BLKIO_WEIGHT_DEVICE, w)
        for key, devs in res.throttle.items():
            name = "blkio.throttle." + R.THROTTLE_KEYS[key][0]
            for dev in devs:
                self._set("blkio", name, f"{dev.major}:{dev.minor} {dev.value}", R.WARN_BLKIO_THROTTLE, w)

    # ---------------------------------------------------------------- freezer

    def _has_freezer(self) -> bool:
        f = self._file("freezer", "freezer.state")
        return f is not None and self.fs.exists(f)

    def freeze(self, timeout: float = FREEZE_TIMEOUT) -> None:
        f = self._file("freezer", "freezer.state")
        if f is None or not self.fs.exists(f):
            raise Unavailable(f"cgroup {self.path}: the v1 freezer hierarchy is not mounted or the cgroup does not exist")
        self._write(f, "FROZEN")
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            state = self.fs.read(f).strip()
            if state == "FROZEN":
                return
            if time.monotonic() >= deadline:
                self._write(f, "THAWED")
                raise Unavailable(f"cgroup {self.path}: not frozen within {timeout:g}s (freezer.state {state}); thawed again")
            # the v1 freezer has no completion event: poll with a short, bounded backoff,
            # writing FROZEN again so tasks that were busy a moment ago get another try
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            self._write(f, "FROZEN")

    def thaw(self) -> None:
        f = self._file("freezer", "freezer.state")
        if f is None or not self.fs.exists(f):
            return
        self._write(f, "THAWED", missing_ok=True)  # removed meanwhile: nothing is frozen

    def state(self) -> FreezerState:
        f = self._file("freezer", "freezer.state")
        try:
            # FREEZING counts as thawed: some tasks still run
            return "frozen" if f is not None and self.fs.read(f).strip() == "FROZEN" else "thawed"
        except OSError:
            return "thawed"

    # ---------------------------------------------------------------- stats / events

    def stats(self) -> Stats:
        mem = self.dir("memory") or "/nonexistent"
        stat = self._read_keyed(os.path.join(mem, "memory.stat"))

        def pick(*keys: str) -> int | None:
            # total_* include descendant cgroups (use_hierarchy is always on in current kernels)
            return next((stat[k] for k in keys if k in stat), None)

        limit = self._read_int(os.path.join(mem, "memory.limit_in_bytes"))
        acct = self.dir("cpuacct") or "/nonexistent"
        user = self._read_int(os.path.join(acct, "cpuacct.usage_user"))
        system = self._read_int(os.path.join(acct, "cpuacct.usage_sys"))
        if user is None or system is None:
            # older kernels: cpuacct.stat in USER_HZ ticks
            ticks = self._read_keyed(os.path.join(acct, "cpuacct.stat"))
            ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
            user = ticks["user"] * ns_per_tick if "user" in ticks else None
            system = ticks["system"] * ns_per_tick if "system" in ticks else None
        per_cpu: list[int] = []
        with suppress(OSError, ValueError):
            per_cpu = [int(x) for x in self.fs.read(os.path.join(acct, "cpuacct.usage_percpu")).split()]
        throttle = self._read_keyed(os.path.join(self.dir("cpu") or "/nonexistent", "cpu.stat"))
        pids = self.dir("pids") or "/nonexistent"
        return {
            "memory": {
                "usage": self._read_int(os.path.join(mem, "memory.usage_in_bytes")),
                "limit": None if limit is None or limit >= V1_UNLIMITED else limit,
                "max_usage": self._read_int(os.path.join(mem, "memory.max_usage_in_bytes")),
                "cache": pick("total_cache", "cache"),
                "rss": pick("total_rss", "rss"),
                "swap": pick("total_swap", "swap"),
                "stat": stat,
            },
            "cpu": {
                "usage": self._read_int(os.path.join(acct, "cpuacct.usage")),
                "per_cpu": per_cpu,
                "user": user,
                "system": system,
                "nr_periods": throttle.get("nr_periods"),
                "nr_throttled": throttle.get("nr_throttled"),
                "throttled_time": throttle.get("throttled_time"),  # ns on v1
            },
            "pids": {
                "current": self._read_int(os.path.join(pids, "pids.current")),
                "limit": self._read_int(os.path.join(pids, "pids.max")),
            },
        }

    def oom_kills(self) -> int:
        f = self._file("memory", "memory.oom_control")
        return 0 if f is None else self._read_keyed(f).get("oom_kill", 0)

    def oom_watcher(self) -> OomWatcher:
        mem = self.dir("memory")
        if mem is None or not self.fs.exists(mem):
            raise Unavailable(f"cgroup {self.path}: no memory cgroup to watch")
        return EventfdOomWatcher(os.path.join(mem, "memory.oom_control"),
                                 os.path.join(mem, "cgroup.event_control"), self._write)
