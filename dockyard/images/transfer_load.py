"""``docker load``: a tar stream -> images in the content store.

Accepted layouts (whichever the archive holds, checked in this order):

1. OCI image layout (``index.json`` + ``blobs/<alg>/<hex>``): Docker 25+ ``docker save``,
   containerd, ``skopeo ... oci-archive:``. Nested indexes are followed and the manifest for
   the host platform is picked. Names come from ``io.containerd.image.name``, else from
   ``org.opencontainers.image.ref.name`` when that is a full reference (a bare tag names
   nothing); when ``manifest.json`` is present too its ``RepoTags`` win.
2. ``manifest.json`` only: Docker <= 24 (``<hex>.json`` configs, ``<id>/layer.tar`` layers,
   deduplicated by symlink) and ``skopeo ... docker-archive:`` (``<hex>.tar`` layers). A
   schema2 manifest is built for each image from the layer blobs as found (compressed or not).

The stream is read once, front to back (it may be a pipe), optionally gzip / zstd / bzip2 /
xz compressed. Every regular file goes straight into the content store through a writer;
only the small metadata files (``index.json``, ``manifest.json``, ``repositories``,
``oci-layout``) are kept in memory, capped at 16 MiB each. Blobs the load created but no
loaded image references (docker's legacy ``<id>/json``-style leftovers, other platforms of
an index) are removed at the end; on any error every blob the load created is removed and
the open ingest aborted, leaving the store as it was.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import tarfile
import uuid
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dockyard import reference
from dockyard.archive.compression import decompress, detect_compression
from dockyard.errors import DataCorruption, DockyardError, InvalidArgument, NotFound
from dockyard.images import mediatypes as mt
from dockyard.images.model import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    build_manifest,
    format_platform,
    host_platform,
    parse_manifest_or_index,
    platform_matches,
)

MAX_JSON = 16 << 20
_CHUNK = 1 << 20
_MAX_LINK_HOPS = 32
_MAX_INDEX_DEPTH = 8
_METADATA = ("manifest.json", "index.json", "repositories", "oci-layout")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type"  # buildkit attestation manifests


@dataclass
class LoadedImage:
    manifest: Manifest  # parsed; its raw bytes, config and layer blobs are in the store
    config: ImageConfig
    names: list[str] = field(default_factory=list)  # normalised refs found in the archive


@dataclass
class _File:
    digest: str
    size: int
    head: bytes  # the first bytes: layer compression is decided by magic


@dataclass
class _Link:
    target: str  # archive path


# --------------------------------------------------------------------------- input


class _Source:
    """The (decompressed) input, read forward only; any error reading it is DataCorruption."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._reader: Any = None

    def start(self) -> None:
        self._reader = self._guard(decompress, self._raw)  # peeks at the magic bytes

    def read(self, n: int = -1) -> bytes:
        return self._guard(self._reader.read, n)

    @staticmethod
    def _guard(fn: Any, arg: Any) -> Any:
        try:
            return fn(arg)
        except DataCorruption as e:  # corrupt compressed data
            raise DataCorruption(f"invalid tar archive: {e}") from None
        except DockyardError:
            raise
        except EOFError:
            raise DataCorruption("invalid tar archive: unexpected EOF") from None
        except Exception as e:  # the input stream itself failed (e.g. a reset connection)
            raise DataCorruption(f"invalid tar archive: {e}") from None


class _TarInfo(tarfile.TarInfo):
    """Remembers why tarfile stopped: it silently treats a missing end-of-archive marker
    (truncation at a member boundary) or a corrupt header as the end of the archive."""

    @classmethod
    def fromtarfile(cls, tf: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tf)
        except tarfile.HeaderError as e:
            tf._dockyard_stop = e  # type: ignore[attr-defined]
            raise


def _tar_error(e: BaseException) -> DataCorruption:
    msg = str(e) or type(e).__name__
    if isinstance(e, EOFError) or "unexpected end of data" in msg or "empty file" in msg:
        msg = "unexpected EOF"
    return DataCorruption(f"invalid tar archive: {msg}")


def _clean_path(name: str) -> str | None:
    path = posixpath.normpath("/" + name.replace("\\", "/")).lstrip("/")
    return path or None


# --------------------------------------------------------------------------- names


def _normalise(name: str) -> str | None:
    try:
        ref = reference.parse(name)
    except InvalidArgument:
        return None
    return str(ref)


def _names_from_annotations(annotations: dict[str, str]) -> list[str]:
    full = annotations.get(mt.ANNOTATION_IMAGE_NAME)
    if full:
        name = _normalise(full)
        return [name] if name else []
    ref_name = annotations.get(mt.ANNOTATION_REF_NAME) or ""
    # "latest" alone is a tag of nothing; "foo:bar", "a/b" or "x@sha256:..." name an image
    if any(c in ref_name for c in ":/@"):
        name = _normalise(ref_name)
        return [name] if name else []
    return []


# --------------------------------------------------------------------------- the load


class _Load:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.prefix = f"load-{uuid.uuid4().hex}"
        self.count = 0
        self.created: dict[str, None] = {}  # blobs this load added to the store, in order
        self.writer: Any = None
        self.files: dict[str, _File | _Link] = {}
        self.meta: dict[str, bytes] = {}

    # -- reading the tar ----------------------------------------------------------------

    def ingest(self, stream: BinaryIO) -> None:
        src = _Source(stream)
        src.start()
        try:
            tf = tarfile.open(fileobj=src, mode="r|", tarinfo=_TarInfo)  # type: ignore[call-overload]  # noqa: SIM115
        except (tarfile.TarError, EOFError) as e:
            raise _tar_error(e) from None
        with tf:
            self._members(tf)

    def _members(self, tf: tarfile.TarFile) -> None:
        while True:
            try:
                member = tf.next()
            except (tarfile.TarError, EOFError) as e:
                raise _tar_error(e) from None
            if member is None:
                break
            path = _clean_path(member.name)
            if path is None:
                continue
            if member.isreg():
                self._file(tf, member, path)
            elif member.issym():
                target = member.linkname
                if not target.startswith("/"):
                    target = posixpath.join(posixpath.dirname(path), target)
                self._link(path, target)
            elif member.islnk():
                self._link(path, member.linkname)
            tf.members.clear()  # nothing needs them; keep memory flat on huge archives
        stop = getattr(tf, "_dockyard_stop", None)
        if isinstance(stop, tarfile.InvalidHeaderError):
            raise DataCorruption(f"invalid tar archive: {stop}")
        if not isinstance(stop, tarfile.EOFHeaderError):  # no end-of-archive marker
            raise DataCorruption("invalid tar archive: unexpected EOF")

    def _link(self, path: str, target: str) -> None:
        cleaned = _clean_path(target)
        if cleaned is None:
            raise DataCorruption(f"invalid archive: link {path} has an invalid target {target!r}")
        self.files[path] = _Link(cleaned)
        self.meta.pop(path, None)

    def _read_member(self, f: Any, n: int) -> bytes:
        try:
            return f.read(n)
        except (tarfile.TarError, EOFError) as e:
            raise _tar_error(e) from None

    def _file(self, tf: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        parts = path.split("/")
        if path in _METADATA:
            if member.size > MAX_JSON:
                raise DataCorruption(f"invalid archive: {path} is too large ({member.size} bytes)")
            data = self._read_member(tf.extractfile(member), member.size)
            if len(data) != member.size:
                raise DataCorruption("invalid tar archive: unexpected EOF")
            self.meta[path] = data
            self.files.pop(path, None)
            return
        if len(parts) == 2 and parts[0] != "blobs" and parts[1] in ("json", "VERSION"):
            return  # docker <= 24 per-layer v1 metadata: not needed, tarfile skips the data
        expected = None
        if len(parts) == 3 and parts[:2] == ["blobs", "sha256"] and _HEX64.fullmatch(parts[2]):
            expected = f"sha256:{parts[2]}"
        elif len(parts) == 1 and parts[0].endswith(".json") and _HEX64.fullmatch(parts[0][:-5]):
            expected = f"sha256:{parts[0][:-5]}"  # a legacy config is named by its digest
        f = tf.extractfile(member)
        if expected is not None and self.store.exists(expected):
            # already stored: verify the archive's copy without writing it again
            digest, head = self._hash_only(f)
        else:
            digest, head = self._store(f, member.size, path, expected)
        if expected is not None and digest != expected:
            raise DataCorruption(f"invalid archive: blob {path} digest mismatch: got {digest}")
        self.files[path] = _File(digest, member.size, head)
        self.meta.pop(path, None)

    def _hash_only(self, f: Any) -> tuple[str, bytes]:
        h = hashlib.sha256()
        head = b""
        while chunk := self._read_member(f, _CHUNK):
            if len(head) < 8:
                head += chunk[: 8 - len(head)]
            h.update(chunk)
        return "sha256:" + h.hexdigest(), head

    def _store(self, f: Any, size: int, path: str, expected: str | None) -> tuple[str, bytes]:
        self.count += 1
        w = self.store.writer(f"{self.prefix}-{self.count}", total=size)
        self.writer = w
        head = b""
        while chunk := self._read_member(f, _CHUNK):
            if len(head) < 8:
                head += chunk[: 8 - len(head)]
            w.write(chunk)
        digest = w.digest()
        if expected is not None and digest != expected:
            w.abort()
            self.writer = None
            raise DataCorruption(f"invalid archive: blob {path} digest mismatch: got {digest}")
        existed = self.store.exists(digest)
        w.commit(size=size)
        self.writer = None
        if not existed:
            self.created[digest] = None
        return digest, head

    # -- helpers for interpretation -----------------------------------------------------

    def _resolve(self, path: str) -> _File | None:
        seen = 0
        entry = self.files.get(path)
        while isinstance(entry, _Link):
            seen += 1
            if seen > _MAX_LINK_HOPS:
                raise DataCorruption(f"invalid archive: too many levels of links at {path}")
            entry = self.files.get(entry.target)
        return entry

    def _require(self, desc: Descriptor, what: str) -> None:
        try:
            size = self.store.info(desc.digest).size
        except NotFound:
            raise DataCorruption(f"invalid archive: {what} {desc.digest} is missing") from None
        if size != desc.size:
            raise DataCorruption(
                f"invalid archive: {what} {desc.digest} size mismatch: expected {desc.size}, got {size}"
            )

    def _read_blob(self, desc: Descriptor, what: str) -> bytes:
        self._require(desc, what)
        if desc.size > MAX_JSON:
            raise DataCorruption(f"invalid archive: {what} {desc.digest} is too large")
        with self.store.open(desc.digest) as f:
            return f.read(desc.size)

    def _json(self, name: str) -> Any:
        try:
            return json.loads(self.meta[name])
        except (ValueError, UnicodeDecodeError) as e:
            raise DataCorruption(f"invalid archive: invalid {name}: {e}") from None

    def _image(self, manifest: Manifest, what: str) -> LoadedImage:
        config = ImageConfig.parse(self._read_blob(manifest.config, f"{what} config"))
        for layer in manifest.layers:
            if layer.urls and not self.store.exists(layer.digest):
                continue  # a foreign layer: docker leaves those out of archives
            self._require(layer, f"{what} layer")
        if len(config.diff_ids) != len(manifest.layers):
            raise DataCorruption(
                f"invalid archive: image {config.id} has {len(config.diff_ids)} diff_ids in its "
                f"config but {len(manifest.layers)} layers in its manifest"
            )
        return LoadedImage(manifest, config, [])

    # -- docker manifest.json -----------------------------------------------------------

    def _docker_items(self) -> list[dict[str, Any]]:
        doc = self._json("manifest.json")
        if not isinstance(doc, list) or not all(isinstance(i, dict) for i in doc):
            raise DataCorruption("invalid archive: manifest.json is not a list of images")
        return doc

    def _item_file(self, path: Any, what: str) -> tuple[str, _File]:
        if not isinstance(path, str) or not path:
            raise DataCorruption(f"invalid archive: manifest.json has an invalid {what} path")
        cleaned = _clean_path(path) or ""
        entry = self._resolve(cleaned)
        if entry is None:
            raise DataCorruption(f"invalid archive: {what} {path} is missing")
        return cleaned, entry

    @staticmethod
    def _repo_tags(item: dict[str, Any]) -> list[str]:
        names: list[str] = []
        for tag in item.get("RepoTags") or []:
            name = _normalise(tag) if isinstance(tag, str) else None
            if name and name not in names:
                names.append(name)
        return names

    def _item_config_digest(self, item: dict[str, Any]) -> str | None:
        try:
            return self._item_file(item.get("Config"), "config")[1].digest
        except DataCorruption:
            return None

    def _legacy_image(self, item: dict[str, Any]) -> LoadedImage:
        _, cfg = self._item_file(item.get("Config"), "config")
        layers_paths = item.get("Layers")
        if not isinstance(layers_paths, list):
            raise DataCorruption("invalid archive: manifest.json has no Layers list")
        config_desc = Descriptor(mt.DOCKER_CONFIG, cfg.digest, cfg.size)
        layers: list[Descriptor] = []
        for path in layers_paths:
            _, f = self._item_file(path, "layer")
            kind = detect_compression(f.head)
            if kind in ("bzip2", "xz"):
                f = self._store_plain(f)
                kind = None
            layers.append(Descriptor(mt.layer_type(kind, oci=False), f.digest, f.size))
        manifest = build_manifest(config_desc, layers)
        image = self._image(manifest, "image")
        self._put(manifest.raw)
        return image

    def _store_plain(self, f: _File) -> _File:
        """bzip2 / xz layers (docker load accepts them) have no manifest media type: store
        them uncompressed."""
        self.count += 1
        w = self.store.writer(f"{self.prefix}-{self.count}")
        self.writer = w
        with self.store.open(f.digest) as raw:
            plain = decompress(raw)
            try:
                while chunk := plain.read(_CHUNK):
                    w.write(chunk)
            except DataCorruption as e:
                raise DataCorruption(f"invalid archive: layer {f.digest}: {e}") from None
        digest = w.digest()
        size = w.offset
        existed = self.store.exists(digest)
        w.commit(size=size)
        self.writer = None
        if not existed:
            self.created[digest] = None
        return _File(digest, size, b"")

    def _put(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        existed = self.store.exists(digest)
        self.store.put(data, expected=digest)
        if not existed:
            self.created[digest] = None
        return digest

    def from_docker_manifest(self) -> list[LoadedImage]:
        images: dict[str, LoadedImage] = {}
        for item in self._docker_items():
            image = self._legacy_image(item)
            loaded = images.setdefault(image.manifest.digest, image)
            loaded.names += [n for n in self._repo_tags(item) if n not in loaded.names]
        return list(images.values())

    # -- OCI layout ----------------------------------------------------------------------

    def _platform_of(self, desc: Descriptor) -> dict[str, Any] | None:
        if desc.platform:
            return desc.platform
        try:  # no platform on the descriptor: ask the config, if it is here
            parsed = parse_manifest_or_index(self._read_blob(desc, "manifest"), desc.media_type or None)
            if isinstance(parsed, Manifest):
                config = ImageConfig.parse(self._read_blob(parsed.config, "config"))
                plat = {"os": config.os, "architecture": config.architecture}
                if config.variant:
                    plat["variant"] = config.variant
                return plat
        except DockyardError:
            pass
        return None

    def _manifests_of(self, index: Index, depth: int) -> list[Descriptor]:
        if depth > _MAX_INDEX_DEPTH:
            raise DataCorruption("invalid archive: image indexes nested too deeply")
        out: list[Descriptor] = []
        for child in index.manifests:
            if child.annotations.get(_ANNOTATION_REFERENCE_TYPE) == "attestation-manifest":
                continue
            if child.media_type in mt.INDEXES:
                nested = parse_manifest_or_index(self._read_blob(child, "image index"), child.media_type)
                if isinstance(nested, Index):
                    out += self._manifests_of(nested, depth + 1)
            elif child.media_type in mt.MANIFESTS or not child.media_type:
                out.append(child)
        return out

    def _select(self, desc: Descriptor) -> Manifest | None:
        if desc.media_type and desc.media_type not in mt.MANIFESTS | mt.INDEXES:
            return None  # an artifact, not an image
        parsed = parse_manifest_or_index(self._read_blob(desc, "manifest"), desc.media_type or None)
        if isinstance(parsed, Manifest):
            return parsed
        candidates = self._manifests_of(parsed, 1)
        host = host_platform()
        matching = [c for c in candidates if platform_matches(host, self._platform_of(c))]
        present = [c for c in matching if self.store.exists(c.digest)]
        if present or matching:
            chosen = (present or matching)[0]
        elif len(candidates) == 1:
            chosen = candidates[0]
        else:
            raise NotFound(
                f"invalid archive: image index {desc.digest} has no manifest for platform "
                f"{format_platform(host)}"
            )
        manifest = parse_manifest_or_index(self._read_blob(chosen, "manifest"), chosen.media_type or None)
        if not isinstance(manifest, Manifest):
            raise DataCorruption(f"invalid archive: {chosen.digest} is not an image manifest")
        return manifest

    def from_oci_layout(self) -> list[LoadedImage]:
        if "oci-layout" in self.meta:
            layout = self._json("oci-layout")
            version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
            if version != "1.0.0":
                raise InvalidArgument(f"unsupported OCI image layout version {version!r}")
        index = parse_manifest_or_index(self.meta["index.json"], mt.OCI_INDEX)
        if not isinstance(index, Index):
            raise DataCorruption("invalid archive: index.json is not an image index")

        items = self._docker_items() if "manifest.json" in self.meta else []
        tags_by_config: dict[str, list[str]] = {}
        items_by_config: dict[str, dict[str, Any]] = {}
        for item in items:
            digest = self._item_config_digest(item)
            if digest:
                tags_by_config.setdefault(digest, []).extend(self._repo_tags(item))
                items_by_config.setdefault(digest, item)

        images: dict[str, LoadedImage] = {}
        for desc in index.manifests:
            manifest = self._select(desc)
            if manifest is None:
                continue
            image = images.get(manifest.digest)
            if image is None:
                item = items_by_config.get(manifest.config.digest)
                if item is not None and self._bad_layer_count(manifest):
                    # docker 25.0's graphdriver save wrote OCI manifests without their layers;
                    # its manifest.json is right
                    image = self._legacy_image(item)
                else:
                    image = self._image(manifest, "image")
                images[manifest.digest] = image
            image.names += [n for n in _names_from_annotations(desc.annotations) if n not in image.names]
        for image in images.values():
            tags = tags_by_config.get(image.config.id)
            if tags:
                image.names = list(dict.fromkeys(tags))
        return list(images.values())

    def _bad_layer_count(self, manifest: Manifest) -> bool:
        try:
            config = ImageConfig.parse(self._read_blob(manifest.config, "image config"))
        except DockyardError:
            return False
        return len(config.diff_ids) != len(manifest.layers)

    # -- driver --------------------------------------------------------------------------

    def interpret(self) -> list[LoadedImage]:
        if "index.json" in self.meta:
            return self.from_oci_layout()
        if "manifest.json" in self.meta:
            return self.from_docker_manifest()
        if "repositories" in self.meta:
            raise InvalidArgument(
                "unsupported archive: no manifest.json (images saved by docker < 1.10 cannot be loaded)"
            )
        raise DataCorruption("invalid archive: no index.json or manifest.json found")

    def rollback(self) -> None:
        if self.writer is not None:
            try:
                self.writer.abort()
            except Exception:
                pass
            self.writer = None
        for digest in reversed(self.created):
            try:
                self.store.delete(digest)
            except NotFound:
                pass
        self.created.clear()

    def drop_unreferenced(self, images: list[LoadedImage]) -> None:
        keep: set[str] = set()
        for image in images:
            keep.add(image.manifest.digest)
            keep.add(image.manifest.config.digest)
            keep.update(layer.digest for layer in image.manifest.layers)
        for digest in self.created:
            if digest not in keep:
                try:
                    self.store.delete(digest)
                except NotFound:
                    pass


def load(store: Any, stream: BinaryIO) -> list[LoadedImage]:
    """Load every image of a docker save / OCI / skopeo archive read from ``stream``.

    Raises DataCorruption for a malformed, truncated or inconsistent archive; the store is
    then exactly as it was before the call.
    """
    session = _Load(store)
    try:
        session.ingest(stream)
        images = session.interpret()
    except BaseException:
        session.rollback()
        raise
    session.drop_unreferenced(images)
    return images
