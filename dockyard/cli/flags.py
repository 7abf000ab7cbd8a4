"""What several command modules share: flag values, and command groups."""

from __future__ import annotations

from dockyard.cli.context import CLIError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (~3 ms)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def each(ctx: Any, names: list[str], action: Callable[[str], Any], echo: bool = True) -> int:
    """Apply ``action(name)`` to every name, printing (``echo``) the name — or what the
    action returns, if it is a string; nothing if it returns False — or the daemon's error;
    any error makes the exit status 1."""
    from dockyard.cli.client import APIError

    failed = False
    for name in names:
        try:
            result = action(name)
        except APIError as e:
            ctx.error(f"Error response from daemon: {e.message}")
            failed = True
            continue
        if echo and result is not False:
            ctx.out.write(f"{result if isinstance(result, str) else name}\n")
    return 1 if failed else 0


def inspect_each(ctx: Any, names: list[str], path: Callable[[str], str], fmt: str | None) -> int:
    """``<object> inspect``: GET each one's ``path(name)``, then print them all as a JSON
    array (or each through ``--format``); a missing one is an error line and exit status 1."""
    import json

    found: list[Any] = []
    status = each(ctx, names, lambda name: found.append(ctx.client.get(path(name)).json()), echo=False)
    if fmt:
        from dockyard.cli.templates import render_template

        ctx.out.write("".join(render_template(fmt, doc) + "\n" for doc in found))
    else:
        ctx.out.write(json.dumps(found, indent=4) + "\n")
    return status


def confirm(ctx: Any, warning: str) -> bool:
    """docker's prune prompt: the warning, then "Are you sure…"; only y/yes goes on."""
    import sys

    ctx.out.write(warning + "\nAre you sure you want to continue? [y/N] ")
    ctx.out.flush()
    answer = sys.stdin.readline().strip().lower() if not sys.stdin.closed else ""
    return answer in ("y", "yes")


def parse_filters(values: list[str] | None) -> dict[str, list[str]] | None:
    """``--filter k=v`` (repeatable) as the API's filters map."""
    if not values:
        return None
    out: dict[str, list[str]] = {}
    for v in values:
        if "=" not in v:
            raise CLIError(f"invalid argument \"{v}\" for \"-f, --filter\" flag: bad format of filter (expected name=value)", 125)
        k, val = v.split("=", 1)
        out.setdefault(k.strip().lower(), []).append(val)
    return out


def run_group(ctx: Any, args: list[str], group: str, title: str, subcommands: dict[str, Callable[..., int]]) -> int:
    """``dockyard <group> <sub> ...`` (image, container, system): help, or the subcommand."""
    if not args or args[0] in ("-h", "--help"):
        ctx.out.write(f"Usage:  dockyard {group} COMMAND\n\n{title}\n\nCommands:\n"
                      + "".join(f"  {name}\n" for name in sorted(subcommands)))
        return 0
    sub = subcommands.get(args[0])
    if sub is None:
        raise CLIError(f"dockyard {group}: unknown command: dockyard {group} {args[0]}\n\n"
                       f"Run 'dockyard {group} --help' for more information")
    return sub(ctx, args[1:], prog=f"dockyard {group} {args[0]}")
