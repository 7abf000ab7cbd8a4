"""Registry authentication and transport (issue 6) against the real docker-registry:

* token auth (Bearer) with the test token server on 127.0.0.1: anonymous pulls, login
  storing the realm's refresh token as the identity token in docker's config.json, push and
  pull with it (the refresh grant is what the daemon uses), wrong passwords, logout — with the
  dockyard CLI, the docker CLI and docker-py;
* htpasswd (Basic) over TLS at a non-loopback address, with the daemon and the registry in a
  network namespace the test makes: the CA comes from the certs.d directory, a registry
  without a trusted CA is refused, plain HTTP is used only for an insecure registry; docker.io
  pulls go to the configured mirror.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from dockyard.distribution.auth import AuthConfig
from dockyard.distribution.hosts import RegistryHosts
from dockyard.distribution.registry import open_registry
from dockyard.errors import Unavailable
from tests.conftest import Daemon, _stop_and_check, start_daemon, store_state
from tests.fixtures.clients import CLIS, unique
from tests.fixtures.netns import IP, NetNS, netns
from tests.fixtures.registry import REGISTRY_BIN, LocalRegistry, start_registry
from tests.fixtures.tls import make_ca
from tests.fixtures.tokenserver import TokenServer

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the daemon and network namespaces need root"),
    pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry is not installed (apt install docker-registry)"),
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]

USERS = {"alice": "wonderland", "bob": "builder"}


def _config(d: Daemon) -> dict:
    path = Path(d.env["DOCKER_CONFIG"]) / "config.json"
    return json.loads(path.read_text()) if path.exists() else {}


# ------------------------------------------------------------------ token auth on loopback


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    def acl(user: str, repo: str) -> set[str]:  # everyone pulls; users push to <user>/...
        return {"pull", "push"} if user and repo.startswith(f"{user}/") else {"pull"}

    with TokenServer(USERS, acl, directory=tmp_path_factory.mktemp("tokens")) as server:
        yield server


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory, tokens: TokenServer, daemon: Daemon,
                   busybox_image: str) -> Iterator[LocalRegistry]:
    """A token-auth registry holding alice/busybox:v1 (pushed by skopeo with alice's login)."""
    root = tmp_path_factory.mktemp("token-registry")
    daemon.cli("save", "-o", str(root / "bb.tar"), "busybox:latest")
    for reg in start_registry(root / "reg", token=tokens):
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", "--dest-creds", "alice:wonderland",
                        f"docker-archive:{root / 'bb.tar'}", f"docker://{reg.host}/alice/busybox:v1"], check=True)
        yield reg


@pytest.mark.parametrize("kind", CLIS)
def test_token_auth_login_push_pull_logout(cli: Daemon, tokens: TokenServer, token_registry: LocalRegistry,
                                           kind: str) -> None:
    run, host = cli.client(kind), token_registry.host
    public = f"{host}/alice/busybox:v1"
    cli.cli("rmi", "-f", public, check=False)
    # anonymous: pulls (the realm hands out pull tokens), no pushes
    run("pull", public)
    assert run("run", "--rm", public, "echo", "anonymous").stdout == "anonymous\n"
    mine = f"{host}/alice/{unique(kind)}:v1"
    cli.cli("tag", "busybox:latest", mine)
    res = run("push", mine, check=False)
    assert res.returncode == 1 and "unauthorized: authentication required" in res.stderr, res.stderr

    # a wrong password: one clear line, nothing stored
    before = _config(cli)
    res = run("login", "-u", "alice", "--password-stdin", host, input=b"nope\n", check=False)
    assert res.returncode == 1
    assert res.stderr.strip().endswith("unauthorized: incorrect username or password"), res.stderr
    assert _config(cli) == before

    # login: the realm's refresh token becomes the stored identity token
    res = run("login", "-u", "alice", "--password-stdin", host, input=b"wonderland\n")
    assert res.stdout.strip().splitlines()[-1] == "Login Succeeded"
    entry = _config(cli)["auths"][host]
    assert entry["identitytoken"] in tokens.refresh_tokens and tokens.refresh_tokens[entry["identitytoken"]] == "alice"
    assert base64.b64decode(entry["auth"]).decode().startswith("alice:")
    refreshes = len([r for r in tokens.requests if r["grant_type"] == "refresh_token"])
    out = run("push", mine).stdout
    assert out.splitlines()[-1].startswith("v1: digest: sha256:")
    assert len([r for r in tokens.requests if r["grant_type"] == "refresh_token"]) > refreshes
    cli.cli("rmi", mine)
    run("pull", mine)
    # another user's repository: the token lacks push there
    theirs = f"{host}/bob/{unique(kind)}:v1"
    cli.cli("tag", "busybox:latest", theirs)
    assert run("push", theirs, check=False).returncode == 1

    res = run("logout", host)
    assert res.stdout.strip() == f"Removing login credentials for {host}"
    assert host not in _config(cli).get("auths", {})
    assert run("push", mine, check=False).returncode == 1  # anonymous again
    cli.cli("rmi", mine, theirs, public)


def test_login_needs_a_terminal_or_password(cli: Daemon, token_registry: LocalRegistry) -> None:
    res = cli.cli("login", token_registry.host, check=False)
    assert (res.returncode, res.stderr.strip()) == (1, "Error: Cannot perform an interactive login from a non TTY device")
    res = cli.cli("login", "--password-stdin", token_registry.host, check=False)
    assert (res.returncode, res.stderr.strip()) == (1, "Must provide --username with --password-stdin")
    res = cli.cli("logout", token_registry.host)
    assert res.stdout.strip() == f"Not logged in to {token_registry.host}"


def test_docker_py_login_and_push(cli: Daemon, tokens: TokenServer, token_registry: LocalRegistry) -> None:
    host = token_registry.host
    client = docker.DockerClient(base_url=cli.host)
    try:
        with pytest.raises(docker.errors.APIError) as err:
            client.login("bob", "wrong", registry=host, reauth=True)
        assert err.value.status_code == 401 and "incorrect username or password" in str(err.value)
        answer = client.login("bob", "builder", registry=host, reauth=True)
        assert answer["Status"] == "Login Succeeded" and answer["IdentityToken"] in tokens.refresh_tokens
        repo = f"{host}/bob/{unique('py')}"
        client.images.get("busybox:latest").tag(repo, "v1")
        events = list(client.images.push(repo, "v1", stream=True, decode=True,
                                         auth_config={"username": "bob", "password": "builder"}))
        assert not [e for e in events if "error" in e], events
        assert [e["aux"]["Tag"] for e in events if "aux" in e] == ["v1"]
        client.images.remove(f"{repo}:v1")
        client.images.pull(repo, "v1", auth_config={"username": "bob", "password": "builder"})
        client.images.remove(f"{repo}:v1")
    finally:
        client.close()


# ------------------------------------------------------------------ TLS, Basic auth, insecure, mirrors


class Remote:
    """Registries at a non-loopback address in a network namespace, and a daemon in it."""

    def __init__(self, ns: NetNS, tls_reg: LocalRegistry, plain_reg: LocalRegistry, daemon: Daemon,
                 ca_dir: Path) -> None:
        self.ns, self.tls, self.plain, self.daemon, self.ca_dir = ns, tls_reg, plain_reg, daemon, ca_dir


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Iterator[Remote]:
    if IP is None or shutil.which("nsenter") is None:
        pytest.skip("iproute2 (ip) and util-linux (nsenter) are needed")
    root = tmp_path_factory.mktemp("remote")
    ca = make_ca(root / "ca")
    with netns("192.0.2.10/32") as ns:
        cert, key = ca.issue(root / "server", [ns.ip])
        tls_gen = start_registry(root / "tls", tls=(cert, key), htpasswd=USERS, addr=ns.ip, netns=ns)
        plain_gen = start_registry(root / "plain", addr=ns.ip, netns=ns)
        tls_reg, plain_reg = next(tls_gen), next(plain_gen)
        try:
            certs = root / "certs.d" / tls_reg.host
            certs.mkdir(parents=True)
            shutil.copy(ca.cert_path, certs / "ca.crt")
            # the plain registry doubles as docker.io's mirror
            (root / "bb.tar").write_bytes(b"")
            d = start_daemon(root / "d", "--registry-certs-dir", str(root / "certs.d"),
                             "--insecure-registry", plain_reg.host,
                             "--registry-mirror", f"http://{plain_reg.host}",
                             prefix=("nsenter", f"--net={ns.path}"))
            try:
                d.cli("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
                d.cli("save", "-o", str(root / "bb.tar"), "busybox:latest")
                subprocess.run(ns.cmd(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"docker-archive:{root / 'bb.tar'}",
                                       f"docker://{plain_reg.host}/library/busybox:mirrored"]), check=True)
                yield Remote(ns, tls_reg, plain_reg, d, root / "certs.d")
            finally:
                _stop_and_check(d)
        finally:
            for gen in (plain_gen, tls_gen):
                gen.close()


@pytest.mark.parametrize("kind", CLIS)
def test_basic_auth_over_tls(remote: Remote, kind: str) -> None:
    d, host = remote.daemon, remote.tls.host
    run = d.client(kind)
    name = f"{host}/team/{unique(kind)}:v1"
    d.cli("tag", "busybox:latest", name)
    res = run("push", name, check=False)
    assert res.returncode == 1 and "no basic auth credentials" in res.stderr, res.stderr
    res = run("login", "-u", "alice", "--password-stdin", host, input=b"nope\n", check=False)
    assert res.returncode == 1 and host not in _config(d).get("auths", {})
    assert res.stderr.strip() == f"Error response from daemon: login attempt to https://{host}/v2/ failed with status: 401 Unauthorized"
    assert run("login", "-u", "alice", "--password-stdin", host, input=b"wonderland\n").stdout.strip().endswith("Login Succeeded")
    assert base64.b64decode(_config(d)["auths"][host]["auth"]).decode() == "alice:wonderland"
    out = run("push", name).stdout
    assert any(s in out for s in (": Pushed", ": Mounted from", ": Layer already exists")), out
    d.cli("rmi", name)
    run("pull", name)
    assert run("run", "--rm", name, "echo", "over tls").stdout == "over tls\n"
    run("logout", host)
    d.cli("rmi", name)
    res = run("pull", name, check=False)
    assert res.returncode == 1


def test_insecure_registry_and_mirror(remote: Remote) -> None:
    d = remote.daemon
    name = f"{remote.plain.host}/plain/{unique('p')}:v1"  # plain HTTP: listed as insecure
    d.cli("tag", "busybox:latest", name)
    d.cli("push", name)
    d.cli("rmi", name)
    d.cli("pull", name)
    d.cli("rmi", name)
    # docker.io through the mirror: Docker Hub itself is never asked (it is unreachable here)
    out = d.cli("pull", "busybox:mirrored").stdout
    assert out.splitlines()[-1] == "docker.io/library/busybox:mirrored"
    digests = json.loads(d.cli("image", "inspect", "busybox:mirrored").stdout)[0]["RepoDigests"]
    assert [n for n in digests if n.startswith("busybox@")] == [f"busybox@{_mirror_digest(remote)}"]
    d.cli("rmi", "busybox:mirrored")


def _mirror_digest(remote: Remote) -> str:
    argv = ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
            f"docker://{remote.plain.host}/library/busybox:mirrored"]
    return subprocess.run(remote.ns.cmd(argv), capture_output=True, text=True, check=True).stdout.strip()


def test_transport_rules(remote: Remote, tmp_path: Path) -> None:
    """In the namespace, with the client itself: a TLS registry whose CA is not in the certs
    directory is refused; a plain-HTTP registry that is not listed as insecure is not spoken
    to in plain HTTP; listed, it is."""
    empty = tmp_path / "empty-certs.d"
    empty.mkdir()

    def login(host: str, hosts: RegistryHosts) -> str:
        return open_registry(hosts, host, AuthConfig("alice", "wonderland"), push=True).login()

    with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
        remote.ns.call(login, remote.tls.host, RegistryHosts(certs_dir=str(empty)))
    assert remote.ns.call(login, remote.tls.host, RegistryHosts(certs_dir=str(remote.ca_dir))) == ""
    with pytest.raises(Unavailable):
        remote.ns.call(login, remote.plain.host, RegistryHosts(certs_dir=str(empty)))
    assert remote.ns.call(login, remote.plain.host, RegistryHosts([remote.plain.host], certs_dir=str(empty))) == ""


def test_auth_bad_input_leaves_the_store(remote: Remote) -> None:
    d = remote.daemon
    before = store_state(d)
    res = d.cli("pull", f"{remote.tls.host}/team/nothing:v1", check=False)
    assert res.returncode == 1 and "no basic auth credentials" in res.stderr, res.stderr
    res = d.cli("login", "-u", "x", "-p", "y", "https://", check=False)
    assert res.returncode == 1
    assert store_state(d) == before


_HELPER = """#!/usr/bin/env python3
# a docker credential helper keeping secrets in a JSON file beside it (the helper protocol)
import json, os, sys
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "secrets.json")
secrets = json.load(open(path)) if os.path.exists(path) else {}
action, data = sys.argv[1], sys.stdin.read()
if action == "store":
    doc = json.loads(data)
    secrets[doc["ServerURL"]] = {"Username": doc["Username"], "Secret": doc["Secret"]}
elif action == "get":
    if data.strip() not in secrets:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({"ServerURL": data.strip(), **secrets[data.strip()]}))
elif action == "erase":
    secrets.pop(data.strip(), None)
json.dump(secrets, open(path, "w"))
"""


def test_credential_helper(cli: Daemon, tokens: TokenServer, token_registry: LocalRegistry, tmp_path: Path) -> None:
    """With ``credsStore`` set, the login goes to the helper (the identity token under the
    username ``<token>``), config.json lists the registry without secrets, and pushes use it."""
    host = token_registry.host
    bindir, config_dir = tmp_path / "bin", tmp_path / "config"
    bindir.mkdir()
    config_dir.mkdir()
    helper = bindir / "docker-credential-dytest"
    helper.write_text(_HELPER)
    helper.chmod(0o755)
    (config_dir / "config.json").write_text(json.dumps({"credsStore": "dytest"}))
    d = dataclasses.replace(cli, env={**cli.env, "PATH": f"{bindir}:{os.environ['PATH']}",
                                      "DOCKER_CONFIG": str(config_dir)})
    res = d.cli("login", "-u", "bob", "--password-stdin", host, input=b"builder\n")
    assert res.stdout.strip() == "Login Succeeded" and "unencrypted" not in res.stderr
    assert json.loads((config_dir / "config.json").read_text()) == {"credsStore": "dytest", "auths": {host: {}}}
    secret = json.loads((bindir / "secrets.json").read_text())[host]
    assert secret["Username"] == "<token>" and tokens.refresh_tokens[secret["Secret"]] == "bob"
    name = f"{host}/bob/{unique('helper')}:v1"
    d.cli("tag", "busybox:latest", name)
    assert d.cli("push", name).stdout.splitlines()[-1].startswith("v1: digest: ")
    assert d.cli("logout", host).stdout.strip() == f"Removing login credentials for {host}"
    assert json.loads((bindir / "secrets.json").read_text()) == {}
    d.cli("rmi", name)
