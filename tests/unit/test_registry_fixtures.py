"""The registry fixtures against the real docker-registry, with curl, urllib and skopeo only
(no dockyard code): an HTTPS + htpasswd registry at a non-loopback address in a network
namespace; a token-auth registry with the test token server (GET and OAuth2 POST, refresh
tokens, ACL, audience); a skopeo push through the token flow. Nothing may be left behind."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.netns import IP, netns
from tests.fixtures.registry import REGISTRY_BIN, LocalRegistry, start_registry
from tests.fixtures.tls import make_ca
from tests.fixtures.tokenserver import TokenServer

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry is not installed (apt install docker-registry)"),
    pytest.mark.skipif(IP is None, reason="iproute2 (ip) is not installed"),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]

registry = contextlib.contextmanager(start_registry)
USERS = {"alice": "wonderland", "bob": "builder"}


def _netns_names() -> set[str]:
    return {line.split()[0] for line in subprocess.run([IP or "ip", "netns", "list"], capture_output=True,
                                                       text=True, check=True).stdout.splitlines() if line}


def _processes_mentioning(marker: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{pid}: {cmdline}")
    return found


@pytest.fixture(autouse=True)
def _nothing_left(tmp_path: Path) -> Iterator[None]:
    namespaces, threads = _netns_names(), set(threading.enumerate())
    yield
    assert _processes_mentioning(str(tmp_path)) == []
    assert {n for n in _netns_names() - namespaces if n.startswith("dytest-")} == set()
    assert [t.name for t in set(threading.enumerate()) - threads if t.is_alive()] == []


def curl(*args: object, ns=None) -> tuple[int, dict[str, str], str]:  # noqa: ANN001
    """(status, headers (lower-case names; the last response's), body) of a curl request."""
    argv = ["curl", "-sS", "-i", "--max-time", "20", *map(str, args)]
    proc = subprocess.run(ns.cmd(argv) if ns is not None else argv, capture_output=True, text=True)
    assert proc.returncode == 0, f"curl {args}: exit {proc.returncode}: {proc.stderr}"
    head, _, body = proc.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def http(method: str, url: str, headers: dict[str, str] | None = None,
         data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get_token(tokens: TokenServer, *scopes: str, creds: tuple[str, str] | None = None,
              **params: str) -> tuple[int, dict]:
    query = urllib.parse.urlencode([("service", tokens.service), *(("scope", s) for s in scopes), *params.items()])
    status, _, body = http("GET", f"{tokens.realm}?{query}", basic(*creds) if creds else None)
    return status, json.loads(body)


def post_token(tokens: TokenServer, form: dict[str, str]) -> tuple[int, dict]:
    status, _, body = http("POST", tokens.realm, {"Content-Type": "application/x-www-form-urlencoded"},
                           urllib.parse.urlencode(form).encode())
    return status, json.loads(body)


def test_htpasswd_tls_registry_in_netns(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    with netns("192.0.2.10/32", hosts={"registry.test": "192.0.2.10"}) as ns:
        assert ns.name.startswith("dytest-") and ns.ip == "192.0.2.10"
        assert ns.cmd(["true"]) == [IP, "netns", "exec", ns.name, "true"]
        cert, key = ca.issue(tmp_path / "certs", [ns.ip, "registry.test"])
        with registry(tmp_path / "reg", tls=(cert, key), htpasswd=USERS, addr=ns.ip, port=443, netns=ns) as reg:
            assert (reg.scheme, reg.host, reg.url) == ("https", "192.0.2.10:443", "https://192.0.2.10:443")
            status, headers, _ = curl("--cacert", ca.cert_path, f"{reg.url}/v2/", ns=ns)
            assert status == 401
            assert headers["www-authenticate"] == 'Basic realm="dockyard-test-registry"'
            assert curl("--cacert", ca.cert_path, "-u", "alice:wonderland", f"{reg.url}/v2/", ns=ns)[0] == 200
            assert curl("--cacert", ca.cert_path, "-u", "alice:nope", f"{reg.url}/v2/", ns=ns)[0] == 401
            # by name (the namespace's /etc/hosts), the certificate's DNS SAN
            assert curl("--cacert", ca.cert_path, "-u", "bob:builder", "https://registry.test/v2/", ns=ns)[0] == 200
            # the CA is needed: an unknown issuer fails verification (curl exit 60)
            unverified = subprocess.run(ns.cmd(["curl", "-sS", "https://registry.test/v2/"]), capture_output=True)
            assert unverified.returncode == 60
        assert reg.proc.returncode is not None
        assert (tmp_path / "reg" / "registry.log").stat().st_size > 0


def test_token_registry(tmp_path: Path) -> None:
    with TokenServer(USERS, directory=tmp_path / "token") as tokens, registry(tmp_path / "reg", token=tokens) as reg:
        assert reg.url == f"http://{reg.host}" and tokens.realm.startswith("http://127.0.0.1:")
        status, headers, _ = http("GET", f"{reg.url}/v2/")
        assert status == 401
        assert headers["www-authenticate"] == f'Bearer realm="{tokens.realm}",service="dockyard-test-registry"'

        status, body = get_token(tokens, "repository:x/y:pull,push", creds=("alice", "wonderland"),
                                 offline_token="true", client_id="dytest")
        assert status == 200 and body["token"] == body["access_token"] and body["expires_in"] == 300
        assert body["refresh_token"] in tokens.refresh_tokens and body["issued_at"].endswith("Z")
        assert tokens.issued[-1]["access"] == [{"type": "repository", "name": "x/y", "actions": ["pull", "push"]}]
        alice = body["token"]
        assert http("GET", f"{reg.url}/v2/", bearer(alice))[0] == 200
        assert http("HEAD", f"{reg.url}/v2/x/y/manifests/latest", bearer(alice))[0] == 404  # unknown, authorised
        assert http("POST", f"{reg.url}/v2/x/y/blobs/uploads/", bearer(alice), b"")[0] == 202  # push allowed
        status, headers, _ = http("HEAD", f"{reg.url}/v2/other/repo/manifests/latest", bearer(alice))
        assert status == 401 and 'scope="repository:other/repo:pull"' in headers["www-authenticate"]

        # anonymous: pull only, whatever is asked
        status, body = get_token(tokens, "repository:x/y:pull,push")
        assert status == 200 and "refresh_token" not in body
        assert tokens.issued[-1]["sub"] == "" and tokens.issued[-1]["access"][0]["actions"] == ["pull"]
        assert http("HEAD", f"{reg.url}/v2/x/y/manifests/latest", bearer(body["token"]))[0] == 404
        assert http("POST", f"{reg.url}/v2/x/y/blobs/uploads/", bearer(body["token"]), b"")[0] == 401

        # bad password
        status, body = get_token(tokens, "repository:x/y:pull", creds=("alice", "nope"))
        assert (status, body) == (401, {"details": "incorrect username or password"})

        # a token for another audience is refused by the registry
        status, body = get_token(tokens, "repository:x/y:pull", creds=("alice", "wonderland"))
        other, _ = tokens.make_token("alice", [{"type": "repository", "name": "x/y", "actions": ["pull"]}], "elsewhere")
        assert http("GET", f"{reg.url}/v2/", bearer(other))[0] == 401
        expired, _ = tokens.make_token("alice", [], ttl=-120)  # beyond the registry's 60 s leeway
        assert http("GET", f"{reg.url}/v2/", bearer(expired))[0] == 401

        # OAuth2: password grant (offline -> refresh token), then refresh grant
        status, body = post_token(tokens, {"grant_type": "password", "username": "bob", "password": "builder",
                                           "service": tokens.service, "scope": "repository:x/y:pull,push",
                                           "client_id": "dytest", "access_type": "offline"})
        assert status == 200 and body["scope"] == "repository:x/y:pull,push" and tokens.refresh_tokens[body["refresh_token"]] == "bob"
        refresh = body["refresh_token"]
        status, body = post_token(tokens, {"grant_type": "refresh_token", "refresh_token": refresh,
                                           "service": tokens.service, "scope": "repository:x/y:pull",
                                           "client_id": "dytest"})
        assert status == 200 and "refresh_token" not in body and tokens.issued[-1]["sub"] == "bob"
        assert http("HEAD", f"{reg.url}/v2/x/y/manifests/latest", bearer(body["access_token"]))[0] == 404
        assert post_token(tokens, {"grant_type": "refresh_token", "refresh_token": "bogus",
                                   "service": tokens.service, "client_id": "dytest"})[0] == 401
        assert post_token(tokens, {"grant_type": "password", "username": "bob", "password": "x",
                                   "service": tokens.service, "client_id": "dytest"})[0] == 401

        refreshes = [r for r in tokens.requests if r["grant_type"] == "refresh_token"]
        assert [(r["method"], r["status"], r["form"]["refresh_token"]) for r in refreshes] == [
            ("POST", 200, refresh), ("POST", 401, "bogus")]
        assert tokens.requests[0]["user"] == "alice" and tokens.requests[0]["query"]["offline_token"] == ["true"]


def test_token_server_acl_and_no_anonymous(tmp_path: Path) -> None:
    def acl(user: str, repo: str) -> set[str]:
        return {"pull", "push"} if repo.startswith(f"{user}/") else set()

    with TokenServer(USERS, acl, anonymous=False, oauth=False) as tokens:
        assert get_token(tokens, "repository:alice/a:pull")[0] == 401
        status, _ = get_token(tokens, "repository:alice/a:pull,push", "repository:bob/b:pull",
                              creds=("alice", "wonderland"))
        assert status == 200 and tokens.issued[-1]["access"] == [
            {"type": "repository", "name": "alice/a", "actions": ["pull", "push"]},
            {"type": "repository", "name": "bob/b", "actions": []}]
        assert post_token(tokens, {"grant_type": "password", "username": "alice", "password": "wonderland"})[0] == 404


def _docker_archive(path: Path, tag: str) -> Path:
    """A one-layer image in `docker save` form, made here."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        data = b"hello from the registry fixtures\n"
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    diff_id = hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]}}).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": [f"{diff_id}/layer.tar"]}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, blob in ((f"{diff_id}/layer.tar", layer_bytes), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_push_through_token_auth_over_tls_in_netns(tmp_path: Path) -> None:
    """skopeo, inside the namespace, pushes to an HTTPS token-auth registry at 192.0.2.10
    whose token server (HTTPS too) also listens in the namespace."""
    archive = _docker_archive(tmp_path / "image.tar", "x/y:v1")
    ca = make_ca(tmp_path / "ca")
    certs_d = tmp_path / "certs.d"
    certs_d.mkdir()
    shutil.copy(ca.cert_path, certs_d / "ca.crt")
    with netns("192.0.2.10/32") as ns:
        tls = ca.issue(tmp_path / "certs", [ns.ip])
        with TokenServer(USERS, netns=ns, tls=tls, directory=tmp_path / "token") as tokens, \
                registry(tmp_path / "reg", tls=tls, token=tokens, addr=ns.ip, netns=ns) as reg:
            assert tokens.realm.startswith("https://192.0.2.10:")
            dest = f"docker://{reg.host}/x/y:v1"
            subprocess.run(ns.cmd(["skopeo", "copy", "-q", "--dest-creds", "alice:wonderland",
                                   "--dest-cert-dir", certs_d, f"docker-archive:{archive}", dest]),
                           check=True, capture_output=True, timeout=120)
            out = subprocess.run(ns.cmd(["skopeo", "inspect", "--creds", "bob:builder", "--cert-dir", certs_d,
                                         "--format", "{{.Digest}}", dest]),
                                 check=True, capture_output=True, text=True, timeout=60).stdout
            assert out.startswith("sha256:")
            # skopeo without credentials (anonymous: pull only) can read but not push
            subprocess.run(ns.cmd(["skopeo", "inspect", "--no-creds", "--cert-dir", certs_d, dest]),
                           check=True, capture_output=True, timeout=60)
            denied = subprocess.run(ns.cmd(["skopeo", "copy", "-q", "--dest-no-creds", "--dest-cert-dir", certs_d,
                                            f"docker-archive:{archive}", f"docker://{reg.host}/x/z:v1"]),
                                    capture_output=True, text=True, timeout=120)
            assert denied.returncode != 0
        assert {r["user"] for r in tokens.requests if r["status"] == 200} == {"alice", "bob", None}
        assert any("repository:x/y:pull,push" in s for r in tokens.requests if r["user"] == "alice" for s in r["scopes"])


def test_default_registry_unchanged(tmp_path: Path) -> None:
    for reg in start_registry(tmp_path / "reg"):
        assert isinstance(reg, LocalRegistry) and reg.scheme == "http" and reg.netns is None
        assert reg.host.startswith("127.0.0.1:") and http("GET", f"{reg.url}/v2/")[0] == 200
        assert (tmp_path / "reg" / "config.yml").exists()
    assert reg.proc.returncode is not None
