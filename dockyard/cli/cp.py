"""``dockyard cp``: docker's client side of the archive API — which path is copied where
(``dir/.`` for a directory's contents, a missing destination for a rename, ``-`` for a tar
on stdin/stdout, ``-L`` to follow a symlink in the container, ``-a`` to keep owners)."""

from __future__ import annotations

import base64
import io
import json
import os
import posixpath
import sys
import tarfile
import tempfile

from dockyard.cli.context import CLIError, Context
from dockyard.cli.main import new_parser

_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27


def _split(arg: str) -> tuple[str | None, str]:
    """``container:path`` or a local path (a path with a ``/`` before any ``:`` is local)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    name, _, path = arg.partition(":")
    return name, path


def _stat(ctx: Context, container: str, path: str) -> dict | None:
    from dockyard.cli.client import APIError, quote

    try:
        resp = ctx.client.head(f"/containers/{quote(container)}/archive", params={"path": path})
    except APIError as e:
        if e.status == 404:
            return None
        raise
    raw = resp.headers.get("X-Docker-Container-Path-Stat") or ""
    return json.loads(base64.b64decode(raw)) if raw else None


def cmd_cp(ctx: Context, args: list[str], prog: str = "dockyard cp") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       {prog} [OPTIONS] SRC_PATH|- "
                   "CONTAINER:DEST_PATH", description="Copy files/folders between a container and the local filesystem")
    p.add_argument("-a", "--archive", action="store_true", help="Archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true", help="Always follow symbol link in SRC_PATH")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress progress output during copy")
    p.add_argument("src")
    p.add_argument("dest")
    o = p.parse_args(args)
    src_ctr, src = _split(o.src)
    dst_ctr, dst = _split(o.dest)
    if src_ctr and dst_ctr:
        raise CLIError("copying between containers is not supported", 1)
    if not src_ctr and not dst_ctr:
        raise CLIError("must specify at least one container source", 1)
    if src_ctr:
        return _from_container(ctx, src_ctr, src, dst, o.follow_link)
    assert dst_ctr is not None
    return _to_container(ctx, src, dst_ctr, dst, o.archive)


def _from_container(ctx: Context, container: str, src: str, dest: str, follow: bool) -> int:
    from dockyard.cli.client import quote

    st = _stat(ctx, container, src)
    if st is None:
        raise CLIError(f"Error response from daemon: Could not find the file {src} in container {container}", 1)
    if follow and st["mode"] & _GO_SYMLINK and st.get("linkTarget"):
        target = st["linkTarget"]
        src = target if target.startswith("/") else posixpath.join(posixpath.dirname(src), target)
        st = _stat(ctx, container, src) or st
    resp = ctx.client.get(f"/containers/{quote(container)}/archive", params={"path": src}, stream=True)
    if dest == "-":
        for chunk in resp.iter_chunks():
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return 0
    is_dir = bool(st["mode"] & _GO_DIR)
    contents = src.endswith("/.")
    if os.path.isdir(dest):
        target_dir, rename = dest, None if not contents else ""
    elif os.path.exists(dest):
        if is_dir:
            raise CLIError(f"cannot copy directory to a file: {dest}", 1)
        target_dir, rename = os.path.dirname(os.path.abspath(dest)), os.path.basename(dest)
    else:
        if dest.endswith("/") and not is_dir:
            raise CLIError(f"destination directory does not exist: {dest}", 1)
        parent = os.path.dirname(os.path.abspath(dest.rstrip("/")))
        if not os.path.isdir(parent):
            raise CLIError(f"destination directory does not exist: {parent}", 1)
        target_dir, rename = parent, os.path.basename(dest.rstrip("/"))
        if contents:
            os.mkdir(dest)
            target_dir, rename = dest, ""
    top = "." if contents else posixpath.basename(posixpath.normpath(src))
    with tarfile.open(fileobj=_Chunks(resp.iter_chunks()), mode="r|") as tf:
        for member in tf:
            name = member.name
            if rename is not None:
                rel = name[len(top):].lstrip("/") if name == top or name.startswith(top + "/") else name
                name = posixpath.join(rename, rel) if rename else rel
            if not name:
                continue
            member.name = name
            _extract(tf, member, target_dir)
    return 0


def _extract(tf: tarfile.TarFile, member: tarfile.TarInfo, target_dir: str) -> None:
    """The container's tar is untrusted: nothing may land outside the destination, by an
    absolute name, ``..`` or a symlink extracted before. tarfile's "tar" filter checks that
    (Python >= 3.11.4); an older tarfile gets the same check here."""
    if hasattr(tarfile, "tar_filter"):
        tf.extract(member, target_dir, filter="tar", set_attrs=True)
        return
    top = os.path.realpath(target_dir)
    where = os.path.realpath(os.path.join(top, member.name))
    if os.path.isabs(member.name) or os.path.commonpath([top, where]) != top:
        raise CLIError(f"refusing to extract {member.name!r}: it is outside {target_dir}", 1)
    tf.extract(member, target_dir, set_attrs=True)


class _Chunks(io.RawIOBase):
    def __init__(self, chunks: object) -> None:
        self._it = iter(chunks)  # type: ignore[call-overload]
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n], self._buf = self._buf[:n], self._buf[n:]
        return n


def _to_container(ctx: Context, src: str, container: str, dest: str, keep_owner: bool) -> int:
    from dockyard.cli.client import quote

    st = _stat(ctx, container, dest)
    params: dict[str, object] = {"copyUIDGID": keep_owner, "noOverwriteDirNonDir": True}
    if src == "-":
        if st is None or not st["mode"] & _GO_DIR:
            raise CLIError(f"destination \"{container}:{dest}\" must be a directory", 1)
        params["path"] = dest
        ctx.client.put(f"/containers/{quote(container)}/archive", params=params, body=sys.stdin.buffer)
        return 0
    if not os.path.lexists(src):
        raise CLIError(f"lstat {os.path.abspath(src)}: no such file or directory", 1)
    contents = src.endswith("/.")
    src_is_dir = os.path.isdir(src)
    if st is not None and st["mode"] & _GO_DIR:
        path, name = dest, None if not contents else "."
    elif st is not None:
        if src_is_dir:
            raise CLIError(f"cannot copy directory to a file: {container}:{dest}", 1)
        path, name = posixpath.dirname(posixpath.normpath(dest)) or "/", posixpath.basename(posixpath.normpath(dest))
    else:
        if dest.endswith("/"):
            raise CLIError(f"destination directory does not exist: {container}:{dest}", 1)
        path, name = posixpath.dirname(posixpath.normpath(dest)) or "/", posixpath.basename(posixpath.normpath(dest))
    with tempfile.TemporaryFile() as tmp:
        with tarfile.open(fileobj=tmp, mode="w", format=tarfile.PAX_FORMAT) as tf:
            arcname = name if name is not None else os.path.basename(os.path.normpath(src))
            tf.add(src, arcname=arcname, recursive=True)
        tmp.seek(0)
        params["path"] = path
        ctx.client.put(f"/containers/{quote(container)}/archive", params=params, body=tmp)
    return 0

