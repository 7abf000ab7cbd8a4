"""network create / ls / inspect / rm / connect / disconnect / prune, and ``port``, as
docker's CLI prints them."""

from __future__ import annotations

import json

from dockyard.cli.context import CLIError, Context
from dockyard.cli.flags import confirm, each, inspect_each, parse_filters, run_group
from dockyard.cli.main import new_parser


def _key_values(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _one_or_none(values: list[str] | None, flag: str) -> str:
    if values and len(values) > 1:
        raise CLIError(f"dockyard's bridge networks take one {flag}", 1)
    return values[0] if values else ""


def cmd_network_create(ctx: Context, args: list[str], prog: str = "dockyard network create") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] NETWORK", description="Create a network")
    p.add_argument("-d", "--driver", default="bridge", help="Driver to manage the Network")
    p.add_argument("--subnet", action="append", help="Subnet in CIDR format that represents a network segment")
    p.add_argument("--gateway", action="append", help="IPv4 Gateway for the master subnet")
    p.add_argument("--ip-range", action="append", help="Allocate container ip from a sub-range")
    p.add_argument("--internal", action="store_true", help="Restrict external access to the network")
    p.add_argument("--attachable", action="store_true", help="Enable manual container attachment")
    p.add_argument("--ipv6", action="store_true", help="Enable or disable IPv6 networking")
    p.add_argument("--label", action="append", help="Set metadata on a network")
    p.add_argument("-o", "--opt", action="append", help="Set driver specific options")
    p.add_argument("name")
    o = p.parse_args(args)
    pool = {k: v for k, v in (("Subnet", _one_or_none(o.subnet, "--subnet")),
                              ("Gateway", _one_or_none(o.gateway, "--gateway")),
                              ("IPRange", _one_or_none(o.ip_range, "--ip-range"))) if v}
    body = {"Name": o.name, "Driver": o.driver, "Internal": o.internal, "Attachable": o.attachable,
            "EnableIPv6": o.ipv6, "Labels": _key_values(o.label), "Options": _key_values(o.opt),
            "IPAM": {"Driver": "default", "Config": [pool] if pool else []}, "CheckDuplicate": True}
    ctx.out.write(ctx.client.post("/networks/create", body=body).json()["Id"] + "\n")
    return 0


def cmd_network_ls(ctx: Context, args: list[str], prog: str = "dockyard network ls") -> int:
    p = new_parser(prog, description="List networks")
    p.add_argument("-f", "--filter", action="append", help="Provide filter values (e.g. 'driver=bridge')")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display network IDs")
    o = p.parse_args(args)
    params = {"filters": json.dumps(parse_filters(o.filter))} if o.filter else None
    nets = sorted(ctx.client.get("/networks", params=params).json(), key=lambda n: n["Name"])
    rows = [{"ID": n["Id"] if o.no_trunc else n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"],
             "Scope": n["Scope"], "IPv6": str(n.get("EnableIPv6", False)).lower(),
             "Internal": str(n.get("Internal", False)).lower(), "CreatedAt": n.get("Created", ""),
             "Labels": ",".join(f"{k}={v}" for k, v in sorted((n.get("Labels") or {}).items()))} for n in nets]
    if o.quiet:
        ctx.out.write("".join(r["ID"] + "\n" for r in rows))
        return 0
    from dockyard.cli.formatting import render

    ctx.out.write(render(rows, o.format, "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
                         {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE"}))
    return 0


def cmd_network_inspect(ctx: Context, args: list[str], prog: str = "dockyard network inspect") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] NETWORK [NETWORK...]",
                   description="Display detailed information on one or more networks")
    p.add_argument("-f", "--format")
    p.add_argument("-v", "--verbose", action="store_true", help="Verbose output for diagnostics")
    p.add_argument("names", nargs="+")
    o = p.parse_args(args)
    from dockyard.cli.client import quote

    return inspect_each(ctx, o.names, lambda name: f"/networks/{quote(name)}", o.format)


def cmd_network_rm(ctx: Context, args: list[str], prog: str = "dockyard network rm") -> int:
    p = new_parser(prog, usage=f"{prog} NETWORK [NETWORK...]", description="Remove one or more networks")
    p.add_argument("-f", "--force", action="store_true", help="Do not error if the network does not exist")
    p.add_argument("names", nargs="+")
    o = p.parse_args(args)
    from dockyard.cli.client import APIError, quote

    def remove(name: str) -> bool:
        try:
            ctx.client.delete(f"/networks/{quote(name)}")
        except APIError as e:
            if o.force and e.status == 404:
                return False  # -f: a missing network is not an error, and not printed
            raise
        return True

    return each(ctx, o.names, remove)


def cmd_network_connect(ctx: Context, args: list[str], prog: str = "dockyard network connect") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] NETWORK CONTAINER", description="Connect a container to a network")
    p.add_argument("--alias", action="append", help="Add network-scoped alias for the container")
    p.add_argument("--ip", help="IPv4 address (e.g., 172.30.100.104)")
    p.add_argument("network")
    p.add_argument("container")
    o = p.parse_args(args)
    from dockyard.cli.client import quote

    endpoint: dict[str, object] = {}
    if o.ip:
        endpoint["IPAMConfig"] = {"IPv4Address": o.ip}
    if o.alias:
        endpoint["Aliases"] = list(o.alias)
    ctx.client.post(f"/networks/{quote(o.network)}/connect", body={"Container": o.container,
                                                                   "EndpointConfig": endpoint})
    return 0


def cmd_network_disconnect(ctx: Context, args: list[str], prog: str = "dockyard network disconnect") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] NETWORK CONTAINER",
                   description="Disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true", help="Force the container to disconnect from a network")
    p.add_argument("network")
    p.add_argument("container")
    o = p.parse_args(args)
    from dockyard.cli.client import quote

    ctx.client.post(f"/networks/{quote(o.network)}/disconnect", body={"Container": o.container, "Force": o.force})
    return 0


def cmd_network_prune(ctx: Context, args: list[str], prog: str = "dockyard network prune") -> int:
    p = new_parser(prog, description="Remove all unused networks")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", help="Provide filter values (e.g. 'until=<timestamp>')")
    o = p.parse_args(args)
    if not o.force and not confirm(ctx, "WARNING! This will remove all custom networks not used by at least one "
                                        "container."):
        return 0
    flt = parse_filters(o.filter)
    report = ctx.client.post("/networks/prune", params={"filters": json.dumps(flt)} if flt else None).json()
    deleted = report.get("NetworksDeleted") or []
    if deleted:
        ctx.out.write("Deleted Networks:\n" + "".join(n + "\n" for n in deleted))
    return 0


_SUBCOMMANDS = {
    "create": cmd_network_create, "ls": cmd_network_ls, "list": cmd_network_ls, "inspect": cmd_network_inspect,
    "rm": cmd_network_rm, "remove": cmd_network_rm, "connect": cmd_network_connect,
    "disconnect": cmd_network_disconnect, "prune": cmd_network_prune,
}


def cmd_network(ctx: Context, args: list[str]) -> int:
    return run_group(ctx, args, "network", "Manage networks", _SUBCOMMANDS)


def cmd_port(ctx: Context, args: list[str], prog: str = "dockyard port") -> int:
    """``port CONTAINER [PRIVATE_PORT[/PROTO]]``: the host addresses a port is published on."""
    p = new_parser(prog, usage=f"{prog} CONTAINER [PRIVATE_PORT[/PROTO]]",
                   description="List port mappings or a specific mapping for the container")
    p.add_argument("container")
    p.add_argument("port", nargs="?")
    o = p.parse_args(args)
    from dockyard.cli.client import quote

    info = ctx.client.get(f"/containers/{quote(o.container)}/json").json()
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    if o.port:
        port, _, proto = o.port.partition("/")
        key = f"{port}/{proto or 'tcp'}"
        bindings = ports.get(key)
        if not bindings:
            raise CLIError(f"Error: No public port '{key}' published for {o.container}", 1)
        ctx.out.write("".join(f"{b['HostIp']}:{b['HostPort']}\n" for b in bindings))
        return 0

    def order(key: str) -> tuple[int, str]:
        port, _, proto = key.partition("/")
        return int(port), proto

    for key in sorted(ports, key=order):
        for b in ports[key] or []:
            ctx.out.write(f"{key} -> {b['HostIp']}:{b['HostPort']}\n")
    return 0
