"""Mounts (issue 5, item 1, and volumes in use): -v binds and named / anonymous volumes,
--mount bind|volume|tmpfs, --tmpfs, --volumes-from, image VOLUME entries, the copy of the
image's content into a new volume, inspect's Mounts, rm -v and --rm taking anonymous
volumes, a local-driver tmpfs volume mounted while used — through the dockyard CLI, the
docker CLI and docker-py, asserted inside the containers and on the host."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.types import Mount

from tests.conftest import Daemon, mounts_under
from tests.fixtures.clients import CLIS, unique

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]


class Run:
    def __init__(self, d: Daemon, kind: str) -> None:
        self.d, self.kind = d, kind

    def __call__(self, *args: str, check: bool = True) -> object:
        return self.d.client(self.kind)(*args, check=check)


@pytest.fixture(params=CLIS)
def run(request: pytest.FixtureRequest, cli: Daemon) -> Iterator[Run]:
    """A client of the session daemon; the volumes a test leaves are removed, and leaving any
    (or a mount under the daemon's root) fails it."""
    before = set(cli.cli("volume", "ls", "-q").stdout.split())
    yield Run(cli, request.param)
    left = set(cli.cli("volume", "ls", "-q").stdout.split()) - before
    if left:
        cli.cli("volume", "rm", "-f", *sorted(left), check=False)
    assert not left, f"volumes left behind: {left}"
    assert mounts_under(str(cli.root / "data" / "volumes")) == []
    assert mounts_under(str(cli.root / "exec" / "bundles")) == []


def _mounts(run: Run, name: str) -> list[dict]:
    return json.loads(run("inspect", "-f", "{{json .Mounts}}", name).stdout)


def test_binds(run: Run, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in").write_text("from the host\n")
    missing = tmp_path / "made" / "by-v"
    out = run("run", "--rm", "-v", f"{host}:/h", "-v", f"{host}:/ro:ro", "-v", f"{missing}:/m", "busybox", "sh", "-c",
              "cat /h/in; echo from-ctr > /h/out; touch /ro/x 2>/dev/null || echo ro-refused; ls -d /m").stdout
    assert out == "from the host\nro-refused\n/m\n"
    assert (host / "out").read_text() == "from-ctr\n"
    assert missing.is_dir()  # -v makes a missing source
    name = unique("binds")
    run("create", "--name", name, "--mount", f"type=bind,source={host},target=/b,readonly,bind-propagation=rslave",
        "busybox", "true")
    try:
        assert _mounts(run, name) == [{"Type": "bind", "Source": str(host), "Destination": "/b", "Mode": "",
                                       "RW": False, "Propagation": "rslave"}]
    finally:
        run("rm", name)


def test_named_volume_persists_and_gets_the_image_content(run: Run) -> None:
    vol = unique("data")
    name = unique("writer")
    run("run", "--name", name, "-v", f"{vol}:/etc", "busybox", "sh", "-c", "echo kept > /etc/mine")
    try:
        (m,) = _mounts(run, name)
        mountpoint = str(run.d.root / "data" / "volumes" / vol / "_data")
        assert m == {"Type": "volume", "Name": vol, "Source": mountpoint, "Destination": "/etc", "Driver": "local",
                     "Mode": "z", "RW": True, "Propagation": ""}
        # the image's /etc was copied into the new volume (with the init layer's mount targets
        # for hosts, hostname and resolv.conf, as in docker), then the container wrote to it
        assert sorted(os.listdir(mountpoint)) == ["group", "hostname", "hosts", "mine", "passwd", "resolv.conf"]
        res = run("volume", "rm", vol, check=False)
        assert res.returncode == 1 and f"remove {vol}: volume is in use" in res.stderr
    finally:
        run("rm", "-v", name)  # -v takes anonymous volumes only
    assert run("run", "--rm", "-v", f"{vol}:/data", "busybox", "cat", "/data/mine").stdout == "kept\n"
    # nocopy: nothing of the image's /etc; only the targets of the container's own hosts,
    # hostname and resolv.conf mounts are made in it (by the runtime, as runc does for docker)
    vol2 = unique("empty")
    out = run("run", "--rm", "--mount", f"type=volume,source={vol2},target=/etc,volume-nocopy", "busybox",
              "ls", "-A", "/etc").stdout
    assert out.split() == ["hostname", "hosts", "resolv.conf"]
    run("volume", "rm", vol, vol2)


def test_anonymous_volumes(run: Run, busybox_tar: Path) -> None:
    image = unique("withvolume")
    run.d.cli("import", "-c", 'CMD ["sh"]', "-c", "VOLUME /vol", str(busybox_tar), image)
    before = set(run("volume", "ls", "-q").stdout.split())
    try:
        name = unique("anon")
        run("run", "--name", name, "-v", "/extra", image, "sh", "-c", "touch /vol/a /extra/b")
        mounts = {m["Destination"]: m for m in _mounts(run, name)}
        assert sorted(mounts) == ["/extra", "/vol"]
        assert all(m["Type"] == "volume" and len(m["Name"]) == 64 for m in mounts.values())
        anon = {m["Name"] for m in mounts.values()}
        assert anon <= set(run("volume", "ls", "-q").stdout.split())
        run("rm", name)  # without -v: they stay
        assert anon <= set(run("volume", "ls", "-q").stdout.split())
        run("volume", "rm", *anon)
        run("run", "--name", name, image, "true")
        run("rm", "-v", name)
        run("run", "--rm", image, "true")  # --rm takes them too
        assert set(run("volume", "ls", "-q").stdout.split()) == before
    finally:
        run.d.cli("rmi", image)


def test_tmpfs_mounts(run: Run) -> None:
    name = unique("tmpfs")
    out = run("run", "--name", name, "--tmpfs", "/scratch:size=1m,mode=1770", "--mount",
              "type=tmpfs,target=/t2,tmpfs-size=2m,tmpfs-mode=700", "busybox", "sh", "-c",
              "grep -E ' /(scratch|t2) ' /proc/mounts; stat -c '%a %n' /scratch /t2").stdout
    try:
        lines = out.splitlines()
        assert "tmpfs /scratch tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k,mode=1770 0 0" in lines
        assert "tmpfs /t2 tmpfs rw,nosuid,nodev,noexec,relatime,size=2048k,mode=700 0 0" in lines
        assert lines[-2:] == ["1770 /scratch", "700 /t2"]
        # inspect shows --mount's tmpfs, not --tmpfs's (as docker)
        assert [m["Destination"] for m in _mounts(run, name)] == ["/t2"]
    finally:
        run("rm", name)


def test_tmpfs_volume_is_mounted_while_used(run: Run) -> None:
    vol = unique("tvol")
    run("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", vol)
    data = str(run.d.root / "data" / "volumes" / vol / "_data")
    name = unique("tvol-user")
    run("run", "-d", "--name", name, "-v", f"{vol}:/t", "busybox", "sleep", "60")
    try:
        assert mounts_under(data) == [data]
        out = run("exec", name, "grep", " /t ", "/proc/mounts").stdout
        assert out.startswith("tmpfs /t tmpfs rw,") and "size=1024k" in out
    finally:
        run("rm", "-f", name)
    assert mounts_under(data) == []
    run("volume", "rm", vol)


def test_volumes_from(run: Run, tmp_path: Path) -> None:
    vol = unique("shared")
    src = unique("source")
    run("create", "--name", src, "-v", f"{vol}:/shared", "-v", f"{tmp_path}:/hostdir", "busybox", "true")
    try:
        out = run("run", "--rm", "--volumes-from", f"{src}:ro", "busybox", "sh", "-c",
                  "grep -E ' /(shared|hostdir) ' /proc/mounts | cut -d' ' -f2,4 | cut -d, -f1").stdout
        assert sorted(out.splitlines()) == ["/hostdir ro", "/shared ro"]
        res = run("run", "--rm", "--volumes-from", "no-such-container-xyz", "busybox", "true", check=False)
        assert res.returncode == 125
        # docker's CLI takes any 404 from a create for a missing image and tries a pull first
        # (it does so against dockerd too); the message is checked through our CLI
        if run.kind == "dockyard":
            assert "No such container: no-such-container-xyz" in res.stderr
    finally:
        run("rm", src)
        run("volume", "rm", vol)


def test_bad_mounts_leave_nothing(run: Run, tmp_path: Path) -> None:
    d = run.d
    before = (sorted(d.cli("volume", "ls", "-q").stdout.split()), sorted(d.cli("ps", "-aq").stdout.split()),
              sorted(os.listdir(d.root / "exec" / "bundles")))
    cases = [
        (["-v", f"{tmp_path}:rel"], f"invalid volume specification: '{tmp_path}:rel': invalid mount config for type "
                                    "\"bind\": invalid mount path: 'rel' mount path must be absolute"),
        (["-v", f"{tmp_path}:/"], f"invalid volume specification: '{tmp_path}:/': invalid mount config for type "
                                  "\"bind\": invalid specification: destination can't be '/'"),
        (["-v", "bad!name:/x"], '"bad!name" includes invalid characters for a local volume name'),
        (["-v", f"{tmp_path}:/x:bogus"], "invalid mode: bogus"),
        (["--mount", "type=bind,source=/nonexistent-src,target=/x"],
         'invalid mount config for type "bind": bind source path does not exist: /nonexistent-src'),
        (["--mount", "type=volume,target=relative"],
         "invalid mount config for type \"volume\": invalid mount path: 'relative' mount path must be absolute"),
        (["-v", "okvol-never-made:/data", "-v", f"{tmp_path}:/data"], "Duplicate mount point: /data"),
    ]
    for args, message in cases:
        res = run("run", "--rm", *args, "busybox", "true", check=False)
        assert res.returncode == 125, (args, res.stderr)
        assert message in res.stderr, (args, res.stderr)
    after = (sorted(d.cli("volume", "ls", "-q").stdout.split()), sorted(d.cli("ps", "-aq").stdout.split()),
             sorted(os.listdir(d.root / "exec" / "bundles")))
    assert after == before


def test_docker_py_mounts(cli: Daemon, tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=cli.host, timeout=60)
    vol = unique("py")
    (tmp_path / "in").write_text("host\n")
    try:
        out = client.containers.run("busybox", "sh -c 'echo py > /v/f; cat /h/in'", remove=True,
                                    volumes={vol: {"bind": "/v", "mode": "rw"}, str(tmp_path): {"bind": "/h", "mode": "ro"}})
        assert out == b"host\n"
        out = client.containers.run("busybox", "cat /v/f", remove=True,
                                    mounts=[Mount("/v", vol, type="volume", read_only=True)])
        assert out == b"py\n"
    finally:
        client.volumes.get(vol).remove()
        client.close()
