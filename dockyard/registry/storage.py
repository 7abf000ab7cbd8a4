"""Repositories over the engine's content store.

Layout under the registry's root:

    content/                       a LocalStore: blobs/sha256/<hex> (verified, committed by
                                   rename: nothing partial is ever visible), ingest/ (uploads)
    repositories/<name>/
        _layers/<hex>              a blob this repository may serve (pushed or mounted here)
        _manifests/revisions/<hex> a manifest of this repository; holds its media type
        _manifests/tags/<tag>      holds a manifest digest
        _uploads/<uuid>            an upload in progress (its ingest ref is "<name>/<uuid>")
        _referrers/<hex>/<hex>     the descriptor of a manifest whose subject is the first digest

Blobs are shared by every repository; a repository sees only those linked into it.
Manifests are stored as blobs, byte for byte as pushed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dockyard.content.digest import sha256_digest
from dockyard.content.local import LocalStore, Writer
from dockyard.errors import DataCorruption, DockyardError, NotFound
from dockyard.registry.errors import RegistryError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
_ANY_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
MAX_MANIFEST = 4 << 20  # what the spec asks registries to accept at least
_FOREIGN = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name) or len(name) > 255:
        raise RegistryError("NAME_INVALID", detail={"name": name})
    return name


def check_digest(digest: str) -> str:
    if not DIGEST_RE.fullmatch(digest):
        if _ANY_DIGEST_RE.fullmatch(digest):
            raise RegistryError("DIGEST_INVALID", f"unsupported digest algorithm: {digest}", status=400)
        raise RegistryError("DIGEST_INVALID", f"invalid digest: {digest}", status=400)
    return digest


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


def _write_atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


@dataclass
class Upload:
    name: str
    id: str
    writer: Writer
    started: float
    busy: threading.Lock = field(default_factory=threading.Lock)  # one request at a time writes


class RegistryStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.content = LocalStore(os.path.join(root, "content"))
        self._repos = os.path.join(root, "repositories")
        os.makedirs(self._repos, exist_ok=True)
        self._uploads: dict[str, Upload] = {}  # writers kept open between a session's requests
        self._lock = threading.RLock()
        self.gc_lock = threading.RLock()  # held by a sweep; pushes that commit wait for it

    # ------------------------------------------------------------------ paths

    def _repo(self, name: str) -> str:
        return os.path.join(self._repos, check_name(name))

    def _layer_link(self, name: str, digest: str) -> str:
        return os.path.join(self._repo(name), "_layers", _hex(digest))

    def _revision(self, name: str, digest: str) -> str:
        return os.path.join(self._repo(name), "_manifests", "revisions", _hex(digest))

    def _tag(self, name: str, tag: str) -> str:
        return os.path.join(self._repo(name), "_manifests", "tags", tag)

    def repository_exists(self, name: str) -> bool:
        return os.path.isdir(self._repo(name))

    # ------------------------------------------------------------------ blobs

    def blob_size(self, name: str, digest: str) -> int:
        """The size of a blob this repository may serve (BLOB_UNKNOWN otherwise)."""
        check_digest(digest)
        if not os.path.exists(self._layer_link(name, digest)) and not os.path.exists(self._revision(name, digest)):
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest})
        try:
            return self.content.info(digest).size
        except NotFound:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest}) from None

    def blob_path(self, name: str, digest: str) -> str:
        self.blob_size(name, digest)
        return self.content.path(digest)

    def link_blob(self, name: str, digest: str) -> None:
        path = self._layer_link(name, digest)
        if not os.path.exists(path):
            _write_atomic(path, "")

    def mount_blob(self, name: str, digest: str, source: str) -> bool:
        """Cross-repository mount: link a blob ``source`` has into ``name``."""
        try:
            self.blob_size(source, digest)
        except RegistryError:
            return False
        self.link_blob(name, digest)
        return True

    def delete_blob(self, name: str, digest: str) -> None:
        """Unlink the blob from the repository (the garbage collector frees its bytes)."""
        check_digest(digest)
        try:
            os.unlink(self._layer_link(name, digest))
        except FileNotFoundError:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest}) from None

    # ------------------------------------------------------------------ uploads

    def start_upload(self, name: str) -> Upload:
        check_name(name)
        uid = str(uuid.uuid4())
        _write_atomic(os.path.join(self._repo(name), "_uploads", uid), str(time.time()))
        with self._lock:
            up = self._uploads[uid] = Upload(name, uid, self.content.writer(f"{name}/{uid}"), time.time())
        return up

    def upload(self, name: str, uid: str) -> Upload:
        """An upload in progress (its writer resumed if this process did not start it)."""
        if not re.fullmatch(r"[0-9a-f-]{36}", uid or ""):
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": uid})
        with self._lock:
            up = self._uploads.get(uid)
            if up is not None and up.name == name:
                return up
            marker = os.path.join(self._repo(name), "_uploads", uid)
            started = _read(marker)
            if started is None:
                raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": uid})
            try:
                writer = self.content.writer(f"{name}/{uid}")
            except DockyardError:
                raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": uid}) from None
            up = self._uploads[uid] = Upload(name, uid, writer, float(started or 0))
            return up

    def finish_upload(self, up: Upload, digest: str) -> str:
        """Commit the upload as ``digest`` (verified) and link it into the repository."""
        check_digest(digest)
        with self.gc_lock:
            try:
                if self.content.exists(digest):
                    actual = up.writer.digest()
                    if actual != digest:
                        raise DataCorruption(f"digest mismatch: expected {digest}, got {actual}")
                    up.writer.abort()
                else:
                    up.writer.commit(expected=digest)
            except DataCorruption as e:
                self.cancel_upload(up)
                raise RegistryError("DIGEST_INVALID", str(e), detail={"digest": digest}) from None
            self._forget(up)
            self.link_blob(up.name, digest)
        return digest

    def cancel_upload(self, up: Upload) -> None:
        with contextlib.suppress(Exception):
            up.writer.abort()
        self._forget(up)

    def _forget(self, up: Upload) -> None:
        with self._lock:
            self._uploads.pop(up.id, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._repo(up.name), "_uploads", up.id))

    # ------------------------------------------------------------------ manifests

    def put_manifest(self, name: str, reference: str, body: bytes, content_type: str | None) -> tuple[str, str | None]:
        """Store a manifest byte for byte; returns (digest, subject digest or None)."""
        check_name(name)
        if len(body) > MAX_MANIFEST:
            raise RegistryError("PAYLOAD_TOO_LARGE", f"manifest over {MAX_MANIFEST} bytes")
        digest = sha256_digest(body)
        if ":" in reference:
            check_digest(reference)
            if reference != digest:
                raise RegistryError("DIGEST_INVALID", f"manifest digest {digest} does not match {reference}",
                                    status=400)
        elif not TAG_RE.fullmatch(reference):
            raise RegistryError("TAG_INVALID", detail={"tag": reference})
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise RegistryError("MANIFEST_INVALID", f"manifest invalid: {e}") from None
        if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
            raise RegistryError("MANIFEST_INVALID", "manifest invalid: schemaVersion 2 expected")
        media_type = self._media_type(doc, content_type)
        missing = [d for d in self._references(doc, media_type) if not self._has(name, d, media_type)]
        if missing:
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", detail={"digests": missing})
        subject = doc.get("subject") if isinstance(doc.get("subject"), dict) else None
        with self.gc_lock:
            self.content.put(body, expected=digest)
            _write_atomic(self._revision(name, digest), media_type)
            if ":" not in reference:
                _write_atomic(self._tag(name, reference), digest)
            if subject and isinstance(subject.get("digest"), str) and DIGEST_RE.fullmatch(subject["digest"]):
                descriptor = {"mediaType": media_type, "digest": digest, "size": len(body)}
                artifact = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
                if artifact:
                    descriptor["artifactType"] = artifact
                if doc.get("annotations"):
                    descriptor["annotations"] = doc["annotations"]
                _write_atomic(os.path.join(self._repo(name), "_referrers", _hex(subject["digest"]), _hex(digest)),
                              json.dumps(descriptor))
        return digest, subject["digest"] if subject else None

    @staticmethod
    def _media_type(doc: dict[str, Any], content_type: str | None) -> str:
        declared = doc.get("mediaType")
        ctype = (content_type or "").split(";")[0].strip()
        if ctype and ctype not in MANIFEST_TYPES and ctype != "application/json":
            raise RegistryError("MANIFEST_INVALID", f"manifest invalid: unsupported media type {ctype}")
        if declared and ctype and ctype != "application/json" and declared != ctype:
            raise RegistryError("MANIFEST_INVALID", f"manifest invalid: mediaType {declared} does not match "
                                                    f"Content-Type {ctype}")
        media_type = declared or (ctype if ctype in MANIFEST_TYPES else None)
        if media_type is None:
            media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
        if media_type not in MANIFEST_TYPES:
            raise RegistryError("MANIFEST_INVALID", f"manifest invalid: unsupported media type {media_type}")
        if media_type in INDEX_TYPES:
            if not isinstance(doc.get("manifests"), list):
                raise RegistryError("MANIFEST_INVALID", "manifest invalid: an index needs manifests")
        elif not isinstance(doc.get("config"), dict) or not isinstance(doc.get("layers"), list):
            raise RegistryError("MANIFEST_INVALID", "manifest invalid: a manifest needs a config and layers")
        return media_type

    @staticmethod
    def _references(doc: dict[str, Any], media_type: str) -> list[str]:
        if media_type in INDEX_TYPES:
            entries = doc["manifests"]
        else:
            entries = [doc["config"], *[d for d in doc["layers"] if d.get("mediaType") not in _FOREIGN]]
        out = []
        for d in entries:
            if not isinstance(d, dict) or not isinstance(d.get("digest"), str) or not DIGEST_RE.fullmatch(d["digest"]):
                raise RegistryError("MANIFEST_INVALID", "manifest invalid: a descriptor without a valid digest")
            out.append(d["digest"])
        return out

    def _has(self, name: str, digest: str, media_type: str) -> bool:
        if media_type in INDEX_TYPES:
            return os.path.exists(self._revision(name, digest))
        return os.path.exists(self._layer_link(name, digest)) and self.content.exists(digest)

    def resolve(self, name: str, reference: str) -> str:
        """A tag's or a digest's manifest digest (MANIFEST_UNKNOWN / NAME_UNKNOWN)."""
        if not self.repository_exists(name):
            raise RegistryError("NAME_UNKNOWN", detail={"name": name})
        if ":" in reference:
            check_digest(reference)
            if not os.path.exists(self._revision(name, reference)):
                raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": reference})
            return reference
        if not TAG_RE.fullmatch(reference):
            raise RegistryError("TAG_INVALID", detail={"tag": reference})
        digest = _read(self._tag(name, reference))
        if digest is None:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"tag": reference})
        return digest.strip()

    def get_manifest(self, name: str, reference: str) -> tuple[bytes, str, str]:
        """(body, media type, digest)."""
        digest = self.resolve(name, reference)
        media_type = _read(self._revision(name, digest)) or OCI_MANIFEST
        try:
            with self.content.open(digest) as f:
                return f.read(), media_type, digest
        except NotFound:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": digest}) from None

    def delete_manifest(self, name: str, reference: str) -> None:
        """By digest: the manifest and every tag naming it; by tag: the tag only."""
        digest = self.resolve(name, reference)
        if ":" not in reference:
            os.unlink(self._tag(name, reference))
            return
        tags = os.path.join(self._repo(name), "_manifests", "tags")
        for tag in _listdir(tags):
            if (_read(os.path.join(tags, tag)) or "").strip() == digest:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(tags, tag))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._revision(name, digest))
        referrers = os.path.join(self._repo(name), "_referrers")
        for subject in _listdir(referrers):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(referrers, subject, _hex(digest)))

    def tags(self, name: str) -> list[str]:
        if not self.repository_exists(name):
            raise RegistryError("NAME_UNKNOWN", detail={"name": name})
        return sorted(_listdir(os.path.join(self._repo(name), "_manifests", "tags")))

    def catalog(self) -> list[str]:
        """Every repository with at least one manifest, sorted."""
        out = []
        for dirpath, dirnames, _files in os.walk(self._repos):
            if "_manifests" in dirnames and _listdir(os.path.join(dirpath, "_manifests", "revisions")):
                out.append(os.path.relpath(dirpath, self._repos))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(out)

    def referrers(self, name: str, digest: str, artifact_type: str | None = None) -> list[dict[str, Any]]:
        check_digest(digest)
        check_name(name)
        out = []
        directory = os.path.join(self._repo(name), "_referrers", _hex(digest))
        for entry in sorted(_listdir(directory)):
            text = _read(os.path.join(directory, entry))
            if text is None:
                continue
            descriptor = json.loads(text)
            if artifact_type is None or descriptor.get("artifactType") == artifact_type:
                out.append(descriptor)
        return out

    # ------------------------------------------------------------------ garbage collection

    def repositories(self) -> Iterator[str]:
        for dirpath, dirnames, _files in os.walk(self._repos):
            if "_manifests" in dirnames or "_layers" in dirnames or "_uploads" in dirnames:
                yield os.path.relpath(dirpath, self._repos)
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]

    def referenced(self) -> set[str]:
        """Every blob a repository's manifest needs (the manifests themselves, their config
        and layers): what garbage collection keeps."""
        keep: set[str] = set()
        for name in self.repositories():
            revisions = os.path.join(self._repo(name), "_manifests", "revisions")
            for hex_ in _listdir(revisions):
                digest = "sha256:" + hex_
                keep.add(digest)
                try:
                    with self.content.open(digest) as f:
                        doc = json.loads(f.read())
                    media_type = _read(os.path.join(revisions, hex_)) or OCI_MANIFEST
                    if media_type not in INDEX_TYPES:
                        keep.update(self._references(doc, media_type))
                except (NotFound, ValueError, RegistryError):
                    continue
        return keep

    def collect(self, stale_upload_age: float = 24 * 3600, dry_run: bool = False, min_age: float = 0) -> list[str]:
        """Delete the blobs no manifest references, and uploads idle for
        ``stale_upload_age`` seconds; returns the deleted digests.

        Online (the server running), pass ``min_age``: a blob pushed less than that many
        seconds ago is kept, since its manifest may still be on its way (a push uploads
        the blobs first). Blob and manifest commits take the same lock as the sweep."""
        with self.gc_lock:
            keep = self.referenced()
            if min_age:
                cutoff = time.time() - min_age
                keep |= {b.digest for b in self.content.walk() if b.created > cutoff}
            doomed = sorted(b.digest for b in self.content.walk() if b.digest not in keep)
            if dry_run:
                return doomed
            for name in list(self.repositories()):
                layers = os.path.join(self._repo(name), "_layers")
                for hex_ in _listdir(layers):
                    if "sha256:" + hex_ not in keep:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(layers, hex_))
                uploads = os.path.join(self._repo(name), "_uploads")
                cutoff = time.time() - stale_upload_age
                for uid in _listdir(uploads):
                    started = float(_read(os.path.join(uploads, uid)) or 0)
                    if started < cutoff and uid not in self._uploads:
                        with contextlib.suppress(DockyardError):
                            self.content.abort(f"{name}/{uid}")
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(uploads, uid))
            return self.content.gc(keep, stale_ingest_age=stale_upload_age)


def _listdir(path: str) -> list[str]:
    try:
        return [e for e in os.listdir(path) if not e.endswith(".tmp")]
    except (FileNotFoundError, NotADirectoryError):
        return []
