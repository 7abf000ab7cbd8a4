"""The pure parts of registry auth and transport: WWW-Authenticate challenges, the
X-Registry-Auth header, login server names, which registries are insecure, mirrors, and the
credentials file the CLI shares with docker."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from dockyard.cli import credentials
from dockyard.distribution.auth import AuthConfig, Challenge, parse_challenges
from dockyard.distribution.hosts import RegistryHosts, normalize_server
from dockyard.errors import InvalidArgument


def test_challenges() -> None:
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push"'
    assert parse_challenges(header) == [Challenge("bearer", {
        "realm": "https://auth.docker.io/token", "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull,push"})]
    assert parse_challenges('Basic realm="Registry Realm"') == [Challenge("basic", {"realm": "Registry Realm"})]
    both = parse_challenges('Basic realm="a, b", Bearer realm="https://x/t",service=x')
    assert [c.scheme for c in both] == ["basic", "bearer"] and both[0].params["realm"] == "a, b"
    assert both[1].params == {"realm": "https://x/t", "service": "x"}
    assert parse_challenges('Bearer realm="with \\"quote\\""')[0].params["realm"] == 'with "quote"'
    assert parse_challenges("") == []


def _header(doc: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def test_registry_auth_header() -> None:
    auth = AuthConfig.from_header(_header({"username": "u", "password": "p?>", "serveraddress": "h:5000"}))
    assert auth == AuthConfig("u", "p?>", "", "", "h:5000")
    assert AuthConfig.from_header(_header({"identitytoken": "t"})).identity_token == "t"
    assert AuthConfig.from_header(_header({"auth": base64.b64encode(b"a:b:c").decode()})) == AuthConfig("a", "b:c")
    unpadded = _header({"username": "x", "password": "y"}).rstrip("=")
    assert AuthConfig.from_header(unpadded).username == "x"
    for empty in (None, "", " ", _header({}), _header({"serveraddress": "h"})):
        assert AuthConfig.from_header(empty) is None
    with pytest.raises(InvalidArgument, match="X-Registry-Auth"):
        AuthConfig.from_header("%%%not base64")
    with pytest.raises(InvalidArgument):
        AuthConfig.from_header(base64.urlsafe_b64encode(b"[1]").decode())


def test_server_names() -> None:
    assert normalize_server("https://index.docker.io/v1/") == "docker.io"
    assert normalize_server("registry-1.docker.io") == "docker.io"
    assert normalize_server("http://h:5000/") == "h:5000" and normalize_server("h:5000") == "h:5000"
    with pytest.raises(InvalidArgument):
        normalize_server("https://")


def test_insecure_registries_and_endpoints(tmp_path: Path) -> None:
    """Names are not looked up here (no DNS in tests): CIDRs are matched with IP literals."""
    hosts = RegistryHosts(["10.1.0.0/16"], certs_dir=str(tmp_path))
    for host in ("127.0.0.1:5000", "localhost:5000", "[::1]:5000", "10.1.2.3:443"):
        assert hosts.insecure(host), host
        assert [e.scheme for e in hosts.endpoints(host)] == ["https", "http"]
    assert not hosts.insecure("10.2.0.1:5000")
    names = RegistryHosts(["reg.internal:5000", "plain.internal"], certs_dir=str(tmp_path))
    assert names.insecure("reg.internal:5000") and names.insecure("plain.internal:8080")
    for host in ("reg.internal:5001", "192.0.2.1", "quay.io"):
        assert not names.insecure(host), host
        assert [e.scheme for e in names.endpoints(host)] == ["https"]
    assert [e.host for e in names.endpoints("docker.io")] == ["registry-1.docker.io"]


def test_mirrors() -> None:
    hosts = RegistryHosts(mirrors=["http://127.0.0.1:5001", "https://mirror.example"])
    pull = hosts.endpoints("docker.io")
    assert [(e.url, e.mirror) for e in pull] == [("http://127.0.0.1:5001", True), ("https://mirror.example", True),
                                                 ("https://registry-1.docker.io", False)]
    assert [e.url for e in hosts.endpoints("docker.io", pull=False)] == ["https://registry-1.docker.io"]
    assert [e.url for e in hosts.endpoints("quay.io")] == ["https://quay.io"]  # mirrors are docker.io's only
    with pytest.raises(InvalidArgument, match="invalid mirror"):
        RegistryHosts(mirrors=["ftp://x"])
    with pytest.raises(InvalidArgument, match="invalid mirror"):
        RegistryHosts(mirrors=["https://x/some/path"])


def test_credentials_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "cfg"))
    assert credentials.lookup("h:5000") == {}
    credentials.store("h:5000", "alice", "pw")
    path = tmp_path / "cfg" / "config.json"
    assert (path.stat().st_mode & 0o777) == 0o600
    doc = json.loads(path.read_text())
    assert doc == {"auths": {"h:5000": {"auth": base64.b64encode(b"alice:pw").decode()}}}
    assert credentials.lookup("h:5000") == {"serveraddress": "h:5000", "username": "alice", "password": "pw"}
    credentials.store("docker.io", "bob", "x", identity_token="refresh")
    assert credentials.lookup("index.docker.io") == {"serveraddress": credentials.HUB_SERVER, "username": "bob",
                                                     "identitytoken": "refresh"}
    # other keys of the file are kept; a URL-shaped key written by another client is found
    doc = json.loads(path.read_text())
    doc["psFormat"] = "table {{.ID}}"
    doc["auths"]["https://old.example/v1/"] = {"auth": base64.b64encode(b"c:d").decode()}
    path.write_text(json.dumps(doc))
    assert credentials.lookup("old.example")["username"] == "c"
    assert credentials.erase("old.example") and not credentials.erase("old.example")
    assert json.loads(path.read_text())["psFormat"] == "table {{.ID}}"
    header = credentials.header_for("h:5000")["X-Registry-Auth"]
    assert AuthConfig.from_header(header) == AuthConfig("alice", "pw", "", "", "h:5000")
