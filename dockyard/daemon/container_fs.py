"""A container's filesystem as docker exposes it: ``diff`` (what its writable layer changed
over the image), ``export`` (its whole root as a tar) and ``commit`` (an image whose new
layer is that diff). The container's snapshot is read through the snapshotter's mounts, never
through the container's own mount namespace."""

from __future__ import annotations

import contextlib
import copy
import os
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO

from dockyard.archive import changes, write_diff
from dockyard.containers.config import command_of
from dockyard.errors import Conflict, InvalidArgument
from dockyard.images.changes import apply_change
from dockyard.snapshots import Mount

_KIND = {"C": 0, "A": 1, "D": 2}  # the API's Kind numbers
# the container config fields an image config keeps (docker's commit copies these)
_IMAGE_FIELDS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
                 "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Volumes",
                 "WorkingDir", "Entrypoint", "OnBuild", "Labels", "StopSignal", "Shell")


@contextlib.contextmanager
def _image_view(svc: Any, rec: Any) -> Iterator[list[Mount]]:
    """What the container's layer sits on, read-only: its image's top layer, or the init
    layer over it (whose /etc mount targets are then no change of the container's)."""
    parent = svc.snapshotter.stat(rec.snapshot_key).parent
    if parent is None:
        yield []
        return
    key = f"view-{uuid.uuid4().hex}"
    mounts = svc.snapshotter.view(key, parent)
    try:
        yield mounts
    finally:
        svc.snapshotter.remove(key)


def _rootfs(rec: Any) -> list[Mount]:
    return [Mount("bind", os.path.join(rec.bundle, "rootfs"), ["ro", "rbind"])]


def container_changes(svc: Any, ref: str) -> list[dict[str, Any]]:
    """``GET /containers/{id}/changes``: [{"Path", "Kind"}] sorted by path."""
    rec = svc.lookup(ref)
    with _image_view(svc, rec) as lower:
        found = changes(lower, svc.snapshotter.mounts(rec.snapshot_key))
    return [{"Path": c.path, "Kind": _KIND[c.kind]} for c in sorted(found, key=lambda c: c.path)]


def export(svc: Any, ref: str, out: BinaryIO) -> None:
    """``GET /containers/{id}/export``: the container's root filesystem as one tar."""
    rec = svc.lookup(ref)
    write_diff([], _rootfs(rec), out)


def _image_config(rec: Any, image_id: str, overrides: dict[str, Any] | None, changes_: list[str]) -> dict[str, Any]:
    config = {k: copy.deepcopy(rec.config[k]) for k in _IMAGE_FIELDS if rec.config.get(k) is not None}
    for key, value in (overrides or {}).items():
        if key in _IMAGE_FIELDS and value not in (None, "", [], {}):
            config[key] = copy.deepcopy(value)
    for change in changes_:
        apply_change(config, change)
    config["Image"] = image_id
    return config


def commit(svc: Any, ref: str, *, repo: str | None = None, tag: str | None = None, comment: str = "",
           author: str = "", changes_: list[str] | None = None, pause: bool = True,
           overrides: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
           created_by: str | None = None) -> str:
    """``POST /commit``: checks everything first (changes, the name), then writes the layer,
    so bad input leaves no blob, snapshot or image behind."""
    if overrides is not None and not isinstance(overrides, dict):
        raise InvalidArgument("invalid JSON: the body must be an object")
    rec = svc.lookup(ref)
    img = svc.images.resolve(rec.image)
    # ``config``: the image config as is (a build step's), not derived from the container's
    config = {**config, "Image": img.id} if config is not None else \
        _image_config(rec, img.id, overrides, list(changes_ or []))
    if repo:
        from dockyard import reference

        reference.parse_repo_tag(repo, tag)  # a bad name fails before any work
    freeze = pause and rec.running and not rec.paused
    if freeze:
        svc.pause(rec.id)
    try:
        with _image_view(svc, rec) as lower:
            image_id = svc.images.commit(img, lower, svc.snapshotter.mounts(rec.snapshot_key), config, repo=repo,
                                         tag=tag, comment=comment, author=author,
                                         created_by=created_by or " ".join(command_of(rec.config)))
    finally:
        if freeze:
            with contextlib.suppress(Conflict):
                svc.unpause(rec.id)
    attrs = {"comment": comment, "imageID": image_id}
    if repo:
        attrs["imageRef"] = f"{repo}:{tag or 'latest'}"
    svc.event(svc.lookup(rec.id), "commit", attrs)
    return image_id
