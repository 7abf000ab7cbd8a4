"""Push (issue 6) to a real registry (Debian's docker-registry on 127.0.0.1): the dockyard CLI,
the docker CLI and docker-py push; skopeo reads what was pushed with identical digests (inspect,
copy); a pulled image pushed elsewhere keeps its digest; layers the registry has are not sent
again, layers from another repository of the registry are mounted; uploads go in one PUT or
in PATCH chunks; `push -a`; bad input gets docker's messages and leaves the store as it was."""

from __future__ import annotations

import hashlib
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

from dockyard.distribution.hosts import RegistryHosts
from dockyard.distribution.registry import RegistryError, open_registry
from tests.conftest import Daemon, store_state
from tests.fixtures.clients import CLIS, unique
from tests.fixtures.registry import REGISTRY_BIN, LocalRegistry, start_registry

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root"),
    pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry is not installed (apt install docker-registry)"),
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    yield from start_registry(tmp_path_factory.mktemp("push-registry"))


def _skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=True).stdout


def _raw_manifest(reg: LocalRegistry, repo: str, tag: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reg.host}/{repo}:{tag}"],
                          capture_output=True, check=True).stdout


def _image_with_payload(d: Daemon, tmp_path: Path, name: str, size: int = 200_000) -> bytes:
    """A one-layer image ``name`` holding /payload (random bytes, returned)."""
    payload = os.urandom(size)
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    (tmp_path / "rootfs" / "payload").write_bytes(payload)
    subprocess.run(["tar", "-C", str(tmp_path / "rootfs"), "-cf", str(tmp_path / "rootfs.tar"), "."], check=True)
    d.cli("import", str(tmp_path / "rootfs.tar"), name)
    return payload


@pytest.mark.parametrize("kind", CLIS)
def test_push_then_skopeo_reads_it(cli: Daemon, registry: LocalRegistry, kind: str, tmp_path: Path) -> None:
    repo = unique("pushed")
    name = f"{registry.host}/{repo}:v1"
    _image_with_payload(cli, tmp_path, name)  # a layer of its own: the registry lacks it
    out = cli.client(kind)("push", name).stdout
    lines = out.splitlines()
    assert lines[0] == f"The push refers to repository [{registry.host}/{repo}]"
    raw = _raw_manifest(registry, repo, "v1")
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    assert lines[-1] == f"v1: digest: {digest} size: {len(raw)}"
    assert any(line.endswith(": Pushed") for line in lines)
    # the manifest went up byte for byte: its digest is the one dockyard records
    local = json.loads(cli.cli("image", "inspect", name).stdout)[0]
    assert f"{registry.host}/{repo}@{digest}" in local["RepoDigests"]
    assert _skopeo("inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{registry.host}/{repo}:v1").strip() == digest
    # skopeo copies it out with the same manifest digest, and the layers are what dockyard holds
    _skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{registry.host}/{repo}:v1", f"dir:{tmp_path / 'copy'}")
    assert "sha256:" + hashlib.sha256((tmp_path / "copy" / "manifest.json").read_bytes()).hexdigest() == digest
    manifest = json.loads(raw)
    assert manifest["config"]["digest"] == local["Id"]
    # the imported layer is stored as a plain tar; it went up gzip-compressed, as docker pushes
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.docker.image.rootfs.diff.tar.gzip"]
    assert (tmp_path / "copy" / manifest["layers"][0]["digest"].removeprefix("sha256:")).read_bytes()[:2] == b"\x1f\x8b"
    for layer in manifest["layers"]:
        blob = tmp_path / "copy" / layer["digest"].removeprefix("sha256:")
        assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == layer["digest"]
    # the second push sends nothing again
    # the image is the same image, and it still saves and runs
    assert json.loads(cli.cli("image", "inspect", name).stdout)[0]["Id"] == local["Id"]
    cli.cli("save", "-o", str(tmp_path / "saved.tar"), name)
    with tarfile.open(tmp_path / "saved.tar") as saved:
        assert json.load(saved.extractfile("manifest.json"))[0]["RepoTags"] == [name]
    again = cli.client(kind)("push", name).stdout
    assert "Layer already exists" in again and ": Pushed" not in again
    assert again.splitlines()[-1] == f"v1: digest: {digest} size: {len(raw)}"
    cli.cli("rmi", name)


def test_pulled_image_keeps_its_digest_and_layers_are_mounted(cli: Daemon, registry: LocalRegistry, tmp_path: Path) -> None:
    """An image skopeo pushed, pulled by dockyard, pushed to another repository: the same
    manifest digest; its layer is mounted from the repository it came from."""
    source, target = unique("src"), unique("dst")
    cli.cli("save", "-o", str(tmp_path / "bb.tar"), "busybox:latest")
    _skopeo("copy", "-q", "--dest-tls-verify=false", f"docker-archive:{tmp_path / 'bb.tar'}",
            f"docker://{registry.host}/{source}:v1")
    remote = "sha256:" + hashlib.sha256(_raw_manifest(registry, source, "v1")).hexdigest()
    cli.cli("pull", f"{registry.host}/{source}:v1")
    cli.cli("tag", f"{registry.host}/{source}:v1", f"{registry.host}/{target}:copy")
    out = cli.cli("push", f"{registry.host}/{target}:copy").stdout
    assert f"Mounted from {source}" in out, out
    assert out.splitlines()[-1].startswith(f"copy: digest: {remote} ")
    assert "sha256:" + hashlib.sha256(_raw_manifest(registry, target, "copy")).hexdigest() == remote
    cli.cli("rmi", f"{registry.host}/{source}:v1", f"{registry.host}/{target}:copy")


def test_push_all_tags_and_default_tag(cli: Daemon, registry: LocalRegistry) -> None:
    repo = unique("alltags")
    for tag in ("a", "b"):
        cli.cli("tag", "busybox:latest", f"{registry.host}/{repo}:{tag}")
    out = cli.cli("push", "-a", f"{registry.host}/{repo}").stdout
    assert [line.split(":")[0] for line in out.splitlines() if ": digest: " in line] == ["a", "b"]
    tags = json.loads(_skopeo("list-tags", "--tls-verify=false", f"docker://{registry.host}/{repo}"))["Tags"]
    assert sorted(tags) == ["a", "b"]
    res = cli.cli("push", f"{registry.host}/{repo}", check=False)  # no tag: latest, which it lacks
    assert res.returncode == 1 and res.stdout.startswith("Using default tag: latest")
    assert res.stderr.strip() == f"Error response from daemon: An image does not exist locally with the tag: {registry.host}/{repo}"
    assert cli.cli("push", "-a", f"{registry.host}/{repo}:a", check=False).stderr.strip() == "tag can't be used with --all-tags/-a"
    cli.cli("rmi", f"{registry.host}/{repo}:a", f"{registry.host}/{repo}:b")


def test_docker_py_push(cli: Daemon, registry: LocalRegistry) -> None:
    repo = unique("dockerpy")
    client = docker.DockerClient(base_url=cli.host)
    try:
        client.images.get("busybox:latest").tag(f"{registry.host}/{repo}", "v2")
        events = list(client.images.push(f"{registry.host}/{repo}", "v2", stream=True, decode=True))
        aux = [e["aux"] for e in events if "aux" in e]
        raw = _raw_manifest(registry, repo, "v2")
        assert aux == [{"Tag": "v2", "Digest": "sha256:" + hashlib.sha256(raw).hexdigest(), "Size": len(raw)}]
        client.images.remove(f"{registry.host}/{repo}:v2")
    finally:
        client.close()


def test_chunked_and_monolithic_uploads(registry: LocalRegistry) -> None:
    """The client's two upload shapes against the real registry: what it stores has the
    digest, and a wrong digest is refused with nothing stored."""
    reg = open_registry(RegistryHosts(), registry.host, push=True)
    repo = unique("uploads")
    blob = os.urandom(300_000)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    seen: list[int] = []
    reg.upload_blob(repo, digest, len(blob), io.BytesIO(blob), seen.append, chunk=64 * 1024)
    assert sum(seen) == len(blob)
    assert reg.blob_size(repo, digest) == len(blob)
    small = b"monolithic"
    small_digest = "sha256:" + hashlib.sha256(small).hexdigest()
    reg.upload_blob(repo, small_digest, len(small), io.BytesIO(small))
    parts: list[bytes] = []
    reg.blob(repo, small_digest, parts.append, len(small))
    assert b"".join(parts) == small
    wrong = "sha256:" + "0" * 64
    with pytest.raises(RegistryError, match="digest invalid"):
        reg.upload_blob(repo, wrong, len(small), io.BytesIO(small))
    assert reg.blob_size(repo, wrong) is None


@pytest.mark.parametrize("kind", CLIS)
def test_push_bad_input(cli: Daemon, registry: LocalRegistry, kind: str) -> None:
    run = cli.client(kind)
    before = store_state(cli)
    missing = f"{registry.host}/{unique('missing')}:v1"
    res = run("push", missing, check=False)
    assert res.returncode == 1
    assert res.stderr.strip() == f"Error response from daemon: An image does not exist locally with the tag: {missing.rsplit(':', 1)[0]}"
    # nothing listens there: one clear line, non-zero
    cli.cli("tag", "busybox:latest", "127.0.0.1:9/nowhere:v1")
    res = run("push", "127.0.0.1:9/nowhere:v1", check=False)
    assert res.returncode == 1 and "connection refused" in res.stderr.lower(), res.stderr
    cli.cli("rmi", "127.0.0.1:9/nowhere:v1")
    assert store_state(cli) == before
