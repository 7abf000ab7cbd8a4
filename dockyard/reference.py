"""Docker image references: ``[host[:port]/]path[:tag][@digest]``.

Follows the normalisation rules of distribution/reference as used by the docker CLI and
moby (``ParseNormalizedNamed`` + ``TagNameOnly``):

* a name with no registry is on ``docker.io``; single-component names there get ``library/``;
* the first component is a registry only if it contains ``.`` or ``:``, is ``localhost``, or
  has an uppercase letter (``Foo/bar`` is registry ``Foo``, path ``bar``);
* ``index.docker.io`` is the legacy spelling of ``docker.io``;
* ``latest`` is implied only when there is neither a tag nor a digest.

Errors are ``InvalidArgument`` with the wording distribution/reference produces, since
clients (and users) see these messages verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from dockyard.content.digest import validate_digest
from dockyard.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
# every host name that means Docker Hub (its API host, the old index, the website's)
HUB_HOSTS = frozenset({DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, "registry-1.docker.io", "registry.hub.docker.com"})
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

ERR_FORMAT = "invalid reference format"
ERR_TAG_FORMAT = "invalid tag format"
ERR_NAME_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"

# Grammar pieces, built from the distribution/reference grammar. Go's \w is ASCII-only,
# so character classes are spelled out instead of using Python's Unicode \w.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

# After normalisation every reference has an explicit domain, and a domain cannot contain
# "/", so the domain group is always exactly the first component.
_REFERENCE_RE = re.compile(
    rf"(?P<domain>{_DOMAIN})/(?P<path>{_PATH})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_TAG_RE = re.compile(_TAG)
_FULL_ID_RE = re.compile(r"(?:sha256:)?[a-f0-9]{64}")
# moby accepts id prefixes of at least 4 hex digits.
_SHORT_ID_RE = re.compile(r"(?:sha256:)?[a-f0-9]{4,64}")
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Fully qualified repository name, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """Repository name as the docker CLI shows it, e.g. ``busybox`` or ``user/app``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        rest = self.path.removeprefix(OFFICIAL_PREFIX)
        # Only official single-component repos drop the prefix: library/a/b stays as is.
        return rest if "/" not in rest else self.path

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return tag + digest

    def __str__(self) -> str:
        return self.name + self._suffix()

    def familiar(self) -> str:
        """Short display form: ``busybox:latest``, ``localhost:5000/a/b:t``, ``busybox@sha256:…``."""
        return self.familiar_name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.fullmatch(tag or ""):
            raise InvalidArgument(ERR_TAG_FORMAT)
        return replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, digest=validate_digest(digest))

    def without_tag(self) -> Reference:
        return replace(self, tag=None)


def _split_domain(s: str) -> tuple[str, str]:
    """Split off the registry the way docker does; the remainder keeps tag and digest."""
    first, sep, rest = s.partition("/")
    is_domain = bool(sep) and (
        "." in first or ":" in first or first == "localhost" or first.lower() != first
    )
    domain, remainder = (first, rest) if is_domain else (DEFAULT_DOMAIN, s)
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def parse(s: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise a user-supplied image reference (``busybox``, ``a/b:t@sha256:…``)."""
    if not isinstance(s, str):
        raise InvalidArgument(ERR_FORMAT)
    if _IDENTIFIER_RE.fullmatch(s):
        raise InvalidArgument(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_domain(s)
    # Uppercase is checked before the grammar so the message names the offending repo.
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise InvalidArgument(f"{ERR_FORMAT}: repository name ({remote}) must be lowercase")

    full = f"{domain}/{remainder}"
    m = _REFERENCE_RE.fullmatch(full)
    if m is None:
        if _REFERENCE_RE.fullmatch(full.lower()):
            raise InvalidArgument(f"{ERR_FORMAT}: repository name must be lowercase")
        raise InvalidArgument(ERR_FORMAT)
    # Like distribution, the limit applies to the normalised name, domain included.
    if len(m["domain"]) + 1 + len(m["path"]) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(ERR_NAME_TOO_LONG)

    digest = validate_digest(m["digest"]) if m["digest"] else None
    tag = m["tag"]
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain=m["domain"], path=m["path"], tag=tag, digest=digest)


def parse_repo_tag(repo: str, tag: str | None, *, default_tag: bool = True) -> Reference:
    """Combine API-style ``repo`` and ``tag`` parameters (``?fromImage=busybox&tag=1``).

    ``repo`` may carry its own tag or digest; a non-empty ``tag`` replaces the tag, and a
    ``tag`` that is actually a digest (``sha256:…``) yields a digest reference, as moby does.
    """
    ref = parse(repo, default_tag=False)
    if tag:
        ref = _apply_tag_or_digest(ref, tag)
    if default_tag and ref.tag is None and ref.digest is None:
        ref = replace(ref, tag=DEFAULT_TAG)
    return ref


def _apply_tag_or_digest(ref: Reference, tag: str) -> Reference:
    try:
        digest = validate_digest(tag)
    except InvalidArgument:
        return ref.with_tag(tag)  # not a digest: must be a valid tag
    return replace(ref, tag=None, digest=digest)


def is_full_id(s: str) -> bool:
    """True for a complete image/content id: 64 lowercase hex, optionally ``sha256:``-prefixed."""
    return bool(_FULL_ID_RE.fullmatch(s))


def looks_like_id(s: str) -> bool:
    """True if ``s`` could be an id or id prefix (4-64 hex, optionally ``sha256:``-prefixed).

    Ambiguous strings like ``abc`` are also valid names; callers decide the lookup order.
    """
    return bool(_SHORT_ID_RE.fullmatch(s))
