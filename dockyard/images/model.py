"""Image manifests, indexes and configs (Docker schema2 and OCI), and the IDs derived
from them. Configs are kept as the exact bytes they were stored with: the image ID is
the sha256 of those bytes, so they are never re-serialised once created."""

from __future__ import annotations

import hashlib
import json
import platform as _platform
from dataclasses import dataclass, field
from typing import Any

from dockyard.content.digest import sha256_digest, validate_digest
from dockyard.errors import DataCorruption, InvalidArgument
from dockyard.images import mediatypes as mt


@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, Any] | None = None
    urls: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Descriptor:
        try:
            return cls(
                media_type=d.get("mediaType", ""),
                digest=validate_digest(d["digest"]),
                size=int(d["size"]),
                annotations=dict(d.get("annotations") or {}),
                platform=d.get("platform"),
                urls=list(d.get("urls") or []),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataCorruption(f"invalid descriptor: {e}") from None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = self.urls
        if self.annotations:
            out["annotations"] = self.annotations
        if self.platform:
            out["platform"] = self.platform
        return out


@dataclass
class Manifest:
    media_type: str
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""

    @property
    def digest(self) -> str:
        return sha256_digest(self.raw)


@dataclass
class Index:
    media_type: str
    manifests: list[Descriptor]
    annotations: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""


def _load_json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataCorruption(f"invalid {what}: {e}") from None
    if not isinstance(doc, dict):
        raise DataCorruption(f"invalid {what}: not a JSON object")
    return doc


def sniff_media_type(raw: bytes, declared: str | None = None) -> str:
    """The media type of a manifest-ish document: the declared one, else its own
    ``mediaType`` field, else guessed from its shape (OCI allows omitting it)."""
    doc = _load_json(raw, "manifest")
    mtype = doc.get("mediaType") or declared or ""
    if not mtype:
        if "manifests" in doc:
            mtype = mt.OCI_INDEX
        elif "config" in doc and "layers" in doc:
            mtype = mt.OCI_MANIFEST
        elif doc.get("schemaVersion") == 1:
            mtype = mt.DOCKER_MANIFEST_V1
    return mtype


def parse_manifest_or_index(raw: bytes, declared: str | None = None) -> Manifest | Index:
    mtype = sniff_media_type(raw, declared)
    if mtype in mt.SCHEMA1:
        raise InvalidArgument(
            "support for Docker Image Format v1 and Docker Image manifest version 2, schema 1 "
            "has been removed; push the image again in a newer format"
        )
    doc = _load_json(raw, "manifest")
    if mtype in mt.INDEXES:
        return Index(mtype, [Descriptor.from_json(d) for d in doc.get("manifests") or []],
                     dict(doc.get("annotations") or {}), raw)
    if mtype in mt.MANIFESTS:
        if "config" not in doc:
            raise DataCorruption("invalid manifest: no config")
        return Manifest(mtype, Descriptor.from_json(doc["config"]),
                        [Descriptor.from_json(d) for d in doc.get("layers") or []],
                        dict(doc.get("annotations") or {}), raw)
    raise InvalidArgument(f"unsupported manifest media type: {mtype or 'unknown'}")


def build_manifest(config: Descriptor, layers: list[Descriptor], oci: bool = False) -> Manifest:
    """A new manifest with canonical (compact, key-ordered) JSON bytes."""
    mtype = mt.OCI_MANIFEST if oci else mt.DOCKER_MANIFEST
    doc = {
        "schemaVersion": 2,
        "mediaType": mtype,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return Manifest(mtype, config, layers, {}, raw)


def build_index(manifests: list[Descriptor], oci: bool = True, annotations: dict[str, str] | None = None) -> Index:
    mtype = mt.OCI_INDEX if oci else mt.DOCKER_MANIFEST_LIST
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mtype, "manifests": [m.to_json() for m in manifests]}
    if annotations:
        doc["annotations"] = annotations
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return Index(mtype, manifests, annotations or {}, raw)


# --------------------------------------------------------------------------- config

CONFIG_FIELDS = (
    "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
    "StopSignal", "Healthcheck", "OnBuild", "Shell", "ArgsEscaped",
)


@dataclass
class ImageConfig:
    """A parsed image config; ``raw`` is authoritative, the rest is read from it."""

    raw: bytes
    doc: dict[str, Any]

    @classmethod
    def parse(cls, raw: bytes) -> ImageConfig:
        doc = _load_json(raw, "image config")
        rootfs = doc.get("rootfs") or {}
        if rootfs.get("type", "layers") != "layers" or not isinstance(rootfs.get("diff_ids", []), list):
            raise DataCorruption("invalid image config: rootfs must be of type layers")
        for d in rootfs.get("diff_ids") or []:
            validate_digest(d)
        return cls(raw, doc)

    @property
    def id(self) -> str:
        return sha256_digest(self.raw)

    @property
    def diff_ids(self) -> list[str]:
        return list((self.doc.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def config(self) -> dict[str, Any]:
        return self.doc.get("config") or {}

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.doc.get("history") or [])

    @property
    def created(self) -> str | None:
        return self.doc.get("created")

    @property
    def os(self) -> str:
        return self.doc.get("os") or "linux"

    @property
    def architecture(self) -> str:
        return self.doc.get("architecture") or ""

    @property
    def variant(self) -> str | None:
        return self.doc.get("variant")


def new_config(
    diff_ids: list[str],
    *,
    created: str,
    config: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    author: str | None = None,
    comment: str | None = None,
    platform: dict[str, str] | None = None,
) -> ImageConfig:
    """Build an image config for ``platform`` (default: this host's). Key order follows
    docker's output."""
    platform = platform or host_platform()
    doc: dict[str, Any] = {"architecture": platform["architecture"]}
    if author:
        doc["author"] = author
    doc["config"] = config or {}
    doc["created"] = created
    if history is not None:
        doc["history"] = history
    doc["os"] = platform.get("os", "linux")
    doc["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    if variant := platform.get("variant"):
        doc["variant"] = variant
    if comment:
        doc.setdefault("comment", comment)
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return ImageConfig(raw, doc)


def chain_id(parent: str | None, diff_id: str) -> str:
    """OCI chain ID: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    if parent is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(chain_id(out[-1] if out else None, diff_id))
    return out


# --------------------------------------------------------------------------- platforms

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> dict[str, str]:
    machine = _platform.machine()
    plat = {"os": "linux", "architecture": _ARCH.get(machine, machine)}
    if machine == "aarch64":
        plat["variant"] = "v8"
    elif machine.startswith("armv"):
        plat["variant"] = machine[3:5]
    return plat


def parse_platform(spec: str) -> dict[str, str]:
    """``linux/amd64``, ``linux/arm64/v8``, ``amd64`` -> OCI platform dict."""
    parts = spec.strip().lower().split("/")
    if not spec or len(parts) > 3 or not all(parts):
        raise InvalidArgument(f"\"{spec}\": unknown operating system or architecture: invalid argument")
    if len(parts) == 1:
        parts = ["linux", parts[0]]
    plat = {"os": parts[0], "architecture": _ARCH.get(parts[1], parts[1])}
    if len(parts) == 3:
        plat["variant"] = parts[2]
    elif plat["architecture"] == "arm64":
        plat["variant"] = "v8"
    return plat


def platform_of(config: ImageConfig) -> dict[str, str]:
    """An image config's OCI platform."""
    plat = {"os": config.os, "architecture": config.architecture}
    if config.variant:
        plat["variant"] = config.variant
    return plat


def platform_matches(want: dict[str, str], have: dict[str, Any] | None) -> bool:
    if not have:
        return False
    if want.get("os") != have.get("os") or want.get("architecture") != have.get("architecture"):
        return False
    wv, hv = want.get("variant"), have.get("variant")
    if want.get("architecture") == "arm64":  # v8 is the default variant on arm64
        wv, hv = wv or "v8", hv or "v8"
    return wv is None or wv == hv


def format_platform(plat: dict[str, Any]) -> str:
    return "/".join(p for p in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if p)
