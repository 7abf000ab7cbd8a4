"""OCI ``linux.resources`` validated into one typed value, before any directory is made,
so bad input never leaves a half-created cgroup; plus the v1 -> v2 value conversions.

Conventions (as runc and docker use them): for limits, ``None``/absent and 0 mean "leave
as is", -1 means unlimited. Ignored sections: memory.kernel/kernelTCP (gone from the
kernel), cpu.realtime*, cpu.idle/burst, hugepageLimits, network, rdma.
"""

from __future__ import annotations

from _collections_abc import Mapping  # loaded at start-up; collections.abc is not

from dockyard.errors import InvalidArgument
from dockyard.runtime.values import Value

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the supervisor keeps what it imports for life
    from typing import Any


def _is_cpu_list(s: str) -> bool:
    """``0-3,5``: what the regex ``^\\d+(-\\d+)?(,\\d+(-\\d+)?)*$`` accepts (a final newline
    too), without ``re`` (the supervisor keeps what it imports for life)."""
    s = s.removesuffix("\n")
    for item in s.split(","):
        low, dash, high = item.partition("-")
        if not low.isdecimal() or (dash and not high.isdecimal()):
            return False
    return True


# cgroup core files that manage the hierarchy or its processes: dockyard owns those
_UNIFIED_FORBIDDEN = {"cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "cgroup.kill",
                      "cgroup.freeze", "cgroup.type"}


class DeviceRule(Value):
    __slots__ = ("allow", "type", "major", "minor", "access")

    def __init__(self, allow: bool, type: str, major: int | None, minor: int | None,  # noqa: A002
                 access: str) -> None:
        self.allow = allow
        self.type = type  # a, b or c
        self.major = major  # None: any
        self.minor = minor
        self.access = access  # subset of rwm

    def v1_line(self) -> str:
        if self.type == "a":
            return "a"  # the kernel reads "a" as every device, every access
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


class DeviceValue(Value):
    __slots__ = ("major", "minor", "value")

    def __init__(self, major: int, minor: int, value: int) -> None:
        self.major, self.minor = major, minor
        self.value = value  # a weight or a rate


class Resources(Value):
    __slots__ = ("memory_limit", "memory_reservation", "memory_swap", "swappiness",
                 "disable_oom_killer", "cpu_shares", "cpu_quota", "cpu_period", "cpus", "mems",
                 "pids_limit", "blkio_weight", "blkio_weight_devices", "throttle", "devices",
                 "unified")

    def __init__(self, memory_limit: int | None = None, memory_reservation: int | None = None,
                 memory_swap: int | None = None, swappiness: int | None = None,
                 disable_oom_killer: bool | None = None, cpu_shares: int | None = None,
                 cpu_quota: int | None = None, cpu_period: int | None = None,
                 cpus: str | None = None, mems: str | None = None, pids_limit: int | None = None,
                 blkio_weight: int | None = None,
                 blkio_weight_devices: list[DeviceValue] | None = None,
                 throttle: dict[str, list[DeviceValue]] | None = None,
                 devices: list[DeviceRule] | None = None,
                 unified: dict[str, str] | None = None) -> None:
        self.memory_limit = memory_limit
        self.memory_reservation = memory_reservation
        self.memory_swap = memory_swap  # memory + swap, as OCI defines it
        self.swappiness = swappiness
        self.disable_oom_killer = disable_oom_killer
        self.cpu_shares = cpu_shares
        self.cpu_quota = cpu_quota
        self.cpu_period = cpu_period
        self.cpus = cpus
        self.mems = mems
        self.pids_limit = pids_limit  # -1: unlimited
        self.blkio_weight = blkio_weight
        self.blkio_weight_devices = [] if blkio_weight_devices is None else blkio_weight_devices
        # v1 file suffix / v2 io.max key -> per-device rates
        self.throttle = {} if throttle is None else throttle
        self.devices = devices
        self.unified = {} if unified is None else unified

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was


THROTTLE_KEYS = {
    "throttleReadBpsDevice": ("read_bps_device", "rbps"),
    "throttleWriteBpsDevice": ("write_bps_device", "wbps"),
    "throttleReadIOPSDevice": ("read_iops_device", "riops"),
    "throttleWriteIOPSDevice": ("write_iops_device", "wiops"),
}


def _int(section: Mapping[str, Any], key: str, where: str, minimum: int | None = None,
         maximum: int | None = None) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{where}.{key}: must be an integer, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise InvalidArgument(f"{where}.{key}: must be {bounds}, got {value}")
    return value


def _limit(section: Mapping[str, Any], key: str, where: str) -> int | None:
    """A byte/count limit: -1 unlimited, 0 unset, else positive."""
    value = _int(section, key, where, minimum=-1)
    return None if value == 0 else value


def _section(resources: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = resources.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"linux.resources.{key}: must be an object, got {type(value).__name__}")
    return value


def _device_values(items: Any, where: str, value_key: str) -> list[DeviceValue]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidArgument(f"{where}: must be a list")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InvalidArgument(f"{where}[{i}]: must be an object")
        major = _int(item, "major", f"{where}[{i}]", minimum=0)
        minor = _int(item, "minor", f"{where}[{i}]", minimum=0)
        value = _int(item, value_key, f"{where}[{i}]", minimum=0)
        if major is None or minor is None or value is None:
            raise InvalidArgument(f"{where}[{i}]: major, minor and {value_key} are required")
        out.append(DeviceValue(major, minor, value))
    return out


def _cpu_list(section: Mapping[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _is_cpu_list(value.replace(" ", "")):
        raise InvalidArgument(f"{where}.{key}: invalid list {value!r} (want e.g. 0-3,5)")
    return value.replace(" ", "")


def _devices(items: Any) -> list[DeviceRule] | None:
    if items is None:
        return None
    where = "linux.resources.devices"
    if not isinstance(items, list):
        raise InvalidArgument(f"{where}: must be a list")
    rules = []
    for i, item in enumerate(items):
        w = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidArgument(f"{w}: must be an object")
        allow = item.get("allow")
        if not isinstance(allow, bool):
            raise InvalidArgument(f"{w}.allow: must be a boolean, got {allow!r}")
        dtype = item.get("type") or "a"
        if dtype not in ("a", "b", "c"):
            raise InvalidArgument(f"{w}.type: unknown device type {dtype!r} (want a, b or c)")
        major = _int(item, "major", w, minimum=-1)
        minor = _int(item, "minor", w, minimum=-1)
        access = item.get("access") or "rwm"
        if not isinstance(access, str) or not access or set(access) - set("rwm") or len(set(access)) != len(access):
            raise InvalidArgument(f"{w}.access: invalid access {access!r} (want a combination of r, w, m)")
        rules.append(DeviceRule(allow, dtype, None if major in (None, -1) else major,
                                None if minor in (None, -1) else minor, access))
    return rules


def parse_resources(resources: Mapping[str, Any] | None) -> Resources:
    """Validate an OCI linux.resources object. InvalidArgument names the field."""
    if resources is None:
        return Resources()
    if not isinstance(resources, Mapping):
        raise InvalidArgument(f"linux.resources: must be an object, got {type(resources).__name__}")
    r = Resources()

    where = "linux.resources.memory"
    mem = _section(resources, "memory")
    r.memory_limit = _limit(mem, "limit", where)
    r.memory_reservation = _limit(mem, "reservation", where)
    r.memory_swap = _limit(mem, "swap", where)
    swappiness = _int(mem, "swappiness", where, minimum=-1, maximum=100)
    r.swappiness = None if swappiness == -1 else swappiness  # docker's -1: unset
    oom = mem.get("disableOOMKiller")
    if oom is not None and not isinstance(oom, bool):
        raise InvalidArgument(f"{where}.disableOOMKiller: must be a boolean, got {oom!r}")
    r.disable_oom_killer = oom
    if (r.memory_swap is not None and r.memory_swap > 0 and r.memory_limit is not None
            and r.memory_limit > 0 and r.memory_swap < r.memory_limit):
        raise InvalidArgument(f"{where}: swap (memory+swap, {r.memory_swap}) must be >= limit ({r.memory_limit})")

    where = "linux.resources.cpu"
    cpu = _section(resources, "cpu")
    shares = _int(cpu, "shares", where, minimum=0)
    # the kernel clamps v1 shares to [2, 262144]; clamp the same way so v2 converts alike
    r.cpu_shares = None if not shares else min(max(shares, 2), 262144)
    quota = _int(cpu, "quota", where, minimum=-1)
    if quota is not None and 0 < quota < 1000:
        raise InvalidArgument(f"{where}.quota: must be -1 or >= 1000 (µs), got {quota}")
    r.cpu_quota = None if quota == 0 else quota
    period = _int(cpu, "period", where, minimum=0)
    if period is not None and period != 0 and not 1000 <= period <= 1_000_000:
        raise InvalidArgument(f"{where}.period: must be between 1000 and 1000000 (µs), got {period}")
    r.cpu_period = period or None
    r.cpus = _cpu_list(cpu, "cpus", where)
    r.mems = _cpu_list(cpu, "mems", where)

    pids = _section(resources, "pids")
    limit = _int(pids, "limit", "linux.resources.pids")
    # OCI/docker: 0 or negative is unlimited
    r.pids_limit = None if limit is None else (limit if limit > 0 else -1)

    where = "linux.resources.blockIO"
    bio = _section(resources, "blockIO")
    weight = _int(bio, "weight", where, minimum=0, maximum=1000)
    if weight is not None and 0 < weight < 10:
        raise InvalidArgument(f"{where}.weight: must be between 10 and 1000, got {weight}")
    r.blkio_weight = weight or None
    r.blkio_weight_devices = _device_values(bio.get("weightDevice"), f"{where}.weightDevice", "weight")
    for dev in r.blkio_weight_devices:
        if not 10 <= dev.value <= 1000:
            raise InvalidArgument(f"{where}.weightDevice: weight must be between 10 and 1000, got {dev.value}")
    for key in THROTTLE_KEYS:
        values = _device_values(bio.get(key), f"{where}.{key}", "rate")
        if values:
            r.throttle[key] = values

    r.devices = _devices(resources.get("devices"))

    unified = resources.get("unified")
    if unified is not None:
        if not isinstance(unified, Mapping):
            raise InvalidArgument("linux.resources.unified: must be an object")
        for name, value in unified.items():
            if not isinstance(name, str) or not name or "/" in name or name.startswith(".") or name in _UNIFIED_FORBIDDEN:
                raise InvalidArgument(f"linux.resources.unified: invalid file name {name!r}")
            if not isinstance(value, str):
                raise InvalidArgument(f"linux.resources.unified.{name}: value must be a string")
            r.unified[name] = value
    return r


# --------------------------------------------------------------------------- v2 conversions


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] -> cpu.weight [1, 10000] (runc's linear map)."""
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] -> io.weight [1, 10000]."""
    return 1 + ((weight - 10) * 9999) // 990


def swap_to_v2(swap: int, limit: int | None) -> str:
    """OCI memory+swap -> memory.swap.max (swap alone). ``limit`` is the memory limit in
    effect (-1/None: unlimited)."""
    if swap == -1:
        return "max"
    if limit is None or limit == -1:
        raise InvalidArgument("linux.resources.memory.swap: a swap limit needs a memory limit")
    if swap < limit:
        raise InvalidArgument(f"linux.resources.memory: swap (memory+swap, {swap}) must be >= limit ({limit})")
    return str(swap - limit)


def v2_value(value: int) -> str:
    return "max" if value == -1 else str(value)


# --------------------------------------------------------------------------- warnings
# create/update return these (docker's wording where docker has one) when the host cannot
# honour a setting; the setting is then discarded, as docker does.

WARN_MEMORY = "Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded."
WARN_SWAP = "Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap."
WARN_RESERVATION = "Your kernel does not support memory soft limit capabilities or the cgroup is not mounted. Limitation discarded."
WARN_SWAPPINESS = "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded."
WARN_OOM_KILL_DISABLE = "Your kernel does not support OomKillDisable. OomKillDisable discarded."
WARN_CPU_SHARES = "Your kernel does not support CPU shares or the cgroup is not mounted. Shares discarded."
WARN_CFS = "Your kernel does not support CPU CFS scheduler or the cgroup is not mounted. CPU period/quota discarded."
WARN_CPUSET = "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded."
WARN_PIDS = "Your kernel does not support PIDs limit capabilities or the cgroup is not mounted. PIDs limit discarded."
WARN_BLKIO_WEIGHT = "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
WARN_BLKIO_WEIGHT_DEVICE = "Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded."
WARN_BLKIO_THROTTLE = "Your kernel does not support Block I/O throttling or the cgroup is not mounted. Block I/O throttle limits discarded."
WARN_DEVICES_V1 = "The devices cgroup is not mounted. Device rules discarded."
WARN_DEVICES_V2 = "Device rules are not enforced on cgroup v2 (that needs an eBPF program, not implemented). Device rules discarded."


class Warnings(list[str]):
    """Warnings in order of first occurrence, each once."""

    def add(self, message: str) -> None:
        if message not in self:
            self.append(message)
