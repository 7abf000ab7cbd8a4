"""Pull's bad cases against real registries (issue 6): a registry serving a layer whose bytes
do not match its digest (its storage corrupted on disk), a repository that does not exist on
a token-auth registry, wrong credentials — each a clear one-line error, non-zero exit, and the
daemon's stores exactly as before."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, store_state
from tests.fixtures.clients import CLIS, unique
from tests.fixtures.registry import REGISTRY_BIN, LocalRegistry, push_fresh_image, start_registry
from tests.fixtures.tokenserver import TokenServer

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root"),
    pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry is not installed (apt install docker-registry)"),
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    def acl(user: str, repo: str) -> set[str]:  # private/...: nobody but carol, not even to pull
        if repo.startswith("private/"):
            return {"pull", "push"} if user == "carol" else set()
        return {"pull", "push"} if user else {"pull"}

    with TokenServer({"carol": "secret"}, acl, directory=tmp_path_factory.mktemp("tokens")) as server:
        yield server


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, tokens: TokenServer) -> Iterator[LocalRegistry]:
    yield from start_registry(tmp_path_factory.mktemp("errors-registry"), token=tokens)


@pytest.mark.parametrize("kind", CLIS)
def test_corrupt_blob_is_rejected(cli: Daemon, registry: LocalRegistry, kind: str, tmp_path: Path) -> None:
    repo = f"carol/{unique('corrupt')}"
    layer = push_fresh_image(cli, f"{registry.host}/{repo}:v1", tmp_path, "carol:secret")
    hexdigest = layer.removeprefix("sha256:")
    data = registry.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data"
    blob = bytearray(data.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # same size, other bytes: only the digest can tell
    data.write_bytes(bytes(blob))
    before = store_state(cli)
    res = cli.client(kind)("pull", f"{registry.host}/{repo}:v1", check=False)
    assert res.returncode == 1
    assert layer in res.stderr and "digest" in res.stderr.lower(), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert store_state(cli) == before


@pytest.mark.parametrize("kind", CLIS)
def test_pull_access_denied_and_wrong_credentials(cli: Daemon, registry: LocalRegistry, kind: str,
                                                  tmp_path: Path) -> None:
    run = cli.client(kind)
    before = store_state(cli)
    missing = f"{registry.host}/nobody/{unique('none')}"  # this registry says: manifest unknown
    res = run("pull", missing, check=False)
    assert res.returncode == 1
    assert res.stderr.strip() == (f"Error response from daemon: manifest for {missing}:latest not found: "
                                  "manifest unknown: manifest unknown")
    private = f"{registry.host}/private/{unique('secret')}"  # the realm grants nothing: a 401
    res = run("pull", private, check=False)
    assert res.returncode == 1
    assert res.stderr.strip() == (f"Error response from daemon: pull access denied for {private}, repository does not "
                                  "exist or may require 'docker login': denied: requested access to the resource is denied")
    res = run("login", "-u", "carol", "--password-stdin", registry.host, input=b"wrong\n", check=False)
    assert res.returncode == 1
    assert res.stderr.strip().endswith("unauthorized: incorrect username or password"), res.stderr
    # stored credentials that went stale: the pull says so
    config = Path(cli.env["DOCKER_CONFIG"])
    config.mkdir(exist_ok=True)
    saved = (config / "config.json").read_text() if (config / "config.json").exists() else None
    try:
        (config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": "Y2Fyb2w6c3RhbGU="}}}))  # carol:stale
        res = run("pull", f"{registry.host}/carol/anything:v1", check=False)
        assert res.returncode == 1
        assert "incorrect username or password" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    finally:
        if saved is None:
            (config / "config.json").unlink()
        else:
            (config / "config.json").write_text(saved)
    assert store_state(cli) == before
