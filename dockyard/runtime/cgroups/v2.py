"""cgroup v2: one unified hierarchy; controllers are enabled per level through the parent's
cgroup.subtree_control, and limits use the v2 files and units."""

from __future__ import annotations

import _signal
import os
import time

from dockyard.errors import InvalidArgument, Unavailable
from dockyard.suppress import suppress

from . import resources as R
from .base import (
    FREEZE_TIMEOUT,
    MKDIR_ATTEMPTS,
    Cgroup,
    CgroupFs,
    FreezerState,
    Stats,
    mkdir_shared,
    parse_flat_keyed,
)
from .notify import EventsOomWatcher, FileWatch, OomWatcher

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the supervisor keeps what it imports for life
    from collections.abc import Mapping
    from typing import Any

# the controllers dockyard limits or accounts with; enabled down to every container so that
# stats work even without a limit (memory accounting needs the memory controller on)
NEEDED_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "pids")


class V2Cgroup(Cgroup):
    version = 2

    def __init__(self, path: str, mount: str, fs: CgroupFs) -> None:
        super().__init__(path, fs)
        self.mount = mount
        self.dir = mount + self.path

    def dirs(self) -> list[str]:
        return [self.dir]

    def _procs_dir(self) -> str | None:
        return self.dir

    def _f(self, name: str) -> str:
        return os.path.join(self.dir, name)

    # ---------------------------------------------------------------- create / update

    def create(self, resources: Mapping[str, Any] | None = None) -> list[str]:
        res = R.parse_resources(resources)
        created: list[str] = []
        try:
            for attempt in range(MKDIR_ATTEMPTS):
                d = self.mount
                try:
                    for part in self.path.strip("/").split("/"):
                        self._enable_controllers(d)
                        d = os.path.join(d, part)
                        if not self.fs.exists(d):
                            mkdir_shared(self.fs, d, created, last=attempt == MKDIR_ATTEMPTS - 1)
                    break
                except FileNotFoundError:
                    continue  # a parent went away meanwhile: walk again
            return self._apply(res)
        except BaseException:
            self._rollback(created)
            raise

    def update(self, resources: Mapping[str, Any]) -> list[str]:
        return self._apply(R.parse_resources(resources))

    def _enable_controllers(self, d: str) -> None:
        try:
            available = self.fs.read(os.path.join(d, "cgroup.controllers")).split()
            enabled = self.fs.read(os.path.join(d, "cgroup.subtree_control")).split()
        except OSError:
            return
        for c in NEEDED_CONTROLLERS:
            if c in available and c not in enabled:
                # one write per controller so one refusal does not block the others; a
                # refusal (EBUSY: the parent has processes of its own, the "no internal
                # processes" rule) surfaces later as a warning for the discarded limits
                with suppress(OSError):
                    self.fs.write(os.path.join(d, "cgroup.subtree_control"), f"+{c}")

    def _set(self, name: str, value: str, warning: str, w: R.Warnings) -> bool:
        f = self._f(name)
        if not self.fs.exists(f):
            w.add(warning)
            return False
        self._write(f, value)
        return True

    def _apply(self, res: R.Resources) -> list[str]:
        w = R.Warnings()
        if res.cpus is not None:
            self._set("cpuset.cpus", res.cpus, R.WARN_CPUSET, w)
        if res.mems is not None:
            self._set("cpuset.mems", res.mems, R.WARN_CPUSET, w)
        self._apply_memory(res, w)
        if res.cpu_shares is not None:
            self._set("cpu.weight", str(R.shares_to_weight(res.cpu_shares)), R.WARN_CPU_SHARES, w)
        if res.cpu_quota is not None or res.cpu_period is not None:
            self._apply_cpu_max(res, w)
        if res.pids_limit is not None:
            self._set("pids.max", R.v2_value(res.pids_limit), R.WARN_PIDS, w)
        self._apply_io(res, w)
        if res.devices:
            w.add(R.WARN_DEVICES_V2)
        for name, value in res.unified.items():
            if not self.fs.exists(self._f(name)):
                raise InvalidArgument(f"linux.resources.unified.{name}: no such file in {self.dir} (controller not enabled?)")
            self._write(self._f(name), value)
        return list(w)

    def _apply_memory(self, res: R.Resources, w: R.Warnings) -> None:
        if res.memory_limit is not None:
            self._set("memory.max", R.v2_value(res.memory_limit), R.WARN_MEMORY, w)
        if res.memory_swap is not None:
            if not self.fs.exists(self._f("memory.swap.max")):
                w.add(R.WARN_SWAP)  # no swap accounting (or no memory controller)
            else:
                limit = res.memory_limit
                if limit is None:  # an update of swap alone: against the limit in force
                    limit = self._read_int(self._f("memory.max")) or -1
                self._write(self._f("memory.swap.max"), R.swap_to_v2(res.memory_swap, limit))
        if res.memory_reservation is not None:
            self._set("memory.low", R.v2_value(res.memory_reservation), R.WARN_RESERVATION, w)
        if res.swappiness is not None:
            w.add(R.WARN_SWAPPINESS)  # v2 has no per-cgroup swappiness
        if res.disable_oom_killer:
            w.add(R.WARN_OOM_KILL_DISABLE)  # nor a switch to turn the OOM killer off

    def _apply_cpu_max(self, res: R.Resources, w: R.Warnings) -> None:
        f = self._f("cpu.max")
        if not self.fs.exists(f):
            w.add(R.WARN_CFS)
            return
        if res.cpu_quota is not None:
            quota = R.v2_value(res.cpu_quota)
        else:  # a new period alone keeps the quota in force
            quota = self.fs.read(f).split()[0]
        value = quota if res.cpu_period is None else f"{quota} {res.cpu_period}"
        self._write(f, value)

    def _apply_io(self, res: R.Resources, w: R.Warnings) -> None:
        # with the BFQ scheduler io.bfq.weight takes blkio's scale (1-1000) as it is;
        # otherwise io.weight (1-10000, iocost) gets the converted value
        bfq = self.fs.exists(self._f("io.bfq.weight"))
        name = "io.bfq.weight" if bfq else "io.weight"

        def weight(v: int) -> int:
            return v if bfq else R.blkio_to_io_weight(v)

        if res.blkio_weight is not None:
            self._set(name, str(weight(res.blkio_weight)), R.WARN_BLKIO_WEIGHT, w)
        for dev in res.blkio_weight_devices:
            self._set(name, f"{dev.major}:{dev.minor} {weight(dev.value)}", R.WARN_BLKIO_WEIGHT_DEVICE, w)
        for key, devs in res.throttle.items():
            io_key = R.THROTTLE_KEYS[key][1]
            for dev in devs:
                rate = str(dev.value) if dev.value else "max"  # v1's 0 means "no limit"
                self._set("io.max", f"{dev.major}:{dev.minor} {io_key}={rate}", R.WARN_BLKIO_THROTTLE, w)

    # ---------------------------------------------------------------- freezer

    def _has_freezer(self) -> bool:
        return self.fs.exists(self._f("cgroup.freeze"))

    def _wait_events(self, watch: FileWatch, key: str, value: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if parse_flat_keyed(watch.read()).get(key) == value:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not watch.wait(remaining):
                return parse_flat_keyed(watch.read()).get(key) == value

    def freeze(self, timeout: float = FREEZE_TIMEOUT) -> None:
        f = self._f("cgroup.freeze")
        if not self.fs.exists(f):
            raise Unavailable(f"cgroup {self.path}: no cgroup.freeze (needs Linux 5.2+) or the cgroup does not exist")
        # watch before writing, so the "frozen 1" notification cannot slip past
        watch = self.fs.watch(self._f("cgroup.events"))
        try:
            self._write(f, "1")
            if not self._wait_events(watch, "frozen", 1, timeout):
                self._write(f, "0")
                raise Unavailable(f"cgroup {self.path}: not frozen within {timeout:g}s; thawed again")
        finally:
            watch.close()

    def thaw(self) -> None:
        f = self._f("cgroup.freeze")
        if self.fs.exists(f):
            # unfreezing completes synchronously in the kernel; removed meanwhile: nothing frozen
            self._write(f, "0", missing_ok=True)

    def state(self) -> FreezerState:
        return "frozen" if self._read_keyed(self._f("cgroup.events")).get("frozen") == 1 else "thawed"

    def kill_all(self, sig: int = _signal.SIGKILL) -> None:
        kill = self._f("cgroup.kill")
        if sig == _signal.SIGKILL and self.fs.exists(kill):
            # the kernel kills the whole subtree, racing forks included (5.14+)
            self._write(kill, "1", missing_ok=True)
            return
        super().kill_all(sig)

    # ---------------------------------------------------------------- stats / events

    def stats(self) -> Stats:
        stat = self._read_keyed(self._f("memory.stat"))
        cpu = self._read_keyed(self._f("cpu.stat"))

        def ns(key: str) -> int | None:
            return cpu[key] * 1000 if key in cpu else None

        return {
            "memory": {
                "usage": self._read_int(self._f("memory.current")),
                "limit": self._read_int(self._f("memory.max")),
                "max_usage": self._read_int(self._f("memory.peak")),
                "cache": stat.get("file"),
                "rss": stat.get("anon"),
                "swap": self._read_int(self._f("memory.swap.current")),
                "stat": stat,
            },
            "cpu": {
                "usage": ns("usage_usec"),
                "per_cpu": [],
                "user": ns("user_usec"),
                "system": ns("system_usec"),
                "nr_periods": cpu.get("nr_periods"),
                "nr_throttled": cpu.get("nr_throttled"),
                "throttled_time": ns("throttled_usec"),
            },
            "pids": {
                "current": self._read_int(self._f("pids.current")),
                "limit": self._read_int(self._f("pids.max")),
            },
        }

    def oom_kills(self) -> int:
        return self._read_keyed(self._f("memory.events")).get("oom_kill", 0)

    def oom_watcher(self) -> OomWatcher:
        f = self._f("memory.events")
        if not self.fs.exists(f):
            raise Unavailable(f"cgroup {self.path}: no memory.events (memory controller not enabled)")
        return EventsOomWatcher(self.fs.watch(f))
