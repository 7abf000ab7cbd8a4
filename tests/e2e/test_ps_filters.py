"""`ps` filters (status, name, label, ancestor, id, exited), `-n` and `-s`, through the docker
CLI and the dockyard CLI against the same containers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]

_NAMES = ("pf-web", "pf-db", "pf-failed", "pf-other")


@pytest.fixture(scope="module")
def containers(daemon: Daemon, busybox_image: str, busybox_tar: Path) -> Iterator[dict[str, str]]:
    """pf-web running (label tier=web), pf-db created (tier=db), pf-failed exited 1, and
    pf-other exited 0 from a second image (pf-other:1), created last."""
    daemon.cli("import", "-c", 'CMD ["true"]', str(busybox_tar), "pf-other:1")
    ids = {}
    try:
        ids["pf-web"] = daemon.docker("run", "-d", "--name", "pf-web", "--label", "tier=web",
                                      "busybox", "sleep", "600").stdout.strip()
        ids["pf-db"] = daemon.docker("create", "--name", "pf-db", "--label", "tier=db",
                                     "busybox", "true").stdout.strip()
        daemon.docker("run", "--name", "pf-failed", "busybox", "false", check=False)
        daemon.docker("run", "--name", "pf-other", "pf-other:1")
        for name in ("pf-failed", "pf-other"):
            ids[name] = daemon.docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
        yield ids
    finally:
        daemon.docker("rm", "-f", *_NAMES, check=False)
        daemon.docker("rmi", "pf-other:1", check=False)


def _ps(daemon: Daemon, via: str, *args: str) -> list[str]:
    run = daemon.docker if via == "docker" else daemon.cli
    out = run("ps", "--no-trunc", "--format", "{{.Names}}", *args).stdout.split()
    return sorted(n for n in out if n.startswith("pf-"))


@pytest.mark.parametrize("via", ["docker", "dockyard"])
def test_filters(daemon: Daemon, containers: dict[str, str], via: str) -> None:
    assert _ps(daemon, via) == ["pf-web"]
    assert _ps(daemon, via, "-a") == sorted(_NAMES)
    assert _ps(daemon, via, "-a", "--filter", "status=created") == ["pf-db"]
    assert _ps(daemon, via, "-a", "--filter", "status=exited") == ["pf-failed", "pf-other"]
    assert _ps(daemon, via, "--filter", "status=running") == ["pf-web"]
    assert _ps(daemon, via, "-a", "--filter", "exited=1") == ["pf-failed"]
    assert _ps(daemon, via, "-a", "--filter", "label=tier=web") == ["pf-web"]
    assert _ps(daemon, via, "-a", "--filter", "label=tier") == ["pf-db", "pf-web"]
    assert _ps(daemon, via, "-a", "--filter", "name=pf-d") == ["pf-db"]
    assert _ps(daemon, via, "-a", "--filter", f"id={containers['pf-failed'][:10]}") == ["pf-failed"]
    assert _ps(daemon, via, "-a", "--filter", "ancestor=pf-other:1") == ["pf-other"]
    assert "pf-other" not in _ps(daemon, via, "-a", "--filter", "ancestor=busybox")
    # filters of one key are ORed, of different keys ANDed
    assert _ps(daemon, via, "-a", "--filter", "status=created", "--filter", "status=running") == ["pf-db", "pf-web"]
    assert _ps(daemon, via, "-a", "--filter", "label=tier", "--filter", "status=running") == ["pf-web"]


@pytest.mark.parametrize("via", ["docker", "dockyard"])
def test_last_and_size(daemon: Daemon, containers: dict[str, str], via: str) -> None:
    run = daemon.docker if via == "docker" else daemon.cli
    last = run("ps", "-n", "2", "--format", "{{.Names}}").stdout.split()
    assert last == ["pf-other", "pf-failed"]  # newest first, any state
    sizes = run("ps", "-a", "-s", "--filter", "name=pf-web", "--format", "{{.Size}}").stdout.strip()
    assert "virtual" in sizes and sizes.split()[0].endswith("B"), sizes
    table = run("ps", "-s", "--filter", "name=pf-web").stdout.splitlines()
    assert table[0].split()[-1] == "SIZE", table
