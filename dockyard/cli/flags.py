"""Flag values shared by several commands."""

from __future__ import annotations

from dockyard.cli.context import CLIError


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
