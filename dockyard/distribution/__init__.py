"""Distribution: registry endpoints and auth (hosts.py, auth.py), the registry API v2 client
(registry.py), pull (pull.py, layers.py) and push (push.py)."""


def short_id(digest: str) -> str:
    """The 12 hex digits docker's progress messages name a layer by."""
    return digest.removeprefix("sha256:")[:12]
