"""Cleanup (issue 5, item 7, first part): container prune, image prune keeping images that
containers use, rmi of an image in use (docker's conflicts; -f only untags), system df with
layers counted once and log files counted, system prune — through the dockyard CLI, the
docker CLI and docker-py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon, _stop_and_check, start_daemon
from tests.fixtures.clients import CLIS, unique

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]


@pytest.fixture
def own(tmp_path: Path, busybox_tar: Path):
    """A daemon of the test's own: prunes act on everything a daemon holds."""
    d = start_daemon(tmp_path / "d")
    try:
        d.cli("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
        yield d
    finally:
        for cid in d.cli("ps", "-aq").stdout.split():
            d.cli("rm", "-f", cid, check=False)
        _stop_and_check(d)


def _run(d: Daemon, kind: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return (d.client(kind))(*args, check=check)


@pytest.mark.parametrize("kind", CLIS)
def test_container_prune(own: Daemon, kind: str) -> None:
    keep = own.cli("run", "-d", "--name", "running", "busybox", "sleep", "60").stdout.strip()
    gone = [own.cli("run", "--name", f"done-{i}", "busybox", "sh", "-c", "head -c 3000 /dev/zero > /f").stdout
            for i in range(2)]
    assert gone == ["", ""]
    labelled = own.cli("create", "--label", "keep=yes", "busybox", "true").stdout.strip()
    out = _run(own, kind, "container", "prune", "-f", "--filter", "label!=keep").stdout
    assert out.startswith("Deleted Containers:\n")
    assert re.search(r"Total reclaimed space: 6(\.\d+)?kB\n$", out), out
    left = set(own.cli("ps", "-aq", "--no-trunc").stdout.split())
    assert left == {keep, labelled}
    own.cli("rm", "-f", keep, labelled)


@pytest.mark.parametrize("kind", CLIS)
def test_rmi_of_an_image_in_use(own: Daemon, kind: str) -> None:
    image_id = json.loads(own.cli("image", "inspect", "busybox").stdout)[0]["Id"]
    short = image_id.removeprefix("sha256:")[:12]
    cid = own.cli("run", "-d", "busybox", "sleep", "60").stdout.strip()
    res = _run(own, kind, "rmi", "busybox", check=False)
    assert res.returncode != 0
    assert (f'conflict: unable to remove repository reference "busybox" (must force) - container {cid[:12]} '
            f"is using its referenced image {short}") in res.stderr
    res = _run(own, kind, "rmi", "-f", image_id, check=False)
    assert f"conflict: unable to delete {short} (cannot be forced) - image is being used by running container {cid[:12]}" in res.stderr
    own.cli("stop", "-t", "0", cid)
    res = _run(own, kind, "rmi", image_id, check=False)
    assert f"conflict: unable to delete {short} (must be forced) - image is being used by stopped container {cid[:12]}" in res.stderr
    # forced: untagged only; the image stays for its container, which still runs
    assert _run(own, kind, "rmi", "-f", "busybox").stdout.strip() == "Untagged: busybox:latest"
    assert own.cli("images", "-q", "--no-trunc").stdout.strip() == image_id
    own.cli("start", cid)
    # not pruned while used; pruned (and its layers gone) once the container is
    assert own.cli("image", "prune", "-f", "-a").stdout == "Total reclaimed space: 0B\n"
    own.cli("rm", "-f", cid)
    out = own.cli("image", "prune", "-f").stdout  # dangling now
    assert f"deleted: {image_id}" in out
    assert own.cli("images", "-q").stdout == ""
    assert list((own.root / "data" / "snapshots").glob("*/snapshots/*")) == []


def test_system_df_and_prune(own: Daemon) -> None:
    own.cli("tag", "busybox", "second:tag")  # the same layers under two names: counted once
    own.cli("run", "--name", "logger", "busybox", "sh", "-c", "yes line | head -n 1000; head -c 8000 /dev/zero > /z")
    own.cli("volume", "create", "named")
    anon = own.cli("volume", "create").stdout.strip()
    client = docker.DockerClient(base_url=own.host, timeout=60)
    try:
        df = client.df()
    finally:
        client.close()
    (img,) = df["Images"]
    assert img["Containers"] == 1 and len(df["Containers"]) == 1
    assert df["LayersSize"] > 0
    ctr = df["Containers"][0]
    assert ctr["LogSize"] > 5000  # the json-file log, which docker leaves out
    assert ctr["SizeRw"] >= 8000 + ctr["LogSize"]
    assert sorted(v["Name"] for v in df["Volumes"]) == sorted(["named", anon])
    out = own.cli("system", "df").stdout.splitlines()
    assert re.fullmatch(r"TYPE\s+TOTAL\s+ACTIVE\s+SIZE\s+RECLAIMABLE", out[0])
    assert out[1].split()[:3] == ["Images", "1", "1"] and out[2].split()[:3] == ["Containers", "1", "0"]
    assert out[3].split()[:4] == ["Local", "Volumes", "2", "0"]
    verbose = own.cli("system", "df", "-v").stdout
    assert "Images space usage:" in verbose and "logger" in verbose and "named" in verbose
    out = own.cli("system", "prune", "-f", "--volumes").stdout
    assert "Deleted Containers:" in out and "Deleted Volumes:\n" + anon in out
    assert own.cli("ps", "-aq").stdout == ""
    assert own.cli("volume", "ls", "-q").stdout.split() == ["named"]  # named volumes stay
    assert own.cli("images", "-q").stdout.strip() != ""  # tagged images are not dangling
    out = own.cli("system", "prune", "-f", "-a").stdout
    assert out.count("deleted: sha256:") >= 1 and own.cli("images", "-q").stdout == ""
    own.cli("volume", "rm", "named")


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")
def test_docker_cli_system_commands(own: Daemon) -> None:
    own.cli("run", "--name", unique("x"), "busybox", "true")
    out = own.docker("system", "df").stdout.splitlines()
    assert out[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert out[2].split()[:3] == ["Containers", "1", "0"]
    out = own.docker("system", "prune", "-f").stdout
    assert "Deleted Containers:" in out and "Total reclaimed space:" in out
    assert own.cli("ps", "-aq").stdout == ""
