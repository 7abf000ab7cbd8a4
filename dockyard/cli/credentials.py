"""Registry credentials in docker's client config, ``$DOCKER_CONFIG/config.json`` (default
``~/.docker/config.json``): ``{"auths": {"<server>": {"auth": base64("user:password"),
"identitytoken": ...}}}``, shared with the docker CLI. Docker Hub's key is
``https://index.docker.io/v1/``; other registries are keyed by ``host[:port]``. The CLI
hands them to the daemon in the ``X-Registry-Auth`` header. A ``credsStore`` / ``credHelpers``
entry sends them to a credential helper (``docker-credential-<name> get|store|erase``, JSON
on stdin/stdout) instead, as docker does."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

from dockyard.cli.context import CLIError
from dockyard.reference import HUB_HOSTS

HUB_SERVER = "https://index.docker.io/v1/"


def config_path() -> str:
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def server_key(server: str) -> str:
    """The config key for a registry named as a login argument or a reference host."""
    host = hostname(server)
    return HUB_SERVER if host in HUB_HOSTS or not host else host


def hostname(server: str) -> str:
    server = server.strip()
    if "://" in server:
        server = server.split("://", 1)[1]
    return server.split("/", 1)[0]


def _load(for_update: bool = False) -> dict:
    """The config file's JSON. One that does not parse is warned about and read as empty,
    as docker does — but never written over (``for_update``)."""
    try:
        with open(config_path()) as f:
            doc = json.load(f)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError) as e:
        message = f"WARNING: Error loading config file: {config_path()}: {e}"
        if for_update:
            raise CLIError(message, 1) from None
        sys.stderr.write(message + "\n")
        return {}
    return doc


def _save(doc: dict) -> None:
    """Atomically, private to the user: the file holds passwords."""
    path = os.path.realpath(config_path())  # a symlinked config.json stays a symlink
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent="\t")
        f.write("\n")
    os.replace(tmp, path)


def _helper(doc: dict, key: str) -> str:
    helpers = doc.get("credHelpers") or {}
    return str(helpers.get(key) or helpers.get(hostname(key)) or doc.get("credsStore") or "")


_HELPER_VERBS = {"get": "getting", "store": "storing", "erase": "erasing"}


def _run_helper(helper: str, action: str, data: str) -> str:
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([program, action], input=data, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise CLIError(f"error {_HELPER_VERBS[action]} credentials - err: exec: \"{program}\": "
                       "executable file not found in $PATH", 1) from None
    except subprocess.TimeoutExpired:
        raise CLIError(f"error {_HELPER_VERBS[action]} credentials - err: {program} {action} did not answer "
                       "within 60 s", 1) from None
    if proc.returncode != 0:
        message = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        raise LookupError(message[0] if message else f"docker-credential-{helper} {action} failed")
    return proc.stdout


_TOKEN_USER = "<token>"  # a helper's username for an identity token, as docker writes it


def lookup(server: str) -> dict[str, str]:
    """The stored auth for a registry as the API's AuthConfig JSON (empty: none)."""
    key = server_key(server)
    doc = _load()
    helper = _helper(doc, key)
    if helper:
        try:
            got = json.loads(_run_helper(helper, "get", key))
        except (LookupError, ValueError):
            return {}  # "credentials not found in native keychain"
        if got.get("Username") == _TOKEN_USER:
            return {"serveraddress": key, "identitytoken": got.get("Secret", "")}
        return {"serveraddress": key, "username": got.get("Username", ""), "password": got.get("Secret", "")}
    auths = doc.get("auths") or {}
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
    """Keep a login; returns where (the config file, or the helper's name)."""
    doc = _load(for_update=True)
    auths = doc.setdefault("auths", {})
    key = server_key(server)
    helper = _helper(doc, key)
    if helper:
        secret = {"ServerURL": key, "Username": _TOKEN_USER if identity_token else username,
                  "Secret": identity_token or password}
        _run_helper(helper, "store", json.dumps(secret))
        auths[key] = {}  # docker lists the registry, without secrets
        _save(doc)
        return f"docker-credential-{helper}"
    entry = {"auth": base64.b64encode(f"{username}:{'' if identity_token else password}".encode()).decode()}
    if identity_token:
        entry["identitytoken"] = identity_token
    auths[key] = entry
    _save(doc)
    return config_path()


def erase(server: str) -> bool:
    doc = _load(for_update=True)
    auths = doc.get("auths") or {}
    key = server_key(server)
    found = [k for k in auths if k == key or server_key(k) == key]
    helper = _helper(doc, key)
    if helper:
        try:
            _run_helper(helper, "erase", key)
            found = found or [key]
        except LookupError:
            pass
    for k in found:
        auths.pop(k, None)
    if found:
        _save(doc)
    return bool(found)


def header_for(server: str) -> dict[str, str]:
    """``{"X-Registry-Auth": ...}`` for a registry host (docker sends it even when empty)."""
    doc = lookup(server)
    encoded = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
    return {"X-Registry-Auth": encoded}
