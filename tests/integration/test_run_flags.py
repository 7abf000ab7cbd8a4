"""The run flags of issue 4 through the dockyard CLI against the session daemon: each
flag's effect inside the container or on its cgroup, docker's one-line errors (exit 125)
for bad values with nothing left behind, the lifecycle flags (--name, --label, --stop-signal,
--stop-timeout, -d, --rm, -i, -t) and --init (reaping, signal forwarding, exit codes,
exec, terminal) — each through the dockyard CLI and the official docker CLI, with one table
of cases and checks (tests/fixtures/run_flags.py)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, _stop_and_check, start_daemon
from tests.fixtures import run_flags as rf
from tests.fixtures.clients import CLIS

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> rf.Host:
    return rf.Host.make(tmp_path_factory.mktemp("runflags"))


@pytest.fixture(params=CLIS)
def client(request: pytest.FixtureRequest, daemon: Daemon, busybox_image: str) -> Iterator[rf.Client]:
    """Each test runs through the dockyard CLI and through the official docker CLI (which
    reads a ``--security-opt seccomp=<file>`` itself and sends the profile's JSON)."""
    c = rf.Client(daemon, request.param)
    before = c.ids()
    yield c
    left = c.ids() - before
    if left:
        c("rm", "-f", *sorted(left), check=False)
    assert not left, f"containers left behind: {left}"


@pytest.mark.parametrize("case", rf.EFFECTS, ids=lambda c: c.id)
def test_effect_inside(client: rf.Client, host: rf.Host, case: rf.Effect) -> None:
    if "privileged" in case.id and not host.device:
        pytest.skip("no host character device to look for")
    res = client("run", "--rm", *host.fill(case.flags), "busybox", *case.command, env={"FROM_CLIENT": "client-value"})
    if isinstance(case.expect, str):
        assert res.stdout == case.expect, res.stderr
    else:
        case.expect(res.stdout, host)


@pytest.mark.skipif(not rf.cgroup_v1(), reason="the expectations are cgroup v1 files")
@pytest.mark.parametrize("case", rf.CGROUPS, ids=lambda c: c.id)
def test_cgroup_files(client: rf.Client, case: rf.CgroupCase) -> None:
    cid = client("run", "-d", *case.flags, "busybox", "sleep", "1000").stdout.strip()
    try:
        swap_accounting = rf.read_cgroup(cid, rf.MEMSW) is not None
        for rel, want in case.files.items():
            if rel == rf.MEMSW and not swap_accounting:
                continue  # a kernel without swap accounting: docker warns and limits memory only
            assert rf.read_cgroup(cid, rel) == want, rel
        hc = client.inspect(cid)["HostConfig"]
        for key, want in case.host_config.items():
            if key == "MemorySwap" and not swap_accounting:
                continue
            assert hc[key] == want, key
    finally:
        client("rm", "-f", cid)


@pytest.mark.parametrize("bad", rf.BAD, ids=lambda b: b.id)
def test_bad_value(client: rf.Client, host: rf.Host, bad: rf.Bad) -> None:
    reason = bad.skip_if()
    if reason:
        pytest.skip(reason)
    before = rf.footprint(client.daemon)
    res = client("run", "--rm", *host.fill(bad.flags), "busybox", "true", check=False)
    assert res.returncode == 125, (res.returncode, res.stderr)
    message = rf.fill_message(bad, host)
    first = next(line for line in res.stderr.splitlines() if line.strip())
    assert message in first, res.stderr  # docker's one-line message
    rf.assert_nothing_left(client, before)


def test_create_body(client: rf.Client) -> None:
    rf.check_create_body(client)


def test_name_and_labels(client: rf.Client) -> None:
    rf.check_name_and_labels(client)


def test_stop_timeout_is_honoured(client: rf.Client) -> None:
    rf.check_stop_timeout(client)


def test_stop_signal_is_honoured(client: rf.Client) -> None:
    rf.check_stop_signal(client)


def test_detach(client: rf.Client) -> None:
    rf.check_detach(client)


def test_rm(client: rf.Client) -> None:
    rf.check_rm(client)


def test_interactive(client: rf.Client) -> None:
    rf.check_interactive(client)


def test_init_reaps_orphans(client: rf.Client) -> None:
    rf.check_init_reaps(client)


def test_init_forwards_the_stop_signal(client: rf.Client) -> None:
    rf.check_init_forwards_stop(client)


def test_init_exit_codes(client: rf.Client) -> None:
    rf.check_init_exit_codes(client)


def test_init_exec(client: rf.Client) -> None:
    rf.check_init_exec(client)


def test_init_tty(client: rf.Client) -> None:
    rf.check_init_tty(client)


def test_daemon_default_init(tmp_path: Path, busybox_tar: Path) -> None:
    """daemon.json ``"init": true``: every container gets the init unless its
    HostConfig.Init says false (``--init=false``), with either client."""
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"init": True}))
    d = start_daemon(tmp_path / "d", "--config-file", str(config))
    try:
        d.cli("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
        for kind in ("dockyard", "docker"):
            if kind == "docker" and shutil.which("docker") is None:
                continue
            c = rf.Client(d, kind)
            out = c("run", "--rm", "busybox", "ps", "-o", "pid,comm").stdout
            assert out.splitlines()[1].split() == ["1", "docker-init"], (kind, out)
            out = c("run", "--rm", "--init=false", "busybox", "ps", "-o", "pid,comm").stdout
            assert out.splitlines()[1].split() == ["1", "ps"], (kind, out)
            name = rf.unique("noinit")
            c("create", "--name", name, "--init=false", "busybox", "true")
            assert c.inspect(name)["HostConfig"]["Init"] is False
            c("rm", name)
    finally:
        _stop_and_check(d)
