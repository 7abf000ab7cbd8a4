"""Container commands beyond run/stop/rm: restart, pause, unpause, rename, top.

Each is docker/cli's API call with its output: the names acted on, one per line; an error
per failing container ("Error response from daemon: ..."), exit status 1 if any failed.
"""

from __future__ import annotations

from dockyard.cli.context import CLIError, Context
from dockyard.cli.flags import each
from dockyard.cli.main import new_parser


def _q(name: str) -> str:
    from dockyard.cli.client import quote

    return quote(name)


def cmd_restart(ctx: Context, args: list[str], prog: str = "dockyard restart") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] CONTAINER [CONTAINER...]", description="Restart one or more containers")
    p.add_argument("containers", nargs="+")
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    p.add_argument("-t", "--timeout", type=int, help="Seconds to wait before killing the container")
    p.add_argument("--time", type=int, help="Seconds to wait before killing the container (deprecated: use --timeout)")
    o = p.parse_args(args)
    if o.time is not None and o.timeout is not None:
        raise CLIError("conflicting options: cannot specify both --timeout and --time", 1)
    timeout = o.timeout if o.timeout is not None else o.time
    params = {"t": timeout, "signal": o.signal}
    return each(ctx, o.containers, lambda n: ctx.client.post(f"/containers/{_q(n)}/restart", params=params))


def cmd_pause(ctx: Context, args: list[str], prog: str = "dockyard pause") -> int:
    p = new_parser(prog, usage=f"{prog} CONTAINER [CONTAINER...]", description="Pause all processes within one or more containers")
    p.add_argument("containers", nargs="+")
    o = p.parse_args(args)
    return each(ctx, o.containers, lambda n: ctx.client.post(f"/containers/{_q(n)}/pause"))


def cmd_unpause(ctx: Context, args: list[str], prog: str = "dockyard unpause") -> int:
    p = new_parser(prog, usage=f"{prog} CONTAINER [CONTAINER...]", description="Unpause all processes within one or more containers")
    p.add_argument("containers", nargs="+")
    o = p.parse_args(args)
    return each(ctx, o.containers, lambda n: ctx.client.post(f"/containers/{_q(n)}/unpause"))


def cmd_rename(ctx: Context, args: list[str], prog: str = "dockyard rename") -> int:
    p = new_parser(prog, usage=f"{prog} CONTAINER NEW_NAME", description="Rename a container")
    p.add_argument("container")
    p.add_argument("new_name")
    o = p.parse_args(args)
    from dockyard.cli.client import APIError

    try:
        ctx.client.post(f"/containers/{_q(o.container)}/rename", params={"name": o.new_name})
    except APIError as e:
        ctx.error(f"Error response from daemon: {e.message}")
        raise CLIError(f"Error: failed to rename container named {o.container}") from None
    return 0


def cmd_top(ctx: Context, args: list[str], prog: str = "dockyard top") -> int:
    # everything after the container goes to ps, flags included (docker stops parsing there)
    usage = f"Usage:  {prog} CONTAINER [ps OPTIONS]\n\nDisplay the running processes of a container\n"
    if not args:
        raise CLIError(f'"{prog}" requires at least 1 argument.\nSee \'{prog} --help\'.\n\n' + usage, 1)
    if args[0] in ("-h", "--help"):
        ctx.out.write(usage)
        return 0
    container, ps_args = args[0], args[1:]
    params = {"ps_args": " ".join(ps_args)} if ps_args else None
    result = ctx.client.get(f"/containers/{_q(container)}/top", params=params).json() or {}
    from dockyard.cli.formatting import tabwrite

    rows = [list(result.get("Titles") or [])] + [list(p) for p in result.get("Processes") or []]
    ctx.out.write(tabwrite(rows, minwidth=20, padding=3))
    return 0



def cmd_update(ctx: Context, args: list[str], prog: str = "dockyard update") -> int:
    from dockyard.cli.client import APIError, quote
    from dockyard.cli.containers import _go_int, _restart_policy, _size

    p = new_parser(prog, usage=f"{prog} [OPTIONS] CONTAINER [CONTAINER...]",
                   description="Update configuration of one or more containers")
    p.add_argument("--restart", help="Restart policy to apply when a container exits")
    p.add_argument("-m", "--memory", help="Memory limit")
    p.add_argument("--memory-swap", help="Swap limit equal to memory plus swap: -1 to enable unlimited swap")
    p.add_argument("--memory-reservation", help="Memory soft limit")
    p.add_argument("--cpus", help="Number of CPUs")
    p.add_argument("-c", "--cpu-shares", help="CPU shares (relative weight)")
    p.add_argument("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    p.add_argument("--pids-limit", help="Tune container pids limit (set -1 for unlimited)")
    p.add_argument("containers", nargs="+")
    o = p.parse_args(args)
    body: dict[str, object] = {}
    if o.restart:
        body["RestartPolicy"] = _restart_policy(o.restart)
    if o.memory:
        body["Memory"] = _size(o.memory, "-m, --memory")
    if o.memory_swap:
        body["MemorySwap"] = -1 if o.memory_swap == "-1" else _size(o.memory_swap, "--memory-swap")
    if o.memory_reservation:
        body["MemoryReservation"] = _size(o.memory_reservation, "--memory-reservation")
    if o.cpus:
        try:
            body["NanoCpus"] = int(round(float(o.cpus) * 1e9))
        except ValueError:
            raise CLIError(f'invalid argument "{o.cpus}" for "--cpus" flag: failed to parse {o.cpus} as a rational number', 125) from None
    if o.cpu_shares:
        body["CpuShares"] = _go_int(o.cpu_shares, "-c, --cpu-shares")
    if o.cpuset_cpus:
        body["CpusetCpus"] = o.cpuset_cpus
    if o.pids_limit:
        body["PidsLimit"] = _go_int(o.pids_limit, "--pids-limit")
    if not body:
        raise CLIError("you must provide one or more flags when using this command", 1)
    failed = False
    for name in o.containers:
        try:
            result = ctx.client.post(f"/containers/{quote(name)}/update", body=body).json()
            for warning in result.get("Warnings") or []:
                ctx.error(warning)
            ctx.out.write(name + "\n")
        except APIError as e:
            ctx.error(f"Error response from daemon: {e.message}")
            failed = True
    return 1 if failed else 0
