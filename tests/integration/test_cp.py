"""The archive API and cp (issue 5, item 3): both directions through the dockyard CLI and
the docker CLI (docker's path rules: into a directory, a directory's contents with ``/.``,
renames, ``-L``, ``-a``, ``-`` for a tar), docker-py's get_archive / put_archive / stat,
stopped containers, bad paths — and a container that swaps a symlink to a host path while
copies run never makes one read or write the host (CVE-2018-15664)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon
from tests.fixtures.clients import CLIS, unique

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]

_SETUP = ("mkdir -p /d/sub && echo hi > /d/sub/f && echo top > /d/t && chown 123:456 /d/t && "
          "ln -s /d/sub /lnk && exec sleep 600")


@pytest.fixture
def ctr(cli: Daemon):
    name = unique("cp")
    cli.cli("run", "-d", "--name", name, "busybox", "sh", "-c", _SETUP)
    cli.cli("exec", name, "sh", "-c", "until [ -e /lnk ]; do sleep 0.01; done")
    yield name
    cli.cli("rm", "-f", name)


def _cp(d: Daemon, kind: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return (d.client(kind))("cp", *args, check=check)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) + ("/" if p.is_dir() and not p.is_symlink() else "")
                  for p in root.rglob("*"))


@pytest.mark.parametrize("kind", CLIS)
def test_from_container(cli: Daemon, ctr: str, kind: str, tmp_path: Path) -> None:
    _cp(cli, kind, f"{ctr}:/d", str(tmp_path))  # into an existing directory
    _cp(cli, kind, f"{ctr}:/d/.", str(tmp_path / "contents"))  # a directory's contents, new dir
    _cp(cli, kind, f"{ctr}:/d/sub/f", str(tmp_path / "renamed.txt"))  # a file under a new name
    _cp(cli, kind, "-L", f"{ctr}:/lnk", str(tmp_path / "followed"))
    _cp(cli, kind, f"{ctr}:/lnk", str(tmp_path / "link"))
    assert _tree(tmp_path) == ["contents/", "contents/sub/", "contents/sub/f", "contents/t", "d/", "d/sub/", "d/sub/f",
                               "d/t", "followed/", "followed/f", "link", "renamed.txt"]
    assert (tmp_path / "renamed.txt").read_text() == "hi\n"
    assert os.readlink(tmp_path / "link") == "/d/sub"
    out = cli.client(kind)("cp", f"{ctr}:/d/t", "-", raw=True).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as tf:
        (m,) = tf.getmembers()
        assert (m.name, m.uid, m.gid, tf.extractfile(m).read()) == ("t", 123, 456, b"top\n")
    res = _cp(cli, kind, f"{ctr}:/no/such/file", str(tmp_path), check=False)
    assert res.returncode == 1 and "Could not find the file /no/such/file in container" in res.stderr


@pytest.mark.parametrize("kind", CLIS)
def test_to_container(cli: Daemon, ctr: str, kind: str, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("from host\n")
    os.chown(tmp_path / "f.txt", 321, 654)
    (tmp_path / "dir" / "inner").mkdir(parents=True)
    (tmp_path / "dir" / "inner" / "x").write_text("x\n")
    _cp(cli, kind, str(tmp_path / "f.txt"), f"{ctr}:/d/")  # into a directory
    _cp(cli, kind, str(tmp_path / "f.txt"), f"{ctr}:/renamed")  # a new name
    _cp(cli, kind, "-a", str(tmp_path / "f.txt"), f"{ctr}:/kept-owner")
    _cp(cli, kind, str(tmp_path / "dir"), f"{ctr}:/d")
    _cp(cli, kind, str(tmp_path / "dir") + "/.", f"{ctr}:/d/sub")  # contents into a directory
    out = cli.cli("exec", ctr, "sh", "-c", "cat /d/f.txt /renamed; stat -c '%u:%g %n' /renamed /kept-owner; "
                  "find /d | sort").stdout.splitlines()
    assert out[:4] == ["from host", "from host", "0:0 /renamed", "321:654 /kept-owner"]
    assert out[4:] == ["/d", "/d/dir", "/d/dir/inner", "/d/dir/inner/x", "/d/f.txt", "/d/sub", "/d/sub/f",
                       "/d/sub/inner", "/d/sub/inner/x", "/d/t"]
    res = _cp(cli, kind, str(tmp_path / "f.txt"), f"{ctr}:/no/such/dir/", check=False)
    assert res.returncode == 1
    assert cli.cli("exec", ctr, "ls", "/no", check=False).returncode != 0  # nothing was made


@pytest.mark.parametrize("kind", CLIS)
def test_volumes_and_binds_inside_the_container(cli: Daemon, kind: str, tmp_path: Path) -> None:
    """A path under a mount point is the mounted volume's or bind's, as the container sees it."""
    vol = unique("cpvol")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "kept").write_text("ro\n")
    (tmp_path / "f").write_text("into the volume\n")
    name = unique("cp-mounts")
    cli.cli("run", "-d", "--name", name, "-v", f"{vol}:/data", "-v", f"{tmp_path / 'ro'}:/ro:ro", "busybox", "sleep", "600")
    try:
        _cp(cli, kind, str(tmp_path / "f"), f"{name}:/data/")
        assert cli.cli("exec", name, "cat", "/data/f").stdout == "into the volume\n"
        mountpoint = json.loads(cli.cli("volume", "inspect", vol).stdout)[0]["Mountpoint"]
        assert Path(mountpoint, "f").read_text() == "into the volume\n"
        _cp(cli, kind, f"{name}:/ro/kept", str(tmp_path / "back"))
        assert (tmp_path / "back").read_text() == "ro\n"
        res = _cp(cli, kind, str(tmp_path / "f"), f"{name}:/ro/", check=False)
        assert res.returncode != 0 and "mounted volume is marked read-only" in res.stderr
        assert sorted(os.listdir(tmp_path / "ro")) == ["kept"]
    finally:
        cli.cli("rm", "-f", name)
        cli.cli("volume", "rm", vol)


def test_stopped_container_and_docker_py(cli: Daemon) -> None:
    client = docker.DockerClient(base_url=cli.host, timeout=60)
    try:
        ct = client.containers.run("busybox", ["sh", "-c", "echo done > /out"], detach=True)
        ct.wait()
        bits, st = ct.get_archive("/out")
        assert st["name"] == "out" and st["size"] == 5 and st["mode"] == 0o644
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tf:
            assert tf.extractfile("out").read() == b"done\n"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            info = tarfile.TarInfo("in.txt")
            info.size = 3
            tf.addfile(info, io.BytesIO(b"in\n"))
        assert ct.put_archive("/", buf.getvalue())
        raw = client.api.head(client.api._url("/containers/{0}/archive", ct.id), params={"path": "/in.txt"})
        doc = json.loads(base64.b64decode(raw.headers["X-Docker-Container-Path-Stat"]))
        assert doc["name"] == "in.txt" and doc["size"] == 3
        with pytest.raises(docker.errors.NotFound):
            ct.get_archive("/nope")
        with pytest.raises(docker.errors.APIError) as e:
            ct.put_archive("/out", buf.getvalue())  # a file, not a directory
        assert "extraction point is not a directory" in str(e.value)
        ct.remove()
    finally:
        client.close()


def test_symlink_swapped_to_a_host_path_never_escapes(cli: Daemon, tmp_path: Path) -> None:
    """The container flips /target between its own directory and a symlink to a directory
    of the host, as fast as it can, while we read /target/secret and write into /target:
    a copy resolved outside the container's root would read the host's secret or plant a
    file in the host's directory."""
    host = tmp_path / "host-dir"
    host.mkdir()
    (host / "secret").write_text("HOST-SECRET\n")
    name = unique("cp-race")
    cli.cli("run", "-d", "--name", name, "busybox", "sh", "-c",
            f"mkdir /real && echo container > /real/secret && "
            f"while true; do ln -sfn /real /target; ln -sfn {host} /target; done")
    client = docker.APIClient(base_url=cli.host, timeout=60)
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tf:
        info = tarfile.TarInfo("planted")
        info.size = 6
        tf.addfile(info, io.BytesIO(b"owned\n"))
    seen = {"container": 0, "error": 0}
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(150):
                try:
                    client.put_archive(name, "/target", payload.getvalue())
                except docker.errors.APIError:
                    pass
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(150):
            try:
                bits, _ = client.get_archive(name, "/target/secret")
            except docker.errors.APIError:
                seen["error"] += 1
                continue
            with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tf:
                data = tf.extractfile("secret").read()
            assert data == b"container\n", "a copy read the host's file"
            seen["container"] += 1
    finally:
        t.join()
        client.close()
        cli.cli("rm", "-f", name)
    assert not errors, errors
    assert not (host / "planted").exists(), "a copy wrote into the host's directory"
    assert (host / "secret").read_text() == "HOST-SECRET\n"
    assert seen["container"] > 0  # the race ran against real reads
