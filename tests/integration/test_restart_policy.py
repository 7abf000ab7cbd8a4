"""Restart policies and update (issue 5, item 5): a container whose process is killed from the
host comes back (RestartCount), on-failure:N gives up after N restarts, a stopped container
stays stopped, ``always`` and ``unless-stopped`` at daemon start, ``update`` of the policy
and of a running container's limits (in its cgroup, and kept for its next start)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Daemon, _stop_and_check, start_daemon
from tests.fixtures.clients import CLIS, unique

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]


def _state(d: Daemon, name: str) -> dict:
    doc = json.loads(d.cli("inspect", name).stdout)[0]
    return {**doc["State"], "RestartCount": doc["RestartCount"], "Id": doc["Id"]}


def _until(d: Daemon, name: str, ok: Callable[[dict], bool], timeout: float = 30) -> dict:
    """Poll the container's state until ``ok`` (there is no event for "restarted and
    settled"; each poll is an API round trip)."""
    deadline = time.monotonic() + timeout
    while True:
        st = _state(d, name)
        if ok(st):
            return st
        assert time.monotonic() < deadline, f"{name}: still {st}"
        time.sleep(0.05)


def test_killed_process_comes_back(cli: Daemon) -> None:
    name = unique("always")
    cli.cli("run", "-d", "--name", name, "--restart", "always", "busybox", "sleep", "600")
    try:
        first = _state(cli, name)
        assert first["Running"] and first["RestartCount"] == 0
        os.kill(first["Pid"], signal.SIGKILL)  # from the host, not through the API
        again = _until(cli, name, lambda s: s["Running"] and s["Pid"] != first["Pid"])
        assert again["RestartCount"] == 1
        # a stop by a client is final: no restart
        cli.cli("stop", "-t", "0", name)
        st = _state(cli, name)
        assert st["Status"] == "exited" and not st["Restarting"]
        cli.cli("start", name)
        assert _state(cli, name)["Running"]
    finally:
        cli.cli("rm", "-f", name)


def test_on_failure_gives_up_after_max_retries(cli: Daemon) -> None:
    name = unique("onfail")
    cli.cli("run", "-d", "--name", name, "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3")
    try:
        st = _until(cli, name, lambda s: s["RestartCount"] == 2 and s["Status"] == "exited")
        assert st["ExitCode"] == 3 and not st["Restarting"]
        ok = unique("onfail-ok")
        cli.cli("run", "-d", "--name", ok, "--restart", "on-failure", "busybox", "true")
        cli.cli("wait", ok)
        assert _state(cli, ok)["RestartCount"] == 0  # exit 0: not a failure
        cli.cli("rm", ok)
    finally:
        cli.cli("rm", "-f", name)


@pytest.mark.parametrize("kind", CLIS)
def test_restart_with_rm_is_refused(cli: Daemon, kind: str) -> None:
    run = cli.client(kind)
    res = run("run", "--rm", "--restart", "always", "busybox", "true", check=False)
    assert res.returncode == 125 and "conflicting options: cannot specify both --restart and --rm" in res.stderr
    res = run("run", "--restart", "sometimes", "busybox", "true", check=False)
    assert res.returncode == 125 and "invalid restart policy" in res.stderr
    assert cli.cli("ps", "-aq").stdout == ""


def test_policies_at_daemon_start(tmp_path: Path, busybox_tar: Path) -> None:
    d = start_daemon(tmp_path / "d")
    try:
        d.cli("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
        for policy in ("always", "unless-stopped", "no"):
            d.cli("run", "-d", "--name", policy, "--restart", policy, "busybox", "sleep", "600")
            d.cli("stop", "-t", "0", policy)
        d.cli("run", "-d", "--name", "live", "--restart", "unless-stopped", "busybox", "sleep", "600")
        live_pid = _state(d, "live")["Pid"]
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=60) == 0
        d = start_daemon(d.root)
        assert _state(d, "always")["Running"]  # always: started again with the daemon
        assert not _state(d, "unless-stopped")["Running"]  # a client stopped it
        assert not _state(d, "no")["Running"]
        assert _state(d, "live")["Pid"] == live_pid  # live restore: never stopped
    finally:
        for name in ("always", "unless-stopped", "no", "live"):
            d.cli("rm", "-f", name, check=False)
        _stop_and_check(d)


def _cgroup_file(cid: str, controller: str, name: str) -> str:
    (path,) = glob.glob(f"/sys/fs/cgroup/{controller}/dockyard/{cid}/{name}") or glob.glob(
        f"/sys/fs/cgroup/unified/dockyard/{cid}/{name}")
    return Path(path).read_text().strip()


@pytest.mark.parametrize("kind", CLIS)
def test_update(cli: Daemon, kind: str) -> None:
    run = cli.client(kind)
    name = unique("update")
    cli.cli("run", "-d", "--name", name, "-m", "64m", "busybox", "sleep", "600")
    try:
        cid = _state(cli, name)["Id"]
        assert _cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(64 << 20)
        assert run("update", "-m", "128m", "--pids-limit", "50", "--restart", "on-failure:3", name).stdout == name + "\n"
        assert _cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(128 << 20)
        assert _cgroup_file(cid, "pids", "pids.max") == "50"
        hc = json.loads(cli.cli("inspect", name).stdout)[0]["HostConfig"]
        assert hc["Memory"] == 128 << 20 and hc["PidsLimit"] == 50
        assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        cli.cli("restart", "-t", "0", name)  # the next run keeps the new limits
        assert _cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(128 << 20)
        res = run("update", "--restart", "always", "no-such-ctr-xy", check=False)
        assert res.returncode != 0 and "No such container: no-such-ctr-xy" in res.stderr
    finally:
        cli.cli("rm", "-f", name)
    auto = unique("auto")
    cli.cli("run", "-d", "--rm", "--name", auto, "busybox", "sleep", "600")
    try:
        res = run("update", "--restart", "always", auto, check=False)
        assert res.returncode != 0
        assert "Restart policy cannot be updated because AutoRemove is enabled for the container" in res.stderr
    finally:
        cli.cli("rm", "-f", auto)
