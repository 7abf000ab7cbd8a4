"""Entry point: global flags, then one command module imported lazily (fast start-up)."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (~3 ms)
if TYPE_CHECKING:
    from typing import Any


# command -> (module, function). Aliases map to the same function, as docker's do.
COMMANDS: dict[str, tuple[str, str]] = {
    "images": ("images", "cmd_images"),
    "import": ("images", "cmd_import"),
    "tag": ("images", "cmd_tag"),
    "rmi": ("images", "cmd_rmi"),
    "history": ("images", "cmd_history"),
    "save": ("images", "cmd_save"),
    "load": ("images", "cmd_load"),
    "inspect": ("containers", "cmd_inspect"),
    "image": ("images", "cmd_image"),
    "version": ("system", "cmd_version"),
    "info": ("system", "cmd_info"),
    "system": ("system", "cmd_system"),
    "run": ("containers", "cmd_run"),
    "create": ("containers", "cmd_create"),
    "ps": ("containers", "cmd_ps"),
    "logs": ("containers", "cmd_logs"),
    "start": ("containers", "cmd_start"),
    "stop": ("containers", "cmd_stop"),
    "kill": ("containers", "cmd_kill"),
    "rm": ("containers", "cmd_rm"),
    "wait": ("containers", "cmd_wait"),
    "container": ("containers", "cmd_container"),
    "restart": ("lifecycle", "cmd_restart"),
    "pause": ("lifecycle", "cmd_pause"),
    "unpause": ("lifecycle", "cmd_unpause"),
    "rename": ("lifecycle", "cmd_rename"),
    "top": ("lifecycle", "cmd_top"),
    "stats": ("stats", "cmd_stats"),
    "events": ("events", "cmd_events"),
    "exec": ("exec", "cmd_exec"),
    "volume": ("volumes", "cmd_volume"),
    "network": ("networks", "cmd_network"),
    "port": ("networks", "cmd_port"),
    "commit": ("container_fs", "cmd_commit"),
    "cp": ("cp", "cmd_cp"),
    "pull": ("images", "cmd_pull"),
    "build": ("build", "cmd_build"),
    "builder": ("build", "cmd_builder"),
    "push": ("registry", "cmd_push"),
    "login": ("registry", "cmd_login"),
    "logout": ("registry", "cmd_logout"),
    "registry": ("registry", "cmd_registry"),
    "update": ("lifecycle", "cmd_update"),
    "diff": ("container_fs", "cmd_diff"),
    "export": ("container_fs", "cmd_export"),
}

USAGE = """\
Usage:  dockyard [OPTIONS] COMMAND

A Docker-compatible container engine

Common Commands:
  run         Create and run a new container from an image
  ps          List containers
  images      List images
  import      Import the contents from a tarball to create a filesystem image
  info        Display system-wide information
  version     Show the dockyard version information

Management Commands:
  container   Manage containers
  image       Manage images
  network     Manage networks
  registry    Run a registry server (serve, gc)
  system      Manage dockyard
  volume      Manage volumes

Commands:
  build       Build an image from a Dockerfile
  commit      Create a new image from a container's changes
  cp          Copy files/folders between a container and the local filesystem
  create      Create a new container
  diff        Inspect changes to files or directories on a container's filesystem
  events      Get real time events from the server
  exec        Execute a command in a running container
  export      Export a container's filesystem as a tar archive
  history     Show the history of an image
  inspect     Return low-level information on Docker objects
  kill        Kill one or more running containers
  load        Load an image from a tar archive or STDIN
  logs        Fetch the logs of a container
  pause       Pause all processes within one or more containers
  port        List port mappings or a specific mapping for the container
  login       Authenticate to a registry
  logout      Log out from a registry
  pull        Download an image from a registry
  push        Upload an image to a registry
  rename      Rename a container
  restart     Restart one or more containers
  rm          Remove one or more containers
  rmi         Remove one or more images
  save        Save one or more images to a tar archive (streamed to STDOUT by default)
  start       Start one or more stopped containers
  stats       Display a live stream of container(s) resource usage statistics
  stop        Stop one or more running containers
  tag         Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
  top         Display the running processes of a container
  unpause     Unpause all processes within one or more containers
  update      Update configuration of one or more containers
  wait        Block until one or more containers stop, then print their exit codes

Global Options:
  -D, --debug          Enable debug mode
  -H, --host string    Daemon socket to connect to (env DOCKYARD_HOST)
  -v, --version        Print version information and quit

Run 'dockyard COMMAND --help' for more information on a command.
"""


def new_parser(prog: str, usage: str | None = None, description: str | None = None) -> Any:
    """An argparse parser with docker's error shape (``dockyard.cli.argparser``); argparse
    is imported here, not with this module: `run` parses its flags without it."""
    from dockyard.cli.argparser import Parser

    return Parser(prog=prog, usage=usage, description=description)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    host = os.environ.get("DOCKYARD_HOST")
    debug = False
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        if arg in ("-H", "--host"):
            if i + 1 >= len(argv):
                sys.stderr.write("flag needs an argument: -H\n")
                return 125
            host = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--host="):
            host = arg.split("=", 1)[1]
        elif arg in ("-D", "--debug"):
            debug = True
        elif arg in ("-v", "--version"):
            from dockyard import __version__

            print(f"dockyard version {__version__}")
            return 0
        elif arg in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        else:
            sys.stderr.write(f"unknown flag: {arg}\nSee 'dockyard --help'.\n")
            return 125
        i += 1
    if i >= len(argv):
        sys.stdout.write(USAGE)
        return 0
    command, args = argv[i], argv[i + 1:]
    if command not in COMMANDS:
        sys.stderr.write(f"dockyard: '{command}' is not a dockyard command.\nSee 'dockyard --help'\n")
        return 1
    module_name, func_name = COMMANDS[command]
    module = __import__(f"dockyard.cli.{module_name}", fromlist=["_"])  # importlib costs ~0.7 ms
    from dockyard.cli.context import Context

    ctx = Context(host=host, debug=debug)
    return ctx.run(getattr(module, func_name), args)


def entry() -> None:
    """The console script. Once the output is flushed it exits without the interpreter's
    teardown (freeing every module and object: ~5 ms nobody waits for usefully); every
    thread the CLI starts is a daemon thread, so nothing is cut short."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # stdout closed early (`dockyard ps | head -1`): the code stands
        pass
    os._exit(code)


if __name__ == "__main__":
    entry()
