"""Pull (issue 6, first part) from a real registry (Debian's docker-registry on 127.0.0.1,
plain HTTP as docker allows for loopback): an image skopeo pushed is pulled by the dockyard
CLI, the docker CLI and docker-py and runs; by tag and by digest, with RepoDigests; layers
already present are skipped; ``run`` pulls a missing image; a missing repository or tag gets
docker's message with nothing stored."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon, store_state
from tests.fixtures.registry import REGISTRY_BIN, LocalRegistry, start_registry

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root"),
    pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry is not installed (apt install docker-registry)"),
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]

_DOCKER = pytest.param("docker", marks=pytest.mark.skipif(shutil.which("docker") is None,
                                                          reason="the docker CLI is not installed"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, daemon: Daemon, busybox_image: str) -> Iterator[LocalRegistry]:
    """A registry holding test/busybox:v1, pushed by skopeo from the busybox image saved by
    the session daemon."""
    root = tmp_path_factory.mktemp("registry")
    archive = root / "busybox.tar"
    daemon.cli("save", "-o", str(archive), "busybox:latest")
    for reg in start_registry(root / "reg"):
        subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{archive}", f"docker://{reg.host}/test/busybox:v1",
                        "--dest-tls-verify=false"], check=True)
        yield reg


def _remote_digest(reg: LocalRegistry, repo: str, tag: str) -> str:
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                          f"docker://{reg.host}/{repo}:{tag}"], capture_output=True, text=True, check=True).stdout
    return out.strip()


def _forget(d: Daemon, name: str) -> None:
    d.cli("rmi", "-f", name, check=False)


@pytest.mark.parametrize("kind", ["dockyard", _DOCKER])
def test_pull_and_run(cli: Daemon, registry: LocalRegistry, kind: str) -> None:
    run = cli.cli if kind == "dockyard" else cli.docker
    name = f"{registry.host}/test/busybox:v1"
    _forget(cli, name)
    out = run("pull", name).stdout
    digest = _remote_digest(registry, "test/busybox", "v1")
    assert out.splitlines()[0] == f"v1: Pulling from {registry.host}/test/busybox"
    assert f"Digest: {digest}" in out and f"Status: Downloaded newer image for {name}" in out
    assert out.splitlines()[-1] == name
    doc = json.loads(cli.cli("image", "inspect", name).stdout)[0]
    assert doc["RepoDigests"] == [f"{registry.host}/test/busybox@{digest}"]
    assert run("run", "--rm", name, "echo", "pulled").stdout == "pulled\n"
    again = run("pull", name).stdout
    assert "Already exists" in again and f"Status: Image is up to date for {name}" in again
    by_digest = f"{registry.host}/test/busybox@{digest}"
    assert run("pull", by_digest).stdout.splitlines()[-1] == by_digest
    _forget(cli, name)


@pytest.mark.parametrize("kind", ["dockyard", _DOCKER])
def test_run_pulls_a_missing_image(cli: Daemon, registry: LocalRegistry, kind: str) -> None:
    run = cli.cli if kind == "dockyard" else cli.docker
    name = f"{registry.host}/test/busybox:v1"
    _forget(cli, name)
    res = run("run", "--rm", name, "echo", "ran")
    assert res.stdout == "ran\n"  # the pull's progress goes to stderr
    assert f"Unable to find image '{name}' locally" in res.stderr
    _forget(cli, name)


@pytest.mark.parametrize("kind", ["dockyard", _DOCKER])
def test_missing_repository_or_tag(cli: Daemon, registry: LocalRegistry, kind: str) -> None:
    run = cli.cli if kind == "dockyard" else cli.docker
    before = store_state(cli)
    for name in (f"{registry.host}/test/busybox:nosuchtag", f"{registry.host}/nobody/here:v1"):
        res = run("pull", name, check=False)
        assert res.returncode == 1
        assert res.stderr.strip() == (f"Error response from daemon: manifest for {name} not found: "
                                      "manifest unknown: manifest unknown"), res.stderr
    assert store_state(cli) == before


def test_docker_py_pull(cli: Daemon, registry: LocalRegistry) -> None:
    client = docker.DockerClient(base_url=cli.host, timeout=60)
    name = f"{registry.host}/test/busybox"
    try:
        img = client.images.pull(name, tag="v1")
        assert f"{name}:v1" in img.tags
        assert client.containers.run(img.id, "echo py", remove=True) == b"py\n"
        with pytest.raises(docker.errors.NotFound):
            client.images.pull(name, tag="nosuchtag")
    finally:
        _forget(cli, f"{name}:v1")
        client.close()


def test_registry_is_stopped_by_its_fixture(tmp_path: Path) -> None:
    """The fixture ends the registry it started (no process left behind)."""
    gen = start_registry(tmp_path / "reg")
    reg = next(gen)
    assert reg.proc.poll() is None
    gen.close()
    assert reg.proc.poll() is not None
