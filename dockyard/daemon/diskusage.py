"""``GET /system/df``: what images, containers and volumes take on disk, counted honestly —
a layer shared by several images once (LayersSize, each image's SharedSize), and a
container's log files with its writable layer (docker leaves logs out)."""

from __future__ import annotations

import os
from typing import Any

from dockyard.containers.config import command_of
from dockyard.daemon.volumes import tree_size
from dockyard.errors import DockyardError
from dockyard.images.timefmt import parse_rfc3339
from dockyard.snapshots import Kind


def _layer_sizes(engine: Any) -> dict[str, int]:
    """Each committed layer snapshot (chain ID) -> its own bytes."""
    sizes = {}
    for info in engine.snapshotter.walk():
        if info.kind is not Kind.COMMITTED or info.name.startswith("init-"):  # containers' mount targets
            continue
        try:
            sizes[info.name] = int(engine.snapshotter.usage(info.name).size)
        except (DockyardError, OSError):
            sizes[info.name] = 0
    return sizes


def _log_bytes(log_path: str) -> int:
    directory, base = os.path.dirname(log_path), os.path.basename(log_path)
    total = 0
    try:
        for name in os.listdir(directory):
            if name.startswith(base):
                total += os.lstat(os.path.join(directory, name)).st_size
    except OSError:
        pass
    return total


def disk_usage(engine: Any) -> dict[str, Any]:
    images_svc, containers_svc = engine.images, engine.containers
    containers_svc.settle()
    layers = _layer_sizes(engine)
    images = [images_svc.resolve(s["Id"]) for s in images_svc.list({}, False)]
    chain_users: dict[str, int] = {}
    for img in images:
        for c in img.chain:
            chain_users[c] = chain_users.get(c, 0) + 1
    records = containers_svc.records()
    image_out = []
    for img in images:
        summary = images_svc.summary(img)
        summary["Containers"] = sum(1 for r in records if r.image == img.id)
        summary["SharedSize"] = sum(layers.get(c, 0) for c in img.chain if chain_users[c] > 1)
        image_out.append(summary)
    container_out = []
    for rec in records:
        rw, rootfs = containers_svc.sizes(rec)
        logs = _log_bytes(rec.log_path)
        container_out.append({
            "Id": rec.id, "Names": [rec.name], "Image": rec.config.get("Image") or rec.image, "ImageID": rec.image,
            "Command": " ".join(command_of(rec.config)),
            "Created": int(parse_rfc3339(rec.created)), "State": rec.state, "Status": containers_svc.status_text(rec),
            "SizeRw": rw + logs, "SizeRootFs": rootfs + logs, "LogSize": logs, "Labels": rec.config.get("Labels") or {},
            "Mounts": [],
        })
    volume_out = []
    for vol in engine.volumes.store.list():
        doc = vol.to_api()
        doc["UsageData"] = {"Size": tree_size(os.path.dirname(vol.mountpoint)),
                            "RefCount": len(containers_svc.volume_users(vol.name))}
        volume_out.append(doc)
    return {"LayersSize": sum(layers.get(c, 0) for c in chain_users), "Images": image_out,
            "Containers": container_out, "Volumes": volume_out, "BuildCache": []}

