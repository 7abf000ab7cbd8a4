"""A container's /etc/hosts, /etc/resolv.conf and /etc/hostname (issue 8, item 1 and the
flags of item 4): docker's files, written by the daemon and bound over the image's, through
both CLIs; docker's messages for bad --add-host / --dns."""

from __future__ import annotations

import json
import os
import socket

import pytest

from tests.conftest import Daemon
from tests.fixtures.clients import CLIS, unique

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")


def _host_resolvers() -> list[str]:
    with open("/etc/resolv.conf") as f:
        return [line.split()[1] for line in f if line.startswith("nameserver") and len(line.split()) > 1]


@pytest.mark.parametrize("kind", CLIS)
def test_hosts_resolv_conf_and_hostname(cli: Daemon, kind: str) -> None:
    run = cli.client(kind)
    name = unique("etc")
    cid = run("run", "-d", "--name", name, "busybox", "sleep", "60").stdout.strip()
    try:
        assert cli.cli("exec", name, "cat", "/etc/hostname").stdout == cid[:12] + "\n"
        hosts = cli.cli("exec", name, "cat", "/etc/hosts").stdout.splitlines()
        assert hosts[0] == "127.0.0.1\tlocalhost" and "::1\tlocalhost ip6-localhost ip6-loopback" in hosts
        resolv = cli.cli("exec", name, "cat", "/etc/resolv.conf").stdout
        servers = [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")]
        assert servers and not any(s.startswith("127.") or s == "::1" for s in servers)  # not reachable in here
        wanted = [s for s in _host_resolvers() if not s.startswith("127.") and s != "::1"] or ["8.8.8.8", "8.8.4.4"]
        assert servers == wanted
    finally:
        cli.cli("rm", "-f", name)

    out = run("run", "--rm", "--hostname", "web", "--add-host", "db:10.0.0.5", "--add-host", "v6:fd00::1",
              "--dns", "192.0.2.53", "--dns-search", "example.com", "--dns-option", "ndots:2",
              "busybox", "cat", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf").stdout
    assert out.startswith("web\n127.0.0.1\tlocalhost\n")
    assert "10.0.0.5\tdb\nfd00::1\tv6\n" in out
    assert out.endswith("nameserver 192.0.2.53\nsearch example.com\noptions ndots:2\n")

    host = run("run", "--rm", "--network", "host", "busybox", "cat", "/etc/hostname", "/etc/resolv.conf").stdout
    with open("/etc/resolv.conf") as f:
        assert host == socket.gethostname() + "\n" + f.read()  # the host's, loopback resolvers kept


def test_own_mounts_and_read_only(cli: Daemon, tmp_path) -> None:  # noqa: ANN001
    mine = tmp_path / "hosts"
    mine.write_text("10.1.1.1 mine\n")
    out = cli.cli("run", "--rm", "-v", f"{mine}:/etc/hosts:ro", "busybox", "cat", "/etc/hosts").stdout
    assert out == "10.1.1.1 mine\n"  # the request's own mount wins
    res = cli.cli("run", "--rm", "--read-only", "busybox", "sh", "-c", "echo x >> /etc/hosts", check=False)
    assert res.returncode != 0 and "Read-only file system" in res.stderr


@pytest.mark.parametrize(("flags", "message"), [
    (["--add-host", "db:not-an-ip"], "invalid IP address in add-host: 'not-an-ip'"),
    (["--dns", "resolver"], "resolver is not an ip address"),
])
def test_bad_name_resolution_flags(cli: Daemon, flags: list[str], message: str) -> None:
    before = cli.cli("ps", "-a", "-q").stdout
    res = cli.cli("run", "--rm", *flags, "busybox", "true", check=False)
    assert res.returncode == 125 and message in res.stderr, res.stderr
    assert cli.cli("ps", "-a", "-q").stdout == before  # nothing created


def test_mount_targets_stay_out_of_diff_commit_and_the_store(cli: Daemon) -> None:
    """busybox has no /etc/hosts: the targets come from an init layer under the container's
    own (docker's design), so `diff` and `commit` never show them, and removing an image
    removes the init layer on its top layer with it."""
    from tests.conftest import store_state

    name = unique("init")
    cli.cli("run", "--name", name, "busybox", "sh", "-c", "echo x > /newfile")
    committed = f"{unique('committed')}:v1"
    try:
        assert cli.cli("diff", name).stdout == "A /newfile\n"
        before = store_state(cli)["snapshots"]
        cli.cli("commit", name, committed)
        assert cli.cli("run", "--rm", committed, "cat", "/newfile", "/etc/hostname").stdout.startswith("x\n")
        layer = json.loads(cli.cli("image", "inspect", committed).stdout)[0]["RootFS"]["Layers"][-1]
        assert len(store_state(cli)["snapshots"]) == len(before) + 2  # its layer, and the init layer on it
        cli.cli("rmi", committed)
        assert store_state(cli)["snapshots"] == before
        assert layer.startswith("sha256:")
    finally:
        cli.cli("rm", "-f", name, check=False)
        cli.cli("rmi", committed, check=False)
