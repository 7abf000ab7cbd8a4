"""What a daemon leaves on the host. Killed (SIGKILL) in the middle of a create or a
start: once it is started again, the half-made container is gone without a trace (create)
or is running under the new daemon (start) — no mounts, cgroups, snapshots or processes
left either way. Killed in a removal after the record went, the files go at the next start.

The daemon kills itself at a named point (``DOCKYARD_CRASH_AT``, dockyard/faults.py), so
each case hits exactly the window it names. Stopped cleanly with no container left, it
gives back its /dockyard parent cgroup."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import Daemon, _stop_and_check, mounts_under, start_daemon
from tests.fixtures.engine import leftover_processes

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]


def _container_cgroups() -> set[str]:
    return set(glob.glob("/sys/fs/cgroup/*/dockyard/*/"))


def _snapshots(d: Daemon) -> list[str]:
    """Snapshot directories, and the snapshot names the metadata holds, less the image's
    init layer (made by the first create, kept with the image: not the container's)."""
    import sqlite3

    names = []
    for db in (d.root / "data" / "snapshots").glob("*/metadata.db"):
        with contextlib.closing(sqlite3.connect(db)) as conn:
            names += [k for (k,) in conn.execute("SELECT key FROM snapshots WHERE state = 'ok'")]
    init = [n for n in names if n.startswith("init-")]
    dirs = sorted(p.name for p in (d.root / "data" / "snapshots").glob("*/snapshots/*"))
    return sorted(n for n in names if not n.startswith("init-")) + [f"{len(dirs) - len(init)} directories"]


def _crashing_daemon(root: Path, point: str, monkeypatch: pytest.MonkeyPatch, busybox_tar: Path) -> Daemon:
    monkeypatch.setenv("DOCKYARD_CRASH_AT", point)
    d = start_daemon(root)
    monkeypatch.delenv("DOCKYARD_CRASH_AT")
    d.cli("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
    return d


def _restart_after_crash(d: Daemon) -> Daemon:
    assert d.proc.wait(timeout=60) == -9, "the daemon did not die at its crash point"
    d.proc.returncode = 0  # killed on purpose: the second daemon is the one checked
    return start_daemon(d.root)


@pytest.mark.parametrize("point", ["create:record", "create:mounted", "create:supervisor"])
def test_crash_during_create_leaves_nothing(point: str, tmp_path: Path, busybox_tar: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    d = _crashing_daemon(tmp_path / "d", point, monkeypatch, busybox_tar)
    image_snapshots = _snapshots(d)
    cgroups = _container_cgroups()
    try:
        res = d.docker("create", "--name", "half", "-v", "halfvol:/data", "-v", "/anon", "busybox", "true", check=False)
        assert res.returncode != 0
        d = _restart_after_crash(d)
        assert d.docker("ps", "-aq").stdout == ""
        assert d.docker("volume", "ls", "-q").stdout == ""  # the volumes this create made went too
        assert mounts_under(str(d.root / "exec" / "bundles")) == []
        assert _snapshots(d) == image_snapshots
        assert _container_cgroups() == cgroups
        assert not [p for p in leftover_processes(d.root)
                    if "supervisor" not in p and not p.startswith(f"{d.proc.pid} ")]
        # the name is free again and containers run
        assert d.docker("run", "--rm", "--name", "half", "busybox", "echo", "ok").stdout == "ok\n"
    finally:
        _stop_and_check(d)


def test_crash_during_start_keeps_the_container(tmp_path: Path, busybox_tar: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    d = _crashing_daemon(tmp_path / "d", "start:supervisor", monkeypatch, busybox_tar)
    image_snapshots = _snapshots(d)
    cgroups = _container_cgroups()
    try:
        res = d.docker("run", "-d", "--name", "started", "busybox", "sleep", "1000", check=False)
        assert res.returncode != 0
        d = _restart_after_crash(d)
        assert d.docker("ps", "--format", "{{.Names}} {{.State}}").stdout == "started running\n"
        d.docker("stop", "-t", "0", "started")
        assert d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "started").stdout == "exited 137\n"
        d.docker("rm", "started")
        assert mounts_under(str(d.root / "exec" / "bundles")) == []
        assert _snapshots(d) == image_snapshots
        assert _container_cgroups() == cgroups
    finally:
        d.docker("rm", "-f", "started", check=False)
        _stop_and_check(d)


@pytest.mark.parametrize("how", ["run --rm", "rm"])
def test_crash_during_remove_leaves_nothing(how: str, tmp_path: Path, busybox_tar: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed once the record is gone but before the container's files are (the window
    that lets `run --rm` answer early): the next daemon deletes what no record owns."""
    d = _crashing_daemon(tmp_path / "d", "remove:record", monkeypatch, busybox_tar)
    image_snapshots = _snapshots(d)
    cgroups = _container_cgroups()
    try:
        if how == "rm":
            d.docker("create", "--name", "gone", "busybox", "true")
            assert d.docker("rm", "gone", check=False).returncode != 0
        else:
            d.docker("run", "--rm", "--name", "gone", "busybox", "true", check=False)
        d = _restart_after_crash(d)
        assert d.docker("ps", "-aq").stdout == ""
        assert list((d.root / "exec" / "bundles").iterdir()) == []
        assert mounts_under(str(d.root)) == []
        assert _snapshots(d) == image_snapshots
        assert list((d.root / "data" / "containers").iterdir()) == []
        assert _container_cgroups() == cgroups
        assert d.docker("run", "--rm", "--name", "gone", "busybox", "echo", "ok").stdout == "ok\n"
    finally:
        _stop_and_check(d)


def _parent_cgroups_in_use() -> dict[str, bool]:
    """Each hierarchy's /dockyard parent: present -> whether it still holds a container."""
    return {d: any(os.path.isdir(os.path.join(d, n)) for n in os.listdir(d))
            for d in glob.glob("/sys/fs/cgroup/*/dockyard")}


def test_stopped_daemon_gives_back_its_parent_cgroup(tmp_path: Path, busybox_tar: Path) -> None:
    """A daemon that stops with no container left removes its empty /dockyard parent in
    every hierarchy; one still holding containers (another daemon's here) stays."""
    d = start_daemon(tmp_path / "d")
    try:
        d.cli("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
        assert d.docker("run", "--rm", "busybox", "true").returncode == 0
        assert _parent_cgroups_in_use(), "no /dockyard parent cgroup while a container ran"
    finally:
        _stop_and_check(d)
    assert all(_parent_cgroups_in_use().values()), "an empty /dockyard parent cgroup was left behind"
