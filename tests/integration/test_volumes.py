"""Named and anonymous volumes of the local driver (issue 5, item 2, first part): the volume
API and `volume create / ls / inspect / rm / prune` through the dockyard CLI, the docker CLI
and docker-py; docker's shapes, filters, messages; bad input changes nothing."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from dockyard.volumes import ANONYMOUS_LABEL, VolumeStore
from tests.conftest import Daemon
from tests.fixtures.clients import CLIS, unique

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")


def _volumes_dir(d: Daemon) -> Path:
    return d.root / "data" / "volumes"


@pytest.fixture
def vols(daemon: Daemon) -> Iterator[Daemon]:
    """The session daemon; the volumes a test leaves are removed, and leaving any fails it."""
    before = set(daemon.cli("volume", "ls", "-q").stdout.split())
    yield daemon
    left = set(daemon.cli("volume", "ls", "-q").stdout.split()) - before
    if left:
        daemon.cli("volume", "rm", "-f", *sorted(left), check=False)
    assert not left, f"volumes left behind: {left}"


@pytest.mark.parametrize("kind", CLIS)
def test_create_inspect_ls_rm(vols: Daemon, kind: str) -> None:
    run = vols.client(kind)
    name = unique("vol")
    t0 = time.time()
    assert run("volume", "create", "--label", "tier=db", "--label", "empty=", "-o", "type=tmpfs",
               "-o", "device=tmpfs", "-o", "o=size=1m", name).stdout == name + "\n"
    (doc,) = json.loads(run("volume", "inspect", name).stdout)
    assert doc["Name"] == name and doc["Driver"] == "local" and doc["Scope"] == "local"
    assert doc["Labels"] == {"tier": "db", "empty": ""}
    assert doc["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert doc["Mountpoint"] == str(_volumes_dir(vols) / name / "_data")
    assert os.path.isdir(doc["Mountpoint"])
    created = time.mktime(time.strptime(doc["CreatedAt"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert t0 - 2 <= created <= time.time() + 2
    assert run("volume", "inspect", "-f", "{{.Driver}} {{.Labels.tier}}", name).stdout == "local db\n"
    ls = run("volume", "ls").stdout.splitlines()
    assert re.fullmatch(r"DRIVER\s+VOLUME NAME", ls[0])
    assert any(line.split() == ["local", name] for line in ls[1:])
    assert name in run("volume", "ls", "-q").stdout.split()
    # creating it again answers the same volume, unchanged
    assert run("volume", "create", name).stdout == name + "\n"
    assert json.loads(run("volume", "inspect", name).stdout)[0]["CreatedAt"] == doc["CreatedAt"]
    assert run("volume", "rm", name).stdout == name + "\n"
    assert not (_volumes_dir(vols) / name).exists()
    res = run("volume", "rm", name, check=False)
    assert res.returncode == 1 and f"get {name}: no such volume" in res.stderr
    assert run("volume", "rm", "-f", name).returncode == 0
    res = run("volume", "inspect", name, check=False)
    assert res.returncode == 1 and res.stderr == f"Error response from daemon: get {name}: no such volume\n"
    assert res.stdout == "[]\n"


@pytest.mark.parametrize("kind", CLIS)
def test_ls_filters(vols: Daemon, kind: str) -> None:
    run = vols.client(kind)
    a, b = unique("vol"), unique("vol")
    run("volume", "create", "--label", "app=web", "--label", "env=prod", a)
    run("volume", "create", "--label", "app=db", b)
    try:
        def names(*flt: str) -> set[str]:
            args = [x for f in flt for x in ("--filter", f)]
            return set(run("volume", "ls", "-q", *args).stdout.split()) & {a, b}

        assert names("label=app") == {a, b}
        assert names("label=app=web") == {a}
        assert names("label=app", "label=env=prod") == {a}
        assert names(f"name={a[4:]}") == {a}
        assert names("driver=local") == {a, b}
        assert names("dangling=true") == {a, b}  # no container uses them
        assert names("dangling=false") == set()
        res = run("volume", "ls", "--filter", "colour=red", check=False)
        assert res.returncode != 0 and "invalid filter 'colour'" in res.stderr
        assert run("volume", "ls", "--format", "{{.Name}}:{{.Driver}}", "--filter", f"name={a}").stdout == f"{a}:local\n"
    finally:
        run("volume", "rm", a, b)


@pytest.mark.parametrize("kind", CLIS)
def test_anonymous_volumes_and_prune(vols: Daemon, kind: str) -> None:
    run = vols.client(kind)
    anon = run("volume", "create").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", anon)
    (doc,) = json.loads(run("volume", "inspect", anon).stdout)
    assert doc["Labels"] == {ANONYMOUS_LABEL: ""}
    named, kept = unique("vol"), unique("vol")
    run("volume", "create", named)
    run("volume", "create", "--label", "keep=yes", kept)
    (_volumes_dir(vols) / anon / "_data" / "payload").write_bytes(b"x" * 10000)
    out = run("volume", "prune", "-f").stdout
    assert out.startswith("Deleted Volumes:\n") and anon in out.split()  # anonymous ones only
    assert re.search(r"Total reclaimed space: \d+(\.\d+)?kB\n$", out), out
    left = set(run("volume", "ls", "-q").stdout.split())
    assert anon not in left and {named, kept} <= left
    out = run("volume", "prune", "-f", "--all", "--filter", "label!=keep").stdout
    assert named in out.split() and kept not in out.split()
    assert run("volume", "prune", "-f", "-a", "--filter", "label=keep=yes").stdout.split()[2] == kept
    assert not {anon, named, kept} & set(run("volume", "ls", "-q").stdout.split())


@pytest.mark.parametrize("kind", CLIS)
def test_bad_input_changes_nothing(vols: Daemon, kind: str) -> None:
    run = vols.client(kind)
    before = sorted(os.listdir(_volumes_dir(vols))) if _volumes_dir(vols).exists() else []
    cases = [
        (["bad/name"], 'create bad/name: "bad/name" includes invalid characters for a local volume name, '
                       'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
                       "use absolute path"),
        (["x"], 'create x: "x" includes invalid characters for a local volume name'),
        (["-o", "colour=red", "v-bad-opt"], 'create v-bad-opt: invalid option: "colour"'),
        (["-o", "type=tmpfs", "v-no-device"], 'create v-no-device: missing required option: "device"'),
        (["-d", "nosuch", "v-bad-driver"], 'error looking up volume plugin nosuch: plugin "nosuch" not found'),
    ]
    for args, message in cases:
        res = run("volume", "create", *args, check=False)
        assert res.returncode != 0, args
        assert message in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    after = sorted(os.listdir(_volumes_dir(vols))) if _volumes_dir(vols).exists() else []
    assert after == before


def test_docker_py_volumes(vols: Daemon) -> None:
    client = docker.DockerClient(base_url=vols.host, timeout=60)
    name = unique("vol")
    try:
        vol = client.volumes.create(name, labels={"a": "b"})
        assert vol.name == name and vol.attrs["Labels"] == {"a": "b"}
        assert client.volumes.get(name).attrs["Mountpoint"].endswith(f"/volumes/{name}/_data")
        assert name in [v.name for v in client.volumes.list(filters={"label": "a=b"})]
        vol.remove()
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get(name)
        anon = client.volumes.create()
        report = client.volumes.prune()
        assert anon.name in report["VolumesDeleted"]
    finally:
        client.close()


def test_volume_events(vols: Daemon) -> None:
    name = unique("vol")
    t0 = f"{time.time():.3f}"
    vols.cli("volume", "create", name)
    vols.cli("volume", "rm", name)
    t1 = f"{time.time() + 1:.3f}"
    out = vols.cli("events", "--since", t0, "--until", t1, "--filter", "type=volume",
                   "--format", "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.driver}}").stdout
    assert out.splitlines() == [f"volume create {name} local", f"volume destroy {name} local"]


def test_store_removes_directories_without_a_row(tmp_path: Path) -> None:
    """A crash between a volume's directory and its row (or its row and the directory's
    removal) leaves a directory no row owns: the next open removes it, and only it."""
    store = VolumeStore(str(tmp_path / "volumes"))
    kept, _ = store.create("kept-vol")
    store.close()
    (tmp_path / "volumes" / "orphan-vol" / "_data").mkdir(parents=True)
    store = VolumeStore(str(tmp_path / "volumes"))
    try:
        assert not (tmp_path / "volumes" / "orphan-vol").exists()
        assert os.path.isdir(kept.mountpoint)
        assert [v.name for v in store.list()] == ["kept-vol"]
    finally:
        store.close()
