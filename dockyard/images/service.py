"""The image service: resolves names, imports, unpacks, tags, removes, saves and loads
images. It owns the metadata store and uses the content store and snapshotter below it;
the API layer above calls it from worker threads (every method here blocks)."""

from __future__ import annotations

import contextlib
import fnmatch
import io
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from dockyard import reference
from dockyard.archive import apply_layer, detect_compression
from dockyard.archive.worker import apply_layer_in_worker
from dockyard.content.digest import sha256_digest
from dockyard.errors import Conflict, DataCorruption, InvalidArgument, NotFound
from dockyard.images import mediatypes as mt
from dockyard.images import transfer
from dockyard.images.changes import apply_change
from dockyard.images.metadata import ImageRecord, MetadataStore
from dockyard.images.model import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    build_manifest,
    chain_id,
    chain_ids,
    new_config,
    parse_manifest_or_index,
    platform_of,
)
from dockyard.images.timefmt import now_rfc3339, parse_rfc3339, to_rfc3339
from dockyard.labels import label_matches
from dockyard.snapshots import Mount

SIZE_LABEL = "dockyard.layer.size"
INIT_PREFIX = "init-"  # the init layer of containers on an image's top layer (see init_layer)


def _init_tar() -> bytes:
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name in ("etc/hosts", "etc/resolv.conf", "etc/hostname"):
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = 0o644, 0
            tf.addfile(info)
    return out.getvalue()


_INIT_TAR = _init_tar()
_HEX = set("0123456789abcdef")

Progress = Callable[[dict[str, Any]], None]


@dataclass
class Image:
    """An image record with its parsed manifest and config."""

    record: ImageRecord
    manifest: Manifest
    config: ImageConfig

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def chain(self) -> list[str]:
        return chain_ids(self.config.diff_ids)


class _Tee(io.RawIOBase):
    """Reads from ``src`` and copies every byte into ``sink`` (a content writer)."""

    def __init__(self, src: BinaryIO, sink: Any) -> None:
        self._src, self._sink = src, sink
        self.head = b""  # the first bytes decide the layer's media type

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self._src.read(len(buf))
        if not data:
            return 0
        self._sink.write(data)
        if len(self.head) < 8:
            self.head += data[: 8 - len(self.head)]
        buf[: len(data)] = data
        return len(data)


def familiar(name: str) -> str:
    return reference.parse(name, default_tag=False).familiar()


class Lease:
    """What an operation in flight holds without an image referencing it yet (containerd's
    lease): blobs and snapshots (committed chain IDs, active extract keys) that removal's
    garbage collection and other operations' rollbacks leave alone. Taken from
    ``ImageService.lease``; changed under the service lock, so a name added before it is
    checked for existence cannot be collected in between."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self.blobs: set[str] = set()
        self.snapshots: set[str] = set()

    def add(self, blobs: Iterable[str] = (), snapshots: Iterable[str] = ()) -> None:
        with self._lock:
            self.blobs.update(blobs)
            self.snapshots.update(snapshots)

    def discard_snapshot(self, key: str) -> None:
        with self._lock:
            self.snapshots.discard(key)


class ImageService:
    def __init__(self, content: Any, snapshotter: Any, metadata: MetadataStore) -> None:
        self.content = content
        self.snapshotter = snapshotter
        self.metadata = metadata
        # One writer at a time for operations that add or remove blobs and snapshots, so
        # removal's garbage collection never races an import that shares a blob.
        self._lock = threading.RLock()
        self._leases: list[Lease] = []  # pulls in flight (they unpack outside the lock)
        self._remove_stale_extractions()

    # ------------------------------------------------------------------ lookups

    def _load(self, rec: ImageRecord) -> Image:
        with self.content.open(rec.manifest.digest) as f:
            manifest = parse_manifest_or_index(f.read(), rec.manifest.media_type)
        if isinstance(manifest, Index):
            raise DataCorruption(f"image {rec.id} points at an index")
        with self.content.open(rec.id) as f:
            config = ImageConfig.parse(f.read())
        return Image(rec, manifest, config)

    def resolve(self, name: str) -> Image:
        return self._load(self.metadata.get(self.resolve_id(name)))

    def resolve_id(self, name: str) -> str:
        """Docker's lookup order: full ID, name (tag or digest), then a unique ID prefix."""
        if not name:
            raise InvalidArgument("invalid reference format")
        candidate = name.removeprefix("sha256:")
        if len(candidate) == 64 and set(candidate) <= _HEX:
            if self.metadata.exists("sha256:" + candidate):
                return "sha256:" + candidate
            raise NotFound(f"No such image: {name}")
        ref_error: Exception | None = None
        try:
            ref = reference.parse(name)
        except InvalidArgument as e:
            ref, ref_error = None, e
        if ref is not None:
            if ref.digest:
                found = self.metadata.by_digest(f"{ref.name}@{ref.digest}")
                if found is None:
                    found = next(iter(self.metadata.by_manifest(ref.digest)), None)
                    if found and ref.tag is None and not self._has_repo(found, ref.name):
                        found = None
            else:
                found = self.metadata.by_tag(str(ref))
            if found:
                return found
        if 0 < len(candidate) < 64 and set(candidate) <= _HEX:
            ids = self.metadata.ids_with_prefix(candidate)
            if len(ids) == 1:
                return ids[0]
            if len(ids) > 1:
                raise NotFound(f"No such image: {name}")  # ambiguous prefix, as docker reports it
        if ref is None and ref_error is not None:
            raise ref_error
        raise NotFound(f"No such image: {self._display(ref) if ref else name}")

    def _has_repo(self, image_id: str, repo: str) -> bool:
        rec = self.metadata.get(image_id)
        return any(n.rsplit(":", 1)[0] == repo or n.split("@")[0] == repo for n in rec.tags + rec.digests)

    @staticmethod
    def _display(ref: reference.Reference) -> str:
        return ref.familiar()

    # ------------------------------------------------------------------ API shapes

    def _layer_sizes(self, chain: list[str]) -> list[int]:
        sizes = []
        for c in chain:
            try:
                sizes.append(int(self.snapshotter.stat(c).labels.get(SIZE_LABEL, "0")))
            except (NotFound, ValueError):
                sizes.append(0)
        return sizes

    def summary(self, img: Image) -> dict[str, Any]:
        rec = img.record
        return {
            "Containers": -1,
            "Created": int(parse_rfc3339(img.config.created)),
            "Id": rec.id,
            "Labels": img.config.config.get("Labels") or {},
            "ParentId": rec.parent,
            "RepoDigests": [familiar(d) for d in rec.digests],
            "RepoTags": [familiar(t) for t in rec.tags],
            "SharedSize": -1,
            "Size": rec.size,
            "Descriptor": {"mediaType": rec.manifest.media_type, "digest": rec.manifest.digest, "size": rec.manifest.size},
        }

    def inspect(self, name: str) -> dict[str, Any]:
        img = self.resolve(name)
        rec, cfg = img.record, img.config
        out: dict[str, Any] = {
            "Id": rec.id,
            "RepoTags": [familiar(t) for t in rec.tags],
            "RepoDigests": [familiar(d) for d in rec.digests],
            "Parent": rec.parent,
            "Comment": cfg.doc.get("comment", ""),
            "Created": cfg.created or "",
            "DockerVersion": cfg.doc.get("docker_version", ""),
            "Author": cfg.doc.get("author", ""),
            "Config": cfg.config,
            "Architecture": cfg.architecture,
            "Os": cfg.os,
            "Size": rec.size,
            "GraphDriver": {"Name": self.snapshotter.name, "Data": None},
            "RootFS": {"Type": "layers", "Layers": cfg.diff_ids},
            "Metadata": {"LastTagTime": to_rfc3339(rec.last_tag_time)},
            "Descriptor": rec.manifest.to_json(),
        }
        if cfg.variant:
            out["Variant"] = cfg.variant
        return out

    def history(self, name: str) -> list[dict[str, Any]]:
        img = self.resolve(name)
        sizes = iter(self._layer_sizes(img.chain))
        entries = img.config.history or [{"created": img.config.created}] * len(img.chain)
        out = []
        for h in entries:
            size = 0 if h.get("empty_layer") else next(sizes, 0)
            out.append({
                "Id": "<missing>",
                "Created": int(parse_rfc3339(h.get("created"))),
                "CreatedBy": h.get("created_by", ""),
                "Tags": None,
                "Size": size,
                "Comment": h.get("comment", ""),
            })
        out.reverse()
        if out:
            out[0]["Id"] = img.id
            out[0]["Tags"] = [familiar(t) for t in img.record.tags] or None
        return out

    def list(self, filters: dict[str, list[str]] | None = None, digests: bool = False,
             all_: bool = True) -> list[dict[str, Any]]:
        """docker's image list; without ``all_``, untagged images that are another's parent
        (a build's intermediate steps) are left out, as ``docker images`` leaves them."""
        filters = filters or {}
        unknown = set(filters) - {"dangling", "reference", "label", "before", "since", "until"}
        if unknown:
            raise InvalidArgument(f"invalid filter '{sorted(unknown)[0]}'")
        dangling = filters.get("dangling")
        if dangling and dangling[-1].lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={dangling[-1]}'")
        images = [self._load(r) for r in self.metadata.list()]
        before = since = None
        if filters.get("before"):
            before = parse_rfc3339(self.resolve(filters["before"][-1]).config.created)
        if filters.get("since"):
            since = parse_rfc3339(self.resolve(filters["since"][-1]).config.created)
        parents = {img.record.parent for img in images if img.record.parent}
        out = []
        for img in images:
            if not all_ and not img.record.tags and not img.record.digests and img.id in parents:
                continue
            if dangling:
                want = dangling[-1].lower() in ("true", "1")
                if want != (not img.record.tags):
                    continue
            if filters.get("reference") and not any(
                self._ref_matches(p, img.record.tags) for p in filters["reference"]
            ):
                continue
            labels = img.config.config.get("Labels") or {}
            if any(not label_matches(labels, f) for f in filters.get("label", [])):
                continue
            created = parse_rfc3339(img.config.created)
            if before is not None and created >= before:
                continue
            if since is not None and created <= since:
                continue
            out.append(self.summary(img))
        out.sort(key=lambda s: s["Created"], reverse=True)
        return out

    @staticmethod
    def _ref_matches(pattern: str, tags: list[str]) -> bool:
        for t in tags:
            fam = familiar(t)
            repo = fam.rsplit(":", 1)[0] if ":" in fam.rsplit("/", 1)[-1] else fam
            if fnmatch.fnmatchcase(fam, pattern) or fnmatch.fnmatchcase(repo, pattern):
                return True
        return False

    # ------------------------------------------------------------------ tag / remove

    def tag(self, source: str, repo: str, tag: str | None) -> str:
        image_id = self.resolve_id(source)
        ref = reference.parse_repo_tag(repo, tag)
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        with self._lock:
            self.metadata.tag(str(ref), image_id)
        return ref.familiar()

    def remove(self, name: str, force: bool = False,
               in_use: Callable[[str], tuple[str, bool] | None] | None = None) -> list[dict[str, str]]:
        """docker rmi: untag a name, and delete the image once nothing refers to it.
        ``in_use(image_id)``: a container using the image, as (id, running), or None; an
        image in use is never deleted (``force`` only untags it, docker's messages otherwise)."""
        with self._lock:
            image_id = self.resolve_id(name)
            rec = self.metadata.get(image_id)
            short = image_id.removeprefix("sha256:")[:12]
            user = in_use(image_id) if in_use else None
            by_id = name.removeprefix("sha256:") and image_id.removeprefix("sha256:").startswith(name.removeprefix("sha256:"))
            if by_id and not self.metadata.by_tag(_full(name)) and not self.metadata.by_digest(_full(name)):
                repos = {_repo_of(n) for n in rec.tags + rec.digests}
                if len(repos) > 1 and not force:
                    raise Conflict(f"conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories")
                if user and (user[1] or not force):
                    state = "running" if user[1] else "stopped"
                    raise Conflict(f"conflict: unable to delete {short} ({'cannot' if user[1] else 'must'} be forced) - "
                                   f"image is being used by {state} container {user[0][:12]}")
                out = [{"Untagged": familiar(n)} for n in rec.tags + rec.digests]
                if user:  # forced, stopped container: untagged, kept for it
                    for n in rec.tags:
                        self.metadata.untag(n)
                    for d in rec.digests:
                        self.metadata.remove_digest(d)
                    return out
            else:
                if user and not force and len(rec.tags) + len(rec.digests) <= 1:
                    raise Conflict(f'conflict: unable to remove repository reference "{name}" (must force) - container '
                                   f"{user[0][:12]} is using its referenced image {short}")
                ref = reference.parse(name)
                key = str(ref)
                if ref.digest:
                    self.metadata.remove_digest(f"{ref.name}@{ref.digest}")
                else:
                    self.metadata.untag(key)
                out = [{"Untagged": ref.familiar()}]
                rec = self.metadata.get(image_id)
                if rec.tags:
                    return out
                # last tag gone: the digests of the same repository go with it (docker does this)
                out += [{"Untagged": familiar(d)} for d in rec.digests]
                if user:  # the last name went: the image stays for its container, nameless
                    for d in rec.digests:
                        self.metadata.remove_digest(d)
                    return out
            img = self._load(rec)
            self.metadata.delete(image_id)
            out.append({"Deleted": image_id})
            out += [{"Deleted": c} for c in self._collect(img)]
            return out

    def _references(self) -> tuple[set[str], set[str]]:
        """The blobs and layer snapshots (chain IDs) that recorded images use."""
        blobs: set[str] = set()
        chains: set[str] = set()
        for rec in self.metadata.list():
            try:
                img = self._load(rec)
            except (NotFound, DataCorruption):
                continue
            blobs |= {rec.manifest.digest, rec.id, *(layer.digest for layer in img.manifest.layers)}
            chains.update(img.chain)
        with self._lock:
            for lease in self._leases:
                blobs |= lease.blobs
                chains |= lease.snapshots
        return blobs, chains

    def _collect(self, removed: Image) -> list[str]:
        """Delete the blobs and layer snapshots of ``removed`` that no other image uses."""
        keep_blobs, keep_chains = self._references()
        for d in [removed.record.manifest.digest, removed.id, *(layer.digest for layer in removed.manifest.layers)]:
            if d not in keep_blobs and self.content.exists(d):
                self.content.delete(d)
        deleted = []
        for c in reversed(removed.chain):
            if c in keep_chains:
                break
            try:
                with contextlib.suppress(NotFound):
                    self.snapshotter.remove(INIT_PREFIX + c)  # Conflict: a container sits on it
                self.snapshotter.remove(c)
            except NotFound:
                continue
            except Conflict:  # a container's layer sits on it
                break
            deleted.append(c)
        return deleted

    # ------------------------------------------------------------------ unpack

    @contextlib.contextmanager
    def lease(self) -> Iterator[Lease]:
        """Hold blobs and snapshots for an operation that works outside the service lock
        (a pull downloading and unpacking): see Lease."""
        lease = Lease(self._lock)
        with self._lock:
            self._leases.append(lease)
        try:
            yield lease
        finally:
            with self._lock:
                self._leases.remove(lease)

    def unpack(self, manifest: Manifest, config: ImageConfig, progress: Progress | None = None) -> int:
        """Make sure every layer of the image is a committed snapshot; returns the image size."""
        diff_ids = config.diff_ids
        if len(diff_ids) != len(manifest.layers):
            raise DataCorruption(f"invalid image: {len(manifest.layers)} layers but {len(diff_ids)} diff IDs")
        chain = chain_ids(diff_ids)
        parent = None
        for layer, diff_id, name in zip(manifest.layers, diff_ids, chain, strict=True):
            if not self._has_snapshot(name):
                with self.content.open(layer.digest) as blob:
                    self._apply(blob, parent, name, expected_diff_id=diff_id)
            elif progress:
                progress({"status": "Already exists", "id": layer.digest.removeprefix("sha256:")[:12]})
            parent = name
        return sum(self._layer_sizes(chain))

    def _remove_stale_extractions(self) -> None:
        """Layer extractions a killed daemon left (active ``extract-*`` snapshots): nothing
        can be in flight before the service exists."""
        from dockyard.snapshots import Kind

        for info in list(self.snapshotter.walk()):
            if info.kind is Kind.ACTIVE and info.name.startswith("extract-"):
                with contextlib.suppress(NotFound, Conflict):
                    self.snapshotter.remove(info.name)

    def init_layer(self, chain: str | None) -> str:
        """docker's init layer for the containers of an image whose top layer is ``chain``:
        empty /etc/hosts, /etc/resolv.conf and /etc/hostname, the targets the daemon's own
        files are bound onto, so that a container's layer never gets them (its diff, its
        commit). One per image top layer, shared; removed with that layer (``_collect``)."""
        name = f"{INIT_PREFIX}{chain or 'scratch'}"
        if self._has_snapshot(name):
            return name
        key = f"extract-init-{uuid.uuid4().hex}"  # a crash leaves an extraction: cleaned at start
        mounts = self.snapshotter.prepare(key, chain)
        try:
            apply_layer(io.BytesIO(_INIT_TAR), mounts)
            try:
                self.snapshotter.commit(name, key)
            except Conflict:  # another container's create made it meanwhile
                self.snapshotter.remove(key)
        except BaseException:
            with contextlib.suppress(NotFound):
                self.snapshotter.remove(key)
            raise
        return name

    def has_layer(self, chain: str) -> bool:
        """Whether the layer snapshot ``chain`` (a chain ID) is committed."""
        return self._has_snapshot(chain)

    def unpack_layer(self, stream: BinaryIO, parent: str | None, chain: str, diff_id: str, lease: Lease,
                     ready: Callable[[], None] | None = None,
                     parent_ready: Callable[[], None] | None = None, isolated: bool = False) -> None:
        """Unpack one layer of a pull on top of ``parent`` as the snapshot ``chain``, outside
        the service lock (``lease`` keeps the work in progress from other operations'
        clean-ups). ``ready()`` is called once the layer is applied and its diff ID checked,
        before the snapshot is committed: the pull waits there for the blob's digest to be
        verified, and raises to leave no snapshot. ``parent_ready()``: ``parent`` is still
        being unpacked; it waits until that is committed (or raises). Where the snapshotter's
        layers are independent, this layer is unpacked meanwhile, into a snapshot that gets
        its parent when a lookup first needs the layers below, or at the end. ``isolated``:
        in a worker process (archive/worker.py), so that layers unpack on several CPUs."""
        self._apply(stream, parent, chain, expected_diff_id=diff_id, lease=lease, ready=ready,
                    parent_ready=parent_ready, isolated=isolated)

    def _has_snapshot(self, name: str) -> bool:
        try:
            self.snapshotter.stat(name)
            return True
        except NotFound:
            return False

    def _apply(self, stream: BinaryIO, parent: str | None, name: str | None, expected_diff_id: str | None = None,
               *, lease: Lease | None = None, ready: Callable[[], None] | None = None,
               parent_ready: Callable[[], None] | None = None, isolated: bool = False) -> tuple[str, int]:
        """Apply one layer tar on top of ``parent`` and commit it under ``name`` (the chain ID;
        None: computed from the diff ID, for layers whose diff ID is only known afterwards).
        A layer some other operation committed meanwhile is kept, this copy dropped."""
        key = f"extract-{uuid.uuid4().hex}"
        if lease is not None:
            lease.add(snapshots=[key])
        try:
            apply = apply_layer_in_worker if isolated else apply_layer
            early = parent_ready is not None and parent is not None and self.snapshotter.independent_layers
            if parent_ready is not None and not early:
                parent_ready()
            mounts = self.snapshotter.prepare(key, None if early else parent)
            try:
                if early:
                    assert parent is not None and parent_ready is not None

                    def final_mounts() -> list[Mount]:
                        parent_ready()
                        return self.snapshotter.rebase(key, parent)

                    result = apply(stream, mounts, final_mounts=final_mounts)
                else:
                    result = apply(stream, mounts)
                if expected_diff_id and result.diff_id != expected_diff_id:
                    raise DataCorruption(f"layer diff ID mismatch: expected {expected_diff_id}, got {result.diff_id}")
                if name is None:
                    name = chain_id(parent, result.diff_id)
                if ready is not None:
                    ready()
                if self._has_snapshot(name):
                    self.snapshotter.remove(key)
                else:
                    try:
                        self.snapshotter.commit(name, key, labels={SIZE_LABEL: str(result.size)})
                    except Conflict:
                        if not self._has_snapshot(name):
                            raise
                        self.snapshotter.remove(key)  # a concurrent pull committed the same layer
                return result.diff_id, result.size
            except BaseException:
                try:
                    self.snapshotter.remove(key)
                except NotFound:
                    pass
                raise
        finally:
            if lease is not None:
                lease.discard_snapshot(key)

    # ------------------------------------------------------------------ import / load / save

    def import_image(
        self, stream: BinaryIO, repo: str | None = None, tag: str | None = None,
        changes: Iterable[str] = (), message: str = "", source: str = "-",
    ) -> str:
        """docker import: a root filesystem tar (any compression) becomes a one-layer image."""
        ref = reference.parse_repo_tag(repo, tag) if repo else None
        config_section: dict[str, Any] = {}
        for change in changes:
            apply_change(config_section, change)
        with self._lock:
            before = self._state()
            writer = self.content.writer(f"import-{uuid.uuid4().hex}")
            try:
                try:
                    tee = _Tee(stream, writer)
                    diff_id, size = self._apply(io.BufferedReader(tee, 1 << 20), None, None)
                    raw_head = tee.head
                    layer_digest = writer.commit()
                except BaseException:
                    writer.abort()
                    raise
                created = now_rfc3339()
                history = [{"created": created, "comment": message or f"Imported from {source}"}]
                cfg = new_config([diff_id], created=created, config=config_section, history=history)
                layer = Descriptor(mt.layer_type(detect_compression(raw_head), oci=False), layer_digest, self.content.info(layer_digest).size)
                self._record(cfg, [layer], [str(ref)] if ref else [], size)
            except BaseException:
                self._rollback(before)
                raise
        return cfg.id

    def commit(self, parent: Image, lower: list[Any], upper: list[Any], config_section: dict[str, Any], *,
               repo: str | None = None, tag: str | None = None, comment: str = "", author: str = "",
               created_by: str = "") -> str:
        """docker commit: a new image, ``parent`` plus one layer holding what the mounts
        ``upper`` change over ``lower`` (the container's snapshot over its image's)."""
        from dockyard.archive import write_diff

        ref = reference.parse_repo_tag(repo, tag) if repo else None
        return self.add_step(parent, config_section, created_by, write_layer=lambda w: write_diff(lower, upper, w).diff_id,
                             names=[str(ref)] if ref else [], comment=comment, author=author)

    def add_step(self, parent: Image | None, config_section: dict[str, Any], created_by: str, *,
                 write_layer: Callable[[Any], str | None] | None = None, names: list[str] = (),
                 comment: str = "", author: str = "") -> str:
        """A new image on ``parent`` (None: from scratch) with ``config_section`` and one more
        history entry: with a layer that ``write_layer`` writes (a tar, into a content writer;
        it may return the tar's diff ID, checked when applied) or, without, an empty layer (a
        metadata step of a build). Returns the image ID; nothing is left on failure."""
        with self._lock:
            before = self._state()
            try:
                diff_ids = list(parent.config.diff_ids) if parent else []
                layers = list(parent.manifest.layers) if parent else []
                size = parent.record.size if parent else 0
                created = now_rfc3339()
                entry: dict[str, Any] = {"created": created, "created_by": created_by}
                if author:
                    entry["author"] = author
                if comment:
                    entry["comment"] = comment
                if write_layer is None:
                    entry["empty_layer"] = True
                else:
                    writer = self.content.writer(f"layer-{uuid.uuid4().hex}")
                    try:
                        expected = write_layer(writer)
                        layer_digest = writer.commit()
                    except BaseException:
                        writer.abort()
                        raise
                    with self.content.open(layer_digest) as f:
                        diff_id, layer_size = self._apply(f, parent.chain[-1] if parent and parent.chain else None,
                                                          None, expected)
                    diff_ids.append(diff_id)
                    layers.append(Descriptor(mt.layer_type(None, oci=False), layer_digest,
                                             self.content.info(layer_digest).size))
                    size += layer_size
                history = [*(parent.config.history if parent else []), entry]
                cfg = new_config(diff_ids, created=created, config=config_section, history=history,
                                 author=author or None, comment=comment or None,
                                 platform=platform_of(parent.config) if parent else None)
                self._record(cfg, layers, list(names), size, parent=parent.id if parent else "")
            except BaseException:
                self._rollback(before)
                raise
        return cfg.id

    def record_pulled(self, manifest: Manifest, config: ImageConfig, ref: reference.Reference, digest: str,
                      documents: Iterable[tuple[bytes, str]] = ()) -> bool:
        """The last step of a pull, once every layer is a committed snapshot: store the
        manifest (and index) and config ``documents`` (bytes, digest), then record the image
        under its tag with its repo digest (``name@digest`` of what the tag named). Returns
        True when that changed something (docker's "Downloaded newer image" rather than
        "Image is up to date"). Nothing is visible before this; a failure here leaves the
        image as it was."""
        with self._lock:
            before = self._state()
            known = self.metadata.exists(config.id)
            try:
                for raw, expected in documents:
                    self.content.put(raw, expected=expected)
                size = self.unpack(manifest, config)  # every layer is there already: checks it
                rec = ImageRecord(config.id, Descriptor(manifest.media_type, manifest.digest, len(manifest.raw)), size)
                tagged = [str(ref)] if ref.tag else []
                repo_digest = f"{ref.name}@{digest}"
                if tagged:
                    had = known and self.metadata.by_tag(tagged[0]) == config.id
                else:
                    had = known and self.metadata.by_digest(repo_digest) == config.id
                self._retag(rec, tagged, digests=[repo_digest])
            except BaseException:
                self._rollback(before)
                raise
        return not had

    def _record(self, cfg: ImageConfig, layers: list[Descriptor], names: list[str], size: int,
                parent: str = "") -> Image:
        config_digest = self.content.put(cfg.raw)
        manifest = build_manifest(Descriptor(mt.DOCKER_CONFIG, config_digest, len(cfg.raw)), layers)
        self.content.put(manifest.raw)
        rec = ImageRecord(cfg.id, Descriptor(manifest.media_type, manifest.digest, len(manifest.raw)), size,
                          parent=parent)
        self._retag(rec, names)
        return Image(rec, manifest, cfg)

    def _retag(self, rec: ImageRecord, names: list[str], digests: list[str] = ()) -> None:
        self.metadata.add(rec, tags=[n for n in names if "@" not in n], digests=[*digests, *(n for n in names if "@" in n)])

    def _state(self) -> tuple[set[str], set[str]]:
        return {b.digest for b in self.content.walk()}, {i.name for i in self.snapshotter.walk()}

    def _rollback(self, before: tuple[set[str], set[str]]) -> None:
        """Remove the blobs and snapshots an operation added that no image references."""
        blobs_before, snaps_before = before
        referenced, chains = self._references()
        blobs_now, snaps_now = self._state()
        for blob in blobs_now - blobs_before - referenced:
            self.content.delete(blob)
        # children before parents
        new = {n for n in snaps_now - snaps_before - chains if not n.startswith(INIT_PREFIX)}  # containers'
        for name in sorted(new, key=lambda n: -len(_ancestry(self.snapshotter, n))):
            try:
                self.snapshotter.remove(name)
            except (Conflict, NotFound):
                pass

    def load(self, stream: BinaryIO, progress: Progress | None = None) -> list[str]:
        """docker load; returns the "Loaded image" lines."""
        with self._lock:
            before = self._state()
            try:
                loaded = transfer.load(self.content, stream)
                lines = []
                for item in loaded:
                    size = self.unpack(item.manifest, item.config, progress)
                    rec = ImageRecord(item.config.id, Descriptor(item.manifest.media_type, item.manifest.digest, len(item.manifest.raw)), size)
                    self._retag(rec, item.names)
                    if item.names:
                        lines += [f"Loaded image: {familiar(n)}" for n in item.names]
                    else:
                        lines.append(f"Loaded image ID: {rec.id}")
                return lines
            except BaseException:
                self._rollback(before)
                raise

    def save(self, names: list[str], out: BinaryIO) -> None:
        """docker save of one or more images (by name or ID) as one archive."""
        exports: dict[str, transfer.ExportImage] = {}
        for name in names:
            img = self.resolve(name)
            exp = exports.setdefault(img.id, transfer.ExportImage(img.record.manifest, []))
            ref = None
            try:
                ref = reference.parse(name)
            except InvalidArgument:
                pass
            by_id = ref is None or img.id.removeprefix("sha256:").startswith(name.removeprefix("sha256:"))
            if by_id and not self.metadata.by_tag(_full(name)):
                exp.names.extend(t for t in img.record.tags if t not in exp.names)
            elif ref is not None and not ref.digest and str(ref) not in exp.names:
                exp.names.append(str(ref))
        transfer.save(self.content, list(exports.values()), out)

    def compressed_for_push(self, image_id: str) -> Image:
        """The image with its uncompressed layers gzip-compressed, as docker pushes them. The
        compressed blobs join the content store and the record points at the new manifest
        (same config, so the same image ID): a later push sends the same digests. The old
        manifest and plain layers go when nothing else uses them. Compression runs outside
        the service lock (a layer can be gigabytes)."""
        from dockyard.archive.compression import compress

        img = self.resolve(image_id)
        plain = (mt.DOCKER_LAYER, mt.OCI_LAYER)
        if not any(layer.media_type in plain for layer in img.manifest.layers):
            return img
        oci = img.manifest.media_type == mt.OCI_MANIFEST
        layers = []
        for layer in img.manifest.layers:
            if layer.media_type not in plain:
                layers.append(layer)
                continue
            writer = self.content.writer(f"push-gzip-{uuid.uuid4().hex}")
            try:
                with self.content.open(layer.digest) as src:
                    compress(src, writer, "gzip")
                digest = writer.commit()
            except BaseException:
                writer.abort()
                raise
            layers.append(Descriptor(mt.layer_type("gzip", oci), digest, self.content.info(digest).size))
        manifest = build_manifest(img.manifest.config, layers, oci=oci)
        with self._lock:
            current = self.metadata.get(image_id)
            if current.manifest.digest != img.record.manifest.digest:
                return self._load(current)  # another push got there first
            self.content.put(manifest.raw)
            self.metadata.add(ImageRecord(current.id, Descriptor(manifest.media_type, manifest.digest, len(manifest.raw)),
                                          current.size, parent=current.parent, added=current.added))
            referenced = self._references()[0]
            for old in {img.record.manifest.digest, *(la.digest for la in img.manifest.layers)} - referenced:
                with contextlib.suppress(NotFound):
                    self.content.delete(old)
            return self._load(self.metadata.get(image_id))

    def add_repo_digest(self, image_id: str, name: str) -> None:
        """Record ``name@digest`` for an image (after a push, as docker does)."""
        with self._lock:
            self.metadata.add(self.metadata.get(image_id), digests=[name])

    def count(self) -> int:
        return self.metadata.count()


def _ancestry(snapshotter: Any, name: str) -> list[str]:
    out = []
    current: str | None = name
    while current:
        out.append(current)
        try:
            current = snapshotter.stat(current).parent
        except NotFound:
            break
    return out


def _full(name: str) -> str:
    try:
        ref = reference.parse(name)
    except InvalidArgument:
        return name
    return f"{ref.name}@{ref.digest}" if ref.digest else str(ref)


def _repo_of(name: str) -> str:
    if "@" in name:
        return name.split("@", 1)[0]
    return name.rsplit(":", 1)[0]


__all__ = ["ImageService", "Image", "sha256_digest"]
