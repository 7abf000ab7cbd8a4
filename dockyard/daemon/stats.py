"""Container resource statistics in the Docker Engine API's shape (``GET /containers/{id}/stats``).

Figures are read straight from the container's cgroup (``dockyard.runtime.cgroups``), in
the daemon's worker threads: no supervisor round trip and no runtime process per sample.
The shape follows what dockerd 28 (API 1.51) sends, for cgroup v1 and v2 hosts alike:

- ``cpu_stats``: ``cpu_usage`` {total, kernel, user; ``percpu_usage`` on v1 only},
  ``system_cpu_usage`` (the host's busy + idle time from /proc/stat, in ns, as docker
  computes it with 100 ticks per second), ``online_cpus``, ``throttling_data``;
- ``memory_stats``: usage, max_usage (v1 only), failcnt, limit (no limit: the host's
  memory), and ``stats``: v1's memory.stat keys docker reports (``total_inactive_file``
  among them) or v2's (``inactive_file``, ``anon``, ``file`` ...) — the CLI's "MEM USAGE"
  subtracts the inactive file cache named after the version;
- ``blkio_stats``: v1's throttle files, or v2's io.stat as read/write entries;
- ``pids_stats``: current and limit (omitted when unlimited, as docker's omitempty).

A container that is not running gets docker's zeroed record (only ``name`` and ``id``
set). ``precpu_stats``/``preread`` are the caller's: the previous sample's values.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from dockyard.logs import format_time

ZERO_TIME = "0001-01-01T00:00:00Z"
_NS_PER_TICK = 1_000_000_000 // 100  # docker assumes USER_HZ = 100 for /proc/stat

# memory.stat keys docker passes on, by cgroup version (a missing key reads as 0, as there)
_V1_MEMORY_KEYS = (
    "cache", "rss", "rss_huge", "mapped_file", "dirty", "writeback", "pgpgin", "pgpgout", "pgfault",
    "pgmajfault", "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable",
    "hierarchical_memory_limit", "hierarchical_memsw_limit", "total_cache", "total_rss", "total_rss_huge",
    "total_mapped_file", "total_dirty", "total_writeback", "total_pgpgin", "total_pgpgout", "total_pgfault",
    "total_pgmajfault", "total_inactive_anon", "total_active_anon", "total_inactive_file",
    "total_active_file", "total_unevictable",
)
_V2_MEMORY_KEYS = (
    "anon", "file", "kernel_stack", "slab", "sock", "shmem", "file_mapped", "file_dirty", "file_writeback",
    "anon_thp", "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable",
    "slab_reclaimable", "slab_unreclaimable", "pgfault", "pgmajfault", "workingset_refault",
    "workingset_activate", "workingset_nodereclaim", "pgrefill", "pgscan", "pgsteal", "pgactivate",
    "pgdeactivate", "pglazyfree", "pglazyfreed", "thp_fault_alloc", "thp_collapse_alloc",
)
_BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
               "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
               "io_time_recursive", "sectors_recursive")


def zero_cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def empty(name: str, cid: str) -> dict[str, Any]:
    """docker's record for a container that is not running: zeros, name and id."""
    return {
        "read": ZERO_TIME, "preread": ZERO_TIME, "pids_stats": {},
        "blkio_stats": dict.fromkeys(_BLKIO_KEYS),
        "num_procs": 0, "storage_stats": {}, "cpu_stats": zero_cpu(), "precpu_stats": zero_cpu(),
        "memory_stats": {}, "name": name, "id": cid,
    }


def system_cpu() -> tuple[int, int]:
    """(host CPU time in ns over the first 7 fields of /proc/stat's ``cpu`` line, online CPUs)."""
    total, online = 0, 0
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            if line[3] == " ":
                total = sum(int(x) for x in line.split()[1:8]) * _NS_PER_TICK
            elif line[3].isdigit():
                online += 1
    return total, online


def machine_memory() -> int:
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _read(path: str | None) -> str:
    if not path:
        return ""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _int(path: str | None) -> int | None:
    text = _read(path).strip()
    try:
        return int(text)
    except ValueError:
        return None  # missing, or "max"


def _keyed(path: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                out[parts[0]] = int(parts[1])
    return out


def _v1_blkio(path: str | None) -> list[dict[str, Any]]:
    """``MAJ:MIN Op value`` lines (the final ``Total n`` line has no device: skipped)."""
    entries = []
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        with contextlib.suppress(ValueError):
            entries.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
    return entries


def _v2_io(path: str) -> list[dict[str, Any]] | None:
    entries: list[dict[str, Any]] = []
    for line in _read(path).splitlines():
        dev, *fields = line.split()
        major, _, minor = dev.partition(":")
        kv = dict(f.split("=", 1) for f in fields if "=" in f)
        with contextlib.suppress(ValueError):
            entries.append({"major": int(major), "minor": int(minor), "op": "read", "value": int(kv.get("rbytes", 0))})
            entries.append({"major": int(major), "minor": int(minor), "op": "write", "value": int(kv.get("wbytes", 0))})
    return entries or None


def _pick(stat: dict[str, int], keys: tuple[str, ...]) -> dict[str, int]:
    return {k: stat.get(k, 0) for k in keys}


def sample(cg: Any, name: str, cid: str, mem_total: int | None = None) -> dict[str, Any]:
    """One docker-shaped sample of the cgroup ``cg`` (a ``dockyard.runtime.cgroups.Cgroup``)."""
    s = cg.stats()
    sys_ns, online = system_cpu()
    read = format_time(time.time_ns())
    mem_total = machine_memory() if mem_total is None else mem_total
    cpu, mem, pids = s["cpu"], s["memory"], s["pids"]
    usage: dict[str, Any] = {"total_usage": cpu["usage"] or 0}
    if cpu["per_cpu"]:
        usage["percpu_usage"] = cpu["per_cpu"]
    usage["usage_in_kernelmode"] = cpu["system"] or 0
    usage["usage_in_usermode"] = cpu["user"] or 0
    cpu_stats: dict[str, Any] = {"cpu_usage": usage}
    if sys_ns:
        cpu_stats["system_cpu_usage"] = sys_ns
    if online:
        cpu_stats["online_cpus"] = online
    cpu_stats["throttling_data"] = {"periods": cpu["nr_periods"] or 0, "throttled_periods": cpu["nr_throttled"] or 0,
                                    "throttled_time": cpu["throttled_time"] or 0}
    limit = mem["limit"]
    if limit is None or (mem_total and limit > mem_total):
        limit = mem_total  # no limit: docker reports the host's memory
    memory: dict[str, Any] = {}
    if cg.version == 1:
        mem_dir = cg.dir("memory")
        blk_dir = cg.dir("blkio")

        def blk(name: str) -> str | None:
            if blk_dir is None:
                return None
            f = os.path.join(blk_dir, name + "_recursive")
            return f if os.path.exists(f) else os.path.join(blk_dir, name)

        blkio: dict[str, Any] = {key: [] for key in _BLKIO_KEYS}
        blkio["io_service_bytes_recursive"] = _v1_blkio(blk("blkio.throttle.io_service_bytes"))
        blkio["io_serviced_recursive"] = _v1_blkio(blk("blkio.throttle.io_serviced"))
        if mem["usage"] is not None:
            memory["usage"] = mem["usage"]
            if mem["max_usage"]:
                memory["max_usage"] = mem["max_usage"]
        memory["stats"] = _pick(mem["stat"], _V1_MEMORY_KEYS)
        failcnt = _int(os.path.join(mem_dir, "memory.failcnt")) if mem_dir else None
        if failcnt:
            memory["failcnt"] = failcnt
    else:
        blkio = dict.fromkeys(_BLKIO_KEYS)
        blkio["io_service_bytes_recursive"] = _v2_io(os.path.join(cg.dir, "io.stat"))
        if mem["usage"]:
            memory["usage"] = mem["usage"]
        memory["stats"] = _pick(mem["stat"], _V2_MEMORY_KEYS)
        oom = _keyed(os.path.join(cg.dir, "memory.events")).get("oom")
        if oom:
            memory["failcnt"] = oom
    if limit:
        memory["limit"] = limit
    pids_stats: dict[str, int] = {}
    if pids["current"]:
        pids_stats["current"] = pids["current"]
    if pids["limit"]:
        pids_stats["limit"] = pids["limit"]
    return {
        "read": read, "preread": ZERO_TIME, "pids_stats": pids_stats, "blkio_stats": blkio,
        "num_procs": 0, "storage_stats": {}, "cpu_stats": cpu_stats, "precpu_stats": zero_cpu(),
        "memory_stats": memory, "name": name, "id": cid,
    }


def chain(current: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """``current`` with ``preread``/``precpu_stats`` taken from ``previous`` (docker's
    streaming and two-sample one-shot)."""
    if previous is not None:
        current["preread"] = previous["read"]
        current["precpu_stats"] = previous["cpu_stats"]
    return current
