"""``dockyard-runtime``: runc's command-line interface over dockyard.runtime.container.

Start-up time is part of every container start, so this module imports only the standard
library modules it needs to parse arguments; the runtime itself is imported by the
command that needs it.

Exit status: 0 on success, 1 on an error (one line on stderr, ``dockyard-runtime: ...``,
and in ``--log`` if given); ``run`` and ``exec`` in the foreground exit with the
container process's status (128 + n when it was killed by signal n).
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing only: importing it costs start-up time
    from typing import Any

PROG = "dockyard-runtime"
VERSION = "0.1.0"


class _Log:
    """runc's --log / --log-format: logrus-style text lines or JSON objects."""

    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path, self.fmt, self.debug_on = path, fmt, debug

    def _write(self, level: str, msg: str, kind: str | None = None) -> None:
        if not self.path:
            return
        from dockyard.runtime.state import now_rfc3339

        when = now_rfc3339()
        if self.fmt == "json":
            entry = {"level": level, "msg": msg, "time": when}
            if kind:
                entry["kind"] = kind  # the dockyard.errors class, for Runtime's callers
            line = json.dumps(entry)
        else:
            line = f'time="{when}" level={level} msg={json.dumps(msg)}'
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass  # logging must never turn a success into a failure

    def error(self, msg: str, kind: str | None = None) -> None:
        self._write("error", msg, kind)
        print(f"{PROG}: {msg}", file=sys.stderr, flush=True)

    def warn(self, msg: str) -> None:
        self._write("warning", msg)
        print(f"{PROG}: warning: {msg}", file=sys.stderr, flush=True)

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self._write("debug", msg)
            print(f"{PROG}: debug: {msg}", file=sys.stderr, flush=True)


class UsageError(Exception):
    """A command line we cannot parse (exit status 1, like any other error)."""


# flag kinds: a bool switch, or one value (str / int), or a repeatable value (list)
_B, _S, _I, _LS, _LI = "bool", "str", "int", "list", "list-int"

_GLOBAL_FLAGS: dict[str, tuple[str, str]] = {
    "root": ("root", _S), "log": ("log", _S), "log-format": ("log_format", _S),
    "debug": ("debug", _B), "systemd-cgroup": ("systemd_cgroup", _B), "rootless": ("rootless", _S),
}
_CREATE_FLAGS = {
    "bundle": ("bundle", _S), "b": ("bundle", _S), "console-socket": ("console_socket", _S),
    "pid-file": ("pid_file", _S), "no-pivot": ("no_pivot", _B), "no-new-keyring": ("no_new_keyring", _B),
    "preserve-fds": ("preserve_fds", _I),
}
# command -> (flags, positional names, name of the trailing argument list or None)
_COMMANDS: dict[str, tuple[dict[str, tuple[str, str]], tuple[str, ...], str | None]] = {
    "create": (_CREATE_FLAGS, ("id",), None),
    "run": ({**_CREATE_FLAGS, "detach": ("detach", _B), "d": ("detach", _B), "keep": ("keep", _B)}, ("id",), None),
    "start": ({}, ("id",), None),
    "state": ({}, ("id",), None),
    "pause": ({}, ("id",), None),
    "resume": ({}, ("id",), None),
    "kill": ({"all": ("all", _B), "a": ("all", _B)}, ("id", "signal?"), None),
    "delete": ({"force": ("force", _B), "f": ("force", _B)}, ("id",), None),
    "ps": ({"format": ("format", _S), "f": ("format", _S)}, ("id",), "ps_args"),
    "list": ({"format": ("format", _S), "f": ("format", _S), "quiet": ("quiet", _B), "q": ("quiet", _B)}, (), None),
    "exec": ({
        "process": ("process", _S), "p": ("process", _S), "tty": ("tty", _B), "t": ("tty", _B),
        "console-socket": ("console_socket", _S), "user": ("user", _S), "u": ("user", _S),
        "additional-gids": ("additional_gids", _LI), "g": ("additional_gids", _LI), "cwd": ("cwd", _S),
        "env": ("env", _LS), "e": ("env", _LS), "cap": ("cap", _LS), "c": ("cap", _LS),
        "no-new-privs": ("no_new_privs", _B), "detach": ("detach", _B), "d": ("detach", _B),
        "pid-file": ("pid_file", _S), "preserve-fds": ("preserve_fds", _I),
    }, ("id",), "args"),
    "events": ({"stats": ("stats", _B)}, ("id",), None),
    "spec": ({"bundle": ("bundle", _S), "b": ("bundle", _S), "rootless": ("rootless", _B)}, (), None),
    "features": ({}, (), None),
}
_ALIASES = {"ls": "list"}
_DEFAULTS: dict[str, Any] = {
    "root": "/run/dockyard-runtime", "log": None, "log_format": "text", "bundle": ".", "format": "table",
    "signal": "SIGTERM", "preserve_fds": 0,
}

USAGE = f"""usage: {PROG} [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND ...

commands (runc's interface):
  create [--bundle B] [--console-socket S] [--pid-file F] [--no-pivot] [--preserve-fds N] ID
  run    [-d] [--keep] [--bundle B] [create flags] ID
  start ID | state ID | pause ID | resume ID
  kill   [--all] ID [SIGNAL]
  delete [-f] ID
  exec   [--process P | -t -u UID[:GID] --cwd D -e K=V --cap C --no-new-privs ...] [-d] ID [ARGS...]
  ps     [--format table|json] ID [PS-ARGS...]
  list   [--format table|json] [-q]
  events --stats ID
  spec   [--bundle B]
  features
"""


class Args:
    """The parsed command line: attributes for every flag, positional and default."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:
        return _DEFAULTS.get(name, [] if name in ("env", "cap", "additional_gids", "args", "ps_args") else None)


def parse_args(argv: list[str]) -> Args:
    """runc's (urfave/cli) conventions: global flags, the command, its flags, then its
    positionals; ``-x``/``--x`` and ``--x=v`` alike. Hand-written rather than argparse:
    argparse costs several milliseconds of imports on every container start."""
    values: dict[str, Any] = {}
    i = _parse_flags(argv, 0, _GLOBAL_FLAGS, values, stop_at_positional=True)
    if i >= len(argv):
        raise UsageError("no command given (try --help)")
    cmd = _ALIASES.get(argv[i], argv[i])
    if cmd not in _COMMANDS:
        raise UsageError(f"unknown command {argv[i]!r} (try --help)")
    values["cmd"] = cmd
    flags, positionals, rest_name = _COMMANDS[cmd]
    i += 1
    for name in positionals:
        i = _parse_flags(argv, i, flags, values, stop_at_positional=True)
        if i >= len(argv):
            if name.endswith("?"):
                break
            raise UsageError(f"{cmd}: missing {name.upper()}")
        values[name.rstrip("?")] = argv[i]
        i += 1
    if rest_name:
        if i < len(argv) and argv[i] == "--":
            i += 1
        values[rest_name] = argv[i:]
    else:
        i = _parse_flags(argv, i, flags, values, stop_at_positional=False)
        if i < len(argv):
            raise UsageError(f"{cmd}: unexpected argument {argv[i]!r}")
    return Args(values)


def _parse_flags(argv: list[str], i: int, flags: dict[str, tuple[str, str]], values: dict[str, Any],
                 *, stop_at_positional: bool) -> int:
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            sys.stdout.write(USAGE)
            _exit(0)
        if arg in ("-v", "--version") and flags is _GLOBAL_FLAGS:
            sys.stdout.write(f"{PROG} version {VERSION}\nspec: 1.0.2\n")
            _exit(0)
        if arg == "--" or not arg.startswith("-") or arg == "-":
            if stop_at_positional or arg != "--":
                return i
            return i + 1
        name, eq, inline = arg.lstrip("-").partition("=")
        if name not in flags:
            raise UsageError(f"flag provided but not defined: {arg.split('=')[0]}")
        dest, kind = flags[name]
        i += 1
        if kind == _B:
            values[dest] = inline.lower() not in ("false", "0") if eq else True
            continue
        if not eq:
            if i >= len(argv):
                raise UsageError(f"flag needs an argument: {arg}")
            inline, i = argv[i], i + 1
        if kind in (_I, _LI):
            try:
                value: Any = int(inline)
            except ValueError:
                raise UsageError(f"invalid value {inline!r} for flag {arg}: not an integer") from None
        else:
            value = inline
        if kind in (_LS, _LI):
            values.setdefault(dest, []).append(value)
        else:
            values[dest] = value
    return i


def parse_signal(text: str) -> int:
    import signal

    if text.isdigit():
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        from dockyard.errors import InvalidArgument

        raise InvalidArgument(f"unknown signal {text!r}") from None


def _table(rows: list[list[str]]) -> str:
    """runc's tabwriter layout: columns at least 12 wide, 3 spaces of padding."""
    widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]))]
    return "\n".join("".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + r[-1] for r in rows)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _dispatch(a: Args, log: _Log) -> int:
    if a.cmd in ("ps", "list") and a.format not in ("table", "json"):
        raise UsageError(f"--format must be table or json, not {a.format!r}")
    if a.cmd == "spec":
        return _cmd_spec(a)
    if a.cmd == "features":
        _print_json(_features())
        return 0

    if a.cmd in ("create", "run", "exec"):
        from dockyard.runtime import prewarm

        prewarm.start()  # overlaps the cgroup attach's grace period with the imports
    from dockyard.runtime.container import CreateOptions, ExecOptions, Runtime

    rt = Runtime(a.root, warn=log.warn, debug=log.debug, delegate=False)
    if a.cmd in ("create", "run"):
        opts = CreateOptions(console_socket=a.console_socket, pid_file=a.pid_file, no_pivot=a.no_pivot,
                             preserve_fds=a.preserve_fds)
        if a.cmd == "create":
            rt.create(a.id, a.bundle, opts)
            return 0
        return rt.run(a.id, a.bundle, opts, detach=a.detach, keep=a.keep)
    if a.cmd == "start":
        rt.start(a.id)
    elif a.cmd == "state":
        _print_json(rt.state(a.id))
    elif a.cmd == "events":
        if not a.stats:
            raise UsageError("events: only --stats (one report) is supported")
        _print_json({"type": "stats", "id": a.id, "data": rt.stats(a.id)})
    elif a.cmd == "kill":
        rt.kill(a.id, parse_signal(a.signal), all_processes=a.all)
    elif a.cmd == "delete":
        rt.delete(a.id, force=a.force)
    elif a.cmd == "pause":
        rt.pause(a.id)
    elif a.cmd == "resume":
        rt.resume(a.id)
    elif a.cmd == "ps":
        pids = rt.ps(a.id)
        if a.format == "json":
            sys.stdout.write(json.dumps(pids) + "\n")
        else:
            sys.stdout.write(_ps_table(pids, a.ps_args))
    elif a.cmd in ("list", "ls"):
        items = rt.list()
        if a.quiet:
            sys.stdout.write("".join(i["id"] + "\n" for i in items))
        elif a.format == "json":
            sys.stdout.write(json.dumps(items) + "\n")
        else:
            rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
            rows += [[i["id"], str(i["pid"]), i["status"], i["bundle"], i["created"], i["owner"]] for i in items]
            sys.stdout.write(_table(rows) + "\n")
    elif a.cmd == "exec":
        return _cmd_exec(rt, a, ExecOptions(detach=a.detach, console_socket=a.console_socket,
                                            pid_file=a.pid_file, preserve_fds=a.preserve_fds))
    return 0


def _cmd_exec(rt: Any, a: Args, opts: Any) -> int:
    from dockyard.errors import InvalidArgument
    from dockyard.runtime.container import ExecArgs, process_from_args

    if a.process:
        try:
            with open(a.process, "rb") as f:
                process = json.load(f)
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"--process {a.process}: {e}") from None
        if not isinstance(process, dict):
            raise InvalidArgument(f"--process {a.process}: not a JSON object")
    else:
        if not a.args:
            raise InvalidArgument("exec needs a command (or --process)")
        config = rt.store.load(a.id).config
        process = process_from_args(config.get("process", {}), ExecArgs(
            args=a.args, tty=a.tty, user=a.user, additional_gids=a.additional_gids, cwd=a.cwd,
            env=a.env, caps=a.cap, no_new_privs=a.no_new_privs))
    return rt.exec(a.id, process, opts)


def _ps_table(pids: list[int], ps_args: list[str]) -> str:
    """runc's table: ``ps -ef`` (or the given ps options) limited to the container's pids."""
    import subprocess

    args = [a for a in ps_args if a != "--"] or ["-ef"]
    out = subprocess.run(["ps", *args], capture_output=True, text=True, check=False).stdout.splitlines()
    if not out:
        return ""
    header = out[0].split()
    col = header.index("PID") if "PID" in header else 1
    keep = {str(p) for p in pids}
    lines = [out[0]] + [ln for ln in out[1:] if len(ln.split()) > col and ln.split()[col] in keep]
    return "\n".join(lines) + "\n"


def _cmd_spec(a: Args) -> int:
    from dockyard.errors import Conflict
    from dockyard.runtime.spec import default_spec

    path = os.path.join(a.bundle, "config.json")
    if os.path.exists(path):
        raise Conflict("File config.json exists. Remove it first.")
    with open(path, "w") as f:
        json.dump(default_spec(), f, indent=2)
        f.write("\n")
    return 0


def _features() -> dict[str, Any]:
    from dockyard.runtime.spec import NAMESPACE_TYPES, OCI_VERSION, SECCOMP_ACTIONS

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": [],
        "mountOptions": ["ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec", "private", "rprivate",
                         "slave", "rslave", "shared", "rshared"],
        "linux": {
            "namespaces": list(NAMESPACE_TYPES),
            "capabilities": None,
            "cgroup": {"v1": True, "v2": True},
            "seccomp": {"enabled": True, "actions": list(SECCOMP_ACTIONS)},
        },
    }


def _ensure_stdio() -> None:
    """A runtime started with fd 0, 1 or 2 closed would hand that number to its first
    socket or file, and the container would get it as stdio: fill the holes first."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open("/dev/null", os.O_RDWR)  # the lowest free number: this one


def main(argv: list[str] | None = None) -> None:
    _ensure_stdio()
    try:
        a = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        _exit(1)
    if a.log_format not in ("text", "json"):
        print(f"{PROG}: --log-format must be text or json", file=sys.stderr)
        _exit(1)
    log = _Log(a.log, a.log_format, a.debug)
    try:
        code = _dispatch(a, log)
    except KeyboardInterrupt:
        code = 130
    except Exception as e:  # every failure is one line; the kind decides nothing here
        from dockyard.errors import DockyardError

        if not isinstance(e, (DockyardError, OSError)):
            log.debug(f"{type(e).__name__}: {e}")
        log.error(str(e) if not isinstance(e, OSError) or not e.strerror else _os_error(e),
                  type(e).__name__ if isinstance(e, DockyardError) else None)
        code = 1
    _exit(code)


def _exit(code: int) -> None:
    """Flush and leave without the interpreter's teardown (module and object finalization
    is several milliseconds, on every container operation, for nothing)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _os_error(e: OSError) -> str:
    return f"{e.strerror}" + (f": {e.filename}" if e.filename else "")


if __name__ == "__main__":
    main()
