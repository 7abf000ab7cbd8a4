"""``dockyard exec``: run a command in a running container, docker/cli's sequence of calls.

inspect the container (a missing one is reported first), exec create, then either a detached
start, or a hijacked start pumped like ``run``'s attach (raw terminal, resize on SIGWINCH,
detach keys with ``-t``) followed by exec inspect, whose ExitCode becomes ours. A command
that cannot run is reported in the stream by the daemon, with 126 / 127 as the exit code.
"""

from __future__ import annotations

import argparse
import os
import sys

from dockyard.cli.context import CLIError, Context
from dockyard.cli.main import new_parser

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (~3 ms)
if TYPE_CHECKING:
    from typing import Any


def _parser(prog: str) -> argparse.ArgumentParser:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] CONTAINER COMMAND [ARG...]",
                   description="Execute a command in a running container")
    p.add_argument("-d", "--detach", action="store_true", help="Detached mode: run command in the background")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("-e", "--env", action="append", default=[], help="Set environment variables")
    p.add_argument("--env-file", action="append", default=[], help="Read in a file of environment variables")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    p.add_argument("--privileged", action="store_true", help="Give extended privileges to the command")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("-u", "--user", help='Username or UID (format: "<name|uid>[:<group|gid>]")')
    p.add_argument("-w", "--workdir", help="Working directory inside the container")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    return p


def _body(o: argparse.Namespace) -> dict[str, Any]:
    from dockyard.cli.containers import _env_entry, _read_env_file

    env: list[str] = []
    for path in o.env_file:
        env += _read_env_file(path)
    for value in o.env:
        if (entry := _env_entry(value)) is not None:
            env.append(entry)
    attach = not o.detach
    body: dict[str, Any] = {
        "User": o.user or "", "Privileged": bool(o.privileged), "Tty": bool(o.tty),
        "AttachStdin": attach and bool(o.interactive), "AttachStdout": attach, "AttachStderr": attach,
        "DetachKeys": o.detach_keys or "", "Cmd": list(o.command), "Env": env, "WorkingDir": o.workdir or "",
    }
    if o.tty:
        size = _tty_size()
        if size:
            body["ConsoleSize"] = list(size)
    return body


def _tty_size() -> tuple[int, int] | None:
    from dockyard.cli.attach import terminal_size

    try:
        return terminal_size(sys.stdout.fileno())
    except (OSError, ValueError):
        return None


def cmd_exec(ctx: Context, args: list[str], prog: str = "dockyard exec") -> int:
    from dockyard.cli.containers import _bools

    p = _parser(prog)
    o = p.parse_args(_bools(p, args))
    if not o.command:
        raise CLIError(f'"{prog}" requires at least 2 arguments.\nSee \'{prog} --help\'.\n\n'
                       f"Usage:  {prog} [OPTIONS] CONTAINER COMMAND [ARG...]\n\n"
                       "Execute a command in a running container", 1)
    if o.detach_keys:
        from dockyard.errors import InvalidArgument
        from dockyard.streams.detach import parse_detach_keys

        try:
            parse_detach_keys(o.detach_keys)
        except InvalidArgument as e:
            raise CLIError(f"invalid detach keys ({o.detach_keys}): {e}", 1) from None
    from dockyard.cli.client import quote

    client = ctx.client
    body = _body(o)
    client.get(f"/containers/{quote(o.container)}/json")  # a missing container's error first
    if not o.detach and o.interactive and o.tty and not os.isatty(sys.stdin.fileno()):
        raise CLIError("the input device is not a TTY", 1)
    eid = client.post(f"/containers/{quote(o.container)}/exec", body=body).json()["Id"]
    start = {"Detach": bool(o.detach), "Tty": bool(o.tty)}
    if "ConsoleSize" in body:
        start["ConsoleSize"] = body["ConsoleSize"]
    if o.detach:
        client.post(f"/exec/{eid}/start", body=start)
        return 0
    return _interactive(ctx, eid, start, o)


def _interactive(ctx: Context, eid: str, start: dict[str, Any], o: argparse.Namespace) -> int:
    from dockyard.cli.attach import DEFAULT_DETACH_KEYS, pump

    client = ctx.client
    sock = client.hijack("POST", f"/exec/{eid}/start", body=start)
    sys.stdout.flush()
    sys.stderr.flush()

    def resize(height: int, width: int) -> None:
        client.post(f"/exec/{eid}/resize", params={"h": height, "w": width})

    # with a TTY, stderr is merged into the stream (docker writes it to stdout)
    detached = pump(sock, sys.stdin if o.interactive else None, sys.stdout, sys.stdout if o.tty else sys.stderr,
                    tty=o.tty, detach_keys=o.detach_keys or DEFAULT_DETACH_KEYS,
                    on_resize=resize if o.tty else None)
    if detached:
        ctx.error("read escape sequence")  # docker/cli's words (and status) for a detach
        return 1
    info = client.get(f"/exec/{eid}/json").json()
    return int(info.get("ExitCode") or 0)
