"""Registry credentials in docker's client config, ``$DOCKER_CONFIG/config.json`` (default
``~/.docker/config.json``): ``{"auths": {"<server>": {"auth": base64("user:password"),
"identitytoken": ...}}}``, shared with the docker CLI. Docker Hub's key is
``https://index.docker.io/v1/``; other registries are keyed by ``host[:port]``. The CLI
hands them to the daemon in the ``X-Registry-Auth`` header."""

from __future__ import annotations

import base64
import json
import os

HUB_SERVER = "https://index.docker.io/v1/"
_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


def config_path() -> str:
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def server_key(server: str) -> str:
    """The config key for a registry named as a login argument or a reference host."""
    host = _hostname(server)
    return HUB_SERVER if host in _HUB_NAMES or not host else host


def _hostname(server: str) -> str:
    server = server.strip()
    if "://" in server:
        server = server.split("://", 1)[1]
    return server.split("/", 1)[0]


def _load() -> dict:
    try:
        with open(config_path()) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise OSError(f"loading config file {config_path()}: {e}") from None
    return doc if isinstance(doc, dict) else {}


def _save(doc: dict) -> None:
    """Atomically, private to the user: the file holds passwords."""
    path = config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent="\t")
        f.write("\n")
    os.replace(tmp, path)


def lookup(server: str) -> dict[str, str]:
    """The stored auth for a registry as the API's AuthConfig JSON (empty: none)."""
    key = server_key(server)
    auths = _load().get("auths") or {}
    entry = auths.get(key)
    if entry is None:  # keys written as URLs (https://host/v1/) by older clients
        entry = next((v for k, v in auths.items() if server_key(k) == key), None)
    if not isinstance(entry, dict):
        return {}
    out = {"serveraddress": key}
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except ValueError:
            return {}
        out.update(username=user, password=password)
    if entry.get("identitytoken"):
        out["identitytoken"] = entry["identitytoken"]
        out.pop("password", None)
    return out


def store(server: str, username: str, password: str, identity_token: str = "") -> str:
    doc = _load()
    auths = doc.setdefault("auths", {})
    key = server_key(server)
    entry = {"auth": base64.b64encode(f"{username}:{'' if identity_token else password}".encode()).decode()}
    if identity_token:
        entry["identitytoken"] = identity_token
    auths[key] = entry
    _save(doc)
    return config_path()


def erase(server: str) -> bool:
    doc = _load()
    auths = doc.get("auths") or {}
    key = server_key(server)
    found = [k for k in auths if k == key or server_key(k) == key]
    for k in found:
        del auths[k]
    if found:
        _save(doc)
    return bool(found)


def header_for(server: str) -> dict[str, str]:
    """``{"X-Registry-Auth": ...}`` for a registry host (docker sends it even when empty)."""
    doc = lookup(server)
    encoded = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
    return {"X-Registry-Auth": encoded}
