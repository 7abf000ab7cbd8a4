"""A container's OCI config.json from its docker Config and HostConfig.

``build_spec`` starts from ``runtime.spec.default_spec`` (docker's defaults) and applies
the container's settings the way docker's daemon does when it writes the spec for runc.
User and group names are resolved from the *container's* /etc/passwd and /etc/group,
opened with openat2(RESOLVE_IN_ROOT) so that no symlink or ``..`` can make the engine
read a host file.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any

from dockyard import syscalls
from dockyard.containers.config import command_of, parse_security_opts
from dockyard.errors import InvalidArgument
from dockyard.runtime.spec import DEFAULT_PATH

CPU_PERIOD = 100_000  # docker's period for --cpus
_MAX_FILE = 4 * 1024 * 1024  # passwd/group files larger than this are refused

# go-units ulimit name -> OCI rlimit type
_RLIMIT = {name: "RLIMIT_" + name.upper() for name in (
    "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
    "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")}

_SCMP_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "s390x": "SCMP_ARCH_S390X",
              "ppc64le": "SCMP_ARCH_PPC64LE", "riscv64": "SCMP_ARCH_RISCV64"}
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "s390x": "s390x", "ppc64le": "ppc64le",
            "riscv64": "riscv64"}


# --------------------------------------------------------------------------- users


@dataclass
class ExecUser:
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"


# Every container's cgroup is a child of this one (docker uses /docker), which the daemon
# gives back when it stops with none left (ContainerService.close).
CGROUP_PARENT = "/dockyard"

def read_in_root(rootfs: str, path: str) -> str | None:
    """The text of ``path`` resolved inside ``rootfs`` (symlinks and ``..`` cannot leave
    it); None if it does not exist, is not a regular file, or cannot be resolved."""
    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = syscalls.openat2(root, path.lstrip("/"), os.O_RDONLY | os.O_NONBLOCK,
                                  resolve=syscalls.Resolve.IN_ROOT | syscalls.Resolve.NO_MAGICLINKS
                                  | syscalls.Resolve.NO_XDEV)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_FILE:
                return None
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read(_MAX_FILE).decode(errors="replace")
        finally:
            os.close(fd)
    finally:
        os.close(root)


def _entries(text: str | None, nfields: int) -> list[list[str]]:
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < nfields:
            parts += [""] * (nfields - len(parts))
        out.append(parts)
    return out


def _uint(s: str) -> int | None:
    return int(s) if s.isdigit() and int(s) < 2**32 - 1 else None


def resolve_user(rootfs: str, user: str, group_add: list[str] | None = None) -> ExecUser:
    """docker's ``-u user[:group]`` against the container's files: a name must exist,
    a number need not (then gid 0 and home /); with no explicit group, the user's
    supplementary groups are those of /etc/group that list it; ``GroupAdd`` entries (names
    or numbers) are added."""
    name, _, group = (user or "").partition(":")
    passwd = _entries(read_in_root(rootfs, "/etc/passwd"), 7)
    groups = _entries(read_in_root(rootfs, "/etc/group"), 4)

    result = ExecUser(0, 0)
    username = ""
    if name:
        num = _uint(name)
        found = next((p for p in passwd if p[0] == name), None)
        if found is None and num is not None:
            found = next((p for p in passwd if _uint(p[2]) == num), None)
        if found is not None:
            uid, gid = _uint(found[2]), _uint(found[3])
            if uid is None or gid is None:
                raise InvalidArgument(f"unable to find user {name}: invalid entry in passwd file")
            result = ExecUser(uid, gid, home=found[5] or "/")
            username = found[0]
        elif num is not None:
            result = ExecUser(num, 0)
        else:
            raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
    else:
        root = next((p for p in passwd if _uint(p[2]) == 0), None)
        if root is not None:
            result.home = root[5] or "/"
            username = root[0]

    if group:
        gnum = _uint(group)
        g = next((e for e in groups if e[0] == group), None)
        if g is None and gnum is None:
            raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
        result.gid = _uint(g[2]) if g is not None and _uint(g[2]) is not None else gnum  # type: ignore[assignment]
    elif username:
        for g in groups:
            gid = _uint(g[2])
            if gid is not None and username in g[3].split(",") and gid not in result.additional_gids:
                result.additional_gids.append(gid)

    for extra in group_add or []:
        gnum = _uint(extra)
        g = next((e for e in groups if e[0] == extra), None)
        if g is not None and _uint(g[2]) is not None:
            gnum = _uint(g[2])
        elif gnum is None:
            raise InvalidArgument(f"Unable to find group {extra}: no matching entries in group file")
        if gnum not in result.additional_gids:
            result.additional_gids.append(gnum)  # type: ignore[arg-type]
    return result


def make_workdir(rootfs: str, path: str) -> None:
    """docker's SetupWorkingDirectory: a missing ``-w`` directory is created (mode 0755)
    in the container's writable layer, resolved inside ``rootfs`` so that no symlink in
    the image can make it land on the host."""
    from dockyard.runtime.mounts import create_in_root

    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = create_in_root(root, path)
        except NotADirectoryError:
            raise InvalidArgument(f"Cannot mkdir: {path} is not a directory") from None
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise InvalidArgument(f"Cannot mkdir: {path} is not a directory")
        finally:
            os.close(fd)
    finally:
        os.close(root)


# --------------------------------------------------------------------------- env


def _replace_or_append(env: list[str], extra: list[str]) -> list[str]:
    """docker's ReplaceOrAppendEnvValues: ``KEY=value`` replaces by key or appends; a bare
    ``KEY`` (``-e KEY`` with KEY unset in the client) removes it."""
    out: list[str | None] = list(env)
    index = {e.split("=", 1)[0]: i for i, e in enumerate(env)}
    for e in extra:
        key, eq, _ = e.partition("=")
        if not eq:
            if key in index:
                out[index[key]] = None
            continue
        if key in index:
            out[index[key]] = e
        else:
            index[key] = len(out)
            out.append(e)
    return [e for e in out if e is not None]


def container_env(config: dict[str, Any], hostname: str, home: str | None = None) -> list[str]:
    """docker's order: PATH, HOSTNAME, TERM (with a TTY), then the container's Env
    replacing by key; HOME from the user's passwd entry if nobody set it (as runc does)."""
    env = [DEFAULT_PATH, f"HOSTNAME={hostname}"]
    if config.get("Tty"):
        env.append("TERM=xterm")
    env = _replace_or_append(env, list(config.get("Env") or []))
    if home and not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={home}")
    return env


# --------------------------------------------------------------------------- seccomp


def docker_seccomp_to_oci(profile: dict[str, Any], caps: list[str]) -> dict[str, Any]:
    """A docker-format seccomp profile (``defaultAction``, ``archMap``/``architectures``,
    ``syscalls`` with ``includes``/``excludes``) -> an OCI ``linux.seccomp`` section for
    this machine and a container holding ``caps``."""
    machine = os.uname().machine
    arches: list[str] = []
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == _SCMP_ARCH.get(machine):
            arches += [entry["architecture"], *(entry.get("subArchitectures") or [])]
    if not arches:
        arches = list(profile.get("architectures") or [])
    held = set(caps)
    go_arch = _GO_ARCH.get(machine, machine)

    def applies(rule: dict[str, Any]) -> bool:
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("caps") and not set(inc["caps"]) <= held:
            return False
        if inc.get("arches") and go_arch not in inc["arches"]:
            return False
        if exc.get("caps") and set(exc["caps"]) & held:
            return False
        return not (exc.get("arches") and go_arch in exc["arches"])

    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction")}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if arches:
        out["architectures"] = arches
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])
    rules = []
    for rule in profile.get("syscalls") or []:
        if not applies(rule):
            continue
        names = list(rule.get("names") or ([rule["name"]] if rule.get("name") else []))
        oci: dict[str, Any] = {"names": names, "action": rule.get("action")}
        if rule.get("errnoRet") is not None:
            oci["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            oci["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a} for a in rule["args"]]
        rules.append(oci)
    out["syscalls"] = rules
    from dockyard.runtime.spec import validate_seccomp

    try:
        validate_seccomp(out)
    except InvalidArgument as e:
        raise InvalidArgument(f"Decoding seccomp profile failed: {e}") from None
    return out


# --------------------------------------------------------------------------- devices


def host_devices(top: str = "/dev") -> list[dict[str, Any]]:
    """Every character and block device under /dev (what docker gives --privileged),
    skipping the ones the runtime makes itself (pts, shm, mqueue, console)."""
    out: list[dict[str, Any]] = []
    skip = {"/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/console"}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if path in skip:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode):
                kind = "c"
            elif stat.S_ISBLK(st.st_mode):
                kind = "b"
            else:
                continue
            out.append({"path": path, "type": kind, "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                        "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid})
    return out


# --------------------------------------------------------------------------- the spec


def _host_hostname() -> str:
    return os.uname().nodename


def container_hostname(container_id: str, config: dict[str, Any], hc: dict[str, Any]) -> str:
    """The host's name in its network or UTS namespace, else --hostname or the short ID."""
    if (hc.get("NetworkMode") or "default") == "host" or hc.get("UTSMode") == "host":
        return _host_hostname()
    return config.get("Hostname") or container_id[:12]


def limits_of(hc: dict[str, Any]) -> dict[str, Any]:
    """The memory, cpu and pids sections of linux.resources for a HostConfig (create, and
    ``update`` of a running container)."""
    resources: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    if hc.get("Memory"):
        memory["limit"] = int(hc["Memory"])
        swap = int(hc.get("MemorySwap") or 0)
        if swap == 0:
            swap = 2 * memory["limit"]
        memory["swap"] = swap
    if hc.get("MemoryReservation"):
        memory["reservation"] = int(hc["MemoryReservation"])
    if hc.get("MemorySwappiness") not in (None, -1):
        memory["swappiness"] = int(hc["MemorySwappiness"])
    if hc.get("OomKillDisable"):
        memory["disableOOMKiller"] = True
    if memory:
        resources["memory"] = memory
    cpu: dict[str, Any] = {}
    if hc.get("NanoCpus"):
        cpu["period"] = CPU_PERIOD
        cpu["quota"] = int(hc["NanoCpus"]) * CPU_PERIOD // 1_000_000_000
    else:
        if hc.get("CpuPeriod"):
            cpu["period"] = int(hc["CpuPeriod"])
        if hc.get("CpuQuota"):
            cpu["quota"] = int(hc["CpuQuota"])
    if hc.get("CpuShares"):
        cpu["shares"] = int(hc["CpuShares"])
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        resources["cpu"] = cpu
    if hc.get("PidsLimit") and hc["PidsLimit"] > 0:
        resources["pids"] = {"limit": int(hc["PidsLimit"])}
    return resources


_default_profiles: dict[tuple[str, ...], dict[str, Any]] = {}


def _default_seccomp(caps: list[str]) -> dict[str, Any]:
    """docker's default profile for ``caps``, built once per set (~0.4 ms each time
    otherwise); shared between specs, which are serialized, never mutated."""
    from dockyard.runtime import seccomp

    key = tuple(sorted(caps))
    profile = _default_profiles.get(key)
    if profile is None:
        if len(_default_profiles) >= 64:
            _default_profiles.clear()
        profile = _default_profiles[key] = seccomp.default_profile(caps)
    return profile


def build_spec(
    container_id: str,
    config: dict[str, Any],
    host_config: dict[str, Any],
    rootfs: str,
    *,
    hostname: str | None = None,
    namespace_paths: dict[str, str] | None = None,
    default_init: bool = False,
    mounts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The config.json of a container. ``rootfs`` is the mounted root filesystem (its
    /etc/passwd and /etc/group resolve users); ``namespace_paths`` gives the
    /proc/<pid>/ns/<type> paths for ``container:<id>`` modes, keyed by OCI namespace type
    (network, ipc, pid). /etc/resolv.conf, /etc/hosts and /etc/hostname are a later issue.

    ``HostConfig.Init`` (``--init``; None means the daemon's ``default_init``) becomes the
    annotation ``org.dockyard.init: "true"``: the runtime then keeps the container's PID 1
    as a minimal init that reaps zombies and forwards signals to the command, which runs
    as its child (docker runs tini as /sbin/docker-init; see runtime/pid1.py).

    The spec may share lists and dicts with ``config`` and ``host_config``: serialize
    it, do not mutate it (a deep copy cost ~1.5 ms per create)."""
    from dockyard.runtime import capabilities
    from dockyard.runtime.spec import DOCKER_DEVICE_RULES, default_spec

    hc = host_config
    paths = namespace_paths or {}
    privileged = bool(hc.get("Privileged"))
    args = command_of(config)
    if not args:
        raise InvalidArgument("No command specified")

    net = hc.get("NetworkMode") or "default"
    uts_host = hc.get("UTSMode") == "host"
    if hostname is None:
        hostname = container_hostname(container_id, config, hc)

    spec = default_spec(args, terminal=bool(config.get("Tty")), hostname=hostname, rootfs=rootfs,
                        seccomp_profile=False)  # set below
    process = spec["process"]
    linux = spec["linux"]

    # --- user, env, cwd
    user = resolve_user(rootfs, config.get("User") or "", list(hc.get("GroupAdd") or []))
    process["user"] = {"uid": user.uid, "gid": user.gid}
    if user.additional_gids:
        process["user"]["additionalGids"] = user.additional_gids
    process["env"] = container_env(config, hostname, user.home)
    process["cwd"] = config.get("WorkingDir") or "/"
    if process["cwd"] != "/":
        make_workdir(rootfs, process["cwd"])
    if config.get("Domainname"):
        spec["domainname"] = config["Domainname"]
    if uts_host:
        spec.pop("hostname", None)

    # --- capabilities, seccomp, no_new_privs
    caps = capabilities.merge_docker(hc.get("CapAdd"), hc.get("CapDrop"), privileged)
    process["capabilities"] = {"bounding": list(caps), "effective": list(caps), "permitted": list(caps)}
    sec = parse_security_opts(hc.get("SecurityOpt"))
    process["noNewPrivileges"] = sec.no_new_privileges
    if privileged or sec.seccomp == "unconfined":
        linux.pop("seccomp", None)
    elif isinstance(sec.seccomp, dict):
        linux["seccomp"] = docker_seccomp_to_oci(sec.seccomp, caps)
    else:
        linux["seccomp"] = _default_seccomp(caps)

    # --- rlimits, oom score
    rlimits = {r["type"]: r for r in process.get("rlimits", [])}
    for ul in hc.get("Ulimits") or []:
        rtype = _RLIMIT[ul["Name"]]
        rlimits[rtype] = {"type": rtype, "hard": int(ul.get("Hard", 0)), "soft": int(ul.get("Soft", 0))}
    process["rlimits"] = list(rlimits.values())
    if hc.get("OomScoreAdj"):
        process["oomScoreAdj"] = int(hc["OomScoreAdj"])

    # --- root, masked and read-only paths
    spec["root"]["readonly"] = bool(hc.get("ReadonlyRootfs"))
    if privileged:
        linux["maskedPaths"], linux["readonlyPaths"] = [], []
    else:
        if hc.get("MaskedPaths") is not None:
            linux["maskedPaths"] = list(hc["MaskedPaths"])
        if hc.get("ReadonlyPaths") is not None:
            linux["readonlyPaths"] = list(hc["ReadonlyPaths"])

    # --- namespaces
    def ns(kind: str, mode: str) -> dict[str, str] | None:
        if mode == "host":
            return None
        if mode.startswith("container:"):
            if not paths.get(kind):
                raise InvalidArgument(f"{kind} namespace of {mode}: no namespace path given")
            return {"type": kind, "path": paths[kind]}
        return {"type": kind}

    ipc = hc.get("IpcMode") or "private"
    wanted = [
        ns("pid", hc.get("PidMode") or ""),
        ns("network", net),
        ns("ipc", ipc),
        None if uts_host else {"type": "uts"},
        {"type": "mount"},
        None if hc.get("CgroupnsMode") == "host" else {"type": "cgroup"},
    ]
    linux["namespaces"] = [n for n in wanted if n is not None]

    # --- mounts
    mounts_out = []
    for m in spec["mounts"]:
        dest = m["destination"]
        if dest == "/dev/shm":
            if ipc == "host":
                m = {"destination": "/dev/shm", "type": "bind", "source": "/dev/shm", "options": ["rbind", "rprivate"]}
            elif ipc == "none" or ipc.startswith("container:"):
                continue  # none: no /dev/shm; container: shares the other's (later issue)
            else:
                m["options"] = [o for o in m["options"] if not o.startswith("size=")] + [f"size={int(hc.get('ShmSize') or 0) or 67108864}"]
        if dest == "/dev/mqueue" and ipc == "host":
            m = {"destination": "/dev/mqueue", "type": "bind", "source": "/dev/mqueue", "options": ["rbind", "rprivate"]}
        if privileged and dest in ("/sys", "/sys/fs/cgroup"):
            m = dict(m, options=[o for o in m["options"] if o != "ro"] + ["rw"])
        mounts_out.append(m)
    # the request's mounts (volumes, binds, tmpfs) after docker's; one at the path of a
    # default mount (a tmpfs on /dev/shm, say) replaces it
    own = {m["destination"] for m in mounts or []}
    spec["mounts"] = [m for m in mounts_out if m["destination"] not in own] + list(mounts or [])

    # --- devices and resources
    resources: dict[str, Any] = {}
    if privileged:
        linux["devices"] = host_devices()
        resources["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        resources["devices"] = [dict(r) for r in DOCKER_DEVICE_RULES]
    resources.update(limits_of(hc))
    if hc.get("BlkioWeight"):
        resources["blockIO"] = {"weight": int(hc["BlkioWeight"])}
    linux["resources"] = resources
    linux["cgroupsPath"] = f"{CGROUP_PARENT}/{container_id}"
    init = hc.get("Init")
    if init or (init is None and default_init):
        from dockyard.runtime.pid1 import ANNOTATION

        spec.setdefault("annotations", {})[ANNOTATION] = "true"
    if hc.get("Sysctls"):
        linux["sysctl"] = dict(hc["Sysctls"])
    return spec
