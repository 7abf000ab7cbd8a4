"""Push an image to a registry as docker does: per layer a HEAD (present: "Layer already
exists"), else a cross-repository mount from a repository on the same registry the layer
is known to come from ("Mounted from ..."), else an upload ("Pushing" progress, "Pushed");
then the config and the manifest — the stored bytes, so a pulled image keeps its digest —
and docker's "<tag>: digest: <digest> size: <n>" line with its aux message."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dockyard import reference
from dockyard.distribution import short_id
from dockyard.distribution.auth import AuthConfig
from dockyard.distribution.hosts import RegistryHosts
from dockyard.distribution.layers import PROGRESS_INTERVAL
from dockyard.distribution.registry import Registry, RegistryError, open_registry, split_repository
from dockyard.errors import NotFound, Unauthorized

PARALLEL_UPLOADS = 5  # docker's max-concurrent-uploads default
Emit = Callable[[dict[str, Any]], None]


def push_targets(images: Any, name: str, tag: str) -> list[tuple[reference.Reference, str]]:
    """The (reference, image ID) pairs a push of ``name`` (and ``tag``; empty: every tag of
    the repository) covers. Raises NotFound before any progress, as docker answers."""
    ref = reference.parse_repo_tag(name, tag or None) if tag else reference.parse(name)
    if tag or ":" in name.rsplit("/", 1)[-1] or ref.digest:
        try:
            return [(ref, images.resolve_id(str(ref)))]
        except NotFound:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}") from None
    targets = []
    for rec in images.metadata.list():
        for t in rec.tags:
            tagged = reference.parse(t)
            if tagged.name == ref.name and tagged.tag:
                targets.append((tagged, rec.id))
    if not targets:
        raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
    return sorted(targets, key=lambda t: t[0].tag or "")


def push(images: Any, targets: list[tuple[reference.Reference, str]], emit: Emit, *,
         auth: AuthConfig | None = None, hosts: RegistryHosts | None = None) -> None:
    ref = targets[0][0]
    host, repo = split_repository(ref.name)
    registry = open_registry(hosts or RegistryHosts(), host, auth, push=True)
    emit({"status": f"The push refers to repository [{ref.familiar_name}]"})
    for target, image_id in targets:
        _push_one(images, registry, host, repo, target, image_id, emit)


def _push_one(images: Any, registry: Registry, host: str, repo: str, ref: reference.Reference,
              image_id: str, emit: Emit) -> None:
    image = images.compressed_for_push(image_id)
    manifest, config = image.manifest, image.config
    layers = list(zip(manifest.layers, config.diff_ids, strict=True))
    for _, diff_id in layers:
        emit({"status": "Preparing", "progressDetail": {}, "id": short_id(diff_id)})
    sources = _mount_sources(images, host, repo)
    failed = threading.Event()  # one layer failed: the others stop at their next chunk

    def send(desc: Any, diff_id: str) -> None:
        sid = short_id(diff_id)
        if failed.is_set():
            return
        if registry.blob_size(repo, desc.digest) is not None:
            emit({"status": "Layer already exists", "progressDetail": {}, "id": sid})
            return
        for source in sources.get(desc.digest, []):
            try:
                mounted = registry.mount_blob(repo, desc.digest, source)
            except (RegistryError, Unauthorized):  # e.g. no pull access to the source: upload
                mounted = False
            if mounted:
                emit({"status": f"Mounted from {_familiar_repo(host, source)}", "progressDetail": {}, "id": sid})
                return
        done, last = [0], [0.0]

        def progress(n: int) -> None:
            if failed.is_set():
                raise _Cancelled()
            done[0] += n
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL or done[0] == desc.size:
                last[0] = now
                emit({"status": "Pushing", "progressDetail": {"current": done[0], "total": desc.size}, "id": sid})

        with images.content.open(desc.digest) as blob:
            registry.upload_blob(repo, desc.digest, desc.size, blob, progress)
        emit({"status": "Pushed", "progressDetail": {}, "id": sid})

    try:
        with ThreadPoolExecutor(PARALLEL_UPLOADS) as pool:
            futures = []
            for i, (desc, diff_id) in enumerate(layers):
                if i >= PARALLEL_UPLOADS:
                    emit({"status": "Waiting", "progressDetail": {}, "id": short_id(diff_id)})
                futures.append(pool.submit(send, desc, diff_id))
            try:
                for f in futures:
                    f.result()
            except BaseException:
                failed.set()
                pool.shutdown(cancel_futures=True)
                raise
        if registry.blob_size(repo, manifest.config.digest) is None:
            with images.content.open(manifest.config.digest) as blob:
                registry.upload_blob(repo, manifest.config.digest, manifest.config.size, blob)
        digest = registry.put_manifest(repo, ref.tag or "latest", manifest.raw, manifest.media_type)
    except RegistryError as e:
        raise _denied(e) from None
    digest = digest or manifest.digest
    images.add_repo_digest(image_id, f"{ref.name}@{digest}")
    tag = ref.tag or "latest"
    emit({"status": f"{tag}: digest: {digest} size: {len(manifest.raw)}"})
    emit({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": len(manifest.raw)}})


class _Cancelled(Exception):
    """Another layer's upload failed: this one stops (not an OSError: no retry)."""


def _mount_sources(images: Any, host: str, repo: str) -> dict[str, list[str]]:
    """blob digest -> other repositories on ``host`` whose images hold it (from the repo
    digests and tags of local images): candidates for a cross-repository mount."""
    sources: dict[str, list[str]] = {}
    for rec in images.metadata.list():
        repos = []  # a repo digest says the registry had the image's blobs there
        for name in rec.digests:
            other_host, _, other = reference.parse(name).name.partition("/")
            if other_host == host and other != repo and other not in repos:
                repos.append(other)
        if not repos:
            continue
        try:
            image = images.resolve(rec.id)
        except NotFound:
            continue
        for desc in image.manifest.layers:
            for other in repos:
                if other not in sources.setdefault(desc.digest, []):
                    sources[desc.digest].append(other)
    return sources


def _denied(e: RegistryError) -> Exception:
    if e.http_status == 401:
        return Unauthorized(str(e))
    if "DENIED" in e.codes or e.http_status == 403:
        return Unauthorized("denied: requested access to the resource is denied")
    return e


def _familiar_repo(host: str, repo: str) -> str:
    return repo.removeprefix("library/") if host == "docker.io" else repo

