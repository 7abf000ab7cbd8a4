"""volume create / ls / inspect / rm / prune, as docker's CLI prints them."""

from __future__ import annotations

import json

from dockyard.cli.context import CLIError, Context
from dockyard.cli.flags import confirm, each, inspect_each, parse_filters, run_group
from dockyard.cli.main import new_parser


def _key_values(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        if not key:
            raise CLIError(f'invalid argument "{item}" for "{what}" flag: empty key', 125)
        out[key] = value
    return out


def cmd_volume_create(ctx: Context, args: list[str], prog: str = "dockyard volume create") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] [VOLUME]", description="Create a volume")
    p.add_argument("-d", "--driver", default="local", help="Specify volume driver name")
    p.add_argument("--label", action="append", help="Set metadata for a volume")
    p.add_argument("-o", "--opt", action="append", help="Set driver specific options")
    p.add_argument("--name", help="Specify volume name")
    p.add_argument("volume", nargs="?")
    o = p.parse_args(args)
    if o.name and o.volume and o.name != o.volume:
        raise CLIError("conflicting options: either specify --name or provide positional arg, not both", 1)
    body = {"Name": o.volume or o.name or "", "Driver": o.driver,
            "Labels": _key_values(o.label, "--label"), "DriverOpts": _key_values(o.opt, "--opt")}
    vol = ctx.client.post("/volumes/create", body=body).json()
    ctx.out.write(vol["Name"] + "\n")
    return 0


def cmd_volume_ls(ctx: Context, args: list[str], prog: str = "dockyard volume ls") -> int:
    p = new_parser(prog, description="List volumes")
    p.add_argument("-f", "--filter", action="append", help="Provide filter values (e.g. 'dangling=true')")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display volume names")
    o = p.parse_args(args)
    params = {"filters": json.dumps(parse_filters(o.filter))} if o.filter else None
    volumes = ctx.client.get("/volumes", params=params).json().get("Volumes") or []
    volumes.sort(key=lambda v: v["Name"])
    if o.quiet:
        ctx.out.write("".join(v["Name"] + "\n" for v in volumes))
    elif o.format:
        from dockyard.cli.templates import render_template

        for v in volumes:
            ctx.out.write(render_template(o.format, {**v, "Scope": v.get("Scope", "local")}) + "\n")
    else:
        ctx.out.write(f"{'DRIVER':<10}VOLUME NAME\n")
        ctx.out.write("".join(f"{v['Driver']:<10}{v['Name']}\n" for v in volumes))
    return 0


def cmd_volume_inspect(ctx: Context, args: list[str], prog: str = "dockyard volume inspect") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] VOLUME [VOLUME...]", description="Display detailed information on one or more volumes")
    p.add_argument("-f", "--format")
    p.add_argument("names", nargs="+")
    o = p.parse_args(args)
    return inspect_each(ctx, o.names, lambda name: f"/volumes/{name}", o.format)


def cmd_volume_rm(ctx: Context, args: list[str], prog: str = "dockyard volume rm") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] VOLUME [VOLUME...]", description="Remove one or more volumes")
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of one or more volumes")
    p.add_argument("names", nargs="+")
    o = p.parse_args(args)
    return each(ctx, o.names, lambda name: ctx.client.delete(f"/volumes/{name}", params={"force": o.force}))


def cmd_volume_prune(ctx: Context, args: list[str], prog: str = "dockyard volume prune") -> int:
    p = new_parser(prog, description="Remove unused local volumes")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused volumes, not just anonymous ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", help="Provide filter values (e.g. 'label=<label>')")
    o = p.parse_args(args)
    if not o.force and not confirm(ctx, "WARNING! This will remove all local volumes not used by at least one "
                                        "container."):
        return 0
    flt = parse_filters(o.filter) or {}
    if o.all:
        flt["all"] = ["true"]
    report = ctx.client.post("/volumes/prune", params={"filters": json.dumps(flt)} if flt else None).json()
    deleted = report.get("VolumesDeleted") or []
    if deleted:
        ctx.out.write("Deleted Volumes:\n" + "".join(n + "\n" for n in deleted) + "\n")
    from dockyard.cli.units import human_size

    ctx.out.write(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed', 0))}\n")
    return 0


_SUBCOMMANDS = {
    "create": cmd_volume_create, "ls": cmd_volume_ls, "list": cmd_volume_ls, "inspect": cmd_volume_inspect,
    "rm": cmd_volume_rm, "remove": cmd_volume_rm, "prune": cmd_volume_prune,
}


def cmd_volume(ctx: Context, args: list[str]) -> int:
    return run_group(ctx, args, "volume", "Manage volumes", _SUBCOMMANDS)
