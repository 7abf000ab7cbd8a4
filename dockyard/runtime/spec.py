"""config.json: read, validate (before anything is created), and the default spec.

``load_spec`` rejects every problem it can see without touching the system — a malformed
document, a missing rootfs, an unknown capability, namespace, rlimit or seccomp action, a
bad uid map, a hostname without a UTS namespace — with one ``InvalidArgument`` line. The
lifecycle calls it before it makes a state directory, a cgroup or a process, so a bad
bundle leaves nothing behind. Problems only the kernel can find (a map it refuses, a
mount that fails) are caught later and rolled back by the lifecycle.

``default_spec`` is what ``dockyard-runtime spec`` writes: runc's layout with Docker's
defaults (the 14 capabilities, Docker's mounts, masked and read-only paths, device rules
and the default seccomp profile).
"""

from __future__ import annotations

import os

from dockyard import jsonc
from dockyard.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs start-up time
    from typing import Any

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
CAP_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")
RLIMITS = (
    "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
    "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
)
SECCOMP_ACTIONS = (
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
)
PROPAGATIONS = ("", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable")

# Docker's device cgroup rules: deny everything, then mknod of anything and the usual nodes.
DOCKER_DEVICE_RULES: list[dict[str, Any]] = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *({"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
      for ma, mi in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (10, 200))),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
]


def _bad(msg: str) -> InvalidArgument:
    return InvalidArgument(f"config.json: {msg}")


def load_spec(bundle: str) -> dict[str, Any]:
    """Read ``<bundle>/config.json`` and validate it. Returns the parsed document, with
    ``root.path`` made absolute (the caller's cwd must not matter later)."""
    bundle = os.path.abspath(bundle)
    if not os.path.isdir(bundle):
        raise InvalidArgument(f"bundle {bundle} does not exist or is not a directory")
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise InvalidArgument(f"bundle {bundle} has no config.json") from None
    try:
        spec = jsonc.loads(raw)
    except ValueError as e:
        raise _bad(f"invalid JSON: {e}") from None
    validate_spec(spec, bundle)
    return spec


def rootfs_path(spec: dict[str, Any], bundle: str) -> str:
    path = spec["root"]["path"]
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(bundle, path))


def validate_spec(spec: Any, bundle: str) -> None:
    if not isinstance(spec, dict):
        raise _bad("the document is not a JSON object")
    _check_type(spec, "ociVersion", str, "ociVersion")
    root = spec.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str) or not root["path"]:
        raise _bad("root.path is required")
    _check_type(root, "readonly", bool, "root.readonly")
    rootfs = rootfs_path(spec, bundle)
    if not os.path.isdir(rootfs):
        raise _bad(f"rootfs ({rootfs}) does not exist or is not a directory")
    if not isinstance(spec.get("process"), dict):
        raise _bad("process is required")
    validate_process(spec["process"])
    _check_type(spec, "hostname", str, "hostname")
    _check_type(spec, "domainname", str, "domainname")
    _check_type(spec, "annotations", dict, "annotations")
    _validate_mounts(spec.get("mounts", []))
    linux = spec.get("linux", {})
    if not isinstance(linux, dict):
        raise _bad("linux must be an object")
    nsmap = _validate_namespaces(linux)
    new_ns = {t for t, p in nsmap.items() if p is None}
    if spec.get("hostname") and "uts" not in new_ns:
        raise _bad("unable to set hostname without a private UTS namespace")
    if spec.get("domainname") and "uts" not in new_ns:
        raise _bad("unable to set domainname without a private UTS namespace")
    _validate_id_maps(linux, new_ns)
    _validate_sysctls(linux.get("sysctl"), set(nsmap))
    for key in ("maskedPaths", "readonlyPaths"):
        paths = linux.get(key, [])
        if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
            raise _bad(f"linux.{key} must be a list of absolute paths")
    _check_type(linux, "cgroupsPath", str, "linux.cgroupsPath")
    _check_type(linux, "resources", dict, "linux.resources")
    if linux.get("rootfsPropagation", "") not in PROPAGATIONS:
        raise _bad(f"unknown linux.rootfsPropagation {linux['rootfsPropagation']!r}")
    if linux.get("seccomp") is not None:
        validate_seccomp(linux["seccomp"])


def validate_process(process: dict[str, Any]) -> None:
    """Also used for ``exec --process``."""
    args = process.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise _bad("process.args must be a non-empty list of strings")
    env = process.get("env", [])
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise _bad("process.env must be a list of strings")
    cwd = process.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise _bad("process.cwd must be an absolute path")
    _check_type(process, "terminal", bool, "process.terminal")
    _check_type(process, "noNewPrivileges", bool, "process.noNewPrivileges")
    user = process.get("user", {})
    if not isinstance(user, dict):
        raise _bad("process.user must be an object")
    for key in ("uid", "gid", "umask"):
        if key in user and not _is_uint(user[key]):
            raise _bad(f"process.user.{key} must be a non-negative integer")
    gids = user.get("additionalGids", [])
    if not isinstance(gids, list) or not all(_is_uint(g) for g in gids):
        raise _bad("process.user.additionalGids must be a list of non-negative integers")
    oom = process.get("oomScoreAdj")
    if oom is not None and (not isinstance(oom, int) or isinstance(oom, bool) or not -1000 <= oom <= 1000):
        raise _bad("process.oomScoreAdj must be an integer in [-1000, 1000]")
    caps = process.get("capabilities", {})
    if not isinstance(caps, dict):
        raise _bad("process.capabilities must be an object")
    for key, names in caps.items():
        if key not in CAP_SETS:
            raise _bad(f"unknown capability set process.capabilities.{key}")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _bad(f"process.capabilities.{key} must be a list of names")
    if caps:
        from dockyard.runtime import capabilities

        for key, names in caps.items():
            try:
                capabilities.parse(names)
            except (InvalidArgument, KeyError, ValueError) as e:
                raise _bad(f"process.capabilities.{key}: {_msg(e)}") from None
    rlimits = process.get("rlimits", [])
    if not isinstance(rlimits, list):
        raise _bad("process.rlimits must be a list")
    seen = set()
    for rl in rlimits:
        if not isinstance(rl, dict) or rl.get("type") not in RLIMITS:
            raise _bad(f"unknown rlimit {rl.get('type') if isinstance(rl, dict) else rl!r}")
        if not _is_uint(rl.get("soft")) or not _is_uint(rl.get("hard")):
            raise _bad(f"rlimit {rl['type']}: soft and hard must be non-negative integers")
        if rl["soft"] > rl["hard"]:
            raise _bad(f"rlimit {rl['type']}: soft limit {rl['soft']} is above the hard limit {rl['hard']}")
        if rl["type"] in seen:
            raise _bad(f"rlimit {rl['type']} given twice")
        seen.add(rl["type"])


def validate_seccomp(seccomp: Any) -> None:
    """The shape and the action names. Syscall names, operators and architectures are
    judged by libseccomp when the lifecycle compiles the filter (seccomp.prepare), which
    it does before creating anything; compiling it here too would cost a millisecond or
    two of every start."""
    if not isinstance(seccomp, dict):
        raise _bad("linux.seccomp must be an object")
    if seccomp.get("defaultAction") not in SECCOMP_ACTIONS:
        raise _bad(f"unknown seccomp action {seccomp.get('defaultAction')!r} (linux.seccomp.defaultAction)")
    rules = seccomp.get("syscalls", [])
    if not isinstance(rules, list):
        raise _bad("linux.seccomp.syscalls must be a list")
    for rule in rules:
        if not isinstance(rule, dict):
            raise _bad("linux.seccomp.syscalls entries must be objects")
        if rule.get("action") not in SECCOMP_ACTIONS:
            raise _bad(f"unknown seccomp action {rule.get('action')!r}")
        names = rule.get("names", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _bad("linux.seccomp.syscalls[].names must be a list of strings")


def _validate_mounts(mounts: Any) -> None:
    if not isinstance(mounts, list):
        raise _bad("mounts must be a list")
    for m in mounts:
        if not isinstance(m, dict) or not isinstance(m.get("destination"), str) or not m["destination"].startswith("/"):
            raise _bad(f"mount destination must be an absolute path: {m!r}")
        for key in ("type", "source"):
            _check_type(m, key, str, f"mount {m['destination']}: {key}")
        opts = m.get("options", [])
        if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
            raise _bad(f"mount {m['destination']}: options must be a list of strings")


def _validate_namespaces(linux: dict[str, Any]) -> dict[str, str | None]:
    """{type: path, or None for a new namespace}."""
    entries = linux.get("namespaces", [])
    if not isinstance(entries, list):
        raise _bad("linux.namespaces must be a list")
    found: dict[str, str | None] = {}
    for ns in entries:
        if not isinstance(ns, dict) or ns.get("type") not in NAMESPACE_TYPES:
            raise _bad(f"unknown namespace type {ns.get('type') if isinstance(ns, dict) else ns!r}")
        if ns["type"] in found:
            raise _bad(f"namespace {ns['type']} given twice")
        path = ns.get("path") or None
        if path is not None and (not isinstance(path, str) or not os.path.exists(path)):
            raise _bad(f"namespace {ns['type']} path {path!r} does not exist")
        found[ns["type"]] = path
    if found.get("mount", "missing") is not None:
        # the rootfs is assembled with mounts; doing that in the host's namespace would leak
        raise _bad("a new mount namespace is required")
    return found


def _validate_id_maps(linux: dict[str, Any], new_ns: set[str]) -> None:
    for key in ("uidMappings", "gidMappings"):
        maps = linux.get(key, [])
        if not isinstance(maps, list):
            raise _bad(f"linux.{key} must be a list")
        for m in maps:
            if not isinstance(m, dict) or not all(_is_uint(m.get(k)) for k in ("containerID", "hostID", "size")):
                raise _bad(f"bad {key} entry {m!r}: containerID, hostID and size must be non-negative integers")
            if m["size"] == 0:
                raise _bad(f"bad {key} entry {m!r}: size must be at least 1")
            if m["hostID"] + m["size"] > 2**32 - 1 or m["containerID"] + m["size"] > 2**32 - 1:
                raise _bad(f"bad {key} entry {m!r}: range exceeds the 32-bit id space")
        if maps and "user" not in new_ns:
            raise _bad(f"linux.{key} given without a new user namespace")
    if "user" in new_ns and not (linux.get("uidMappings") and linux.get("gidMappings")):
        raise _bad("a new user namespace needs linux.uidMappings and linux.gidMappings")


def _validate_sysctls(sysctls: Any, namespaces: set[str]) -> None:
    if not sysctls:
        return
    from dockyard.runtime import rootfs  # Docker's rule lives with the code that writes them

    try:
        rootfs.validate_sysctls(sysctls, namespaces)
    except InvalidArgument as e:
        raise _bad(str(e)) from None


def _check_type(obj: dict[str, Any], key: str, typ: type, where: str) -> None:
    if key in obj and obj[key] is not None and not isinstance(obj[key], typ):
        raise _bad(f"{where} must be a {typ.__name__}")


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _msg(e: BaseException) -> str:
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


# --------------------------------------------------------------------------- defaults


def default_spec(args: list[str] | None = None, *, terminal: bool = False, hostname: str = "dockyard",
                 rootfs: str = "rootfs", seccomp_profile: bool = True) -> dict[str, Any]:
    """A config.json like ``runc spec`` writes, with Docker's defaults (``seccomp_profile``:
    False for a caller that sets ``linux.seccomp`` itself — building it costs ~0.4 ms)."""
    from dockyard.runtime import capabilities, seccomp
    from dockyard.runtime import rootfs as rootfs_mod

    caps = list(capabilities.DEFAULT_CAPS)
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args or ["sh"]),
            "env": [DEFAULT_PATH, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": hostname,
        "mounts": list(rootfs_mod.default_mounts()),
        "linux": {
            "resources": {"devices": [dict(r) for r in DOCKER_DEVICE_RULES]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": list(rootfs_mod.DOCKER_MASKED_PATHS),
            "readonlyPaths": list(rootfs_mod.DOCKER_READONLY_PATHS),
        },
    }
    if seccomp_profile:
        spec["linux"]["seccomp"] = seccomp.default_profile(caps)
    return spec
