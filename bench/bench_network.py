"""Networking benchmarks (issue 8), on a dockyardd of its own with its own default bridge:

1. ``run --rm busybox true`` on the default bridge against ``--network none``, interleaved
   (goal: the bridge costs at most 20 ms more; docker: 307 ms against 238 ms);
2. TCP throughput into a container through a published port (127.0.0.1 and the host's own
   address, DNAT in nftables, no proxy) against straight to the container's address
   (goal: >= 90 % of direct).

    sudo python bench/bench_network.py [--runs 15] [--mib 512] [--cli venv|module]

docker is not measured side by side here: a dockerd with its bridge rewrites the host's
iptables (FORWARD policy DROP), which would change what dockyard's traffic meets.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_engine import launch, parse_args, shut_down, timed  # noqa: E402

BRIDGE = "dybench0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def _host_address() -> str | None:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if not line.split()[1].startswith(("dy", "br-", "veth", "docker")):
            return line.split()[3].split("/")[0]
    return None


def send(host: str, port: int, size: int) -> float:
    """Seconds to push ``size`` bytes to a sink that reads them all, until it closes."""
    chunk = b"\0" * (1 << 20)
    for _ in range(500):  # the sink (nc in a loop) is back to listening within moments
        try:
            s = socket.create_connection((host, port), timeout=30)
            break
        except ConnectionRefusedError:
            time.sleep(0.01)
    start = time.perf_counter()
    with s:
        left = size
        while left > 0:
            s.sendall(chunk[:left])
            left -= len(chunk)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    args = parse_args(ap, "bench_network")
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-network-", dir=args.workdir))
    rows: list[tuple[str, str]] = []
    proc = None
    env = dict(os.environ)
    try:
        proc, _host, cli, env, _note = launch(work, args.cli, "--bridge", BRIDGE)

        # (1) run latency, bridge against none, interleaved
        for mode in ("bridge", "none"):
            timed([*cli, "run", "--rm", "--network", mode, "busybox", "true"], env)  # warm-up
        times: dict[str, list[float]] = {"bridge": [], "none": []}
        for _ in range(args.runs):
            for mode in ("bridge", "none"):
                times[mode].append(timed([*cli, "run", "--rm", "--network", mode, "busybox", "true"], env))
        med = {m: statistics.median(t) * 1e3 for m, t in times.items()}
        for mode in ("bridge", "none"):
            rows.append((f"run --rm --network {mode} busybox true ({args.runs} runs)",
                         f"median {med[mode]:.1f} ms, min {min(times[mode]) * 1e3:.1f} ms"))
        rows.append(("default bridge minus --network none (medians)", f"{med['bridge'] - med['none']:+.1f} ms"))

        # (2) TCP throughput: published port against the container's own address
        port = _free_port()
        cid = subprocess.run([*cli, "run", "-d", "-p", f"{port}:5001", "busybox", "sh", "-c",
                              "while true; do nc -l -p 5001 > /dev/null; done"], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        info = json.loads(subprocess.run([*cli, "inspect", cid], env=env, check=True, capture_output=True,
                                         text=True).stdout)[0]
        direct = info["NetworkSettings"]["IPAddress"]
        targets = {"direct to the container": (direct, 5001), "published, 127.0.0.1": ("127.0.0.1", port)}
        host_ip = _host_address()
        if host_ip:
            targets[f"published, host address {host_ip}"] = (host_ip, port)
        size = args.mib << 20
        for addr, p in targets.values():  # warm-up, and the sink is listening
            deadline = time.monotonic() + 10
            while True:
                try:
                    send(addr, p, 1 << 20)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        rates: dict[str, list[float]] = {k: [] for k in targets}
        for _ in range(args.rounds):
            for what, (addr, p) in targets.items():
                rates[what].append(size / send(addr, p, size) / (1 << 20))
        base = statistics.median(rates["direct to the container"])
        for what, r in rates.items():
            rows.append((f"TCP {args.mib} MiB, {what} ({args.rounds} rounds)",
                         f"median {statistics.median(r):.0f} MiB/s ({statistics.median(r) / base * 100:.0f} % of direct)"))
        subprocess.run([*cli, "rm", "-f", cid], env=env, check=True, stdout=subprocess.DEVNULL)
    finally:
        left_containers, left, _still = shut_down(proc, work, env)
    assert not left_containers, f"containers left behind: {left_containers}"
    assert not left, f"mounts left behind under {work}: {left}"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert BRIDGE not in links and BRIDGE not in tables, "the bench's bridge or table was left behind"

    print("| measurement | result |")
    print("| --- | --- |")
    for what, result in rows:
        print(f"| {what} | {result} |")


if __name__ == "__main__":
    main()
