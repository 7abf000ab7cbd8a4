"""version, info, system <sub>."""

from __future__ import annotations

import json
import platform
import sys

from dockyard.cli.context import Context
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

    return run_group(ctx, args, "system", "Manage dockyard", {"info": cmd_info})
