"""The Docker API's container create body -> validated ``Config`` and ``HostConfig``.

``normalize_create`` returns both in docker's JSON shape, as ``docker inspect`` shows them:
docker's defaults filled in, the request merged with the image config the way docker's
daemon merges them, and every value checked with docker's wording (``InvalidArgument``).

Merge rules (docker's):
- Env: the request's entries first, then the image's entries whose key the request does
  not set (so the request wins by key, and ``inspect`` shows the request's first).
- Entrypoint: a request entrypoint replaces the image's and drops the image's Cmd; without
  one, the image's entrypoint is kept and a request Cmd replaces the image's Cmd.
  ``--entrypoint ""`` arrives as ``[""]``: no entrypoint, and still no image Cmd.
- WorkingDir, User, StopSignal: the request's if set, else the image's.
- Labels, ExposedPorts, Volumes: the image's, then the request's on top.
- Healthcheck: the image's unless the request gives one; a request healthcheck without a
  Test, or with zero durations, takes those from the image's.
- OnBuild: ignored (it only matters to builds).
"""

from __future__ import annotations

import copy
import json
import os
import posixpath
import re
import signal as _signal
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import InvalidArgument

MIN_MEMORY = 6 * 1024 * 1024  # docker's linux minimum
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
# go-units' ulimit names (what the docker CLI and API accept)
ULIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
           "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


@dataclass
class CreateResult:
    config: dict[str, Any]
    host_config: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass
class SecurityOptions:
    """HostConfig.SecurityOpt, parsed: ``seccomp`` is None (the default profile, also
    ``seccomp=builtin``), ``"unconfined"``, or a docker-format profile dict (the docker
    CLI reads a ``seccomp=<file>`` itself and sends the file's JSON)."""

    no_new_privileges: bool = False
    seccomp: Any = None
    labels: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- defaults


def default_config() -> dict[str, Any]:
    return {
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "ExposedPorts": None, "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Env": None, "Cmd": None, "Healthcheck": None, "Image": "", "Volumes": None,
        "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": {},
        "StopSignal": "", "StopTimeout": None,
    }


def cgroup_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def default_host_config() -> dict[str, Any]:
    from dockyard.runtime.rootfs import DOCKER_MASKED_PATHS, DOCKER_READONLY_PATHS

    return {
        "Binds": None, "ContainerIDFile": "",
        "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "default", "PortBindings": {},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None,
        "ConsoleSize": [0, 0], "Annotations": None,
        "CapAdd": None, "CapDrop": None,
        "CgroupnsMode": "private" if cgroup_v2() else "host",
        "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None,
        "IpcMode": "private", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "",
        "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False,
        "SecurityOpt": None, "StorageOpt": None, "Tmpfs": None, "UTSMode": "", "UsernsMode": "",
        "ShmSize": DEFAULT_SHM_SIZE, "Sysctls": None, "Runtime": "runc", "Isolation": "",
        "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
        "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [],
        "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None,
        "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0,
        "MemorySwappiness": None, "OomKillDisable": None, "PidsLimit": None, "Ulimits": [],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "Mounts": None, "Init": None,
        "MaskedPaths": list(DOCKER_MASKED_PATHS), "ReadonlyPaths": list(DOCKER_READONLY_PATHS),
    }


# --------------------------------------------------------------------------- entry point


def normalize_create(
    body: dict[str, Any],
    image_config: dict[str, Any] | None = None,
    *,
    container_id: str = "",
    swap_limit: bool | None = None,
    ncpus: int | None = None,
    available_cpus: str | None = None,
) -> CreateResult:
    """``body`` is the JSON body of ``POST /containers/create`` (Config fields at the top
    level, ``HostConfig`` nested, ``NetworkingConfig`` ignored here); ``image_config`` the
    image config's ``config`` section. ``swap_limit``, ``ncpus`` and ``available_cpus``
    describe the host (detected when None)."""
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the body must be an object")
    req = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    hc_in = body.get("HostConfig") or {}
    if not isinstance(hc_in, dict):
        raise InvalidArgument("invalid JSON: HostConfig must be an object")
    warnings: list[str] = []

    config = default_config()
    for key, value in req.items():
        if key in config:
            config[key] = copy.deepcopy(value)
    _check_image(config.get("Image"))
    merge_image(config, image_config or {})
    _validate_config(config)
    if not config["Hostname"] and container_id:
        config["Hostname"] = container_id[:12]

    host_config = default_host_config()
    for key, value in hc_in.items():
        if value is not None or key in ("PidsLimit", "MemorySwappiness", "OomKillDisable", "Init"):
            host_config[key] = copy.deepcopy(value)
    validate_host_config(host_config, warnings, swap_limit=swap_limit, ncpus=ncpus,
                         available_cpus=available_cpus)
    return CreateResult(config, host_config, warnings)


def _check_image(image: Any) -> None:
    from dockyard import reference

    if not isinstance(image, str) or not image:
        raise InvalidArgument("invalid reference format")
    if reference.looks_like_id(image):
        return
    reference.parse(image)  # raises InvalidArgument("invalid reference format...")


# --------------------------------------------------------------------------- merging


def _env_key(entry: str) -> str:
    return entry.split("=", 1)[0]


def merge_image(config: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """Merge the image config's ``config`` section into a request Config, in place."""
    if not config.get("User"):
        config["User"] = image.get("User") or ""

    ports = dict(image.get("ExposedPorts") or {})
    ports.update(config.get("ExposedPorts") or {})
    config["ExposedPorts"] = ports or None

    env = list(config.get("Env") or [])
    if not env:
        env = list(image.get("Env") or [])
    else:
        keys = {_env_key(e) for e in env}
        env += [e for e in image.get("Env") or [] if _env_key(e) not in keys]
    config["Env"] = env or None

    labels = dict(image.get("Labels") or {})
    labels.update(config.get("Labels") or {})
    config["Labels"] = labels

    if not config.get("Entrypoint"):
        if not config.get("Cmd"):
            config["Cmd"] = copy.deepcopy(image.get("Cmd"))
        if config.get("Entrypoint") is None:
            config["Entrypoint"] = copy.deepcopy(image.get("Entrypoint"))

    if not config.get("WorkingDir"):
        config["WorkingDir"] = image.get("WorkingDir") or ""

    volumes = dict(image.get("Volumes") or {})
    volumes.update(config.get("Volumes") or {})
    config["Volumes"] = volumes or None

    if not config.get("StopSignal"):
        config["StopSignal"] = image.get("StopSignal") or ""

    ihc = image.get("Healthcheck")
    uhc = config.get("Healthcheck")
    if uhc is None:
        config["Healthcheck"] = copy.deepcopy(ihc)
    elif ihc:
        if not uhc.get("Test"):
            uhc["Test"] = ihc.get("Test")
        for key in ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
            if not uhc.get(key) and ihc.get(key):
                uhc[key] = ihc[key]
    return config


def command_of(config: dict[str, Any]) -> list[str]:
    """Entrypoint + Cmd, as the process's argv (``[""]`` entrypoint means none)."""
    entrypoint = [a for a in (config.get("Entrypoint") or [])]
    if entrypoint == [""]:
        entrypoint = []
    return entrypoint + list(config.get("Cmd") or [])


# --------------------------------------------------------------------------- validation


def _validate_config(config: dict[str, Any]) -> None:
    for key in ("Env", "Cmd", "Entrypoint"):
        value = config.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise InvalidArgument(f"invalid JSON: {key} must be a list of strings")
    if not command_of(config):
        raise InvalidArgument("No command specified")
    for entry in config.get("Env") or []:
        if not _env_key(entry):
            raise InvalidArgument(f"invalid environment variable: {entry}")
    wd = config.get("WorkingDir") or ""
    if wd:
        if not wd.startswith("/"):
            raise InvalidArgument(f"the working directory '{wd}' is invalid, it needs to be an absolute path")
        config["WorkingDir"] = posixpath.normpath(wd) if wd != "//" else "/"
    if config.get("StopSignal"):
        parse_signal(config["StopSignal"])
    st = config.get("StopTimeout")
    if st is not None and (not isinstance(st, int) or isinstance(st, bool)):
        raise InvalidArgument("invalid JSON: StopTimeout must be an integer")
    if config.get("Labels") is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in config["Labels"].items()):
        raise InvalidArgument("invalid JSON: Labels must map strings to strings")
    _validate_healthcheck(config.get("Healthcheck"))


def _validate_healthcheck(hc: Any) -> None:
    """docker's checks of a healthcheck's timings (nanoseconds; 0 = the default)."""
    if hc is None:
        return
    if not isinstance(hc, dict):
        raise InvalidArgument("invalid JSON: Healthcheck must be an object")
    test = hc.get("Test")
    if test is not None and (not isinstance(test, list) or not all(isinstance(t, str) for t in test)):
        raise InvalidArgument("invalid JSON: Healthcheck.Test must be a list of strings")
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        value = hc.get(key) or 0
        if not isinstance(value, int) or (value != 0 and value < 1_000_000):
            raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    retries = hc.get("Retries") or 0
    if not isinstance(retries, int) or retries < 0:
        raise InvalidArgument("Retries in Healthcheck cannot be negative")


def parse_signal(raw: Any) -> int:
    """``SIGTERM``, ``TERM``, ``15``, ``SIGRTMIN+3`` -> a number; docker's error otherwise."""
    s = str(raw)
    if s.isdigit():
        num = int(s)
        if 0 < num < _signal.SIGRTMAX + 1:
            return num
        raise InvalidArgument(f"Invalid signal: {s}")
    name = s.upper().removeprefix("SIG")
    m = re.fullmatch(r"RTMIN([+-]\d+)?|RTMAX([+-]\d+)?", name)
    if m:
        base = int(_signal.SIGRTMIN if name.startswith("RTMIN") else _signal.SIGRTMAX)
        num = base + int(m.group(1) or m.group(2) or 0)
        if _signal.SIGRTMIN <= num <= _signal.SIGRTMAX:
            return num
        raise InvalidArgument(f"Invalid signal: {s}")
    sig = getattr(_signal, "SIG" + name, None)
    if not isinstance(sig, _signal.Signals) or name.startswith(("_", "IG", "DFL")):
        raise InvalidArgument(f"Invalid signal: {s}")
    return int(sig)


def _int(hc: dict[str, Any], key: str) -> int:
    v = hc.get(key) or 0
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidArgument(f"invalid JSON: HostConfig.{key} must be an integer")
    return v


def host_swap_limit() -> bool:
    if cgroup_v2():
        return True
    return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")


def host_cpus() -> str:
    for path in ("/sys/fs/cgroup/cpuset/cpuset.cpus", "/sys/fs/cgroup/cpuset.cpus.effective",
                 "/sys/devices/system/cpu/online"):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            continue
    return f"0-{(os.cpu_count() or 1) - 1}"


def parse_cpuset(value: str) -> set[int]:
    out: set[int] = set()
    for part in value.split(","):
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if b < a:
            raise ValueError(part)
        out.update(range(a, b + 1))
    return out


def validate_host_config(hc: dict[str, Any], warnings: list[str], *, swap_limit: bool | None = None,
                         ncpus: int | None = None, available_cpus: str | None = None) -> None:
    """Check and normalize a HostConfig in place (docker's adaptContainerSettings and
    verifyContainerResources rules)."""
    from dockyard.runtime import capabilities

    # --- restart policy and --rm
    rp = hc.get("RestartPolicy") or {}
    name = rp.get("Name") or "no"
    retries = rp.get("MaximumRetryCount") or 0
    if name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy: unknown policy '{name}'; use one of "
                              "'no', 'always', 'on-failure', or 'unless-stopped'")
    if not isinstance(retries, int) or retries < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if retries and name != "on-failure":
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    hc["RestartPolicy"] = {"Name": name, "MaximumRetryCount": retries}
    if hc.get("AutoRemove") and name != "no":
        raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")

    # --- memory
    memory = _int(hc, "Memory")
    swap = _int(hc, "MemorySwap")
    reservation = _int(hc, "MemoryReservation")
    if memory < 0 or (0 < memory < MIN_MEMORY):
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if swap != 0 and swap != -1 and memory == 0:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    if memory > 0 and swap > 0 and swap < memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if reservation < 0 or 0 < reservation < MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise InvalidArgument(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    if memory > 0 and swap == 0:
        swap = memory * 2  # docker's default: as much swap as memory
    if memory > 0 and swap != -1:
        if swap_limit is None:
            swap_limit = host_swap_limit()
        if not swap_limit:
            warnings.append("Your kernel does not support swap limit capabilities or the cgroup is "
                            "not mounted. Memory limited without swap.")
            swap = -1
    hc["MemorySwap"] = swap
    if hc.get("ShmSize") is None or hc["ShmSize"] == 0:
        hc["ShmSize"] = DEFAULT_SHM_SIZE
    if _int(hc, "ShmSize") < 0:
        raise InvalidArgument("SHM size can not be less than 0")

    # --- cpu
    nano = _int(hc, "NanoCpus")
    period = _int(hc, "CpuPeriod")
    quota = _int(hc, "CpuQuota")
    if nano and period:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano and quota:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    n = ncpus or os.cpu_count() or 1
    if nano < 0 or nano > n * 10**9:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available")
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    if quota and quota != -1 and quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if _int(hc, "CpuShares") < 0:
        raise InvalidArgument("shares: invalid argument")
    for key, what in (("CpusetCpus", "cpus"), ("CpusetMems", "mems")):
        value = hc.get(key) or ""
        if not value:
            continue
        try:
            if not _CPUSET.match(value):
                raise ValueError(value)
            wanted = parse_cpuset(value)
        except ValueError:
            raise InvalidArgument(f"Invalid value {value} for cpuset {what}") from None
        if what == "cpus":
            avail = available_cpus if available_cpus is not None else host_cpus()
            if not wanted <= parse_cpuset(avail):
                raise InvalidArgument(f"Requested CPUs are not available - requested {value}, available: {avail}")

    # --- pids, blkio, oom
    pids = hc.get("PidsLimit")
    if pids is not None:
        if not isinstance(pids, int) or isinstance(pids, bool):
            raise InvalidArgument("invalid JSON: HostConfig.PidsLimit must be an integer")
        if pids <= 0:
            hc["PidsLimit"] = None  # docker: 0 and -1 both mean unlimited
    weight = _int(hc, "BlkioWeight")
    if weight and not 10 <= weight <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    oom = _int(hc, "OomScoreAdj")
    if not -1000 <= oom <= 1000:
        raise InvalidArgument(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")

    # --- ulimits
    seen: set[str] = set()
    for ul in hc.get("Ulimits") or []:
        if not isinstance(ul, dict) or not isinstance(ul.get("Name"), str):
            raise InvalidArgument(f"invalid ulimit argument: {ul}")
        if ul["Name"] not in ULIMITS:
            raise InvalidArgument(f"invalid ulimit type: {ul['Name']}")
        soft, hard = ul.get("Soft", 0), ul.get("Hard", 0)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (soft, hard)):
            raise InvalidArgument(f"invalid ulimit argument: {ul}")
        if soft > hard:
            raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        if ul["Name"] in seen:
            raise InvalidArgument(f"ulimit {ul['Name']} given twice")
        seen.add(ul["Name"])

    init = hc.get("Init")
    if init is not None and not isinstance(init, bool):
        raise InvalidArgument("invalid JSON: HostConfig.Init must be a boolean")

    # --- capabilities, security options
    capabilities.merge_docker(hc.get("CapAdd"), hc.get("CapDrop"), bool(hc.get("Privileged")))
    parse_security_opts(hc.get("SecurityOpt"))

    # --- name resolution (--add-host, --dns, --dns-search, --dns-option)
    from dockyard.network.etcfiles import check_dns, extra_hosts

    for key in ("ExtraHosts", "Dns", "DnsSearch", "DnsOptions"):
        if hc.get(key) is not None and not (isinstance(hc[key], list) and all(isinstance(v, str) for v in hc[key])):
            raise InvalidArgument(f"invalid JSON: HostConfig.{key} must be a list of strings")
    extra_hosts(hc.get("ExtraHosts"))
    check_dns(hc.get("Dns"))

    # --- published ports
    from dockyard.network.ports import specs

    if hc.get("PortBindings") is not None and not isinstance(hc["PortBindings"], dict):
        raise InvalidArgument("invalid JSON: HostConfig.PortBindings must be an object")
    specs(None, hc.get("PortBindings"), False)
    if (hc.get("PortBindings") or hc.get("PublishAllPorts")) and (hc.get("NetworkMode") or "") == "host":
        warnings.append("Published ports are discarded when using host network mode")

    # --- namespaces
    net = hc.get("NetworkMode") or "default"
    hc["NetworkMode"] = net
    # a network's name is looked up by the network service
    if net.startswith("container:") and not net[len("container:"):]:
        raise InvalidArgument("Invalid network mode: invalid container format container:<name|id>")
    ipc = hc.get("IpcMode") or "private"
    hc["IpcMode"] = ipc
    if not (ipc in ("private", "shareable", "host", "none") or ipc.startswith("container:")):
        raise InvalidArgument(f"invalid IPC mode: {ipc}")
    pid = hc.get("PidMode") or ""
    if not (pid in ("", "host") or pid.startswith("container:")):
        raise InvalidArgument(f"invalid PID mode: {pid}")
    if (hc.get("UTSMode") or "") not in ("", "host"):
        raise InvalidArgument(f"invalid UTS mode: {hc['UTSMode']}")
    if not hc.get("CgroupnsMode"):  # the docker CLI sends "" for "the daemon's default"
        hc["CgroupnsMode"] = "private" if cgroup_v2() else "host"
    if hc["CgroupnsMode"] not in ("private", "host"):
        raise InvalidArgument(f"invalid cgroup namespace mode: {hc['CgroupnsMode']}")
    if hc.get("Privileged"):
        hc["MaskedPaths"], hc["ReadonlyPaths"] = None, None


def parse_security_opts(opts: list[str] | None) -> SecurityOptions:
    """docker's parseSecurityOpt: ``key=value`` (or the deprecated ``key:value``); a bare
    ``no-new-privileges``. Unknown keys fail with docker's numbered messages."""
    out = SecurityOptions()
    for opt in opts or []:
        if opt == "no-new-privileges":
            out.no_new_privileges = True
            continue
        if "=" in opt:
            key, value = opt.split("=", 1)
        elif ":" in opt:
            key, value = opt.split(":", 1)
        else:
            raise InvalidArgument(f"invalid --security-opt 1: {json.dumps(opt)}")
        if key == "no-new-privileges":
            bools = {"1": True, "t": True, "true": True, "TRUE": True, "True": True, "T": True,
                     "0": False, "f": False, "false": False, "FALSE": False, "False": False, "F": False}
            if value not in bools:
                raise InvalidArgument(f"invalid --security-opt 2: {json.dumps(opt)}")
            out.no_new_privileges = bools[value]
        elif key == "seccomp":
            if value == "unconfined":
                out.seccomp = "unconfined"
            elif value in ("builtin", ""):
                out.seccomp = None  # docker's default profile, by name
            else:
                try:
                    profile = json.loads(value)
                except ValueError as e:
                    raise InvalidArgument(f"Decoding seccomp profile failed: {e}") from None
                if not isinstance(profile, dict):
                    raise InvalidArgument("Decoding seccomp profile failed: not a JSON object")
                out.seccomp = profile
        elif key == "label":
            out.labels.append(value)  # SELinux labels: accepted, ignored (no SELinux here)
        elif key == "apparmor":
            pass  # accepted as docker does on a host without AppArmor; ignored
        else:
            raise InvalidArgument(f"invalid --security-opt 2: {json.dumps(opt)}")
    return out
