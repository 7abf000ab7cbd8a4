"""Image commands: images, import, tag, rmi, history, save, load, inspect, image <sub>."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from typing import Any

from dockyard.cli.argparser import BoolFlag
from dockyard.cli.context import CLIError, Context
from dockyard.cli.flags import confirm, run_group
from dockyard.cli.flags import parse_filters as _filters
from dockyard.cli.main import new_parser


def _units():
    from dockyard.cli import units

    return units


def _split_repo(repo_tag: str) -> tuple[str, str]:
    """``repo:tag`` -> (repo, tag), for display ("<none>" when missing)."""
    name, _, digest = repo_tag.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = name.rsplit(":", 1)
        return repo, tag
    return name, "<none>"


# ------------------------------------------------------------------ images


def cmd_images(ctx: Context, args: list[str], prog: str = "dockyard images") -> int:
    p = new_parser(prog, description="List images")
    p.add_argument("repository", nargs="?")
    p.add_argument("-a", "--all", action="store_true", help="Show all images (default hides intermediate images)")
    p.add_argument("--digests", action="store_true", help="Show digests")
    p.add_argument("-f", "--filter", action="append", help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    o = p.parse_args(args)
    flt = _filters(o.filter) or {}
    if o.repository:
        flt.setdefault("reference", []).append(o.repository)
    params: dict[str, Any] = {"all": o.all, "digests": o.digests}
    if flt:
        params["filters"] = flt
    images = ctx.client.get("/images/json", params=params).json()
    units = _units()
    rows = []
    now = time.time()
    for img in images:
        tags = img.get("RepoTags") or []
        digests = img.get("RepoDigests") or []
        entries = [_split_repo(t) for t in tags if t != "<none>:<none>"] or [("<none>", "<none>")]
        for repo, tag in entries:
            digest = "<none>"
            for d in digests:
                if d.split("@", 1)[0] == repo:
                    digest = d.split("@", 1)[1]
            image_id = img["Id"] if o.no_trunc else units.truncate_id(img["Id"])
            rows.append({
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "ID": image_id,
                "CreatedSince": units.time_ago(img.get("Created", 0), now) if img.get("Created") else "N/A",
                "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(img.get("Created", 0))),
                "Size": units.human_size(img.get("Size", 0), 3),
                "Containers": "N/A" if img.get("Containers", -1) < 0 else str(img["Containers"]),
                "SharedSize": "N/A",
                "UniqueSize": "N/A",
                "VirtualSize": units.human_size(img.get("Size", 0), 3),
            })
    if o.quiet:
        for r in rows:
            ctx.out.write(r["ID"] + "\n")
        return 0
    from dockyard.cli.formatting import render

    default = "table {{.Repository}}\t{{.Tag}}\t" + ("{{.Digest}}\t" if o.digests else "") + "{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    headers = {"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID",
               "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS",
               "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE"}
    ctx.out.write(render(rows, o.format, default, headers))
    return 0


# ------------------------------------------------------------------ import


def cmd_import(ctx: Context, args: list[str], prog: str = "dockyard import") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
                   description="Import the contents from a tarball to create a filesystem image")
    p.add_argument("source")
    p.add_argument("repository", nargs="?")
    p.add_argument("-c", "--change", action="append", default=[], help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", default="", help="Set commit message for imported image")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    o = p.parse_args(args)
    params: dict[str, Any] = {"fromSrc": "-", "message": o.message, "changes": o.change}
    if o.repository:
        params["repo"] = o.repository
    if o.platform:
        params["platform"] = o.platform
    if o.source == "-":
        body = sys.stdin.buffer
    elif "://" in o.source:
        raise CLIError(f"importing from a URL is not supported: {o.source}")
    else:
        try:
            body = open(o.source, "rb")  # noqa: SIM115 - streamed, closed below
        except OSError as e:
            raise CLIError(f"open {o.source}: {e.strerror.lower()}") from None
    try:
        resp = ctx.client.post_stream("/images/create", body, "application/x-tar", params=params)
        from dockyard.cli.progress import display_stream

        for aux in display_stream(resp.iter_json(), ctx.out, tty=False, status_only=True):
            del aux
    finally:
        if body is not sys.stdin.buffer:
            body.close()
    return 0


# ------------------------------------------------------------------ tag / rmi


def cmd_tag(ctx: Context, args: list[str], prog: str = "dockyard tag") -> int:
    p = new_parser(prog, usage=f"{prog} SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
                   description="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source")
    p.add_argument("target")
    o = p.parse_args(args)
    ctx.client.post(f"/images/{o.source}/tag", params={"repo": o.target})
    return 0


def cmd_rmi(ctx: Context, args: list[str], prog: str = "dockyard rmi") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] IMAGE [IMAGE...]", description="Remove one or more images")
    p.add_argument("images", nargs="+")
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="Do not delete untagged parents")
    o = p.parse_args(args)
    from dockyard.cli.client import APIError

    failed = False
    for name in o.images:
        try:
            items = ctx.client.delete(f"/images/{name}", params={"force": o.force, "noprune": o.no_prune}).json()
        except APIError as e:
            ctx.error(f"Error response from daemon: {e.message}")
            failed = True
            continue
        for item in items:
            for key in ("Untagged", "Deleted"):
                if key in item:
                    ctx.out.write(f"{key}: {item[key]}\n")
    return 1 if failed else 0


# ------------------------------------------------------------------ history / inspect


def cmd_history(ctx: Context, args: list[str], prog: str = "dockyard history") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] IMAGE", description="Show the history of an image")
    p.add_argument("image")
    p.add_argument("-H", "--human", action=BoolFlag, default=True, help="Print sizes and dates in human readable format")
    p.add_argument("--format")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform")
    o = p.parse_args(args)
    units = _units()
    entries = ctx.client.get(f"/images/{o.image}/history").json()
    now = time.time()
    rows = []
    for h in entries:
        hid = h["Id"]
        if hid != "<missing>" and not o.no_trunc:
            hid = units.truncate_id(hid)
        created_by = (h.get("CreatedBy") or "").replace("\t", " ")
        if not o.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append({
            "ID": hid,
            "CreatedSince": units.time_ago(h["Created"], now) if o.human else time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(h["Created"])),
            "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(h["Created"])),
            "CreatedBy": created_by,
            "Size": units.human_size(h.get("Size", 0), 3) if o.human else str(h.get("Size", 0)),
            "Comment": h.get("Comment", ""),
        })
    if o.quiet:
        ctx.out.write("".join(r["ID"] + "\n" for r in rows))
        return 0
    from dockyard.cli.formatting import render

    default = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    headers = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
               "Size": "SIZE", "Comment": "COMMENT"}
    ctx.out.write(render(rows, o.format, default, headers))
    return 0


def print_json_or_format(ctx: Context, objects: list[Any], fmt: str | None) -> None:
    if not fmt:
        ctx.out.write(json.dumps(objects, indent=4, ensure_ascii=False) + "\n")
        return
    from dockyard.cli.templates import render_template

    for obj in objects:
        ctx.out.write(render_template(fmt, obj) + "\n")


def cmd_image_inspect(ctx: Context, args: list[str], prog: str = "dockyard image inspect") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] IMAGE [IMAGE...]", description="Display detailed information on one or more images")
    p.add_argument("images", nargs="+")
    p.add_argument("-f", "--format")
    p.add_argument("--platform")
    o = p.parse_args(args)
    return _inspect_images(ctx, o.images, o.format, "Error response from daemon: No such image: {}")


def _inspect_images(ctx: Context, names: list[str], fmt: str | None, missing_message: str) -> int:
    from dockyard.cli.client import APIError

    found, missing = [], []
    for name in names:
        try:
            found.append(ctx.client.get(f"/images/{name}/json").json())
        except APIError as e:
            if e.status != 404:
                raise
            missing.append(name)
    if found or not missing:
        print_json_or_format(ctx, found, fmt)
    for name in missing:
        ctx.error(missing_message.format(name))
    return 1 if missing else 0


def cmd_inspect(ctx: Context, args: list[str], prog: str = "dockyard inspect") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] NAME|ID [NAME|ID...]", description="Return low-level information on Docker objects")
    p.add_argument("names", nargs="+")
    p.add_argument("-f", "--format")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("--type")
    o = p.parse_args(args)
    if o.type and o.type != "image":
        raise CLIError(f"\"{o.type}\" is not a valid value for --type", 125)
    return _inspect_images(ctx, o.names, o.format, "Error: No such object: {}")


# ------------------------------------------------------------------ save / load


def cmd_save(ctx: Context, args: list[str], prog: str = "dockyard save") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] IMAGE [IMAGE...]",
                   description="Save one or more images to a tar archive (streamed to STDOUT by default)")
    p.add_argument("images", nargs="+")
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("--platform")
    o = p.parse_args(args)
    if not o.output and sys.stdout.isatty():
        raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    resp = ctx.client.get("/images/get", params={"names": o.images}, stream=True)
    if o.output:
        tmp = o.output + ".dockyard-tmp"
        try:
            with open(tmp, "wb") as f:
                for chunk in resp.iter_chunks():
                    f.write(chunk)
            os.rename(tmp, o.output)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    else:
        out = sys.stdout.buffer
        for chunk in resp.iter_chunks():
            out.write(chunk)
        out.flush()
    return 0


def cmd_load(ctx: Context, args: list[str], prog: str = "dockyard load") -> int:
    p = new_parser(prog, description="Load an image from a tar archive or STDIN")
    p.add_argument("-i", "--input", help="Read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    p.add_argument("--platform")
    o = p.parse_args(args)
    if o.input:
        try:
            body = open(o.input, "rb")  # noqa: SIM115 - streamed, closed below
        except OSError as e:
            raise CLIError(f"open {o.input}: {e.strerror.lower()}") from None
    else:
        if sys.stdin.isatty():
            raise CLIError("requested load from stdin, but stdin is empty")
        body = sys.stdin.buffer
    try:
        resp = ctx.client.post_stream("/images/load", body, "application/x-tar", params={"quiet": o.quiet})
        from dockyard.cli.progress import display_stream

        display_stream(resp.iter_json(), ctx.out, tty=ctx.out.isatty() and not o.quiet)
    finally:
        if body is not sys.stdin.buffer:
            body.close()
    return 0


# ------------------------------------------------------------------ image <sub>

_IMAGE_SUBCOMMANDS = {
    "ls": cmd_images, "list": cmd_images, "import": cmd_import, "tag": cmd_tag, "rm": cmd_rmi,
    "remove": cmd_rmi, "history": cmd_history, "inspect": cmd_image_inspect, "save": cmd_save,
    "load": cmd_load,
}


def cmd_image_prune(ctx: Context, args: list[str], prog: str = "dockyard image prune") -> int:
    p = new_parser(prog, description="Remove unused images")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append")
    o = p.parse_args(args)
    warning = ("WARNING! This will remove all images without at least one container associated to them."
               if o.all else "WARNING! This will remove all dangling images.")
    if not o.force and not confirm(ctx, warning):
        return 0
    flt = _filters(o.filter) or {}
    flt["dangling"] = ["false" if o.all else "true"]
    report = ctx.client.post("/images/prune", params={"filters": flt}).json()
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        ctx.out.write("Deleted Images:\n")
        for item in deleted:
            for key in ("Untagged", "Deleted"):
                if key in item:
                    ctx.out.write(f"{key.lower()}: {item[key]}\n")
        ctx.out.write("\n")
    ctx.out.write(f"Total reclaimed space: {_units().human_size(report.get('SpaceReclaimed', 0))}\n")
    return 0


_IMAGE_SUBCOMMANDS["prune"] = cmd_image_prune
_IMAGE_SUBCOMMANDS["pull"] = lambda ctx, args, prog="dockyard image pull": cmd_pull(ctx, args, prog)


def _image_push(ctx: Context, args: list[str], prog: str = "dockyard image push") -> int:
    from dockyard.cli.registry import cmd_push

    return cmd_push(ctx, args, prog)


_IMAGE_SUBCOMMANDS["push"] = _image_push


def cmd_image(ctx: Context, args: list[str]) -> int:
    return run_group(ctx, args, "image", "Manage images", _IMAGE_SUBCOMMANDS)


def pull_image(ctx: Context, name: str, platform: str | None = None, quiet: bool = False, out: Any = None,
               all_tags: bool = False) -> None:
    """POST /images/create?fromImage=: docker's progress (bars on a terminal, a line per
    event otherwise); raises StreamError for an error the daemon sends in the stream.
    ``all_tags``: ``name`` is a repository, sent without a tag (docker's ``pull -a``)."""
    from dockyard.cli.progress import display_stream

    image, tag = name, ""
    if "@" in name:
        image, tag = name.split("@", 1)
    elif ":" in name.rsplit("/", 1)[-1]:
        image, tag = name.rsplit(":", 1)
    params = {"fromImage": image, "tag": "" if all_tags else tag or "latest"}
    if platform:
        params["platform"] = platform
    from dockyard.cli.credentials import header_for
    from dockyard.cli.registry import registry_of

    resp = ctx.client.post("/images/create", params=params, stream=True, headers=header_for(registry_of(image)))
    if quiet:
        display_stream(resp.iter_json(), io.StringIO(), tty=False)
        return
    out = out or ctx.out
    display_stream(resp.iter_json(), out, tty=out.isatty())


def cmd_pull(ctx: Context, args: list[str], prog: str = "dockyard pull") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] NAME[:TAG|@DIGEST]", description="Download an image from a registry")
    p.add_argument("-a", "--all-tags", action="store_true", help="Download all tagged images in the repository")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("name")
    o = p.parse_args(args)
    from dockyard import reference
    from dockyard.errors import DockyardError

    try:
        ref = reference.parse(o.name, default_tag=False)
    except DockyardError as e:
        raise CLIError(str(e), 1) from None
    name_only = ref.tag is None and ref.digest is None
    if o.all_tags and not name_only:
        raise CLIError("tag can't be used with --all-tags/-a", 1)
    if name_only and not o.all_tags:
        ref = ref.with_tag("latest")
        if not o.quiet:
            ctx.out.write("Using default tag: latest\n")
    pull_image(ctx, o.name, o.platform, o.quiet, all_tags=o.all_tags)
    ctx.out.write(str(ref) + "\n")  # docker prints the full reference (the repository for -a)
    return 0
