"""``docker save``: images from the content store -> a Docker 25+ archive (a tar on ``out``).

The archive is an OCI image layout that also carries docker's legacy metadata, so it can
be read by ``docker load`` of any version, ``skopeo ... docker-archive:`` and
``skopeo ... oci-archive:``::

    blobs/                      directory entries, as docker writes them
    blobs/sha256/
    blobs/sha256/<hex>          every manifest, config and layer blob, as stored, once each
    index.json                  OCI index: an entry per (image, name); unnamed images get one
                                entry without annotations
    manifest.json               [{"Config": "blobs/sha256/<hex>", "RepoTags": [...],
                                  "Layers": ["blobs/sha256/<hex>", ...]}]
    oci-layout                  {"imageLayoutVersion":"1.0.0"}
    repositories                {"<familiar repo>": {"<tag>": "<hex of the top layer blob>"}}

Entries are in lexical order (docker tars a directory), owned by 0:0 with mtime 0, so the
same images always give the same bytes. Blobs are streamed from the store: nothing is
copied to a temporary file. Everything is checked before the first byte is written.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dockyard import reference
from dockyard.content.digest import hexpart
from dockyard.errors import DataCorruption, InvalidArgument
from dockyard.images import mediatypes as mt
from dockyard.images.model import (
    Descriptor,
    ImageConfig,
    Manifest,
    build_index,
    parse_manifest_or_index,
)

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
MAX_JSON = 16 << 20  # manifests and configs are read into memory; cap them
_COPY_BUFSIZE = 1 << 20


@dataclass
class ExportImage:
    manifest: Descriptor  # a manifest (not an index) whose blobs are all in the store
    names: list[str] = field(default_factory=list)  # normalised refs, may be empty


@dataclass
class _Prepared:
    manifest_desc: Descriptor
    manifest: Manifest
    config: ImageConfig
    refs: list[reference.Reference]


def familiar(name: str) -> str:
    """``docker.io/library/busybox:latest`` -> ``busybox:latest``; ``docker.io/a/b:t`` ->
    ``a/b:t``; other registries are left alone (``localhost:5000/a/b:t``)."""
    if not name.startswith("docker.io/"):
        return name
    rest = name[len("docker.io/"):]
    if rest.startswith("library/"):
        short = rest[len("library/"):]
        if "/" not in short.split(":", 1)[0].split("@", 1)[0]:
            return short
    return rest


def _read_small(store: Any, desc: Descriptor, what: str) -> bytes:
    if desc.size > MAX_JSON:
        raise DataCorruption(f"{what} {desc.digest} is too large ({desc.size} bytes)")
    with store.open(desc.digest) as f:
        raw = f.read(MAX_JSON + 1)
    if len(raw) != desc.size:
        raise DataCorruption(f"{what} {desc.digest}: size mismatch: expected {desc.size}, got {len(raw)}")
    return raw


def _check_blob(store: Any, desc: Descriptor, what: str) -> int:
    size = store.info(desc.digest).size  # NotFound if absent
    if size != desc.size:
        raise DataCorruption(f"{what} {desc.digest}: size mismatch: expected {desc.size}, got {size}")
    return size


def _prepare(store: Any, images: list[ExportImage]) -> list[_Prepared]:
    by_digest: dict[str, _Prepared] = {}
    for item in images:
        raw = _read_small(store, item.manifest, "manifest")
        parsed = parse_manifest_or_index(raw, item.manifest.media_type or None)
        if not isinstance(parsed, Manifest):
            raise InvalidArgument(f"{item.manifest.digest} is an image index, not a manifest")
        config = ImageConfig.parse(_read_small(store, parsed.config, "image config"))
        if len(config.diff_ids) != len(parsed.layers):
            raise DataCorruption(
                f"image {config.id}: config has {len(config.diff_ids)} diff_ids "
                f"but the manifest has {len(parsed.layers)} layers"
            )
        for layer in parsed.layers:
            _check_blob(store, layer, "layer")
        media_type = item.manifest.media_type or parsed.media_type
        desc = Descriptor(media_type, item.manifest.digest, item.manifest.size)
        prepared = by_digest.setdefault(desc.digest, _Prepared(desc, parsed, config, []))
        for name in item.names:
            ref = reference.parse(name)
            if ref.digest is not None:  # docker saves only tagged names
                continue
            if all(str(r) != str(ref) for r in prepared.refs):
                prepared.refs.append(ref)
    return list(by_digest.values())


def _platform(config: ImageConfig) -> dict[str, str]:
    plat = {"architecture": config.architecture, "os": config.os}
    if config.variant:
        plat["variant"] = config.variant
    return plat


def _index_json(images: list[_Prepared]) -> bytes:
    entries: list[Descriptor] = []
    for img in images:
        base = img.manifest_desc
        plat = _platform(img.config) if img.config.architecture else None
        if not img.refs:
            entries.append(Descriptor(base.media_type, base.digest, base.size, platform=plat))
        for ref in img.refs:
            annotations = {mt.ANNOTATION_IMAGE_NAME: str(ref), mt.ANNOTATION_REF_NAME: ref.tag or ""}
            entries.append(Descriptor(base.media_type, base.digest, base.size, annotations, plat))
    return build_index(entries, oci=True).raw


def _blob_path(digest: str) -> str:
    algo, hex_ = digest.split(":", 1)
    return f"blobs/{algo}/{hex_}"


def _manifest_json(images: list[_Prepared]) -> bytes:
    items = []
    for img in images:
        item: dict[str, Any] = {
            "Config": _blob_path(img.manifest.config.digest),
            # Go marshals docker's nil slice as null for an untagged image
            "RepoTags": [familiar(str(r)) for r in img.refs] or None,
            "Layers": [_blob_path(layer.digest) for layer in img.manifest.layers],
        }
        sources = {
            diff_id: layer.to_json()
            for diff_id, layer in zip(img.config.diff_ids, img.manifest.layers, strict=True)
            if layer.urls
        }
        if sources:
            item["LayerSources"] = sources
        items.append(item)
    return (json.dumps(items, separators=(",", ":")) + "\n").encode()


def _repositories_json(images: list[_Prepared]) -> bytes | None:
    repos: dict[str, dict[str, str]] = {}
    for img in images:
        if not img.manifest.layers:
            continue
        top = hexpart(img.manifest.layers[-1].digest)
        for ref in img.refs:
            repos.setdefault(familiar(ref.name), {})[ref.tag or "latest"] = top
    if not repos:
        return None
    return (json.dumps(repos, separators=(",", ":"), sort_keys=True) + "\n").encode()


def _info(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    if directory:
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
    else:
        ti.size = size
        ti.mode = 0o644
    return ti


class _Out:
    """Write-only file object for tarfile that keeps it from seeking or closing ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def write(self, data: bytes) -> int:
        self._out.write(data)
        return len(data)


def save(store: Any, images: list[ExportImage], out: BinaryIO) -> None:
    """Write ``images`` (and every blob they reference) as one docker save archive."""
    prepared = _prepare(store, images)

    blobs: dict[str, int] = {}  # digest -> size
    for img in prepared:
        blobs[img.manifest_desc.digest] = _check_blob(store, img.manifest_desc, "manifest")
        blobs[img.manifest.config.digest] = img.manifest.config.size
        for layer in img.manifest.layers:
            blobs[layer.digest] = layer.size

    metadata = {
        "index.json": _index_json(prepared),
        "manifest.json": _manifest_json(prepared),
        "oci-layout": OCI_LAYOUT,
    }
    repositories = _repositories_json(prepared)
    if repositories is not None:
        metadata["repositories"] = repositories

    algos = sorted({d.split(":", 1)[0] for d in blobs})
    with tarfile.open(fileobj=_Out(out), mode="w|", format=tarfile.PAX_FORMAT,
                      bufsize=_COPY_BUFSIZE) as tf:
        tf.addfile(_info("blobs", directory=True))
        for algo in algos:
            tf.addfile(_info(f"blobs/{algo}", directory=True))
            for digest in sorted(d for d in blobs if d.startswith(algo + ":")):
                with store.open(digest) as f:
                    tf.addfile(_info(_blob_path(digest), blobs[digest]), f)
        for name in sorted(metadata):
            data = metadata[name]
            tf.addfile(_info(name, len(data)), io.BytesIO(data))
    if hasattr(out, "flush"):
        out.flush()
