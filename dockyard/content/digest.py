"""Digests in OCI form: ``algorithm:hex`` (only sha256 is produced; sha512 is accepted)."""

from __future__ import annotations

import hashlib
import re

from dockyard.errors import InvalidArgument

Digest = str

_HEX_LEN = {"sha256": 64, "sha512": 128}
# fullmatch, not ^...$: "$" also matches before a trailing newline, which would let
# "sha256:<hex>\n" through and into blob paths.
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-fA-F0-9]{32,})")


def validate_digest(digest: str) -> str:
    """Return ``digest`` if well formed, else raise InvalidArgument with docker's wording."""
    m = _DIGEST_RE.fullmatch(digest) if isinstance(digest, str) else None
    if not m:
        raise InvalidArgument(f"invalid digest format: {digest!r}" if digest else "invalid digest format")
    algo, hexpart = m.groups()
    if algo not in _HEX_LEN:
        raise InvalidArgument(f"unsupported digest algorithm: {digest}")
    if len(hexpart) != _HEX_LEN[algo] or hexpart != hexpart.lower():
        raise InvalidArgument(f"invalid checksum digest length: {digest}" if len(hexpart) != _HEX_LEN[algo] else f"invalid checksum digest format: {digest}")
    return digest


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hexpart(digest: str) -> str:
    return digest.split(":", 1)[1]
