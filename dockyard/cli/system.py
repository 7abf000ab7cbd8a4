"""version, info, system <sub>."""

from __future__ import annotations

import json
import platform
import sys

from dockyard.cli.context import Context
from dockyard.cli.flags import confirm
from dockyard.cli.main import new_parser


def cmd_version(ctx: Context, args: list[str], prog: str = "dockyard version") -> int:
    from dockyard import API_VERSION, __version__

    p = new_parser(prog, description="Show the dockyard version information")
    p.add_argument("-f", "--format")
    o = p.parse_args(args)
    client = {"Version": __version__, "ApiVersion": API_VERSION, "Os": "linux", "Arch": platform.machine(),
              "GoVersion": f"python{sys.version_info.major}.{sys.version_info.minor}"}
    server = ctx.client.get("/version").json()
    if o.format:
        from dockyard.cli.templates import render_template

        ctx.out.write(render_template(o.format, {"Client": client, "Server": server}) + "\n")
        return 0
    ctx.out.write(
        "Client:\n"
        f" Version:           {client['Version']}\n"
        f" API version:       {client['ApiVersion']}\n"
        f" Python version:    {client['GoVersion']}\n"
        f" OS/Arch:           {client['Os']}/{client['Arch']}\n"
        "\nServer: dockyard\n Engine:\n"
        f"  Version:          {server.get('Version')}\n"
        f"  API version:      {server.get('ApiVersion')} (minimum version {server.get('MinAPIVersion')})\n"
        f"  OS/Arch:          {server.get('Os')}/{server.get('Arch')}\n"
        f"  Kernel version:   {server.get('KernelVersion')}\n"
    )
    return 0


def cmd_info(ctx: Context, args: list[str], prog: str = "dockyard info") -> int:
    p = new_parser(prog, description="Display system-wide information")
    p.add_argument("-f", "--format")
    o = p.parse_args(args)
    info = ctx.client.get("/info").json()
    if o.format:
        if o.format == "json":
            ctx.out.write(json.dumps(info) + "\n")
            return 0
        from dockyard.cli.templates import render_template

        ctx.out.write(render_template(o.format, info) + "\n")
        return 0
    from dockyard.cli.units import bytes_size

    lines = [
        "Server:",
        f" Containers: {info.get('Containers', 0)}",
        f"  Running: {info.get('ContainersRunning', 0)}",
        f"  Paused: {info.get('ContainersPaused', 0)}",
        f"  Stopped: {info.get('ContainersStopped', 0)}",
        f" Images: {info.get('Images', 0)}",
        f" Server Version: {info.get('ServerVersion')}",
        f" Storage Driver: {info.get('Driver')}",
        f" Logging Driver: {info.get('LoggingDriver')}",
        f" Cgroup Driver: {info.get('CgroupDriver')}",
        f" Cgroup Version: {info.get('CgroupVersion')}",
        f" Kernel Version: {info.get('KernelVersion')}",
        f" Operating System: {info.get('OperatingSystem')}",
        f" OSType: {info.get('OSType')}",
        f" Architecture: {info.get('Architecture')}",
        f" CPUs: {info.get('NCPU')}",
        f" Total Memory: {bytes_size(info.get('MemTotal', 0))}",
        f" Name: {info.get('Name')}",
        f" ID: {info.get('ID')}",
        f" Docker Root Dir: {info.get('DockerRootDir')}",
        f" Debug Mode: {str(info.get('Debug', False)).lower()}",
        f" Live Restore Enabled: {str(info.get('LiveRestoreEnabled', False)).lower()}",
    ]
    ctx.out.write("\n".join(lines) + "\n")
    return 0


def cmd_system(ctx: Context, args: list[str]) -> int:
    from dockyard.cli.flags import run_group

    return run_group(ctx, args, "system", "Manage dockyard",
                     {"info": cmd_info, "df": cmd_system_df, "prune": cmd_system_prune})


def _pct(part: int, whole: int) -> str:
    from dockyard.cli.units import human_size

    return f"{human_size(part)} ({int(part * 100 / whole) if whole else 0}%)"


def cmd_system_df(ctx: Context, args: list[str], prog: str = "dockyard system df") -> int:
    from dockyard.cli.units import human_size

    p = new_parser(prog, description="Show dockyard disk usage")
    p.add_argument("-v", "--verbose", action="store_true", help="Show detailed information on space usage")
    o = p.parse_args(args)
    df = ctx.client.get("/system/df").json()
    images, containers, volumes = df.get("Images") or [], df.get("Containers") or [], df.get("Volumes") or []
    layers = int(df.get("LayersSize") or 0)
    # an image is reclaimable when no container uses it; shared layers count once
    active_images = [i for i in images if i.get("Containers", 0) > 0]
    # what removing the unused images frees: their layers no other image shares
    image_reclaim = sum(i["Size"] - i.get("SharedSize", 0) for i in images if not i.get("Containers", 0))
    ctr_size = sum(c.get("SizeRw", 0) for c in containers)
    ctr_reclaim = sum(c.get("SizeRw", 0) for c in containers if c.get("State") != "running")
    vol_size = sum(v["UsageData"]["Size"] for v in volumes)
    vol_reclaim = sum(v["UsageData"]["Size"] for v in volumes if v["UsageData"]["RefCount"] == 0)
    if not o.verbose:
        ctx.out.write(f"{'TYPE':<16}{'TOTAL':<10}{'ACTIVE':<10}{'SIZE':<10}RECLAIMABLE\n")
        rows = [("Images", len(images), len(active_images), layers, _pct(image_reclaim, layers)),
                ("Containers", len(containers), sum(1 for c in containers if c.get("State") == "running"), ctr_size,
                 _pct(ctr_reclaim, ctr_size)),
                ("Local Volumes", len(volumes), sum(1 for v in volumes if v["UsageData"]["RefCount"]), vol_size,
                 _pct(vol_reclaim, vol_size)),
                ("Build Cache", 0, 0, 0, "0B")]
        for name, total, active, size, reclaim in rows:
            ctx.out.write(f"{name:<16}{total:<10}{active:<10}{human_size(size):<10}{reclaim}\n")
        return 0
    ctx.out.write("Images space usage:\n\n")
    ctx.out.write(f"{'REPOSITORY':<20}{'TAG':<10}{'IMAGE ID':<15}{'SIZE':<10}{'SHARED SIZE':<13}{'UNIQUE SIZE':<13}CONTAINERS\n")
    for i in images:
        for tag in i.get("RepoTags") or ["<none>:<none>"]:
            repo, _, t = tag.rpartition(":")
            ctx.out.write(f"{repo:<20}{t:<10}{i['Id'].removeprefix('sha256:')[:12]:<15}{human_size(i['Size']):<10}"
                          f"{human_size(i.get('SharedSize', 0)):<13}{human_size(i['Size'] - i.get('SharedSize', 0)):<13}"
                          f"{i.get('Containers', 0)}\n")
    ctx.out.write("\nContainers space usage:\n\n")
    ctx.out.write(f"{'CONTAINER ID':<15}{'IMAGE':<15}{'LOCAL VOLUMES':<15}{'SIZE':<10}{'LOGS':<10}{'STATUS':<34}NAMES\n")
    for c in containers:
        ctx.out.write(f"{c['Id'][:12]:<15}{c['Image'][:14]:<15}{0:<15}{human_size(c['SizeRw']):<10}"
                      f"{human_size(c.get('LogSize', 0)):<10}{c['Status']:<34}{c['Names'][0].lstrip('/')}\n")
    ctx.out.write("\nLocal Volumes space usage:\n\n")
    ctx.out.write(f"{'VOLUME NAME':<66}{'LINKS':<8}SIZE\n")
    for v in volumes:
        ctx.out.write(f"{v['Name']:<66}{v['UsageData']['RefCount']:<8}{human_size(v['UsageData']['Size'])}\n")
    ctx.out.write("\nBuild cache usage: 0B\n")
    return 0


def cmd_system_prune(ctx: Context, args: list[str], prog: str = "dockyard system prune") -> int:
    from dockyard.cli.units import human_size

    p = new_parser(prog, description="Remove unused data")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--volumes", action="store_true", help="Prune anonymous volumes")
    p.add_argument("--filter", action="append", help="Provide filter values (e.g. 'label=<key>=<value>')")
    o = p.parse_args(args)
    if not o.force:
        items = ["all stopped containers", *(["anonymous volumes not used by at least one container"] if o.volumes else []),
                 "all images without at least one container associated to them" if o.all else "all dangling images"]
        if not confirm(ctx, "WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items).rstrip("\n")):
            return 0
    from dockyard.cli.flags import parse_filters

    flt = parse_filters(o.filter) or {}
    total = 0
    report = ctx.client.post("/containers/prune", params={"filters": json.dumps(flt)}).json()
    if report.get("ContainersDeleted"):
        ctx.out.write("Deleted Containers:\n" + "".join(c + "\n" for c in report["ContainersDeleted"]) + "\n")
    total += report.get("SpaceReclaimed") or 0
    if o.volumes:
        vflt = {k: v for k, v in flt.items() if k != "until"}
        report = ctx.client.post("/volumes/prune", params={"filters": json.dumps(vflt)}).json()
        if report.get("VolumesDeleted"):
            ctx.out.write("Deleted Volumes:\n" + "".join(v + "\n" for v in report["VolumesDeleted"]) + "\n")
        total += report.get("SpaceReclaimed") or 0
    report = ctx.client.post("/images/prune", params={"filters": json.dumps({**flt, "dangling": ["false" if o.all else "true"]})}).json()
    if report.get("ImagesDeleted"):
        ctx.out.write("Deleted Images:\n")
        for item in report["ImagesDeleted"]:
            for key in ("Untagged", "Deleted"):
                if key in item:
                    ctx.out.write(f"{key.lower()}: {item[key]}\n")
        ctx.out.write("\n")
    total += report.get("SpaceReclaimed") or 0
    ctx.out.write(f"Total reclaimed space: {human_size(total)}\n")
    return 0


def cmd_container_prune(ctx: Context, args: list[str], prog: str = "dockyard container prune") -> int:
    from dockyard.cli.flags import parse_filters
    from dockyard.cli.units import human_size

    p = new_parser(prog, description="Remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", help="Provide filter values (e.g. 'until=<timestamp>')")
    o = p.parse_args(args)
    if not o.force and not confirm(ctx, "WARNING! This will remove all stopped containers."):
        return 0
    flt = parse_filters(o.filter) or {}
    report = ctx.client.post("/containers/prune", params={"filters": json.dumps(flt)} if flt else None).json()
    if report.get("ContainersDeleted"):
        ctx.out.write("Deleted Containers:\n" + "".join(c + "\n" for c in report["ContainersDeleted"]) + "\n")
    ctx.out.write(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0)}\n")
    return 0
