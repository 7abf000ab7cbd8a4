"""Fixtures every issue uses: a busybox root filesystem from the host's static busybox,
a dockyardd on a temporary root and socket, and a runner for the dockyard CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.engine import leftover_processes, mounts_under, stop_supervisor

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _no_parent_cgroups_left() -> Iterator[None]:
    """Containers live under a /dockyard cgroup (as docker's under /docker), which a daemon
    gives back when it stops with no container left (ContainerService.close): a session
    must not leave one it did not find. (Removed here after the failure is noted, so one
    leak does not carry over into the next run on this machine.)"""
    import glob

    existed = set(glob.glob("/sys/fs/cgroup/*/dockyard"))
    yield
    left = sorted(set(glob.glob("/sys/fs/cgroup/*/dockyard")) - existed)
    for d in left:
        with contextlib.suppress(OSError):
            os.rmdir(d)
    assert not left, f"parent cgroups left behind: {left}"


def _network_state() -> set[str]:
    """Links, nftables tables and named network namespaces, as "kind name"."""
    import shutil
    import subprocess

    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout if shutil.which(argv[0]) else ""

    state = {"link " + line.split(":")[1].strip().split("@")[0] for line in out("ip", "-o", "link").splitlines()}
    state |= {"table " + line.strip() for line in out("nft", "list", "tables").splitlines()}
    state |= {"netns " + line.split()[0] for line in out("ip", "netns", "list").splitlines() if line.strip()}
    return state


@pytest.fixture(scope="session", autouse=True)
def _no_network_state_left() -> Iterator[None]:
    """No interface, nftables table or named network namespace a test made outlives the
    session (issue 8: asserted, not assumed)."""
    before = _network_state()
    yield
    left = sorted(_network_state() - before)
    assert not left, f"network state left behind: {left}"


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root filesystem tar made from the host's busybox-static, with its applet links."""
    if shutil.which("busybox") is None:
        pytest.skip("busybox not installed (apt-get install busybox-static)")
    out = tmp_path_factory.mktemp("busybox") / "busybox-rootfs.tar"
    subprocess.run([str(REPO / "contrib" / "mkrootfs-busybox"), str(out)], check=True)
    return out


@dataclass
class Daemon:
    root: Path
    socket: str
    proc: subprocess.Popen
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def cli(self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 120,
            raw: bool = False) -> subprocess.CompletedProcess:
        """Run the dockyard CLI against this daemon; text output unless ``raw``."""
        res = subprocess.run(
            [sys.executable, "-m", "dockyard.cli.main", "-H", self.host, *args],
            input=input, capture_output=True, timeout=timeout, env=self.env,
        )
        res.stderr = res.stderr.decode(errors="replace")
        if not raw:
            res.stdout = res.stdout.decode(errors="replace")
        if check and res.returncode != 0:
            raise AssertionError(f"dockyard {' '.join(args)} failed ({res.returncode}): {res.stderr}")
        return res

    def docker(self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 120,
               raw: bool = False) -> subprocess.CompletedProcess:
        """Run the official docker CLI against this daemon; text output unless ``raw``."""
        docker = shutil.which("docker")
        if docker is None:
            pytest.skip("the docker CLI is not installed")
        env = {**self.env, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0"}
        res = subprocess.run([docker, *args], input=input, capture_output=True, timeout=timeout, env=env)
        res.stderr = res.stderr.decode(errors="replace")
        if not raw:
            res.stdout = res.stdout.decode(errors="replace")
        if check and res.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({res.returncode}): {res.stderr}")
        return res

    def client(self, kind: str):  # noqa: ANN201 - the bound method of either CLI
        """``cli`` or ``docker`` by name (tests parametrized over tests/fixtures/clients.CLIS)."""
        return self.cli if kind == "dockyard" else self.docker

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


def bridge_name(root: Path) -> str:
    """The default bridge device of the test daemon on ``root`` (the same after a restart)."""
    import hashlib

    return "dy" + hashlib.sha256(str(root).encode()).hexdigest()[:8]


def start_daemon(root: Path, *extra: str, prefix: tuple[str, ...] = ()) -> Daemon:
    """A dockyardd on its own data and exec roots; ``prefix`` wraps its command (e.g.
    nsenter into a network namespace). Both CLIs keep their logins in root/docker-config."""
    root.mkdir(parents=True, exist_ok=True)
    exec_root = root / "exec"
    sock = str(exec_root / "dockyard.sock")
    log = root / "daemon.log"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "DOCKER_CONFIG": str(root / "docker-config")}
    env.pop("PYTHONUNBUFFERED", None)  # the CLIs' output as a user's pipe gets it: flushed by the CLI itself
    if not {"-b", "--bridge"} & {arg.split("=")[0] for arg in extra}:
        extra = ("--bridge", bridge_name(root), *extra)  # daemons side by side: a default bridge each
    logf = open(log, "wb")  # noqa: SIM115 - the daemon owns it for its lifetime
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "dockyard.daemon.main", "--data-root", str(root / "data"),
         "--exec-root", str(exec_root), "-H", f"unix://{sock}", *extra],
        stdout=logf, stderr=subprocess.PIPE, env=env,
    )
    # readiness is an event: the daemon prints "ready" once every socket listens
    assert proc.stderr is not None
    lines = []
    for raw in proc.stderr:
        line = raw.decode(errors="replace")
        lines.append(line)
        if "ready" in line:
            break
    else:
        proc.wait()
        raise RuntimeError("dockyardd did not start:\n" + "".join(lines))
    # keep draining stderr into the log so the daemon never blocks on a full pipe
    def _drain(stream=proc.stderr, sink=logf):
        for chunk in stream:
            sink.write(chunk)
            sink.flush()

    import threading

    threading.Thread(target=_drain, daemon=True).start()
    return Daemon(root=root, socket=sock, proc=proc, log=log, env=env)


def _daemon_network(d: Daemon) -> list[str]:
    """The bridges (default and user networks') and nftables table of the daemon on d.root
    that exist on the host."""
    import json

    devices = {bridge_name(d.root)}
    for path in (d.root / "data" / "network").glob("*.json"):
        devices.add("br-" + json.loads(path.read_text())["Id"][:12])
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    present = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()}
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.split()
    return sorted(devices & present) + (["table " + bridge_name(d.root)] if bridge_name(d.root) in tables else [])


def _stop_and_check(d: Daemon) -> None:
    d.stop()
    left_network = _daemon_network(d)  # a daemon stopping with nothing running gives them back
    left_containers = stop_supervisor(d.root / "exec", d.env)
    if left_network:  # clean up before failing (or after a test that left containers running)
        for name in left_network:
            cmd = ["nft", "delete", "table", "ip", name.split()[1]] if name.startswith("table ") else \
                ["ip", "link", "del", name]
            subprocess.run(cmd, capture_output=True)
    left_procs = leftover_processes(d.root)
    left = mounts_under(str(d.root))
    if left:  # clean up before failing, so one leak does not cascade into other tests
        from dockyard.mount import unmount_all

        for bundle in (d.root / "exec" / "bundles").glob("*"):
            unmount_all(str(bundle))
    assert d.proc.returncode == 0, f"dockyardd exited with {d.proc.returncode}: {d.log.read_text()[-3000:]}"
    assert not left_containers, f"containers left behind: {left_containers}"
    assert not left_network, f"network state left behind by the daemon: {left_network}"
    assert not left_procs, f"processes left behind: {left_procs}"
    assert not left, f"mounts left behind: {left}"
    assert not os.path.exists(d.socket), "socket left behind"


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One dockyardd for the session (tests that need an empty store use ``fresh_daemon``)."""
    d = start_daemon(tmp_path_factory.mktemp("dockyardd"))
    try:
        yield d
    finally:
        _stop_and_check(d)


@pytest.fixture
def fresh_daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(tmp_path / "d")
    try:
        yield d
    finally:
        _stop_and_check(d)


@pytest.fixture(scope="session")
def busybox_image(daemon: Daemon, busybox_tar: Path) -> str:
    """busybox:latest imported into the session daemon; returns the image ID."""
    res = daemon.cli("import", "-c", 'CMD ["sh"]', "-c", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     str(busybox_tar), "busybox:latest")
    image_id = res.stdout.strip()
    assert image_id.startswith("sha256:"), res.stdout
    return image_id


def store_state(d: Daemon) -> dict:
    """A fingerprint of the daemon's stores: blobs, snapshots, image records."""
    data = d.root / "data"
    blobs = sorted(p.name for p in (data / "content" / "blobs" / "sha256").glob("*"))
    listing = d.cli("images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}").stdout.splitlines()
    snapdirs = sorted(str(p.relative_to(data)) for p in (data / "snapshots").glob("*/snapshots/*"))
    return {"blobs": blobs, "images": sorted(listing), "snapshots": snapdirs}


@pytest.fixture
def cli(daemon: Daemon, busybox_image: str) -> Iterator[Daemon]:
    """The session daemon for dockyard CLI tests: the containers a test leaves are removed,
    and leaving any is a failure."""
    before = set(daemon.cli("ps", "-a", "-q", "--no-trunc").stdout.split())
    yield daemon
    left = set(daemon.cli("ps", "-a", "-q", "--no-trunc").stdout.split()) - before
    if left:
        daemon.cli("rm", "-f", *sorted(left), check=False)
    assert not left, f"containers left behind: {left}"


@pytest.fixture
def client(daemon: Daemon, busybox_image: str) -> Iterator[object]:
    """A docker-py client of the session daemon; removes the containers the test made."""
    docker = pytest.importorskip("docker")
    c = docker.DockerClient(base_url=daemon.host, timeout=60)
    before = {ct.id for ct in c.containers.list(all=True)}
    try:
        yield c
    finally:
        for ct in c.containers.list(all=True):
            if ct.id not in before:
                ct.remove(force=True)
        c.close()
