"""commit, diff, export."""

from __future__ import annotations

import os
import sys

from dockyard.cli.context import CLIError, Context
from dockyard.cli.main import new_parser

_KIND = {0: "C", 1: "A", 2: "D"}


def cmd_diff(ctx: Context, args: list[str], prog: str = "dockyard diff") -> int:
    p = new_parser(prog, usage=f"{prog} CONTAINER", description="Inspect changes to files or directories on a container's filesystem")
    p.add_argument("container")
    o = p.parse_args(args)
    from dockyard.cli.client import quote

    for change in ctx.client.get(f"/containers/{quote(o.container)}/changes").json() or []:
        ctx.out.write(f"{_KIND.get(change['Kind'], '?')} {change['Path']}\n")
    return 0


def cmd_export(ctx: Context, args: list[str], prog: str = "dockyard export") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] CONTAINER", description="Export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("container")
    o = p.parse_args(args)
    if not o.output and os.isatty(sys.stdout.fileno()):
        raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    from dockyard.cli.client import quote

    resp = ctx.client.get(f"/containers/{quote(o.container)}/export", stream=True)
    out = open(o.output, "wb") if o.output else sys.stdout.buffer  # noqa: SIM115 - closed below
    try:
        for chunk in resp.iter_chunks():
            out.write(chunk)
    finally:
        if o.output:
            out.close()
        else:
            out.flush()
    return 0


def cmd_commit(ctx: Context, args: list[str], prog: str = "dockyard commit") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
                   description="Create a new image from a container's changes")
    p.add_argument("-a", "--author", default="", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    p.add_argument("-c", "--change", action="append", default=[], help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", default="", help="Commit message")
    p.add_argument("-p", "--pause", default="true", nargs="?", const="true",
                   help="Pause container during commit (default true)")
    p.add_argument("container")
    p.add_argument("reference", nargs="?")
    o = p.parse_args(args)
    params: dict[str, object] = {"container": o.container, "comment": o.message, "author": o.author,
                                 "pause": o.pause.lower() not in ("false", "0")}
    if o.reference:
        repo, tag = o.reference, ""
        last = o.reference.rsplit("/", 1)[-1]
        if ":" in last:
            repo, tag = o.reference.rsplit(":", 1)
        params["repo"], params["tag"] = repo, tag
    if o.change:
        params["changes"] = o.change
    result = ctx.client.post("/commit", params=params, body={}).json()
    ctx.out.write(result["Id"] + "\n")
    return 0
