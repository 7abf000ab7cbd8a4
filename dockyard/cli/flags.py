"""What several command modules share: flag values, and command groups."""

from __future__ import annotations

from dockyard.cli.context import CLIError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (~3 ms)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


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
