"""Pull (issue 6) from a real registry (Debian's docker-registry on 127.0.0.1, plain HTTP as
docker allows for loopback): an image skopeo pushed is pulled by the dockyard CLI, the docker
CLI and docker-py and runs; by tag and by digest, with RepoDigests; layers already present
are skipped; ``run`` pulls a missing image; a missing repository or tag gets docker's message
with nothing stored. Layers are unpacked as they arrive (while they stream in) with docker's
progress in docker's order; a corrupt layer leaves nothing; a cancelled pull (Ctrl-C) keeps
its partial download, which the next pull continues with an HTTP Range request; ``pull -a``;
gzip, zstd and uncompressed layers; progress bars on a terminal, plain lines elsewhere.

Images with made-up layers are pushed with skopeo from an OCI layout written here (plain tar
layers, which skopeo compresses as asked); a proxy (tests/fixtures/registry.py SlowProxy)
slows, holds or corrupts one blob's download, so every "while" below is an event."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from dockyard.distribution.layers import UNPACK_IN_WORKER
from dockyard.images.model import host_platform
from tests.conftest import Daemon, store_state
from tests.fixtures.clients import CLIS
from tests.fixtures.registry import (
    REGISTRY_BIN,
    DroppingProxy,
    LocalRegistry,
    SlowProxy,
    start_registry,
)
from tests.fixtures.terminal import PtyProcess

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root"),
    pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry is not installed (apt install docker-registry)"),
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, daemon: Daemon, busybox_image: str) -> Iterator[LocalRegistry]:
    """A registry holding test/busybox:v1, pushed by skopeo from the busybox image saved by
    the session daemon."""
    root = tmp_path_factory.mktemp("registry")
    archive = root / "busybox.tar"
    daemon.cli("save", "-o", str(archive), "busybox:latest")
    for reg in start_registry(root / "reg"):
        subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{archive}", f"docker://{reg.host}/test/busybox:v1",
                        "--dest-tls-verify=false"], check=True)
        yield reg


def _remote_digest(reg: LocalRegistry, repo: str, tag: str) -> str:
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                          f"docker://{reg.host}/{repo}:{tag}"], capture_output=True, text=True, check=True).stdout
    return out.strip()


def _forget(d: Daemon, name: str) -> None:
    d.cli("rmi", "-f", name, check=False)


@pytest.mark.parametrize("kind", CLIS)
def test_pull_and_run(cli: Daemon, registry: LocalRegistry, kind: str) -> None:
    run = cli.client(kind)
    name = f"{registry.host}/test/busybox:v1"
    _forget(cli, name)
    out = run("pull", name).stdout
    digest = _remote_digest(registry, "test/busybox", "v1")
    assert out.splitlines()[0] == f"v1: Pulling from {registry.host}/test/busybox"
    assert f"Digest: {digest}" in out and f"Status: Downloaded newer image for {name}" in out
    assert out.splitlines()[-1] == name
    doc = json.loads(cli.cli("image", "inspect", name).stdout)[0]
    assert doc["RepoDigests"] == [f"{registry.host}/test/busybox@{digest}"]
    assert run("run", "--rm", name, "echo", "pulled").stdout == "pulled\n"
    again = run("pull", name).stdout
    assert "Already exists" in again and f"Status: Image is up to date for {name}" in again
    by_digest = f"{registry.host}/test/busybox@{digest}"
    assert run("pull", by_digest).stdout.splitlines()[-1] == by_digest
    _forget(cli, name)


@pytest.mark.parametrize("kind", CLIS)
def test_run_pulls_a_missing_image(cli: Daemon, registry: LocalRegistry, kind: str) -> None:
    run = cli.client(kind)
    name = f"{registry.host}/test/busybox:v1"
    _forget(cli, name)
    res = run("run", "--rm", name, "echo", "ran")
    assert res.stdout == "ran\n"  # the pull's progress goes to stderr
    assert f"Unable to find image '{name}' locally" in res.stderr
    _forget(cli, name)


@pytest.mark.parametrize("kind", CLIS)
def test_missing_repository_or_tag(cli: Daemon, registry: LocalRegistry, kind: str) -> None:
    run = cli.client(kind)
    before = store_state(cli)
    for name in (f"{registry.host}/test/busybox:nosuchtag", f"{registry.host}/nobody/here:v1"):
        res = run("pull", name, check=False)
        assert res.returncode == 1
        assert res.stderr.strip() == (f"Error response from daemon: manifest for {name} not found: "
                                      "manifest unknown: manifest unknown"), res.stderr
    assert store_state(cli) == before


@pytest.fixture(scope="module")
def fresh_layer(registry: LocalRegistry, daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """test/fresh:v1 in the registry: an image whose layer (300 kB of random bytes in
    /payload) the daemon does not hold, so a pull must download it. Returns the layer's
    digest and the payload."""
    root = tmp_path_factory.mktemp("fresh")
    (root / "rootfs").mkdir()
    payload = os.urandom(300_000)
    (root / "rootfs" / "payload").write_bytes(payload)
    subprocess.run(["tar", "-C", str(root / "rootfs"), "-cf", str(root / "rootfs.tar"), "."], check=True)
    daemon.cli("import", str(root / "rootfs.tar"), "fresh:v1")
    daemon.cli("save", "-o", str(root / "fresh.tar"), "fresh:v1")
    daemon.cli("rmi", "fresh:v1")  # its blobs go with it
    subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{root / 'fresh.tar'}", f"docker://{registry.host}/test/fresh:v1",
                    "--dest-tls-verify=false"], check=True)
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/test/fresh:v1"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(raw)["layers"][0]["digest"], payload


def test_dropped_blob_download_resumes(cli: Daemon, registry: LocalRegistry, fresh_layer: tuple[str, bytes]) -> None:
    """The registry's connection drops 1000 bytes into the layer: the pull takes it up again
    where it stopped (an HTTP Range request) and completes."""
    layer, payload = fresh_layer
    proxy = DroppingProxy(registry.host, layer, after=1000, drops=1)
    name = f"{proxy.host}/test/fresh:v1"
    try:
        out = cli.cli("pull", name).stdout
        assert "Pull complete" in out
        gets = [(line, rng) for line, rng in proxy.requests if f"/blobs/{layer} " in line]
        assert len(gets) == 2 and gets[0][1] == "", gets
        assert gets[1][1].startswith("bytes=") and int(gets[1][1][6:].rstrip("-")) > 0, gets
        cid = cli.cli("create", name, "x").stdout.strip()
        copied = cli.cli("cp", f"{cid}:/payload", "-", raw=True).stdout
        cli.cli("rm", cid)
        with tarfile.open(fileobj=io.BytesIO(copied)) as tf:
            assert tf.extractfile("payload").read() == payload  # every byte, once
    finally:
        _forget(cli, name)
        proxy.close()


def test_blob_that_keeps_dropping_fails_clearly(cli: Daemon, registry: LocalRegistry, fresh_layer: tuple[str, bytes]) -> None:
    proxy = DroppingProxy(registry.host, fresh_layer[0], after=1000, drops=100)
    name = f"{proxy.host}/test/fresh:v1"
    before = store_state(cli)
    try:
        res = cli.cli("pull", name, check=False)
        assert res.returncode == 1
        assert "error pulling blob sha256:" in res.stderr and "(after 3 retries)" in res.stderr, res.stderr
        assert store_state(cli) == before  # no image, no blob, no snapshot
    finally:
        proxy.close()


def test_docker_py_pull(cli: Daemon, registry: LocalRegistry) -> None:
    client = docker.DockerClient(base_url=cli.host, timeout=60)
    name = f"{registry.host}/test/busybox"
    try:
        img = client.images.pull(name, tag="v1")
        assert f"{name}:v1" in img.tags
        assert client.containers.run(img.id, "echo py", remove=True) == b"py\n"
        with pytest.raises(docker.errors.NotFound):
            client.images.pull(name, tag="nosuchtag")
    finally:
        _forget(cli, f"{name}:v1")
        client.close()


def test_registry_is_stopped_by_its_fixture(tmp_path: Path) -> None:
    """The fixture ends the registry it started (no process left behind)."""
    gen = start_registry(tmp_path / "reg")
    reg = next(gen)
    assert reg.proc.poll() is None
    gen.close()
    assert reg.proc.poll() is not None


# ---------------------------------------------------------------------------------------------
# made-up images, and what the daemon's stores hold


def _read_until(proc: subprocess.Popen, line: str, what: str) -> list[str]:
    """Read ``proc``'s stdout up to and including ``line`` (an event the test waits for);
    the lines read."""
    assert proc.stdout is not None
    seen = []
    for got in proc.stdout:
        seen.append(got)
        if got == line:
            return seen
    raise AssertionError(f"{what}: {seen} {proc.stderr.read() if proc.stderr else ''}")


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _tar(files: dict[str, bytes], base: Path | None = None) -> bytes:
    """An uncompressed layer: the members of the tar ``base`` (busybox's root filesystem),
    then ``files`` in order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        if base is not None:
            with tarfile.open(base) as src:
                for member in src:
                    tf.addfile(member, src.extractfile(member) if member.isfile() else None)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _push(reg: LocalRegistry | str, tmp: Path, repo_tag: str, layers: list[bytes], *copy_args: str) -> list[dict]:
    """Push an image made of these uncompressed layers to ``repo_tag`` with skopeo, from an
    OCI layout (skopeo compresses the layers with gzip unless ``copy_args`` say otherwise);
    returns the layer descriptors of the manifest the registry holds."""
    host = reg if isinstance(reg, str) else reg.host
    layout = tmp / f"layout-{uuid.uuid4().hex[:8]}"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return f"sha256:{hexd}"

    diff_ids = [put(layer) for layer in layers]
    config = json.dumps({
        "architecture": host_platform()["architecture"], "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(len(layers))],
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(data)}
                   for d, data in zip(diff_ids, layers, strict=True)],
    }).encode()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "v"}}]}))
    subprocess.run(["skopeo", "copy", "-q", *copy_args, f"oci:{layout}:v", f"docker://{host}/{repo_tag}",
                    "--dest-tls-verify=false"], check=True)
    shutil.rmtree(layout)
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repo_tag}"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(raw)["layers"]


def _ingest(d: Daemon, digest: str) -> Path:
    """The content store's ingest directory of a pull's download of ``digest``."""
    return d.root / "data" / "content" / "ingest" / hashlib.sha256(f"pull-{digest}".encode()).hexdigest()


def _extract_snapshots(d: Daemon) -> list[str]:
    """Layer extractions in progress (or left behind): the snapshotter's ``extract-*`` keys."""
    keys = []
    for db in (d.root / "data" / "snapshots").glob("*/metadata.db"):
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            keys += [k for (k,) in conn.execute("SELECT key FROM snapshots WHERE key LIKE 'extract-%'")]
        finally:
            conn.close()
    return keys


def _wait_unlocked(lock: Path, timeout: float = 60) -> None:
    """Take the ingest's flock as the daemon's writer does: granted once the daemon's pull has
    let go of it, which it does last."""
    fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    got = threading.Event()

    def take() -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        got.set()

    threading.Thread(target=take, daemon=True).start()
    assert got.wait(timeout), f"{lock} still locked after {timeout}s"
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _wait_for_file(top: Path, name: str, depth: int = 2, timeout: float = 60) -> Path:
    """Wait until a file ``name`` exists up to ``depth`` directories below ``top``: on inotify
    events (each directory is watched before it is listed, so nothing made in between is
    missed), without polling."""
    from dockyard import syscalls

    mask = syscalls.InotifyMask
    fd = syscalls.inotify_init1()
    dirs: dict[int, tuple[str, int]] = {}

    def watch(directory: str, level: int) -> str | None:
        try:
            dirs[syscalls.inotify_add_watch(fd, directory, mask.CREATE | mask.MOVED_TO | mask.ONLYDIR)] = (directory, level)
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return None
        for entry in entries:
            if entry.name == name:
                return entry.path
            if level < depth and entry.is_dir(follow_symlinks=False) and (found := watch(entry.path, level + 1)):
                return found
        return None

    try:
        found = watch(str(top), 0)
        deadline = time.monotonic() + timeout
        while found is None:
            left = deadline - time.monotonic()
            assert left > 0, f"no {name} below {top} after {timeout}s"
            select.select([fd], [], [], left)
            for wd, ev_mask, _, raw_name in syscalls.inotify_read(fd):
                if wd not in dirs or not raw_name:
                    continue
                parent, level = dirs[wd]
                path = os.path.join(parent, os.fsdecode(raw_name))
                if os.fsdecode(raw_name) == name:
                    found = path
                elif ev_mask & mask.ISDIR and level < depth:
                    found = watch(path, level + 1)
                if found:
                    break
        return Path(found)
    finally:
        os.close(fd)


def _workers(root: Path) -> list[int]:
    """Layer unpack workers (dockyard/archive/worker.py) unpacking under ``root``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"dockyard.archive.worker" in argv and str(root).encode() in b" ".join(argv):
            pids.append(int(entry.name))
    return pids


def _wait_no_workers(root: Path, timeout: float = 10) -> None:
    """A dead daemon's workers get SIGKILL from the kernel (PR_SET_PDEATHSIG): gone at once,
    though not observably in the same instant, and there is no event to wait on."""
    deadline = time.monotonic() + timeout
    while _workers(root):
        assert time.monotonic() < deadline, f"unpack workers outlived their daemon: {_workers(root)}"
        time.sleep(0.05)


@contextlib.contextmanager
def _watched_pull(d: Daemon, name: str) -> Iterator[subprocess.Popen]:
    """``dockyard pull name`` in the background, its output piped; killed after 120 s (a
    pull that never gets where the test waits for: no hang) and on the way out."""
    proc = subprocess.Popen(_cli_argv(d, "pull", name), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=d.env)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        yield proc
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _cli_argv(d: Daemon, *args: str) -> list[str]:
    return [sys.executable, "-m", "dockyard.cli.main", "-H", d.host, *args]


def _payload_of(d: Daemon, name: str, path: str) -> bytes:
    cid = d.cli("create", name, "x").stdout.strip()
    try:
        copied = d.cli("cp", f"{cid}:{path}", "-", raw=True).stdout
    finally:
        d.cli("rm", cid)
    with tarfile.open(fileobj=io.BytesIO(copied)) as tf:
        return tf.extractfile(os.path.basename(path)).read()


DOCKER_ORDER = ["Pulling fs layer", "Waiting", "Downloading", "Verifying Checksum", "Download complete",
                "Extracting", "Pull complete"]


# ---------------------------------------------------------------------------------------------
# unpacking as layers arrive; progress


def test_layers_unpack_as_they_arrive(cli: Daemon, registry: LocalRegistry, busybox_tar: Path, tmp_path: Path) -> None:
    """The last layer's download is held half-way by the proxy: meanwhile the layers below it
    are unpacked ("Pull complete") and the held layer is being unpacked from what arrived (its
    first file is in an extraction snapshot). Released, the pull completes and the image runs."""
    marker = f"marker-{uuid.uuid4().hex}"
    payload = os.urandom(4 << 20)
    layers = [_tar({}, base=busybox_tar), _tar({"one": os.urandom(200_000)}), _tar({marker: b"first", "payload": payload})]
    descs = _push(registry, tmp_path, "test/stream:v1", layers)
    held = descs[2]
    # random bytes do not compress: the hold is past the first MiB chunks, and the layer is
    # unpacked by a worker process, on top of layer 2 before that one is committed
    assert held["size"] >= UNPACK_IN_WORKER > descs[1]["size"]
    proxy = SlowProxy(registry.host, held["digest"], hold_after=held["size"] // 2)
    name = f"{proxy.host}/test/stream:v1"
    try:
        with _watched_pull(cli, name) as proc:
            seen = _read_until(proc, f"{_short(descs[1]['digest'])}: Pull complete\n", "no Pull complete for the second layer")
            proxy.wait_held()
            snapshots = next((cli.root / "data" / "snapshots").glob("*/snapshots"))
            found = _wait_for_file(snapshots, marker)  # <n>/fs/<marker>: unpacking while it downloads
            assert found.read_bytes() in (b"", b"first")
            assert _extract_snapshots(cli)
            assert not any(_short(held["digest"]) in line and "complete" in line for line in seen)
            proxy.release()
            rest, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            out = "".join(seen) + rest
            assert f"{_short(held['digest'])}: Pull complete" in out and out.rstrip().endswith(name)
            assert _payload_of(cli, name, "/payload") == payload
            assert cli.cli("run", "--rm", name, "cat", f"/{marker}").stdout == "first"
            assert not _extract_snapshots(cli)
    finally:
        proxy.close()
        _forget(cli, name)


def test_progress_messages_in_docker_order(cli: Daemon, registry: LocalRegistry, busybox_tar: Path,
                                           tmp_path: Path) -> None:
    """docker's messages, per layer in docker's order, through docker-py's raw stream:
    layers beyond the three parallel downloads wait; Downloading and Extracting carry
    current/total (the compressed size), at most ten a second per layer; the stream ends with
    the digest and the status."""
    sizes = [24 << 20, 150_000, 2 << 20, 100_000]  # 24 MiB: one message per MiB would be far too many
    layers = [_tar({}, base=busybox_tar), *(_tar({f"f{i}": os.urandom(n)}) for i, n in enumerate(sizes))]
    descs = _push(registry, tmp_path, "test/order:v1", layers)
    api = docker.APIClient(base_url=cli.host, timeout=120)
    name = f"{registry.host}/test/order"
    try:
        start = time.monotonic()
        msgs = list(api.pull(name, tag="v1", stream=True, decode=True))
        elapsed = time.monotonic() - start
    finally:
        api.close()
    try:
        assert msgs[0] == {"status": f"Pulling from {name}", "id": "v1"}
        assert msgs[-2]["status"].startswith("Digest: sha256:")
        assert msgs[-1] == {"status": f"Status: Downloaded newer image for {name}:v1"}
        assert not any("error" in m for m in msgs)
        for i, desc in enumerate(descs):
            mine = [m for m in msgs if m.get("id") == _short(desc["digest"])]
            statuses = [m["status"] for m in mine]
            if i == 0 and statuses == ["Already exists"]:
                continue  # busybox's layer, left by an earlier test
            ranks = [DOCKER_ORDER.index(s) for s in statuses]
            assert ranks == sorted(ranks), statuses
            if i == 0:
                continue  # busybox's layer: its blob or its snapshot may be there from an earlier test
            assert statuses[0] == "Pulling fs layer" and statuses[-1] == "Pull complete", statuses
            for want in ("Downloading", "Verifying Checksum", "Download complete", "Extracting"):
                assert want in statuses, statuses
            for s in ("Pulling fs layer", "Verifying Checksum", "Download complete", "Pull complete"):
                assert statuses.count(s) == 1, statuses
            for what in ("Downloading", "Extracting"):
                details = [m["progressDetail"] for m in mine if m["status"] == what]
                assert all(d["total"] == desc["size"] for d in details), details
                currents = [d["current"] for d in details]
                assert currents == sorted(currents) and currents[0] > 0, currents
                assert len(details) <= elapsed / 0.1 + 2, (what, len(details), elapsed)  # throttled
            assert [m["progressDetail"]["current"] for m in mine if m["status"] == "Extracting"][-1] == desc["size"]
        waiting = [_short(d["digest"]) for d in descs if {"id": _short(d["digest"]), "status": "Waiting",
                                                            "progressDetail": {}} in msgs]
        assert _short(descs[-1]["digest"]) in waiting  # the fourth download or later waits for a slot
        assert not _extract_snapshots(cli)
    finally:
        _forget(cli, f"{name}:v1")


def test_corrupt_layer_leaves_neither_blob_nor_snapshot(cli: Daemon, registry: LocalRegistry, tmp_path: Path) -> None:
    """A byte of the second layer flipped on the way: the pull fails, with no image, no
    blob, no snapshot and no partial download of that layer; the first layer, complete
    before, stays for the next pull, which reuses it ("Already exists") and succeeds. Other
    commands are not disturbed by what stayed."""
    good, bad = _tar({"good": os.urandom(100_000)}), _tar({"bad": os.urandom(2 << 20)})
    descs = _push(registry, tmp_path, "test/corrupt:v1", [good, bad], "--preserve-digests")  # plain tar layers
    bad_digest = descs[1]["digest"]
    proxy = SlowProxy(registry.host, bad_digest, hold_after=1000, corrupt_at=1 << 20)
    name = f"{proxy.host}/test/corrupt:v1"
    images_before = store_state(cli)["images"]
    try:
        with _watched_pull(cli, name) as proc:
            _read_until(proc, f"{_short(descs[0]['digest'])}: Pull complete\n", "the first layer was not pulled")
            proxy.release()
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 1
            # unpacking met the bad bytes first (a diff ID mismatch), but the cause reported is
            # the blob's digest, in docker's words
            assert err.strip() == f"filesystem layer verification failed for digest {bad_digest}", err
            state = store_state(cli)
            assert state["images"] == images_before
            assert bad_digest.removeprefix("sha256:") not in state["blobs"]
            assert not _extract_snapshots(cli)
            assert not _ingest(cli, bad_digest).exists()  # a corrupt download is not kept to be continued
            assert cli.cli("images", "-a", "-q").returncode == 0
            cli.cli("image", "prune", "-f")
            cli.cli("system", "df")
            out = cli.cli("pull", f"{registry.host}/test/corrupt:v1").stdout
            assert f"{_short(descs[0]['digest'])}: Already exists" in out
            assert f"{_short(bad_digest)}: Pull complete" in out
    finally:
        proxy.close()
        _forget(cli, f"{registry.host}/test/corrupt:v1")


# ---------------------------------------------------------------------------------------------
# cancellation and resume


def test_cancelled_pull_is_continued_by_the_next(cli: Daemon, registry: LocalRegistry, busybox_tar: Path,
                                                 tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) on ``dockyard pull`` once bytes are coming in, through a proxy that
    slows the layer down: the daemon's pull stops, leaving no image, no snapshot, no blob —
    only the partial download, which the next pull continues with ``Range: bytes=N-``."""
    payload = os.urandom(6 << 20)
    descs = _push(registry, tmp_path, "test/cancel:v1", [_tar({"payload": payload}, base=busybox_tar)])
    layer = descs[0]["digest"]
    proxy = SlowProxy(registry.host, layer, rate=2 << 20)
    name = f"{proxy.host}/test/cancel:v1"
    before = store_state(cli)
    try:
        with PtyProcess(_cli_argv(cli, "pull", name), cli.env, cols=160) as pty:
            pty.expect(b"Downloading")
            pty.proc.send_signal(signal.SIGINT)
            assert pty.wait() == 130
        ingest = _ingest(cli, layer)
        _wait_unlocked(ingest / "lock")  # the daemon's pull is over
        kept = (ingest / "data").stat().st_size
        assert 0 < kept < descs[0]["size"]
        assert store_state(cli) == before  # no image, no blob, no snapshot
        assert not _extract_snapshots(cli)
        cli.cli("image", "prune", "-f")
        proxy.rate = None
        out = cli.cli("pull", name).stdout
        assert f"Status: Downloaded newer image for {name}" in out
        gets = [rng for line, rng in proxy.requests if line.startswith("GET") and f"/blobs/{layer} " in line]
        assert gets[0] == "" and len(gets) == 2, gets
        assert gets[1].startswith("bytes=") and int(gets[1][6:].rstrip("-")) >= kept, gets
        assert not ingest.exists()
        assert _payload_of(cli, name, "/payload") == payload
        assert cli.cli("run", "--rm", name, "echo", "resumed").stdout == "resumed\n"
    finally:
        proxy.close()
        _forget(cli, name)


# ---------------------------------------------------------------------------------------------
# pull --all-tags


@pytest.mark.parametrize("kind", CLIS)
def test_pull_all_tags(cli: Daemon, registry: LocalRegistry, busybox_tar: Path, tmp_path: Path, kind: str) -> None:
    """``pull -a`` sends no tag: the daemon pulls every tag, each with its own "Pulling from"
    and "Digest:", then one status line for the repository, as docker does."""
    run = cli.client(kind)
    repo = f"{registry.host}/test/alltags-{kind}"
    base = _tar({}, base=busybox_tar)
    _push(registry, tmp_path, f"test/alltags-{kind}:v1", [base])
    _push(registry, tmp_path, f"test/alltags-{kind}:v2", [base, _tar({"v2": b"two"})])
    try:
        out = run("pull", "-a", repo).stdout
        assert f"v1: Pulling from {repo}" in out and f"v2: Pulling from {repo}" in out, out
        assert out.count("Digest: sha256:") == 2 and out.count("Status: ") == 1, out
        assert f"Status: Downloaded newer image for {repo}\n" in out
        assert out.splitlines()[-1] == repo
        tags = cli.cli("images", "--format", "{{.Tag}}", repo).stdout.split()
        assert sorted(tags) == ["v1", "v2"]
        assert run("run", "--rm", f"{repo}:v2", "cat", "/v2").stdout == "two"
        again = run("pull", "--all-tags", repo).stdout
        assert f"Status: Image is up to date for {repo}\n" in again
        res = run("pull", "-a", f"{repo}:v1", check=False)
        assert res.returncode != 0 and "tag can't be used with --all-tags/-a" in res.stderr
        res = run("pull", "-a", f"{registry.host}/test/nosuchrepo", check=False)
        assert res.returncode == 1 and "repository does not exist" in res.stderr, res.stderr
    finally:
        _forget(cli, f"{repo}:v1")
        _forget(cli, f"{repo}:v2")


# ---------------------------------------------------------------------------------------------
# layer formats


@pytest.mark.parametrize(("compression", "copy_args", "media_type"), [
    ("gzip", [], "application/vnd.oci.image.layer.v1.tar+gzip"),
    ("zstd", ["--dest-compress-format", "zstd"], "application/vnd.oci.image.layer.v1.tar+zstd"),
    ("none", ["--preserve-digests"], "application/vnd.oci.image.layer.v1.tar"),
])
def test_layer_compressions(cli: Daemon, registry: LocalRegistry, busybox_tar: Path, tmp_path: Path,
                            compression: str, copy_args: list[str], media_type: str) -> None:
    text = os.urandom(32).hex()
    repo_tag = f"test/{compression}:v1"
    # a base layer of its own: skopeo would reuse a gzip copy of a layer it has pushed before
    base = _tar({"id": text.encode()}, base=busybox_tar)
    descs = _push(registry, tmp_path, repo_tag, [base, _tar({"text": text.encode()})], *copy_args)
    assert [d["mediaType"] for d in descs] == [media_type, media_type]
    name = f"{registry.host}/{repo_tag}"
    try:
        assert "Pull complete" in cli.cli("pull", name).stdout
        assert cli.cli("run", "--rm", name, "cat", "/text").stdout == text
    finally:
        _forget(cli, name)


def test_gzip_is_decompressed_by_isal() -> None:
    """python-isal's igzip (several times zlib's speed) is what gzip layers go through when
    it is installed."""
    isal_igzip = pytest.importorskip("isal.igzip")
    from dockyard.archive import compression

    assert compression._gzip is isal_igzip


# ---------------------------------------------------------------------------------------------
# the CLI's progress display


def test_progress_bars_on_a_terminal_plain_lines_elsewhere(cli: Daemon, registry: LocalRegistry, busybox_tar: Path,
                                                            tmp_path: Path) -> None:
    """On a terminal, docker's bars rewritten in place (cursor up, erase line); off one, a
    plain line per event with no escape codes and no progress lines, as docker prints."""
    descs = _push(registry, tmp_path, "test/bars:v1", [_tar({}, base=busybox_tar), _tar({"p": os.urandom(3 << 20)})])
    name = f"{registry.host}/test/bars:v1"
    _forget(cli, name)
    try:
        with PtyProcess(_cli_argv(cli, "pull", name), cli.env, cols=160) as pty:
            seen = pty.expect(f"Status: Downloaded newer image for {name}".encode())
            assert pty.wait() == 0
            tty_out = seen + pty.output
        assert b"\x1b[2K" in tty_out and re.search(rb"\x1b\[\d+A", tty_out), tty_out
        assert re.search(rb"Downloading \[=*>? *\] +[\d.]+[kMG]?B/", tty_out), tty_out
        assert re.search(rb"Extracting \[=*>? *\]", tty_out), tty_out
        _forget(cli, name)
        plain = cli.cli("pull", name).stdout
        assert "\x1b" not in plain and "\r" not in plain
        lines = plain.splitlines()
        assert lines[0] == f"v1: Pulling from {registry.host}/test/bars"
        assert lines[-1] == name
        for i, desc in enumerate(descs):
            mine = [line.split(": ", 1)[1] for line in lines if line.startswith(_short(desc["digest"]) + ": ")]
            if i == 0:  # busybox's layer: its blob or its snapshot may be there from an earlier test
                assert len(set(mine)) == len(mine) and all(m in DOCKER_ORDER or m == "Already exists" for m in mine)
                continue
            assert mine == ["Pulling fs layer", "Verifying Checksum", "Download complete", "Pull complete"], mine
        assert _short(descs[1]["digest"]) + ": Pull complete" in lines
    finally:
        _forget(cli, name)


def test_daemon_killed_while_unpacking(registry: LocalRegistry, busybox_tar: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon dies (SIGKILL, crash point ``pull:unpacking``) with a layer half
    downloaded and half unpacked: started again, it removes the extraction; the partial
    download stays and the next pull continues it."""
    from tests.conftest import _stop_and_check, start_daemon

    descs = _push(registry, tmp_path, "test/crash:v1", [_tar({"payload": os.urandom(4 << 20)}, base=busybox_tar)])
    layer = descs[0]
    assert layer["size"] >= UNPACK_IN_WORKER  # unpacked by a worker process, which must die too
    proxy = SlowProxy(registry.host, layer["digest"], hold_after=layer["size"] // 2)
    name = f"{proxy.host}/test/crash:v1"
    monkeypatch.setenv("DOCKYARD_CRASH_AT", "pull:unpacking")
    d = start_daemon(tmp_path / "d")
    monkeypatch.delenv("DOCKYARD_CRASH_AT")
    try:
        d.cli("pull", name, check=False)
        assert d.proc.wait(timeout=60) == -9, "the daemon did not die at its crash point"
        d.proc.returncode = 0  # killed on purpose: the second daemon is the one checked
        _wait_no_workers(d.root)
        assert _extract_snapshots(d)  # what the killed daemon left ...
        kept = (_ingest(d, layer["digest"]) / "data").stat().st_size
        assert kept > 0
        d = start_daemon(d.root)
        assert not _extract_snapshots(d)  # ... removed at the start
        assert d.cli("images", "-q").stdout == ""
        proxy.release()
        d.cli("pull", name)
        gets = [rng for line, rng in proxy.requests if line.startswith("GET") and f"/blobs/{layer['digest']} " in line]
        assert len(gets) == 2 and int(gets[1].removeprefix("bytes=").rstrip("-")) >= kept, gets
        assert d.cli("run", "--rm", name, "echo", "ok").stdout == "ok\n"
    finally:
        proxy.close()
        _stop_and_check(d)


def test_concurrent_pulls_share_a_download(cli: Daemon, registry: LocalRegistry, busybox_tar: Path,
                                           tmp_path: Path) -> None:
    """A second pull of an image whose layer a first pull is downloading waits for that
    download ("Waiting") instead of failing on the ingest in use; both complete."""
    descs = _push(registry, tmp_path, "test/shared:v1", [_tar({}, base=busybox_tar), _tar({"p": os.urandom(3 << 20)})])
    slow = descs[1]
    proxy = SlowProxy(registry.host, slow["digest"], hold_after=slow["size"] // 2)
    name = f"{proxy.host}/test/shared:v1"
    try:
        with _watched_pull(cli, name) as first:
            proxy.wait_held()  # the first pull holds the layer's ingest
            with _watched_pull(cli, name) as second:
                seen = _read_until(second, f"{_short(slow['digest'])}: Waiting\n", "the second pull did not wait")
                proxy.release()
                out1, err1 = first.communicate(timeout=120)
                out2, err2 = second.communicate(timeout=120)
        assert first.returncode == 0 and second.returncode == 0, (err1, err2)
        assert f"{_short(slow['digest'])}: Pull complete" in out1
        assert f"{_short(slow['digest'])}: Pull complete" in "".join(seen) + out2
        gets = [line for line, _ in proxy.requests if line.startswith("GET") and f"/blobs/{slow['digest']} " in line]
        assert len(gets) == 1  # downloaded once
        assert cli.cli("run", "--rm", name, "echo", "shared").stdout == "shared\n"
        assert not _extract_snapshots(cli)
    finally:
        proxy.close()
        _forget(cli, name)
