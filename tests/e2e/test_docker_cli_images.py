"""The official docker CLI (and docker-py) as clients of dockyardd's image API."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.e2e


def test_docker_version_and_info(daemon: Daemon) -> None:
    out = daemon.docker("version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}").stdout.split()
    assert out == ["1.51", "linux"]
    info = json.loads(daemon.docker("info", "--format", "{{json .}}").stdout)
    assert info["OSType"] == "linux" and info["Driver"] in ("overlay", "native")


def test_docker_images_lists_the_same(daemon: Daemon, busybox_image: str) -> None:
    ours = daemon.cli("images", "-q", "--no-trunc").stdout.split()
    theirs = daemon.docker("images", "-q", "--no-trunc").stdout.split()
    assert theirs == ours and busybox_image in theirs
    table = daemon.docker("images", "busybox").stdout.splitlines()
    assert table[0].split()[:2] == ["REPOSITORY", "TAG"]
    assert table[1].split()[:3] == ["busybox", "latest", busybox_image[7:19]]


def test_docker_inspect_tag_rmi(daemon: Daemon, busybox_image: str) -> None:
    info = json.loads(daemon.docker("image", "inspect", "busybox").stdout)[0]
    assert info["Id"] == busybox_image and info["Config"]["Cmd"] == ["sh"]
    assert daemon.docker("inspect", "--format", "{{.Id}}", "busybox").stdout.strip() == busybox_image
    daemon.docker("tag", "busybox", "docker-tagged:1")
    assert "docker-tagged:1" in daemon.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    out = daemon.docker("rmi", "docker-tagged:1").stdout
    assert out.strip() == "Untagged: docker-tagged:1"
    res = daemon.docker("rmi", "no-such-image", check=False)
    assert res.returncode == 1 and "No such image: no-such-image:latest" in res.stderr


def test_docker_history(daemon: Daemon, busybox_image: str) -> None:
    out = daemon.docker("history", "--no-trunc", "--format", "{{.ID}}|{{.Comment}}", "busybox").stdout
    assert out.strip() == f"{busybox_image}|Imported from -"


def test_docker_save_load_import(daemon: Daemon, busybox_image: str, fresh_daemon: Daemon, tmp_path: Path, busybox_tar: Path) -> None:
    archive = tmp_path / "docker-saved.tar"
    daemon.docker("save", "-o", str(archive), "busybox")
    assert "manifest.json" in tarfile.open(archive).getnames()
    out = fresh_daemon.docker("load", "-i", str(archive)).stdout
    assert "Loaded image: busybox:latest" in out
    assert fresh_daemon.docker("images", "-q", "--no-trunc").stdout.split() == [busybox_image]
    new_id = fresh_daemon.docker("import", "--change", "CMD [\"sh\"]", str(busybox_tar), "via-docker:1").stdout.strip()
    assert new_id.startswith("sha256:")
    cfg = json.loads(fresh_daemon.cli("image", "inspect", "via-docker:1").stdout)[0]["Config"]
    assert cfg["Cmd"] == ["sh"]


def test_docker_py_images(daemon: Daemon, busybox_image: str, tmp_path: Path) -> None:
    docker = pytest.importorskip("docker", reason="docker-py is installed by the test command")
    client = docker.DockerClient(base_url=daemon.host, version="1.51")
    try:
        assert client.ping() is True
        img = client.images.get("busybox")
        assert img.id == busybox_image and "busybox:latest" in img.tags
        assert img.tag("pytagged", "x") is True
        assert "pytagged:x" in client.images.get("pytagged:x").tags
        client.images.remove("pytagged:x")
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("pytagged:x")
        ids = {i.id for i in client.images.list()}
        assert busybox_image in ids
        data = b"".join(img.save(named=True))
        loaded = client.images.load(data)
        assert [i.id for i in loaded] == [busybox_image]
        assert client.api.history("busybox")[0]["Id"] == busybox_image
    finally:
        client.close()
