"""Container commands: run, create, ps, logs, start, stop, kill, rm, wait, inspect, container <sub>.

Each is the sequence of API calls docker/cli makes, with docker's output shapes and exit
codes (125 for a daemon error in run/create, the container's status for run and
``start -a``, 1 for other failures). Imports beyond argparse are lazy: start-up stays fast.
"""

from __future__ import annotations

import os
import sys
import time

from dockyard.cli.context import CLIError, Context
from dockyard.cli.flags import each, run_group
from dockyard.cli.flags import parse_filters as _filters
from dockyard.cli.main import new_parser

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (~3 ms)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any


def _ports_column(ports: list[dict[str, Any]]) -> str:
    if not ports:
        return ""
    from dockyard.cli.portflag import ports_column

    return ports_column(ports)


def _q(name: str) -> str:
    from dockyard.cli.client import quote

    return quote(name)


def _bools(p: argparse.ArgumentParser, args: list[str]) -> list[str]:
    """docker's boolean flags take ``--rm=false`` but never a separate value (``-i busybox``
    is -i, then the image): flags are ``store_true``, and ``=true``/``=false`` forms are
    rewritten here, up to the first positional argument."""
    out: list[str] = []
    actions = p._option_string_actions
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.partition("=")
        action = actions.get(name)
        if action is not None and action.nargs == 0 and eq and name.startswith("--"):
            if value.lower() in ("true", "1", "yes"):
                out.append(name)
            elif value.lower() in ("false", "0", "no"):
                if "--no-" + name[2:] in actions:  # a tri-state flag: "false" differs from unset
                    out.append("--no-" + name[2:])
            else:
                raise CLIError(f"invalid argument \"{value}\" for \"{name}\" flag: strconv.ParseBool: parsing "
                               f"\"{value}\": invalid syntax", 125)
            i += 1
            continue
        out.append(arg)
        if action is not None and action.nargs is None and not eq:
            if i + 1 < len(args):
                out.append(args[i + 1])
            i += 1
        i += 1
    return out + args[i:]


# ------------------------------------------------------------------ run / create


# run/create flags: (names, kind, help). kind: "bool" (store_true), "str" (one value),
# "list" (repeatable), "init" (a tri-state bool: unset, --init, --init=false). One table
# feeds both the fast parser below and argparse (help, and every input the fast parser
# leaves to it), so the two cannot drift apart.
_DETACH = (("-d", "--detach"), "bool", "Run container in background and print container ID")
_RUN_FLAGS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("--rm",), "bool", "Automatically remove the container when it exits"),
    (("--name",), "str", "Assign a name to the container"),
    (("-e", "--env"), "list", "Set environment variables"),
    (("--env-file",), "list", "Read in a file of environment variables"),
    (("-w", "--workdir"), "str", "Working directory inside the container"),
    (("-u", "--user"), "str", "Username or UID (format: <name|uid>[:<group|gid>])"),
    (("-h", "--hostname"), "str", "Container host name"),
    (("--entrypoint",), "str", "Overwrite the default ENTRYPOINT of the image"),
    (("-l", "--label"), "list", "Set meta data on a container"),
    (("-i", "--interactive"), "bool", "Keep STDIN open even if not attached"),
    (("-t", "--tty"), "bool", "Allocate a pseudo-TTY"),
    (("-m", "--memory"), "str", "Memory limit"),
    (("--memory-swap",), "str", "Swap limit equal to memory plus swap: '-1' to enable unlimited swap"),
    (("--cpus",), "str", "Number of CPUs"),
    (("-c", "--cpu-shares"), "str", "CPU shares (relative weight)"),
    (("--cpuset-cpus",), "str", "CPUs in which to allow execution (0-3, 0,1)"),
    (("--pids-limit",), "str", "Tune container pids limit (set -1 for unlimited)"),
    (("--ulimit",), "list", "Ulimit options"),
    (("--security-opt",), "list", "Security Options"),
    (("--init",), "init", "Run an init inside the container that forwards signals and reaps processes"),
    (("--cap-add",), "list", "Add Linux capabilities"),
    (("--cap-drop",), "list", "Drop Linux capabilities"),
    (("--privileged",), "bool", "Give extended privileges to this container"),
    (("--read-only",), "bool", "Mount the container's root filesystem as read only"),
    (("--network", "--net"), "str", "Connect a container to a network"),
    (("--network-alias",), "list", "Add network-scoped alias for the container"),
    (("--ip",), "str", "IPv4 address (e.g., 172.30.100.104)"),
    (("--mac-address",), "str", "Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    (("-p", "--publish"), "list", "Publish a container's port(s) to the host"),
    (("-P", "--publish-all"), "bool", "Publish all exposed ports to random ports"),
    (("--expose",), "list", "Expose a port or a range of ports"),
    (("--add-host",), "list", "Add a custom host-to-IP mapping (host:ip)"),
    (("--dns",), "list", "Set custom DNS servers"),
    (("--dns-search",), "list", "Set custom DNS search domains"),
    (("--dns-option",), "list", "Set DNS options"),
    (("--stop-signal",), "str", "Signal to stop the container"),
    (("--stop-timeout",), "str", "Timeout (in seconds) to stop a container"),
    (("--restart",), "str", "Restart policy to apply when a container exits (default \"no\")"),
    (("--health-cmd",), "str", "Command to run to check health"),
    (("--health-interval",), "str", "Time between running the check (ms|s|m|h) (default 0s)"),
    (("--health-timeout",), "str", "Maximum time to allow one check to run (ms|s|m|h) (default 0s)"),
    (("--health-retries",), "str", "Consecutive failures needed to report unhealthy"),
    (("--health-start-period",), "str", "Start period for the container to initialize before counting retries towards unstable (ms|s|m|h) (default 0s)"),
    (("--no-healthcheck",), "bool", "Disable any container-specified HEALTHCHECK"),
    (("--pull",), "str", "Pull image before running (\"always\", \"missing\", \"never\") (default \"missing\")"),
    (("-v", "--volume"), "list", "Bind mount a volume"),
    (("--mount",), "list", "Attach a filesystem mount to the container"),
    (("--tmpfs",), "list", "Mount a tmpfs directory"),
    (("--volumes-from",), "list", "Mount volumes from the specified container(s)"),
)
_DEFAULTS = {"bool": False, "str": None, "list": None, "init": None}


def _run_flags(run: bool) -> tuple[tuple[tuple[str, ...], str, str], ...]:
    return (_DETACH, *_RUN_FLAGS) if run else _RUN_FLAGS


def _dest(names: tuple[str, ...]) -> str:
    return names[-1].lstrip("-").replace("-", "_") if names[-1] != "--net" else "network"


def _run_parser(prog: str, description: str, run: bool) -> argparse.ArgumentParser:
    import argparse

    p = new_parser(prog, usage=f"{prog} [OPTIONS] IMAGE [COMMAND] [ARG...]", description=description)
    # -h is --hostname, as in docker; --help stays (argument groups copy the handler)
    p.conflict_handler = p._optionals.conflict_handler = "resolve"
    for names, kind, help_text in _run_flags(run):
        dest = _dest(names)
        if kind == "bool":
            p.add_argument(*names, dest=dest, action="store_true", help=help_text)
        elif kind == "list":
            p.add_argument(*names, dest=dest, action="append", default=[], help=help_text)
        elif kind == "init":
            p.add_argument(*names, dest=dest, action="store_true", default=None, help=help_text)
            p.add_argument("--no-" + names[0][2:], dest=dest, action="store_false", help=argparse.SUPPRESS)
        else:
            p.add_argument(*names, dest=dest, help=help_text)
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)
    return p


def _parse_run_args(prog: str, description: str, args: list[str], run: bool) -> Any:
    """The fast path parses what docker users type without importing argparse (~11 ms of
    the CLI's start-up); anything else — help, errors, argparse's abbreviations, odd
    values — goes to argparse, which then decides exactly as before."""
    o = _fast_run_args(args, run)
    if o is not None:
        return o
    p = _run_parser(prog, description, run)
    return p.parse_args(_bools(p, args))


class _Options:
    """Parsed flags as attributes, like argparse's Namespace (``types`` costs an import)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


def _fast_run_args(args: list[str], run: bool) -> Any:
    by_name: dict[str, tuple[str, str]] = {}
    values: dict[str, Any] = {}
    for names, kind, _help in _run_flags(run):
        dest = _dest(names)
        for n in names:
            by_name[n] = (dest, kind)
        values[dest] = [] if kind == "list" else _DEFAULTS[kind]

    def put(dest: str, kind: str, value: str) -> None:
        if kind == "list":
            values[dest].append(value)
        else:
            values[dest] = value

    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-" or not arg.startswith("-"):
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            spec = by_name.get(name)
            if spec is None:
                return None  # unknown, "--", --help, an abbreviation: argparse's call
            dest, kind = spec
            if kind in ("bool", "init"):
                if not eq or value.lower() in ("true", "1", "yes"):
                    values[dest] = True
                elif value.lower() in ("false", "0", "no"):
                    values[dest] = False if kind == "init" else values[dest]
                else:
                    return None  # argparse's path reports the bad value
            elif eq:
                put(dest, kind, value)
            else:
                if i + 1 >= len(args) or args[i + 1].startswith("-"):
                    return None
                put(dest, kind, args[i + 1])
                i += 1
        else:  # a cluster of short flags: -it, -e FOO, -eFOO
            if "=" in arg:
                return None
            j = 1
            while j < len(arg):
                spec = by_name.get("-" + arg[j])
                if spec is None:
                    return None
                dest, kind = spec
                if kind == "bool":
                    values[dest] = True
                    j += 1
                    continue
                rest = arg[j + 1:]
                if rest:
                    put(dest, kind, rest)
                elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                    put(dest, kind, args[i + 1])
                    i += 1
                else:
                    return None
                break
        i += 1
    if i >= len(args) or args[i] == "-":
        return None  # no image: argparse's error
    return _Options(**values, image=args[i], command=args[i + 1:])


def _env_entry(value: str) -> str | None:
    """docker's ValidateEnv: ``KEY`` alone takes the value from the CLI's environment
    (dropped when unset there)."""
    if "=" in value:
        if value.startswith("="):
            raise CLIError(f"invalid environment variable: {value}", 125)
        return value
    if value in os.environ:
        return f"{value}={os.environ[value]}"
    return None


def _read_env_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise CLIError(f"open {path}: {(e.strerror or str(e)).lower()}", 125) from None
    out = []
    for line in lines:
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        if "=" in line:
            k, v = line.split("=", 1)
            if not k.strip() or " " in k.strip():
                raise CLIError(f"variable '{k}' contains whitespaces", 125)
            out.append(f"{k.strip()}={v}")
        elif (entry := _env_entry(line.strip())) is not None:
            out.append(entry)
    return out


def _flag_error(value: str, flag: str, why: str) -> CLIError:
    return CLIError(f"invalid argument \"{value}\" for \"{flag}\" flag: {why}", 125)


def _go_int(value: str, flag: str) -> int:
    """A flag's int64 as Go's strconv.ParseInt reads it, with its error text."""
    import re

    if not re.fullmatch(r"[+-]?[0-9]+", value):
        raise _flag_error(value, flag, f"strconv.ParseInt: parsing \"{value}\": invalid syntax")
    n = int(value)
    if not -(2**63) <= n < 2**63:
        raise _flag_error(value, flag, f"strconv.ParseInt: parsing \"{value}\": value out of range")
    return n


def _size(value: str, flag: str) -> int:
    """docker's RAMInBytes (``512m`` = 512 MiB), with go-units' error texts."""
    import re

    from dockyard.cli import units
    from dockyard.errors import InvalidArgument

    try:
        return units.ram_in_bytes(value)
    except InvalidArgument:
        pass
    # the message: go-units splits after the last digit, dot or space into number and suffix
    sep = max(value.rfind(c) for c in "0123456789. ")
    if sep < 0:
        raise _flag_error(value, flag, f"invalid size: '{value}'")
    number = value[:sep] if value[sep] == " " else value[:sep + 1]
    suffix = value[sep + 1:]
    if not re.fullmatch(r"\d+(\.\d*)?|\.\d+", number):
        raise _flag_error(value, flag, f"strconv.ParseFloat: parsing \"{number}\": invalid syntax")
    raise _flag_error(value, flag, f"invalid suffix: '{suffix if len(suffix) > 3 else suffix.lower()}'")


def _ulimit(value: str) -> dict[str, Any]:
    """go-units ParseUlimit: ``name=soft[:hard]`` (hard defaults to soft)."""
    import re

    from dockyard.containers.config import ULIMITS

    name, eq, limits = value.partition("=")
    if not eq:
        raise _flag_error(value, "--ulimit", f"invalid ulimit argument: {value}")
    if name not in ULIMITS:
        raise _flag_error(value, "--ulimit", f"invalid ulimit type: {name}")
    parts = limits.split(":")
    if len(parts) > 2:
        raise _flag_error(value, "--ulimit", f"too many limit value arguments - {limits}, can only have up to two, "
                                             "`soft[:hard]`")
    numbers = []
    for part in reversed(parts):  # Go parses the hard limit first
        if not re.fullmatch(r"[+-]?[0-9]+", part) or not -(2**63) <= int(part) < 2**63:
            why = "invalid syntax" if not re.fullmatch(r"[+-]?[0-9]+", part) else "value out of range"
            raise _flag_error(value, "--ulimit", f"strconv.ParseInt: parsing \"{part}\": {why}")
        numbers.insert(0, int(part))
    soft, hard = numbers[0], numbers[-1]
    if hard != -1 and soft > hard:
        raise _flag_error(value, "--ulimit", f"ulimit soft limit must be less than or equal to hard limit: "
                                             f"{soft} > {hard}")
    return {"Name": name, "Hard": hard, "Soft": soft}


def _caps(values: list[str]) -> list[str] | None:
    """docker/cli's normalizeCaps: upper case, ``CAP_`` prefixed (but ``ALL``), sorted, once."""
    out = set()
    for value in values:
        cap = value.strip().upper()
        if cap != "ALL" and not cap.startswith("CAP_"):
            cap = "CAP_" + cap
        out.add(cap)
    return sorted(out) or None


def _security_opts(values: list[str]) -> list[str]:
    """docker/cli's parseSecurityOpts: ``key=value`` (or ``key:value``); a
    ``seccomp=<file>`` is read here and sent as its compacted JSON."""
    import json

    out = []
    for opt in values:
        key, sep, value = opt.partition("=")
        if not sep and key != "no-new-privileges":
            key, sep, value = opt.partition(":")
        if (not sep or not value) and key != "no-new-privileges":
            raise CLIError(f"Invalid --security-opt: {json.dumps(opt)}", 125)
        if key == "seccomp" and value not in ("builtin", "unconfined"):
            try:
                with open(value, "rb") as f:
                    raw = f.read()
            except OSError as e:
                raise CLIError(f"opening seccomp profile ({value}) failed: open {value}: "
                               f"{(e.strerror or str(e)).lower()}", 125) from None
            try:
                profile = json.loads(raw)
            except ValueError as e:
                raise CLIError(f"compacting json for seccomp profile ({value}) failed: {e}", 125) from None
            opt = "seccomp=" + json.dumps(profile, separators=(",", ":"))
        out.append(opt)
    return out


def _build_create_body(o: argparse.Namespace, attach_stdin: bool) -> dict[str, Any]:
    env: list[str] = []
    for path in o.env_file:
        env += _read_env_file(path)
    for value in o.env:
        # docker/cli's ValidateEnv: a KEY unset here goes as it is (the daemon then unsets it)
        entry = _env_entry(value)
        env.append(entry if entry is not None else value)
    labels: dict[str, str] = {}
    for value in o.label:
        k, _, v = value.partition("=")
        labels[k] = v
    config: dict[str, Any] = {
        "Image": o.image,
        "Env": env,
        "Labels": labels,
        "Tty": bool(o.tty),
        "OpenStdin": bool(o.interactive),
        "StdinOnce": bool(o.interactive and attach_stdin),
        "AttachStdin": bool(attach_stdin),
        "AttachStdout": not getattr(o, "detach", False),
        "AttachStderr": not getattr(o, "detach", False),
    }
    if o.command:
        config["Cmd"] = list(o.command)
    if o.entrypoint is not None:
        config["Entrypoint"] = [o.entrypoint] if o.entrypoint else [""]
    if o.workdir:
        config["WorkingDir"] = o.workdir
    if o.user:
        config["User"] = o.user
    if o.hostname:
        config["Hostname"] = o.hostname
    if o.stop_signal:
        config["StopSignal"] = o.stop_signal
    if o.stop_timeout is not None:
        config["StopTimeout"] = _go_int(o.stop_timeout, "--stop-timeout")
    host: dict[str, Any] = {
        "AutoRemove": bool(o.rm),
        "Privileged": bool(o.privileged),
        "ReadonlyRootfs": bool(o.read_only),
        "CapAdd": _caps(o.cap_add),
        "CapDrop": _caps(o.cap_drop),
        "NetworkMode": o.network or "default",
        "PublishAllPorts": bool(o.publish_all),
    }
    if o.publish or o.expose:
        from dockyard.cli.portflag import add_ports

        add_ports(o.publish, o.expose, config, host)
    endpoint: dict[str, Any] = {}
    if o.ip:
        endpoint["IPAMConfig"] = {"IPv4Address": o.ip}
    if o.network_alias:
        endpoint["Aliases"] = list(o.network_alias)
    if o.mac_address:
        endpoint["MacAddress"] = o.mac_address
    if endpoint:
        config["NetworkingConfig"] = {"EndpointsConfig": {o.network or "default": endpoint}}
    for flag, key in (("add_host", "ExtraHosts"), ("dns", "Dns"), ("dns_search", "DnsSearch"),
                      ("dns_option", "DnsOptions")):
        if getattr(o, flag):
            host[key] = list(getattr(o, flag))
    if o.memory:
        host["Memory"] = _size(o.memory, "-m, --memory")
    if o.memory_swap:
        host["MemorySwap"] = -1 if o.memory_swap == "-1" else _size(o.memory_swap, "--memory-swap")
    if o.cpus:
        try:
            host["NanoCpus"] = int(round(float(o.cpus) * 1e9))
        except ValueError:
            raise CLIError(f"invalid argument \"{o.cpus}\" for \"--cpus\" flag: failed to parse {o.cpus} as a rational number", 125) from None
    if o.cpu_shares is not None:
        host["CpuShares"] = _go_int(o.cpu_shares, "-c, --cpu-shares")
    if o.cpuset_cpus:
        host["CpusetCpus"] = o.cpuset_cpus
    if o.pids_limit is not None:
        host["PidsLimit"] = _go_int(o.pids_limit, "--pids-limit")
    if o.ulimit:
        host["Ulimits"] = [_ulimit(v) for v in o.ulimit]
    if o.security_opt:
        host["SecurityOpt"] = _security_opts(o.security_opt)
    if o.init is not None:  # unset: the daemon's default (daemon.json "init")
        host["Init"] = o.init
    _add_mounts(o, config, host)
    health = _healthcheck(o)
    if health is not None:
        config["Healthcheck"] = health
    if o.restart:
        if o.rm:
            raise CLIError("dockyard: conflicting options: cannot specify both --restart and --rm\n\n"
                           "Run 'dockyard run --help' for more information", 125)
        host["RestartPolicy"] = _restart_policy(o.restart)
    config["HostConfig"] = host
    return config


def _go_duration(value: str, flag: str) -> int:
    """Go's time.ParseDuration (``1m30s``, ``500ms``, ``1.5s``) in nanoseconds (without
    ``re``: this runs on the run path)."""
    s, total, i = value.strip(), 0.0, 0
    if s in ("0", ""):
        return 0
    while i < len(s):
        j = i
        while j < len(s) and (s[j].isdigit() or s[j] == "."):
            j += 1
        k = j
        while k < len(s) and not (s[k].isdigit() or s[k] == "."):
            k += 1
        number, unit = s[i:j], s[j:k]
        if not number or unit not in _DURATION_UNITS:
            raise CLIError(f'invalid argument "{value}" for "{flag}" flag: time: invalid duration "{value}"', 125)
        try:
            total += float(number) * _DURATION_UNITS[unit]  # seconds
        except ValueError:
            raise CLIError(f'invalid argument "{value}" for "{flag}" flag: time: invalid duration "{value}"', 125) from None
        i = k
    return round(total * 1e9)


def _healthcheck(o: Any) -> dict[str, Any] | None:
    timings = (o.health_interval, o.health_timeout, o.health_start_period, o.health_retries)
    if o.no_healthcheck:
        if o.health_cmd or any(t is not None for t in timings):
            raise CLIError("--no-healthcheck conflicts with --health-* options", 125)
        return {"Test": ["NONE"]}
    if not o.health_cmd and all(t is None for t in timings):
        return None
    hc: dict[str, Any] = {}
    if o.health_cmd:
        hc["Test"] = ["CMD-SHELL", o.health_cmd]
    for key, value, flag in (("Interval", o.health_interval, "--health-interval"),
                             ("Timeout", o.health_timeout, "--health-timeout"),
                             ("StartPeriod", o.health_start_period, "--health-start-period")):
        if value is not None:
            hc[key] = _go_duration(value, flag)
    if o.health_retries is not None:
        hc["Retries"] = _go_int(o.health_retries, "--health-retries")
    return hc


def _restart_policy(value: str) -> dict[str, Any]:
    """``name[:max-retries]`` (docker/cli's ParseRestartPolicy)."""
    name, sep, count = value.partition(":")
    if not sep:
        return {"Name": name, "MaximumRetryCount": 0}
    try:
        return {"Name": name, "MaximumRetryCount": int(count)}
    except ValueError:
        raise CLIError(f'invalid argument "{value}" for "--restart" flag: maximum retry count must be an integer',
                       125) from None


def _add_mounts(o: Any, config: dict[str, Any], host: dict[str, Any]) -> None:
    """-v (``/path`` an anonymous volume, ``src:dst[:opts]`` a bind), --mount, --tmpfs and
    --volumes-from, in the API fields docker's CLI fills."""
    for spec in o.volume or []:
        if ":" in spec:
            host.setdefault("Binds", []).append(spec)
        else:
            config.setdefault("Volumes", {})[spec] = {}
    if o.mount:
        from dockyard.cli.mountflag import parse_mount_flag

        host["Mounts"] = [parse_mount_flag(v) for v in o.mount]
    for spec in o.tmpfs or []:
        path, _, opts = spec.partition(":")
        host.setdefault("Tmpfs", {})[path] = opts
    if o.volumes_from:
        host["VolumesFrom"] = list(o.volumes_from)


def _tagged(image: str) -> str:
    name = image.split("@", 1)[0]
    if "@" in image or ":" in name.rsplit("/", 1)[-1]:
        return image
    return image + ":latest"


def _daemon_failure(prog: str, message: str) -> CLIError:
    cmd = prog.split()[-1]
    return CLIError(f"dockyard: Error response from daemon: {message}\nSee 'dockyard {cmd} --help'.", 125)


def _create(ctx: Context, o: argparse.Namespace, prog: str, attach_stdin: bool,
            meanwhile: Callable[[], object] | None = None) -> str:
    from dockyard.cli.client import APIError

    body = _build_create_body(o, attach_stdin)
    params = {"name": o.name} if o.name else None
    policy = o.pull or "missing"
    if policy not in ("always", "missing", "never"):
        raise CLIError(f'invalid pull option: \'{policy}\': must be one of "always", "missing" or "never"', 125)
    if policy == "always":
        from dockyard.cli.images import pull_image

        pull_image(ctx, _tagged(o.image), out=ctx.err)
    try:
        result = ctx.client.post("/containers/create", params=params, body=body, meanwhile=meanwhile).json()
    except APIError as e:
        if not (e.status == 404 and "No such image" in e.message) or policy == "never":
            raise _daemon_failure(prog, e.message) from None
        # as docker's CLI: pull the missing image, then create again
        ctx.error(f"Unable to find image '{_tagged(o.image)}' locally")
        from dockyard.cli.images import pull_image
        from dockyard.cli.progress import StreamError

        try:
            pull_image(ctx, _tagged(o.image), out=ctx.err)  # stdout is the container's
            result = ctx.client.post("/containers/create", params=params, body=body).json()
        except (APIError, StreamError) as e2:
            raise _daemon_failure(prog, getattr(e2, "message", None) or str(e2)) from None
    for warning in result.get("Warnings") or []:
        ctx.error(f"WARNING: {warning}")
    return result["Id"]


def cmd_create(ctx: Context, args: list[str], prog: str = "dockyard create") -> int:
    o = _parse_run_args(prog, "Create a new container", args, run=False)
    ctx.out.write(_create(ctx, o, prog, attach_stdin=False) + "\n")
    return 0


def cmd_run(ctx: Context, args: list[str], prog: str = "dockyard run") -> int:
    o = _parse_run_args(prog, "Create and run a new container from an image", args, run=True)
    # the attach code's imports overlap the daemon's create
    cid = _create(ctx, o, prog, attach_stdin=o.interactive and not o.detach,
                  meanwhile=None if o.detach else _import_attach)
    from dockyard.cli.client import APIError

    client = ctx.client
    if o.detach:
        try:
            client.post(f"/containers/{cid}/start")
        except APIError as e:
            raise _daemon_failure(prog, e.message) from None
        ctx.out.write(cid + "\n")
        return 0
    return _attach_start_wait(ctx, cid, prog, stdin=o.interactive, tty=o.tty,
                              condition="removed" if o.rm else "next-exit", code=125)


def _import_attach() -> None:
    """What attaching to a container imports (the hijack needs socket.py, ~4 ms)."""
    import socket  # noqa: F401

    import dockyard.cli.attach  # noqa: F401
    import dockyard.streams.stdcopy  # noqa: F401


def _attach_start_wait(ctx: Context, cid: str, prog: str, stdin: bool, tty: bool, condition: str, code: int) -> int:
    """docker's order: attach, register the wait, start, stream to the end, exit status."""
    from dockyard.cli.attach import pump
    from dockyard.cli.client import APIError

    client = ctx.client
    params = {"stream": 1, "stdout": 1, "stderr": 1}
    if stdin:
        params["stdin"] = 1
    try:
        sock = client.hijack("POST", f"/containers/{cid}/attach", params=params)
    except APIError as e:
        raise _failure(prog, e.message, code) from None
    try:
        waiter = client.post(f"/containers/{cid}/wait", params={"condition": condition}, stream=True)
        client.post(f"/containers/{cid}/start")
    except APIError as e:
        sock.close()
        raise _failure(prog, e.message, code) from None
    except BaseException:
        sock.close()
        raise
    sys.stdout.flush()
    sys.stderr.flush()

    def resize(height: int, width: int) -> None:
        client.post(f"/containers/{cid}/resize", params={"h": height, "w": width})

    pump(sock, sys.stdin if stdin else None, sys.stdout, sys.stderr, tty=tty, on_resize=resize if tty else None)
    result = waiter.json() or {}
    error = (result.get("Error") or {}).get("Message") if isinstance(result.get("Error"), dict) else None
    if error:
        ctx.error(error)
        return code
    return int(result.get("StatusCode", code))


def _failure(prog: str, message: str, code: int) -> CLIError:
    if code == 125:
        return _daemon_failure(prog, message)
    return CLIError(f"Error response from daemon: {message}", code)


# ------------------------------------------------------------------ ps


def _ellipsis(s: str, width: int) -> str:
    return s if len(s) <= width else s[: width - 1] + "…"


def cmd_ps(ctx: Context, args: list[str], prog: str = "dockyard ps") -> int:
    import json

    p = new_parser(prog, description="List containers")
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("-f", "--filter", action="append", help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("-n", "--last", type=int, default=-1, help="Show n last created containers (includes all states)")
    p.add_argument("-l", "--latest", action="store_true", help="Show the latest created container (includes all states)")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    o = p.parse_args(_bools(p, args))
    from dockyard.cli import units

    params: dict[str, Any] = {"all": o.all}
    limit = 1 if o.latest else o.last
    if limit > 0:
        params["limit"] = limit
    flt = _filters(o.filter)
    if flt:
        params["filters"] = flt
    if o.size or (o.format and ".Size" in o.format):  # docker asks for sizes when shown
        params["size"] = True
    containers = ctx.client.get("/containers/json", params=params).json()
    trunc = not o.no_trunc
    if o.quiet:
        ctx.out.write("".join((units.truncate_id(c["Id"]) if trunc else c["Id"]) + "\n" for c in containers))
        return 0
    now = time.time()
    rows = []
    for c in containers:
        names = [n.lstrip("/") for n in c.get("Names") or []]
        if trunc:
            names = [n for n in names if "/" not in n] or names[:1]
        image = c.get("Image") or ""
        if trunc and image.startswith("sha256:"):
            image = units.truncate_id(image)
        command = c.get("Command") or ""
        labels = c.get("Labels") or {}
        created = c.get("Created", 0)
        networks = (c.get("NetworkSettings") or {}).get("Networks") or {}
        rows.append({
            "ID": units.truncate_id(c["Id"]) if trunc else c["Id"],
            "Image": image,
            "Command": json.dumps(_ellipsis(command, 20) if trunc else command, ensure_ascii=False),
            "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(created)),
            "RunningFor": units.time_ago(created, now),
            "Status": c.get("Status", ""),
            "State": c.get("State", ""),
            "Ports": _ports_column(c.get("Ports") or []),
            "Names": ",".join(names),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            "Mounts": "",
            "Networks": ",".join(sorted(networks)),
            "Size": units.human_size(c.get("SizeRw") or 0, 3) + (
                f" (virtual {units.human_size(c['SizeRootFs'], 3)})" if c.get("SizeRootFs") else ""),
            "LocalVolumes": "0",
        })
    from dockyard.cli.formatting import render

    default = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    if o.size:
        default += "\t{{.Size}}"
    headers = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
               "RunningFor": "CREATED", "Status": "STATUS", "State": "STATE", "Ports": "PORTS", "Names": "NAMES",
               "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS", "Size": "SIZE",
               "LocalVolumes": "LOCAL VOLUMES"}
    ctx.out.write(render(rows, o.format, default, headers))
    return 0


# ------------------------------------------------------------------ logs

_GO_DURATION = r"(?:(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h))+"  # compiled on use: no re at start-up
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def _timestamp(value: str | None, now: float) -> str | None:
    """docker's GetTimestamp: a Go duration ("10m") is relative to now; the rest
    (epoch seconds, RFC3339) goes to the daemon as given."""
    import re

    if not value:
        return None
    if re.fullmatch(_GO_DURATION, value):
        secs = sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value))
        return f"{now - secs:.9f}"
    return value


def cmd_logs(ctx: Context, args: list[str], prog: str = "dockyard logs") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] CONTAINER", description="Fetch the logs of a container")
    p.add_argument("container")
    p.add_argument("--details", action="store_true", help="Show extra details provided to logs")
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("--since", help="Show logs since timestamp or relative (e.g. 42m for 42 minutes)")
    p.add_argument("--until", help="Show logs before a timestamp or relative (e.g. 42m for 42 minutes)")
    p.add_argument("-n", "--tail", default="all", help="Number of lines to show from the end of the logs")
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    o = p.parse_args(_bools(p, args))
    client = ctx.client
    info = client.get(f"/containers/{_q(o.container)}/json").json()
    now = time.time()
    params: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": o.follow, "timestamps": o.timestamps,
                              "tail": o.tail}
    for key in ("since", "until"):
        ts = _timestamp(getattr(o, key), now)
        if ts:
            params[key] = ts
    resp = client.get(f"/containers/{_q(o.container)}/logs", params=params, stream=True)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    sys.stdout.flush()
    with resp:
        if (info.get("Config") or {}).get("Tty"):
            for chunk in resp.iter_chunks():
                out.write(chunk)
                out.flush()
            return 0
        from dockyard.streams.stdcopy import STDERR, SYSTEMERR, Demuxer

        demuxer = Demuxer(partial=True)
        for chunk in resp.iter_chunks():
            for stream_id, payload in demuxer.feed(chunk):
                if stream_id == SYSTEMERR:
                    raise CLIError(f"error from daemon in stream: {payload.decode(errors='replace').strip()}")
                target = err if stream_id == STDERR else out
                target.write(payload)
                target.flush()
        demuxer.close()
    return 0


# ------------------------------------------------------------------ start / stop / kill / rm / wait


def cmd_start(ctx: Context, args: list[str], prog: str = "dockyard start") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] CONTAINER [CONTAINER...]", description="Start one or more stopped containers")
    p.add_argument("containers", nargs="+")
    p.add_argument("-a", "--attach", action="store_true", help="Attach STDOUT/STDERR and forward signals")
    p.add_argument("-i", "--interactive", action="store_true", help="Attach container's STDIN")
    o = p.parse_args(_bools(p, args))
    if o.attach or o.interactive:
        if len(o.containers) > 1:
            raise CLIError("you cannot start and attach multiple containers at once")
        info = ctx.client.get(f"/containers/{_q(o.containers[0])}/json").json()
        cfg = info.get("Config") or {}
        return _attach_start_wait(ctx, info["Id"], prog, stdin=o.interactive and bool(cfg.get("OpenStdin")),
                                  tty=bool(cfg.get("Tty")), condition="next-exit", code=1)
    failed = False
    from dockyard.cli.client import APIError

    for name in o.containers:
        try:
            ctx.client.post(f"/containers/{_q(name)}/start")
        except APIError as e:
            ctx.error(f"Error response from daemon: {e.message}")
            failed = True
            continue
        ctx.out.write(name + "\n")
    if failed:
        ctx.error("Error: failed to start containers: " + ", ".join(o.containers))
    return 1 if failed else 0


def cmd_stop(ctx: Context, args: list[str], prog: str = "dockyard stop") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] CONTAINER [CONTAINER...]", description="Stop one or more running containers")
    p.add_argument("containers", nargs="+")
    p.add_argument("-t", "--time", "--timeout", type=int, dest="time", help="Seconds to wait before killing the container")
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    o = p.parse_args(_bools(p, args))
    params: dict[str, Any] = {}
    if o.time is not None:
        params["t"] = o.time
    if o.signal:
        params["signal"] = o.signal
    return each(ctx, o.containers, lambda n: ctx.client.post(f"/containers/{_q(n)}/stop", params=params))


def cmd_kill(ctx: Context, args: list[str], prog: str = "dockyard kill") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] CONTAINER [CONTAINER...]", description="Kill one or more running containers")
    p.add_argument("containers", nargs="+")
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    o = p.parse_args(_bools(p, args))
    params = {"signal": o.signal} if o.signal else None
    return each(ctx, o.containers, lambda n: ctx.client.post(f"/containers/{_q(n)}/kill", params=params))


def cmd_rm(ctx: Context, args: list[str], prog: str = "dockyard rm") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] CONTAINER [CONTAINER...]", description="Remove one or more containers")
    p.add_argument("containers", nargs="+")
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of a running container (uses SIGKILL)")
    p.add_argument("-v", "--volumes", action="store_true", help="Remove anonymous volumes associated with the container")
    import argparse

    p.add_argument("-l", "--link", action="store_true", help=argparse.SUPPRESS)
    o = p.parse_args(_bools(p, args))
    params = {"force": o.force, "v": o.volumes}
    return each(ctx, o.containers, lambda n: ctx.client.delete(f"/containers/{_q(n)}", params=params))


def cmd_wait(ctx: Context, args: list[str], prog: str = "dockyard wait") -> int:
    p = new_parser(prog, usage=f"{prog} CONTAINER [CONTAINER...]", description="Block until one or more containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+")
    o = p.parse_args(_bools(p, args))

    def wait(name: str) -> str:
        result = ctx.client.post(f"/containers/{_q(name)}/wait", stream=True).json() or {}
        err = result.get("Error")
        if isinstance(err, dict) and err.get("Message"):
            from dockyard.cli.client import APIError

            raise APIError(500, err["Message"])
        return str(result.get("StatusCode", -1))

    return each(ctx, o.containers, wait)


# ------------------------------------------------------------------ inspect


def _print_objects(ctx: Context, objects: list[Any], fmt: str | None) -> None:
    from dockyard.cli.images import print_json_or_format

    print_json_or_format(ctx, objects, fmt)


def cmd_container_inspect(ctx: Context, args: list[str], prog: str = "dockyard container inspect") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] CONTAINER [CONTAINER...]", description="Display detailed information on one or more containers")
    p.add_argument("containers", nargs="+")
    p.add_argument("-f", "--format")
    p.add_argument("-s", "--size", action="store_true")
    o = p.parse_args(_bools(p, args))
    return _inspect(ctx, o.containers, o.format, ("container",), "Error response from daemon: No such container: {}")


def cmd_inspect(ctx: Context, args: list[str], prog: str = "dockyard inspect") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] NAME|ID [NAME|ID...]", description="Return low-level information on Docker objects")
    p.add_argument("names", nargs="+")
    p.add_argument("-f", "--format")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("--type")
    o = p.parse_args(_bools(p, args))
    if o.type and o.type not in ("container", "image"):
        raise CLIError(f"\"{o.type}\" is not a valid value for --type", 125)
    kinds = (o.type,) if o.type else ("container", "image")
    return _inspect(ctx, o.names, o.format, kinds, "Error: No such object: {}")


def _inspect(ctx: Context, names: list[str], fmt: str | None, kinds: tuple[str, ...], missing_message: str) -> int:
    from dockyard.cli.client import APIError

    paths = {"container": "/containers/{}/json", "image": "/images/{}/json"}
    found, missing = [], []
    for name in names:
        for kind in kinds:
            try:
                found.append(ctx.client.get(paths[kind].format(_q(name) if kind == "container" else name)).json())
                break
            except APIError as e:
                if e.status != 404:
                    raise
        else:
            missing.append(name)
    if found or not missing:
        _print_objects(ctx, found, fmt)
    for name in missing:
        ctx.error(missing_message.format(name))
    return 1 if missing else 0


# ------------------------------------------------------------------ container <sub>

_CONTAINER_SUBCOMMANDS = {
    "ls": cmd_ps, "list": cmd_ps, "ps": cmd_ps, "run": cmd_run, "create": cmd_create, "start": cmd_start,
    "stop": cmd_stop, "kill": cmd_kill, "rm": cmd_rm, "remove": cmd_rm, "logs": cmd_logs, "wait": cmd_wait,
    "inspect": cmd_container_inspect,
}


def _lazy(module: str, func: str) -> Any:
    """A subcommand of another command module, imported only when it runs."""

    def call(ctx: Context, args: list[str], prog: str) -> int:
        import importlib

        return getattr(importlib.import_module(f"dockyard.cli.{module}"), func)(ctx, args, prog=prog)

    return call


_CONTAINER_SUBCOMMANDS.update({name: _lazy(module, f"cmd_{name}") for name, module in (
    ("restart", "lifecycle"), ("pause", "lifecycle"), ("unpause", "lifecycle"), ("rename", "lifecycle"),
    ("top", "lifecycle"), ("stats", "stats"), ("commit", "container_fs"), ("diff", "container_fs"),
    ("export", "container_fs"), ("update", "lifecycle"), ("cp", "cp"))})
_CONTAINER_SUBCOMMANDS["prune"] = _lazy("system", "cmd_container_prune")


def cmd_container(ctx: Context, args: list[str]) -> int:
    return run_group(ctx, args, "container", "Manage containers", _CONTAINER_SUBCOMMANDS)
