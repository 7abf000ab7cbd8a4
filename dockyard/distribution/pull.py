"""Pull an image from a registry: the manifest (a list or index: the platform's entry), the
config and the layers — in parallel, each streamed into the content store with its digest
checked, layers already present skipped — then unpacked and recorded with its repo digest.
Progress goes out as docker's JSON messages. Nothing is visible before it is complete: a
failed pull leaves blobs at most, which the next pull reuses."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dockyard import reference
from dockyard.content.digest import sha256_digest
from dockyard.distribution.auth import AuthConfig
from dockyard.distribution.hosts import RegistryHosts
from dockyard.distribution.registry import (
    Registry,
    RegistryError,
    open_registries,
    split_repository,
)
from dockyard.errors import DataCorruption, NotFound, Unavailable
from dockyard.images.model import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    host_platform,
    parse_manifest_or_index,
    platform_matches,
)

PARALLEL_LAYERS = 3
Emit = Callable[[dict[str, Any]], None]


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _not_found(ref: reference.Reference, e: RegistryError) -> Exception:
    if "NAME_UNKNOWN" in e.codes or e.http_status in (401, 403):
        return NotFound(f"pull access denied for {ref.familiar_name}, repository does not exist or may require "
                        "'docker login': denied: requested access to the resource is denied")
    if "MANIFEST_UNKNOWN" in e.codes or e.http_status == 404:
        return NotFound(f"manifest for {ref.familiar()} not found: manifest unknown: manifest unknown")
    return e


@dataclass
class Plan:
    """What a pull will fetch, known once the manifests are read."""

    ref: reference.Reference
    registry: Registry
    repo: str
    manifest: Manifest
    top_digest: str  # what the tag names: the repo digest
    documents: list[tuple[bytes, str]]  # manifest (and index) bytes with their digests


def resolve(name: str, platform: dict[str, str] | None = None, *, auth: AuthConfig | None = None,
            hosts: RegistryHosts | None = None) -> Plan:
    """Read the manifest ``name`` names (an index: the platform's entry). Errors here come
    before any progress, as docker answers them: an HTTP error, not one in the stream.
    docker.io's mirrors are tried first; the first registry that has the manifest serves
    the whole pull."""
    ref = reference.parse(name)
    host, repo = split_repository(ref.name)
    want = platform or host_platform()
    candidates = open_registries(hosts or RegistryHosts(), host, auth)
    for registry in candidates:
        try:
            raw, mtype = registry.manifest(repo, ref.digest or ref.tag or "latest")
            break
        except (RegistryError, Unavailable) as e:
            if registry is candidates[-1]:
                if isinstance(e, Unavailable):
                    raise
                raise _not_found(ref, e) from None
    top_digest = sha256_digest(raw)
    if ref.digest and top_digest != ref.digest:
        raise DataCorruption(f"manifest digest mismatch: expected {ref.digest}, got {top_digest}")
    doc = parse_manifest_or_index(raw, mtype)
    blobs = [(raw, top_digest)]
    if isinstance(doc, Index):
        chosen = next((d for d in doc.manifests if platform_matches(want, d.platform)), None)
        if chosen is None:
            wanted = "/".join(want[k] for k in ("os", "architecture", "variant") if want.get(k))
            raise NotFound(f"no matching manifest for {wanted} in the manifest list entries")
        raw, mtype = registry.manifest(repo, chosen.digest)
        if sha256_digest(raw) != chosen.digest:
            raise DataCorruption(f"manifest digest mismatch for {chosen.digest}")
        doc = parse_manifest_or_index(raw, mtype or chosen.media_type)
        blobs.append((raw, chosen.digest))
    if isinstance(doc, Index):
        raise DataCorruption("an index inside an index is not supported")
    return Plan(ref, registry, repo, doc, top_digest, blobs)


def pull(images: Any, plan: Plan, emit: Emit) -> str:
    """Fetch what ``plan`` names into the content store, unpack it, record it; returns the
    image ID."""
    ref, registry, repo, manifest = plan.ref, plan.registry, plan.repo, plan.manifest
    emit({"status": f"Pulling from {ref.familiar_name}", "id": ref.tag or ref.digest})
    content = images.content
    config_raw = _fetch_small(registry, repo, manifest.config.digest)
    config = ImageConfig.parse(config_raw)
    lock = threading.Lock()

    def layer(desc: Descriptor) -> None:
        sid = _short(desc.digest)
        if content.exists(desc.digest):
            emit({"status": "Already exists", "progressDetail": {}, "id": sid})
            return
        emit({"status": "Pulling fs layer", "progressDetail": {}, "id": sid})
        writer = content.writer(f"pull-{desc.digest}", expected=desc.digest, total=desc.size)
        if writer.offset:  # a failed pull's partial blob: resuming with Range is a later step
            writer.abort()
            writer = content.writer(f"pull-{desc.digest}", expected=desc.digest, total=desc.size)
        done = [0]
        try:
            def write(chunk: bytes) -> None:
                writer.write(chunk)
                done[0] += len(chunk)
                with lock:
                    emit({"status": "Downloading", "progressDetail": {"current": done[0], "total": desc.size}, "id": sid})
            registry.blob(repo, desc.digest, write, desc.size)
            writer.commit(size=desc.size, expected=desc.digest)
        except BaseException:
            writer.abort()
            raise
        emit({"status": "Download complete", "progressDetail": {}, "id": sid})

    with ThreadPoolExecutor(PARALLEL_LAYERS) as pool:
        for f in [pool.submit(layer, d) for d in manifest.layers]:
            f.result()
    for raw_doc, digest in plan.documents:
        content.put(raw_doc, expected=digest)
    content.put(config_raw, expected=manifest.config.digest)
    return images.record_pulled(manifest, config, ref, plan.top_digest, emit)


def _fetch_small(registry: Registry, repo: str, digest: str) -> bytes:
    parts: list[bytes] = []
    registry.blob(repo, digest, parts.append)
    raw = b"".join(parts)
    if sha256_digest(raw) != digest:
        raise DataCorruption(f"blob digest mismatch: expected {digest}")
    return raw

