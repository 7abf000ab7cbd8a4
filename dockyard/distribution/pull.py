"""Pull an image from a registry: the manifest (a list or index: the platform's entry), the
config and the layers — downloaded in parallel into the content store, digests checked,
each unpacked as soon as it arrives (while it streams in when the layer below is ready:
layers.py), layers already present skipped — then recorded with its repo digest. Progress
goes out as docker's JSON messages. Nothing is visible before it is complete: a failed or
cancelled pull leaves blobs, committed layer snapshots and partial downloads at most, which
the next pull reuses (a partial download continues with an HTTP Range request). An empty
tag pulls every tag (``list_tags``, ``pull_all_tags``), as docker's ``pull --all-tags``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dockyard import reference
from dockyard.content.digest import sha256_digest
from dockyard.distribution.auth import AuthConfig
from dockyard.distribution.hosts import RegistryHosts
from dockyard.distribution.layers import PARALLEL_LAYERS, LayerPull
from dockyard.distribution.registry import (
    Registry,
    RegistryError,
    open_registries,
    split_repository,
)
from dockyard.errors import DataCorruption, DockyardError, NotFound
from dockyard.images.model import (
    ImageConfig,
    Index,
    Manifest,
    chain_ids,
    host_platform,
    parse_manifest_or_index,
    platform_matches,
)

Emit = Callable[[dict[str, Any]], None]
__all__ = ["PARALLEL_LAYERS", "Plan", "list_tags", "pull", "pull_all_tags", "resolve"]


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
    registry, (raw, mtype) = _first_answer(open_registries(hosts or RegistryHosts(), host, auth), ref,
                                           lambda r: r.manifest(repo, ref.digest or ref.tag or "latest"))
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
    """Fetch what ``plan`` names, unpacking each layer as it arrives, and record the image
    (nothing visible before it is complete); returns the image ID. Ends with docker's
    "Digest:" and "Status:" lines."""
    image_id, changed = _pull_one(images, plan, emit)
    word = "Downloaded newer image for" if changed else "Image is up to date for"
    emit({"status": f"Status: {word} {plan.ref.familiar()}"})
    return image_id


def _pull_one(images: Any, plan: Plan, emit: Emit) -> tuple[str, bool]:
    """One manifest's pull up to its "Digest:" line: (image ID, whether anything changed)."""
    ref, registry, repo, manifest = plan.ref, plan.registry, plan.repo, plan.manifest
    emit({"status": f"Pulling from {ref.familiar_name}", "id": ref.tag or ref.digest})
    content = images.content
    layers = manifest.layers
    with images.lease() as lease:
        # leased before anything is looked at: a removal meanwhile leaves them alone
        lease.add(blobs=[manifest.config.digest, *(d.digest for d in layers), *(d for _, d in plan.documents)])
        if content.exists(manifest.config.digest):
            with content.open(manifest.config.digest) as f:
                config_raw = f.read()
        else:
            config_raw = _fetch_small(registry, repo, manifest.config.digest, manifest.config.size)
        config = ImageConfig.parse(config_raw)
        diff_ids = config.diff_ids
        if len(diff_ids) != len(layers):
            raise DataCorruption(f"invalid image: {len(layers)} layers but {len(diff_ids)} diff IDs")
        chains = chain_ids(diff_ids)
        lease.add(snapshots=chains)
        LayerPull(images, registry, repo, layers, diff_ids, chains, emit, lease).run()
        changed = images.record_pulled(manifest, config, ref, plan.top_digest,
                                       [*plan.documents, (config_raw, manifest.config.digest)])
    emit({"status": f"Digest: {plan.top_digest}"})
    return config.id, changed


def list_tags(name: str, *, auth: AuthConfig | None = None, hosts: RegistryHosts | None = None) -> list[str]:
    """The tags of repository ``name``, for docker's ``pull --all-tags`` (an empty tag in
    the API). Read before any progress, so a missing repository is an HTTP error."""
    ref = reference.parse(name, default_tag=False)
    host, repo = split_repository(ref.name)
    return _first_answer(open_registries(hosts or RegistryHosts(), host, auth), ref, lambda r: r.tags(repo))[1]


def _first_answer(candidates: list[Registry], ref: reference.Reference,
                  ask: Callable[[Registry], Any]) -> tuple[Registry, Any]:
    """The first registry that answers (docker.io's mirrors, then Docker Hub) and its answer.
    A mirror failing in any way (missing image, wanting credentials, down) passes to the next;
    the last one's error is the user's."""
    for registry in candidates:
        try:
            return registry, ask(registry)
        except DockyardError as e:
            if registry is not candidates[-1]:
                continue
            if isinstance(e, RegistryError):
                raise _not_found(ref, e) from None
            raise
    raise AssertionError("unreachable")


def pull_all_tags(images: Any, name: str, tags: list[str], emit: Emit, platform: dict[str, str] | None = None, *,
                  auth: AuthConfig | None = None, hosts: RegistryHosts | None = None) -> list[tuple[str, str]]:
    """docker's ``pull --all-tags``: each of ``tags`` of repository ``name`` in turn (its
    own "Pulling from" ... "Digest:"), then one "Status:" line for the repository, as
    docker words it. Returns (image ID, familiar name:tag) per tag."""
    repo_ref = reference.parse(name, default_tag=False)
    pulled: list[tuple[str, str]] = []
    changed = False
    for tag in tags:
        plan = resolve(str(repo_ref.with_tag(tag)), platform, auth=auth, hosts=hosts)
        image_id, new = _pull_one(images, plan, emit)
        pulled.append((image_id, plan.ref.familiar()))
        changed = changed or new
    word = "Downloaded newer image for" if changed else "Image is up to date for"
    emit({"status": f"Status: {word} {repo_ref.familiar()}"})
    return pulled


def _fetch_small(registry: Registry, repo: str, digest: str, size: int) -> bytes:
    parts: list[bytes] = []
    registry.blob(repo, digest, parts.append, size)
    raw = b"".join(parts)
    if sha256_digest(raw) != digest:
        raise DataCorruption(f"blob digest mismatch: expected {digest}")
    return raw

