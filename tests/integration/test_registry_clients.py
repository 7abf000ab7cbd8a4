"""dockyard's registry server with real clients (issue 9): dockyard's own push and pull and
the docker CLI through dockyardd; skopeo (copy in and out, inspect, list-tags, delete); a
round trip from the CNCF distribution registry (docker-registry) into dockyard's registry
and back with identical digests; TLS and basic auth."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon
from tests.fixtures.clients import CLIS, unique
from tests.fixtures.dyregistry import DyRegistry, start_dyregistry
from tests.fixtures.registry import REGISTRY_BIN, LocalRegistry, push_fresh_image, start_registry

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")


@pytest.fixture(scope="module")
def dyreg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DyRegistry]:
    yield from start_dyregistry(tmp_path_factory.mktemp("dyreg"))


def _skopeo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=True)


def _raw(ref: str, *flags: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", *flags, f"docker://{ref}"],
                          capture_output=True, check=True).stdout


@pytest.mark.parametrize("kind", CLIS)
def test_push_and_pull_through_dockyardd(cli: Daemon, dyreg: DyRegistry, kind: str, tmp_path: Path) -> None:
    run = cli.client(kind)
    ref = f"{dyreg.host}/{unique('lib/app')}:v1"
    run("tag", "busybox", ref)
    out = run("push", ref).stdout
    digest = out.strip().splitlines()[-1].split("digest: ")[1].split()[0]
    run("rmi", ref)
    run("pull", ref)
    assert digest in run("inspect", "--format", "{{json .RepoDigests}}", ref).stdout
    assert run("run", "--rm", ref, "echo", "from-registry").stdout == "from-registry\n"
    run("rmi", ref)
    # what the registry holds is what was pushed, byte for byte
    import hashlib

    assert "sha256:" + hashlib.sha256(_raw(ref)).hexdigest() == digest


def test_skopeo(cli: Daemon, dyreg: DyRegistry, tmp_path: Path) -> None:
    name = unique("sk/busybox")
    archive = tmp_path / "busybox.tar"
    cli.cli("save", "-o", str(archive), "busybox")
    _skopeo("copy", "-q", "--dest-tls-verify=false", f"docker-archive:{archive}", f"docker://{dyreg.host}/{name}:one")
    _skopeo("copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", f"docker://{dyreg.host}/{name}:one",
            f"docker://{dyreg.host}/{name}:two")
    tags = json.loads(_skopeo("list-tags", "--tls-verify=false", f"docker://{dyreg.host}/{name}").stdout)
    assert tags["Tags"] == ["one", "two"]
    info = json.loads(_skopeo("inspect", "--tls-verify=false", f"docker://{dyreg.host}/{name}:one").stdout)
    assert info["Os"] == "linux" and len(info["Layers"]) == 1
    out = tmp_path / "oci"
    _skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{dyreg.host}/{name}:two", f"oci:{out}:two")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "two"
    _skopeo("delete", "--tls-verify=false", f"docker://{dyreg.host}/{name}:one")  # by digest: both tags go
    res = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{dyreg.host}/{name}:two"],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "manifest unknown" in res.stderr


@pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry is not installed")
def test_round_trip_with_distribution_registry(cli: Daemon, dyreg: DyRegistry, tmp_path: Path) -> None:
    for upstream in start_registry(tmp_path / "upstream"):
        _round_trip(cli, dyreg, upstream, tmp_path)


def _round_trip(cli: Daemon, dyreg: DyRegistry, upstream: LocalRegistry, tmp_path: Path) -> None:
    push_fresh_image(cli, f"{upstream.host}/src/app:v1", tmp_path)
    original = _raw(f"{upstream.host}/src/app:v1")
    flags = ["--src-tls-verify=false", "--dest-tls-verify=false"]
    _skopeo("copy", "-q", *flags, f"docker://{upstream.host}/src/app:v1", f"docker://{dyreg.host}/mirror/app:v1")
    assert _raw(f"{dyreg.host}/mirror/app:v1") == original  # stored byte for byte
    _skopeo("copy", "-q", *flags, f"docker://{dyreg.host}/mirror/app:v1", f"docker://{upstream.host}/back/app:v1")
    assert _raw(f"{upstream.host}/back/app:v1") == original  # identical digests all the way round


def test_tls_and_basic_auth(cli: Daemon, tmp_path: Path) -> None:
    from tests.fixtures.registry import write_htpasswd
    from tests.fixtures.tls import make_ca

    ca = make_ca(tmp_path / "ca")
    cert, key = ca.issue(tmp_path / "server", ["127.0.0.1"])
    (tmp_path / "a").mkdir()
    htpasswd = write_htpasswd(tmp_path / "a" / "htpasswd", {"alice": "s3cret"})
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(ca.cert_path, certs / "ca.crt")
    archive = tmp_path / "busybox.tar"
    cli.cli("save", "-o", str(archive), "busybox")
    for reg in start_dyregistry(tmp_path / "reg", "--tls-cert", str(cert), "--tls-key", str(key),
                                "--htpasswd", str(htpasswd)):
        assert reg.scheme == "https"
        target = f"docker://{reg.host}/secure/busybox:v1"
        res = subprocess.run(["skopeo", "copy", "-q", "--dest-cert-dir", str(certs), f"docker-archive:{archive}",
                              target], capture_output=True, text=True)
        assert res.returncode != 0 and ("unauthorized" in res.stderr.lower() or "authentication" in res.stderr.lower())
        _skopeo("copy", "-q", "--dest-cert-dir", str(certs), "--dest-creds", "alice:s3cret",
                f"docker-archive:{archive}", target)
        info = json.loads(_skopeo("inspect", "--cert-dir", str(certs), "--creds", "alice:s3cret", target).stdout)
        assert info["Name"] == f"{reg.host}/secure/busybox"
        res = subprocess.run(["skopeo", "inspect", "--creds", "alice:s3cret", target], capture_output=True, text=True)
        assert res.returncode != 0 and "certificate" in res.stderr  # not trusted without the CA


def test_token_auth(cli: Daemon, tmp_path: Path) -> None:
    """Bearer tokens from a token server (tests/fixtures/tokenserver.py, RS256 with x5c):
    per-repository pull / push / delete, a token from an untrusted signer refused."""
    import urllib.error
    import urllib.request

    from tests.fixtures.tokenserver import TokenServer

    def acl(user: str, repo: str) -> set[str]:
        return {"alice": {"pull", "push"}, "bob": {"pull"}}.get(user, set()) if repo.startswith("team/") else set()

    archive = tmp_path / "busybox.tar"
    cli.cli("save", "-o", str(archive), "busybox")
    with TokenServer({"alice": "a-pw", "bob": "b-pw"}, acl, directory=tmp_path / "tokens") as tokens:
        for reg in start_dyregistry(tmp_path / "reg", "--token-realm", tokens.realm, "--token-service", tokens.service,
                                    "--token-issuer", tokens.issuer, "--token-root-certs", str(tokens.cert_path)):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"{reg.url}/v2/", timeout=10)
            challenge = err.value.headers["WWW-Authenticate"]
            assert err.value.code == 401 and challenge.startswith(f'Bearer realm="{tokens.realm}"')
            assert f'service="{tokens.service}"' in challenge

            target = f"docker://{reg.host}/team/busybox:v1"
            flags = ["--dest-tls-verify=false"]
            _skopeo("copy", "-q", *flags, "--dest-creds", "alice:a-pw", f"docker-archive:{archive}", target)
            info = json.loads(_skopeo("inspect", "--tls-verify=false", "--creds", "bob:b-pw", target).stdout)
            assert info["Name"] == f"{reg.host}/team/busybox"
            for creds, ref in (("bob:b-pw", target), ("alice:a-pw", f"docker://{reg.host}/private/busybox:v1")):
                res = subprocess.run(["skopeo", "copy", "-q", *flags, "--dest-creds", creds,
                                      f"docker-archive:{archive}", ref], capture_output=True, text=True)
                assert res.returncode != 0, (creds, ref)  # no push for bob; nothing outside team/ for alice
            res = subprocess.run(["skopeo", "delete", "--tls-verify=false", "--creds", "alice:a-pw", target],
                                 capture_output=True, text=True)
            assert res.returncode != 0  # the ACL grants no delete

            # a well-formed token from a signer the registry does not trust
            with TokenServer(directory=tmp_path / "other", issuer=tokens.issuer, service=tokens.service) as rogue:
                token, _ = rogue.make_token("alice", [{"type": "repository", "name": "team/busybox",
                                                       "actions": ["pull"]}])
                req = urllib.request.Request(f"{reg.url}/v2/team/busybox/tags/list",
                                             headers={"Authorization": f"Bearer {token}"})
                with pytest.raises(urllib.error.HTTPError) as err:
                    urllib.request.urlopen(req, timeout=10)
                assert err.value.code == 401 and 'error="invalid_token"' in err.value.headers["WWW-Authenticate"]
            token, _ = tokens.make_token("bob", [{"type": "repository", "name": "team/busybox", "actions": ["pull"]}])
            req = urllib.request.Request(f"{reg.url}/v2/team/busybox/tags/list",
                                         headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert json.loads(resp.read()) == {"name": "team/busybox", "tags": ["v1"]}
