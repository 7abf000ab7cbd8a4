"""skopeo as a real image client: it reads what `dockyard save` writes, and `dockyard load`
reads what it writes."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Daemon

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is installed by the test command (apt)"),
]


def skopeo(*args: str) -> str:
    res = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_skopeo_inspects_dockyard_archives(daemon: Daemon, busybox_image: str, tmp_path: Path) -> None:
    archive = tmp_path / "bb.tar"
    daemon.cli("save", "-o", str(archive), "busybox")
    inspect = json.loads(daemon.cli("image", "inspect", "busybox").stdout)[0]
    config = json.loads(skopeo("inspect", "--config", f"docker-archive:{archive}"))
    assert config["rootfs"]["diff_ids"] == inspect["RootFS"]["Layers"]
    raw = json.loads(skopeo("inspect", "--raw", f"docker-archive:{archive}"))
    assert raw["config"]["digest"] == busybox_image
    oci_raw = skopeo("inspect", "--raw", f"oci-archive:{archive}")
    assert "sha256:" + hashlib.sha256(oci_raw.encode()).hexdigest() == inspect["Descriptor"]["digest"]


@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_dockyard_loads_skopeo_archives(daemon: Daemon, busybox_image: str, tmp_path: Path, transport: str) -> None:
    ours = tmp_path / "ours.tar"
    daemon.cli("save", "-o", str(ours), "busybox")
    theirs = tmp_path / "theirs.tar"
    skopeo("copy", f"docker-archive:{ours}", f"{transport}:{theirs}:skopeo/{transport}:v1")
    out = daemon.cli("load", "-i", str(theirs)).stdout
    assert f"Loaded image: skopeo/{transport}:v1" in out
    loaded = json.loads(daemon.cli("image", "inspect", f"skopeo/{transport}:v1").stdout)[0]
    original = json.loads(daemon.cli("image", "inspect", "busybox").stdout)[0]
    # skopeo keeps the layers; the docker-archive keeps the config (image ID) byte for byte
    assert loaded["RootFS"]["Layers"] == original["RootFS"]["Layers"]
    if transport == "docker-archive":
        assert loaded["Id"] == busybox_image
    daemon.cli("rmi", f"skopeo/{transport}:v1")
