"""Runtime benchmark: create + start + wait + delete of busybox `true`, dockyard-runtime
side by side with runc on the same bundle, plus what a running container costs on the host
beyond its own processes.

    sudo python bench/bench_runtime.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.bundles import make_bundle, runtime_argv, runtime_env  # noqa: E402


def time_runs(argv_for: callable, runs: int, env: dict[str, str]) -> list[float]:
    out = []
    for i in range(runs):
        argv = argv_for(f"bench-{os.getpid()}-{i}")
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        out.append(time.perf_counter() - start)
    return out


def split_lifecycle(base: list[str], bundle: Path, runs: int, env: dict[str, str]) -> list[float]:
    """create, start, wait for exit, delete as four commands (what an engine does)."""
    out = []
    for i in range(runs):
        cid = f"bench-split-{os.getpid()}-{i}"
        start = time.perf_counter()
        subprocess.run([*base, "create", "--bundle", str(bundle), cid], env=env, check=True)
        pid = int(subprocess.run([*base, "state", cid], env=env, check=True, capture_output=True, text=True)
                  .stdout.split('"pid":')[1].split(",")[0])
        fd = os.pidfd_open(pid)
        subprocess.run([*base, "start", cid], env=env, check=True)
        import select

        select.select([fd], [], [], 30)
        os.close(fd)
        subprocess.run([*base, "delete", cid], env=env, check=True)
        out.append(time.perf_counter() - start)
    return out


_IN_PROCESS = """
import statistics, sys, time
from dockyard.runtime.container import Runtime
rt = Runtime(sys.argv[1], delegate=False)
times = []
for i in range(int(sys.argv[3])):
    start = time.perf_counter()
    assert rt.run(f"warm-{i}", sys.argv[2]) == 0
    times.append(time.perf_counter() - start)
print(" ".join(str(t) for t in times))
"""


def in_process(root: Path, bundle: Path, runs: int, env: dict[str, str]) -> list[float]:
    """Runtime.run from one warm, single-threaded Python process: how the engine's
    supervisor will start containers (no interpreter start-up per container)."""
    out = subprocess.run([sys.executable, "-S", "-c", _IN_PROCESS, str(root), str(bundle), str(runs)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return [float(x) for x in out.split()]


def host_side_pss(marker: str) -> tuple[int, int]:
    """(processes, PSS kB) of host processes whose command line has ``marker``."""
    count = pss = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if marker.encode() not in cmd or int(pid) == os.getpid():
                continue
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
            count += 1
        except OSError:
            continue
    return count, pss


def idle_cost(base: list[str], bundle: Path, env: dict[str, str], n: int, marker: str) -> tuple[int, int]:
    """Start n idle containers detached, measure what stays on the host besides them."""
    ids = [f"idle-{os.getpid()}-{i}" for i in range(n)]
    for cid in ids:
        subprocess.run([*base, "run", "-d", "--bundle", str(bundle), cid], env=env, check=True)
    try:
        return host_side_pss(marker)
    finally:
        for cid in ids:
            subprocess.run([*base, "delete", "-f", cid], env=env, check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dockyard-rt-bench-"))
    env = runtime_env()
    rows = []
    try:
        bundle = make_bundle(work, ["true"])
        ours = runtime_argv(work / "dy-state")
        runc = ["runc", "--root", str(work / "runc-state")]
        # a subreaper parent makes both runtimes' containers children of this process
        results = {
            "dockyard-runtime run": time_runs(lambda c: [*ours, "run", "--bundle", str(bundle), c], args.runs, env),
            "dockyard-runtime create/start/wait/delete": split_lifecycle(ours, bundle, args.runs, env),
            "dockyard Runtime.run in a warm process": in_process(work / "warm-state", bundle, args.runs, env),
        }
        if shutil.which("runc"):
            results["runc run"] = time_runs(lambda c: [*runc, "run", "--bundle", str(bundle), c], args.runs, env)
            results["runc create/start/wait/delete"] = split_lifecycle(runc, bundle, args.runs, env)
        for name, values in results.items():
            rows.append((name, statistics.median(values) * 1000, min(values) * 1000))
        sleeper = make_bundle(work, ["sleep", "3600"])
        procs, pss = idle_cost(ours, sleeper, env, 10, "dockyard.runtime")
        print(f"# 10 idle containers: {procs} dockyard-runtime processes stay on the host, {pss} kB PSS in all")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"| runtime: busybox `true` ({args.runs} runs) | median ms | min ms |")
    print("| --- | --- | --- |")
    for name, med, low in rows:
        print(f"| {name} | {med:.1f} | {low:.1f} |")


if __name__ == "__main__":
    main()
