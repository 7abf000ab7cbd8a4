"""dockyard build: the context directory (less what .dockerignore excludes) sent as a tar to
POST /build, docker's output shown as it comes; the exit status of a failed RUN is the
build's, as docker's CLI makes it."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import tempfile
from typing import Any

from dockyard.cli.context import CLIError, Context
from dockyard.cli.main import new_parser


def _key_values(items: list[str], what: str, from_env: bool) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise CLIError(f"invalid argument \"{item}\" for \"--{what}\" flag: {what} key can not be empty", 125)
        out[key] = value if eq else (os.environ.get(key) if from_env else "")
    return out


def context_tar(root: str, dockerfile: str, out: Any) -> None:
    """Write the build context as a tar: everything under ``root`` but what .dockerignore
    excludes; the Dockerfile and .dockerignore always go (the daemon needs them)."""
    from dockyard.builder import dockerignore

    try:
        with open(os.path.join(root, ".dockerignore"), encoding="utf-8") as f:
            patterns = dockerignore.parse(f.read())
    except FileNotFoundError:
        patterns = []
    matcher = dockerignore.Matcher(patterns)
    always = {dockerfile, ".dockerignore"}
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for rel in dockerignore.walk(root, matcher, always=always):
            tf.add(os.path.join(root, rel), arcname=rel, recursive=False)


def _local_daemon(ctx: Context) -> bool:
    """A daemon on this host (a unix socket): it can read the context where it is."""
    host = ctx.host or os.environ.get("DOCKYARD_HOST") or "unix://"
    return host.startswith("unix://")


def cmd_build(ctx: Context, args: list[str], prog: str = "dockyard build") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] PATH | -", description="Build an image from a Dockerfile")
    p.add_argument("-t", "--tag", action="append", default=[], help="Name and optionally a tag (format: \"name:tag\")")
    p.add_argument("-f", "--file", help="Name of the Dockerfile (default: \"PATH/Dockerfile\")")
    p.add_argument("--build-arg", action="append", default=[], help="Set build-time variables")
    p.add_argument("--label", action="append", default=[], help="Set metadata for an image")
    p.add_argument("--target", default="", help="Set the target build stage to build")
    p.add_argument("--network", default="", help="Set the networking mode for the RUN instructions during build")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the build output and print image ID on success")
    p.add_argument("--iidfile", help="Write the image ID to the file")
    p.add_argument("--pull", action="store_true", help="Always attempt to pull a newer version of the image")
    p.add_argument("--no-cache", action="store_true", help="Do not use cache when building the image")
    p.add_argument("--explain-cache", action="store_true", help="Say why each step that ran missed the cache")
    p.add_argument("--cache-from", action="append", default=[], help="Images to consider as cache sources")
    p.add_argument("--platform", default=os.environ.get("DOCKER_DEFAULT_PLATFORM", ""),
                   help="Set platform if server is multi-platform capable")
    p.add_argument("--rm", default="true", help="Remove intermediate containers after a successful build")
    p.add_argument("--force-rm", action="store_true", help="Always remove intermediate containers")
    p.add_argument("path")
    o = p.parse_args(args)
    from dockyard import reference
    from dockyard.cli.progress import StreamError, display_stream
    from dockyard.errors import DockyardError

    for tag in o.tag:
        try:
            reference.parse(tag)
        except DockyardError as e:
            raise CLIError(f"invalid argument \"{tag}\" for \"-t, --tag\" flag: {e}", 125) from None
    dockerfile = "Dockerfile"
    headers: dict[str, str] = {}
    body = tempfile.TemporaryFile()
    if o.path == "-":  # a tar of the context, or a lone Dockerfile, on stdin
        data = sys.stdin.buffer.read()
        if data[257:262] == b"ustar" or data[:2] == b"\x1f\x8b":
            body.write(data)
        else:
            with tarfile.open(fileobj=body, mode="w") as tf:
                info = tarfile.TarInfo("Dockerfile")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        dockerfile = o.file or "Dockerfile"
    else:
        if not os.path.isdir(o.path):
            raise CLIError(f"unable to prepare context: path \"{o.path}\" not found", 1)
        root = os.path.abspath(o.path)
        if o.file:
            full = os.path.abspath(o.file)
            if not full.startswith(root + os.sep):
                raise CLIError("unable to prepare context: the Dockerfile must be within the build context "
                               "(dockyard does not send one from elsewhere yet)", 1)
            dockerfile = os.path.relpath(full, root)
        if not os.path.isfile(os.path.join(root, dockerfile)):
            raise CLIError(f"unable to prepare context: unable to evaluate symlinks in Dockerfile path: "
                           f"lstat {os.path.join(root, dockerfile)}: no such file or directory", 1)
        if _local_daemon(ctx):
            headers["X-Dockyard-Context"] = root  # read in place: nothing to send
        else:
            context_tar(root, dockerfile, body)
    size = body.tell()
    body.seek(0)
    if not o.quiet and "X-Dockyard-Context" not in headers:
        from dockyard.cli.units import human_size

        ctx.out.write(f"Sending build context to dockyard daemon  {human_size(size)}\n")
    import json

    params: dict[str, Any] = {"t": o.tag, "dockerfile": dockerfile, "q": "1" if o.quiet else "",
                              "nocache": "1" if o.no_cache else "", "pull": "1" if o.pull else "",
                              "rm": "0" if o.rm.lower() in ("false", "0") else "1",
                              "forcerm": "1" if o.force_rm else "", "target": o.target, "networkmode": o.network,
                              "explaincache": "1" if o.explain_cache else "",
                              "cachefrom": json.dumps(o.cache_from) if o.cache_from else "",
                              "platform": o.platform,
                              "buildargs": json.dumps(_key_values(o.build_arg, "build-arg", True)),
                              "labels": json.dumps(_key_values(o.label, "label", False))}
    resp = ctx.client.post_stream("/build", body, "application/x-tar", headers=headers,
                                  params={k: v for k, v in params.items() if v not in ("", [])})
    out: Any = io.StringIO() if o.quiet else ctx.out
    try:
        aux = display_stream(resp.iter_json(), out, tty=False)
    except StreamError as e:
        if o.quiet:
            ctx.out.write(out.getvalue())
        ctx.error(e.message)
        return e.code or 1
    image_id = next((a["ID"] for a in aux if isinstance(a, dict) and a.get("ID")), "")
    if o.quiet:
        ctx.out.write(image_id + "\n")
    if o.iidfile:
        with open(o.iidfile, "w") as f:
            f.write(image_id)
    return 0


def cmd_builder(ctx: Context, args: list[str]) -> int:
    from dockyard.cli.flags import run_group

    return run_group(ctx, args, "builder", "Manage builds", {"prune": cmd_builder_prune})


def cmd_builder_prune(ctx: Context, args: list[str], prog: str = "dockyard builder prune") -> int:
    from dockyard.cli.flags import confirm

    p = new_parser(prog, description="Remove build cache")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused build cache, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    o = p.parse_args(args)
    warning = "WARNING! This will remove all build cache." if o.all else \
        "WARNING! This will remove all dangling build cache."
    if not o.force and not confirm(ctx, warning):
        return 0
    report = ctx.client.post("/build/prune", params={"all": "1"} if o.all else {}).json()
    deleted = report.get("CachesDeleted") or []
    if deleted:
        ctx.out.write("Deleted build cache objects:\n" + "".join(f"{key}\n" for key in deleted) + "\n")
    from dockyard.cli.units import human_size

    ctx.out.write(f"Total reclaimed space: {human_size(int(report.get('SpaceReclaimed') or 0))}\n")
    return 0

