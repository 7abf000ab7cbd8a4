"""diff, export and commit (issue 5, item 4) through the dockyard CLI, the docker CLI and
docker-py: docker's A/C/D listing, the container's whole root as a tar, and an image whose
new layer is the container's diff (with --change, -m, -a, --pause); bad input leaves the
image store as it was."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time

import docker
import pytest

from tests.conftest import Daemon, store_state
from tests.fixtures.clients import CLIS, unique

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]

_SCRIPT = "mkdir /newdir && echo x > /newdir/f && rm /etc/group && echo y >> /etc/passwd"


@pytest.fixture(params=CLIS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def _run(d: Daemon, kind: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return (d.client(kind))(*args, check=check)


def test_diff(cli: Daemon, kind: str) -> None:
    name = unique("diff")
    _run(cli, kind, "run", "--name", name, "busybox", "sh", "-c", _SCRIPT)
    try:
        assert _run(cli, kind, "diff", name).stdout.splitlines() == [
            "C /etc", "D /etc/group", "C /etc/passwd", "A /newdir", "A /newdir/f"]
    finally:
        _run(cli, kind, "rm", name)


def test_export(cli: Daemon, kind: str, tmp_path) -> None:
    name = unique("export")
    _run(cli, kind, "run", "--name", name, "busybox", "sh", "-c", _SCRIPT)
    try:
        out = tmp_path / "root.tar"
        _run(cli, kind, "export", "-o", str(out), name)
        with tarfile.open(out) as tf:
            names = set(tf.getnames())
            assert {"bin/busybox", "newdir/f", "etc/passwd"} <= names and "etc/group" not in names
            assert tf.extractfile("newdir/f").read() == b"x\n"
            assert tf.extractfile("etc/passwd").read().endswith(b"y\n")
        # to stdout, the same archive
        piped = cli.client(kind)("export", name, raw=True).stdout
        with tarfile.open(fileobj=io.BytesIO(piped)) as tf:
            assert set(tf.getnames()) == names
    finally:
        _run(cli, kind, "rm", name)


def test_commit(cli: Daemon, kind: str) -> None:
    name = unique("commit")
    repo = unique("committed")
    _run(cli, kind, "run", "--name", name, "-e", "FROM_CTR=1", "busybox", "sh", "-c", _SCRIPT)
    try:
        image_id = _run(cli, kind, "commit", "-a", "A. Author", "-m", "the message", "-c", 'CMD ["cat", "/newdir/f"]',
                        "-c", "ENV ADDED=yes", "-c", "LABEL stage=committed", name, f"{repo}:v1").stdout.strip()
        assert image_id.startswith("sha256:")
        doc = json.loads(cli.cli("image", "inspect", f"{repo}:v1").stdout)[0]
        base = json.loads(cli.cli("image", "inspect", "busybox").stdout)[0]
        assert doc["Id"] == image_id and doc["Parent"] == base["Id"]
        assert doc["Author"] == "A. Author" and doc["Comment"] == "the message"
        assert doc["Config"]["Cmd"] == ["cat", "/newdir/f"]
        assert "FROM_CTR=1" in doc["Config"]["Env"] and "ADDED=yes" in doc["Config"]["Env"]
        assert doc["Config"]["Labels"] == {"stage": "committed"}
        assert doc["RootFS"]["Layers"][:-1] == base["RootFS"]["Layers"] and len(doc["RootFS"]["Layers"]) == 2
        assert _run(cli, kind, "run", "--rm", f"{repo}:v1").stdout == "x\n"
        # the image has no group file (the script removed it); hosts, hostname and resolv.conf
        # are every container's own (bound over targets of its init layer, as in docker)
        assert _run(cli, kind, "run", "--rm", f"{repo}:v1", "ls", "/etc").stdout.split() == \
            ["hostname", "hosts", "passwd", "resolv.conf"]
        history = cli.cli("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", f"{repo}:v1").stdout
        assert history.splitlines()[0] == f"sh -c {_SCRIPT}|the message"
    finally:
        _run(cli, kind, "rm", name)
        cli.cli("rmi", f"{repo}:v1", check=False)


def test_commit_running_container_pauses_it(cli: Daemon) -> None:
    name = unique("live")
    cli.cli("run", "-d", "--name", name, "busybox", "sh", "-c", "echo live > /state; sleep 60")
    try:
        cli.cli("exec", name, "test", "-f", "/state")
        image_id = cli.cli("commit", name).stdout.strip()
        assert cli.cli("inspect", "-f", "{{.State.Status}}", name).stdout == "running\n"  # unpaused again
        assert cli.cli("run", "--rm", image_id, "cat", "/state").stdout == "live\n"
        cli.cli("rmi", image_id)
        events = cli.cli("events", "--since", "60s", "--until", f"{time.time() + 1:.3f}", "--filter", f"container={name}",
                         "--format", "{{.Action}}").stdout.split()
        assert events[-3:] == ["pause", "unpause", "commit"], events
    finally:
        cli.cli("rm", "-f", name)


def test_commit_bad_input_changes_nothing(cli: Daemon, kind: str) -> None:
    name = unique("bad")
    _run(cli, kind, "run", "--name", name, "busybox", "true")
    try:
        before = store_state(cli)
        cases = [
            (["-c", "FROBNICATE x", name], "FROBNICATE"),
            ([name, "Bad:Name:x"], "invalid reference format"),
            (["no-such-container-qq"], "No such container: no-such-container-qq"),
        ]
        for args, message in cases:
            res = _run(cli, kind, "commit", *args, check=False)
            assert res.returncode != 0 and message in res.stderr, (args, res.stderr)
            assert store_state(cli) == before
    finally:
        _run(cli, kind, "rm", name)


def test_docker_py(cli: Daemon) -> None:
    client = docker.DockerClient(base_url=cli.host, timeout=60)
    try:
        ct = client.containers.run("busybox", ["sh", "-c", "echo py > /py"], detach=True)
        ct.wait()
        assert {"Path": "/py", "Kind": 1} in ct.diff()
        img = ct.commit(repository="pycommit", tag="t", message="via docker-py", changes=['CMD ["cat", "/py"]'])
        assert client.containers.run(img.id, remove=True) == b"py\n"
        data = b"".join(ct.export())
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            assert tf.extractfile("py").read() == b"py\n"
        ct.remove()
        client.images.remove("pycommit:t")
    finally:
        client.close()
