"""Image store benchmarks: import and load of a ~1 GB root filesystem with ~60k files, and
CLI start-up. Runs dockyard (and docker / podman when a daemon for them is reachable) side by
side and prints a Markdown table for bench/RESULTS.md.

    sudo python bench/bench_images.py [--files 60000] [--size-mb 1024] [--workdir /var/tmp]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def make_rootfs_tar(path: Path, files: int, size_mb: int) -> None:
    """A tar of ``files`` files spread over 300 dirs, ``size_mb`` MiB in total: mostly small
    files with a few large ones, like a distribution image."""
    rng = random.Random(42)
    budget = size_mb << 20
    large = [budget // 20] * 10  # half the bytes in 10 files
    small_total = budget - sum(large)
    small = max(1, small_total // max(1, files - len(large)))
    block = rng.randbytes(1 << 20)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in range(300):
            info = tarfile.TarInfo(f"usr/share/d{d:03d}")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(info)
        for i in range(files):
            size = large[i] if i < len(large) else small
            info = tarfile.TarInfo(f"usr/share/d{i % 300:03d}/f{i:06d}")
            info.size, info.mode, info.mtime = size, 0o644, 1_700_000_000
            tf.addfile(info, _Repeat(block, size, i))


class _Repeat:
    """Deterministic file content: the random block, cycled from a per-file offset (so
    files differ and compress like real data would not)."""

    def __init__(self, block: bytes, size: int, salt: int) -> None:
        self.block, self.left, self.pos = block, size, (salt * 4099) % len(block)

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        out = bytearray()
        while len(out) < n:
            chunk = self.block[self.pos:self.pos + n - len(out)]
            out += chunk
            self.pos = (self.pos + len(chunk)) % len(self.block)
        self.left -= n
        return bytes(out)


def timed(cmd: list[str], env: dict[str, str], stdin: Path | None = None) -> float:
    start = time.perf_counter()
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as f:
        subprocess.run(cmd, env=env, stdin=f, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def start_dockyardd(root: Path) -> tuple[subprocess.Popen, str]:
    sock = root / "d.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard.daemon.main", "--data-root", str(root / "data"),
         "--exec-root", str(root / "exec"), "-H", f"unix://{sock}"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=REPO,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if b"ready" in line:
            break
    return proc, f"unix://{sock}"


def docker_engine_available(binary: str) -> bool:
    if shutil.which(binary) is None:
        return False
    return subprocess.run([binary, "info"], capture_output=True).returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=60000)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--workdir", default="/var/tmp")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-", dir=args.workdir))
    rows: list[tuple[str, str, float]] = []
    try:
        rootfs = work / "rootfs.tar"
        make_rootfs_tar(rootfs, args.files, args.size_mb)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cli = [sys.executable, "-m", "dockyard.cli.main"]
        proc, host = start_dockyardd(work / "a")
        try:
            rows.append(("dockyard", "import", timed([*cli, "-H", host, "import", "-", "bench:1"], env, rootfs)))
            archive = work / "bench-image.tar"
            subprocess.run([*cli, "-H", host, "save", "-o", str(archive), "bench:1"], env=env, check=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
        proc, host = start_dockyardd(work / "b")
        try:
            rows.append(("dockyard", "load", timed([*cli, "-H", host, "load", "-i", str(archive)], env)))
            rows.append(("dockyard", "--help (CLI start-up)", min(timed([*cli, "--help"], env) for _ in range(5))))
            rows.append(("dockyard", "images (start-up + 1 request)", min(timed([*cli, "-H", host, "images"], env) for _ in range(5))))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
        # what the kernel and this disk cost on their own: GNU tar unpacking the same tar
        untar = work / "untar"
        untar.mkdir()
        rows.append(("GNU tar -x (baseline)", "unpack the same rootfs", timed(["tar", "-xf", str(rootfs), "-C", str(untar), "--numeric-owner"], env)))
        for engine in ("docker", "podman"):
            if docker_engine_available(engine):
                rows.append((engine, "import", timed([engine, "import", "-", "bench:1"], env, rootfs)))
                subprocess.run([engine, "rmi", "bench:1"], capture_output=True)
                rows.append((engine, "load", timed([engine, "load", "-i", str(archive)], env)))
                subprocess.run([engine, "rmi", "bench:1"], capture_output=True)
            else:
                print(f"# {engine}: no engine reachable here, not measured", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"| engine | operation ({args.files} files, {args.size_mb} MiB) | seconds |")
    print("| --- | --- | --- |")
    for engine, op, secs in rows:
        print(f"| {engine} | {op} | {secs:.2f} |")


if __name__ == "__main__":
    main()
