"""login, logout and push: the registry commands. Credentials live in docker's config.json
(cli/credentials.py); the daemon checks them (POST /auth) and uses them (X-Registry-Auth)."""

from __future__ import annotations

import io
import sys
from typing import Any

from dockyard.cli import credentials
from dockyard.cli.context import CLIError, Context
from dockyard.cli.main import new_parser


def registry_of(name: str) -> str:
    """The registry host of an image name (``busybox`` -> ``docker.io``)."""
    from dockyard import reference
    from dockyard.errors import DockyardError

    try:
        return reference.parse(name).name.split("/", 1)[0]
    except DockyardError as e:
        raise CLIError(str(e), 1) from None


def cmd_login(ctx: Context, args: list[str], prog: str = "dockyard login") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] [SERVER]",
                   description="Authenticate to a registry.\nDefaults to Docker Hub if no server is specified.")
    p.add_argument("-u", "--username", help="Username")
    p.add_argument("-p", "--password", help="Password or Personal Access Token (PAT)")
    p.add_argument("--password-stdin", action="store_true", help="Take the Password or Personal Access Token (PAT) from stdin")
    p.add_argument("server", nargs="?", default=credentials.HUB_SERVER)
    o = p.parse_args(args)
    if not credentials.hostname(o.server):
        raise CLIError(f"invalid registry address: {o.server!r}", 1)
    if o.password and o.password_stdin:
        raise CLIError("--password and --password-stdin are mutually exclusive", 1)
    password = o.password
    if o.password_stdin:
        if not o.username:
            raise CLIError("Must provide --username with --password-stdin", 1)
        password = sys.stdin.read().rstrip("\r\n")
    elif o.password:
        ctx.error("WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
    username = o.username
    if not username or password is None:
        if not sys.stdin.isatty():
            raise CLIError("Error: Cannot perform an interactive login from a non TTY device", 1)
        import getpass

        if not username:
            ctx.out.write("Username: ")
            ctx.out.flush()
            username = sys.stdin.readline().strip()
        if password is None:
            password = getpass.getpass("Password: ")
    if not username:
        raise CLIError("Error: Non-null Username Required", 1)
    if not password:
        raise CLIError("Error: Password Required", 1)
    key = credentials.server_key(o.server)
    body = {"username": username, "password": password, "serveraddress": key}
    answer = ctx.client.post("/auth", body=body).json()
    try:
        where = credentials.store(key, username, password, answer.get("IdentityToken") or "")
    except LookupError as e:
        raise CLIError(f"Error saving credentials: error storing credentials - err: {e}", 1) from None
    if where.endswith(".json"):
        ctx.error(f"WARNING! Your credentials are stored unencrypted in '{where}'.\n"
                  "Configure a credential helper to remove this warning. See\n"
                  "https://docs.docker.com/go/credential-store/\n")
    ctx.out.write("Login Succeeded\n")
    return 0


def cmd_logout(ctx: Context, args: list[str], prog: str = "dockyard logout") -> int:
    p = new_parser(prog, usage=f"{prog} [SERVER]",
                   description="Log out from a registry.\nIf no server is specified, the default is defined by the daemon.")
    p.add_argument("server", nargs="?", default=credentials.HUB_SERVER)
    o = p.parse_args(args)
    key = credentials.server_key(o.server)
    if credentials.erase(key):
        ctx.out.write(f"Removing login credentials for {key}\n")
    else:
        ctx.out.write(f"Not logged in to {key}\n")
    return 0


def cmd_push(ctx: Context, args: list[str], prog: str = "dockyard push") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] NAME[:TAG]", description="Upload an image to a registry")
    p.add_argument("-a", "--all-tags", action="store_true", help="Push all tags of an image to the repository")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("name")
    o = p.parse_args(args)
    from dockyard import reference
    from dockyard.cli.progress import display_stream
    from dockyard.errors import DockyardError

    try:
        ref = reference.parse(o.name)
    except DockyardError as e:
        raise CLIError(str(e), 1) from None
    if ref.digest:
        raise CLIError(f"invalid reference format: {o.name}: a digest cannot be pushed", 1)
    tagged = ":" in o.name.rsplit("/", 1)[-1]
    if o.all_tags and tagged:
        raise CLIError("tag can't be used with --all-tags/-a", 1)
    tag = "" if o.all_tags else (ref.tag or "latest")
    if not o.all_tags and not tagged:
        ctx.out.write("Using default tag: latest\n")
    name = ref.name if ref.name.split("/", 1)[0] != "docker.io" else ref.familiar_name
    resp = ctx.client.post(f"/images/{name}/push", params={"tag": tag},
                           headers=credentials.header_for(registry_of(o.name)), stream=True)
    out: Any = io.StringIO() if o.quiet else ctx.out
    display_stream(resp.iter_json(), out, tty=not o.quiet and ctx.out.isatty())
    if o.quiet:
        ctx.out.write(f"{ref.familiar_name}{':' + tag if tag else ''}\n")
    return 0


def cmd_registry(ctx: Context, args: list[str]) -> int:
    """``dockyard registry serve|gc``: the registry server, run here (not by the daemon)."""
    from dockyard.cli.flags import run_group

    def serve(ctx: Context, argv: list[str], prog: str) -> int:
        from dockyard.registry.main import serve as run

        return run(argv, prog)

    def gc(ctx: Context, argv: list[str], prog: str) -> int:
        from dockyard.registry.main import gc as run

        return run(argv, prog)

    return run_group(ctx, args, "registry", "Run a registry server", {"serve": serve, "gc": gc})
