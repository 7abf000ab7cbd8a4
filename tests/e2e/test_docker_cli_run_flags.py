"""The run flags of issue 4 through the official docker CLI against dockyardd: the same
table and checks as the dockyard CLI's tests (tests/fixtures/run_flags.py) — each flag's
effect inside the container or on its cgroup, docker's errors (exit 125) for bad values with
nothing left behind, the lifecycle flags and --init. The docker CLI reads a
``--security-opt seccomp=<file>`` itself and sends the profile's JSON."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon
from tests.fixtures import run_flags as rf

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]

KIND = "docker"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> rf.Host:
    return rf.Host.make(tmp_path_factory.mktemp("runflags"))


@pytest.fixture
def client(daemon: Daemon, busybox_image: str) -> Iterator[rf.Client]:
    c = rf.Client(daemon, KIND)
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
