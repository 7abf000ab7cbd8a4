"""Pull (issue 6, first part) from a real registry (Debian's docker-registry on 127.0.0.1,
plain HTTP as docker allows for loopback): an image skopeo pushed is pulled by the dockyard
CLI, the docker CLI and docker-py and runs; by tag and by digest, with RepoDigests; layers
already present are skipped; ``run`` pulls a missing image; a missing repository or tag gets
docker's message with nothing stored."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon, store_state
from tests.fixtures.clients import CLIS
from tests.fixtures.registry import REGISTRY_BIN, DroppingProxy, LocalRegistry, start_registry

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root"),
    pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry is not installed (apt install docker-registry)"),
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]


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


@pytest.mark.parametrize("kind", CLIS)
def test_pull_and_run(cli: Daemon, registry: LocalRegistry, kind: str) -> None:
    run = cli.client(kind)
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


@pytest.mark.parametrize("kind", CLIS)
def test_run_pulls_a_missing_image(cli: Daemon, registry: LocalRegistry, kind: str) -> None:
    run = cli.client(kind)
    name = f"{registry.host}/test/busybox:v1"
    _forget(cli, name)
    res = run("run", "--rm", name, "echo", "ran")
    assert res.stdout == "ran\n"  # the pull's progress goes to stderr
    assert f"Unable to find image '{name}' locally" in res.stderr
    _forget(cli, name)


@pytest.mark.parametrize("kind", CLIS)
def test_missing_repository_or_tag(cli: Daemon, registry: LocalRegistry, kind: str) -> None:
    run = cli.client(kind)
    before = store_state(cli)
    for name in (f"{registry.host}/test/busybox:nosuchtag", f"{registry.host}/nobody/here:v1"):
        res = run("pull", name, check=False)
        assert res.returncode == 1
        assert res.stderr.strip() == (f"Error response from daemon: manifest for {name} not found: "
                                      "manifest unknown: manifest unknown"), res.stderr
    assert store_state(cli) == before


@pytest.fixture(scope="module")
def fresh_layer(registry: LocalRegistry, daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """test/fresh:v1 in the registry: an image whose layer (300 kB of random bytes in
    /payload) the daemon does not hold, so a pull must download it. Returns the layer's
    digest and the payload."""
    root = tmp_path_factory.mktemp("fresh")
    (root / "rootfs").mkdir()
    payload = os.urandom(300_000)
    (root / "rootfs" / "payload").write_bytes(payload)
    subprocess.run(["tar", "-C", str(root / "rootfs"), "-cf", str(root / "rootfs.tar"), "."], check=True)
    daemon.cli("import", str(root / "rootfs.tar"), "fresh:v1")
    daemon.cli("save", "-o", str(root / "fresh.tar"), "fresh:v1")
    daemon.cli("rmi", "fresh:v1")  # its blobs go with it
    subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{root / 'fresh.tar'}", f"docker://{registry.host}/test/fresh:v1",
                    "--dest-tls-verify=false"], check=True)
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/test/fresh:v1"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(raw)["layers"][0]["digest"], payload


def test_dropped_blob_download_resumes(cli: Daemon, registry: LocalRegistry, fresh_layer: tuple[str, bytes]) -> None:
    """The registry's connection drops 1000 bytes into the layer: the pull takes it up again
    where it stopped (an HTTP Range request) and completes."""
    layer, payload = fresh_layer
    proxy = DroppingProxy(registry.host, layer, after=1000, drops=1)
    name = f"{proxy.host}/test/fresh:v1"
    try:
        out = cli.cli("pull", name).stdout
        assert "Pull complete" in out
        gets = [(line, rng) for line, rng in proxy.requests if f"/blobs/{layer} " in line]
        assert len(gets) == 2 and gets[0][1] == "", gets
        assert gets[1][1].startswith("bytes=") and int(gets[1][1][6:].rstrip("-")) > 0, gets
        cid = cli.cli("create", name, "x").stdout.strip()
        copied = cli.cli("cp", f"{cid}:/payload", "-", raw=True).stdout
        cli.cli("rm", cid)
        with tarfile.open(fileobj=io.BytesIO(copied)) as tf:
            assert tf.extractfile("payload").read() == payload  # every byte, once
    finally:
        _forget(cli, name)
        proxy.close()


def test_blob_that_keeps_dropping_fails_clearly(cli: Daemon, registry: LocalRegistry, fresh_layer: tuple[str, bytes]) -> None:
    proxy = DroppingProxy(registry.host, fresh_layer[0], after=1000, drops=100)
    name = f"{proxy.host}/test/fresh:v1"
    before = store_state(cli)
    try:
        res = cli.cli("pull", name, check=False)
        assert res.returncode == 1
        assert "error pulling blob sha256:" in res.stderr and "(after 3 retries)" in res.stderr, res.stderr
        assert store_state(cli) == before  # no image, no blob, no snapshot
    finally:
        proxy.close()


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
