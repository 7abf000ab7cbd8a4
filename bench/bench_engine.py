"""Engine benchmark (issue 4, Performance): `run --rm busybox true` latency (dockyard CLI and,
when installed, the official docker CLI against dockyardd), 20 x `run -d busybox sleep 3600`
one after another, the host-side PSS of 20 idle containers beyond their own processes, and
CLI start-up. Starts its own dockyardd on a temporary root and removes everything it made.

    sudo python bench/bench_engine.py [--runs 15] [--idle 20]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.engine import mounts_under, stop_supervisor  # noqa: E402


def start_daemon(root: Path, env: dict[str, str], python: str, *extra: str) -> tuple[subprocess.Popen, str]:
    exec_root = root / "exec"
    sock = exec_root / "dockyard.sock"
    logf = open(root / "daemon.log", "wb")  # noqa: SIM115 - the drain thread owns it
    proc = subprocess.Popen(
        [python, "-m", "dockyard.daemon.main", "--data-root", str(root / "data"),
         "--exec-root", str(exec_root), "-H", f"unix://{sock}", *extra],
        stdout=logf, stderr=subprocess.PIPE, env=env, cwd=root,
    )
    assert proc.stderr is not None
    lines = []
    for raw in proc.stderr:
        lines.append(raw.decode(errors="replace"))
        if "ready" in lines[-1]:
            break
    else:
        proc.wait()
        raise RuntimeError("dockyardd did not start:\n" + "".join(lines))

    def _drain(stream=proc.stderr, sink=logf) -> None:
        for chunk in stream:
            sink.write(chunk)
            sink.flush()

    threading.Thread(target=_drain, daemon=True).start()
    return proc, f"unix://{sock}"


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def pss_parts(pid: int) -> dict[str, int]:
    """Pss_Anon (the process's own heap: what it costs) and Pss_File (shared code, split
    with every process mapping the same files, so it depends on what else runs)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("Pss_Anon", "Pss_File", "Pss_Shmem"):
                out[key] = int(line.split()[1])
    return out


def install_venv(path: Path) -> str:
    """A venv with this tree installed (not editable), as the README's quick start does."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(path / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(REPO)],
                   check=True, stdout=subprocess.DEVNULL)
    return str(path / "bin" / "dockyard")


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(p))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def in_container(pid: int) -> bool:
    """A container's processes live in their own mount namespace (readlink of
    /proc/PID/root does not show the bundle path after pivot_root, so that is not used)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    except OSError:
        return True  # gone: not a host-side process


def launch(work: Path, cli_kind: str, *extra: str) -> tuple[subprocess.Popen, str, list[str], dict[str, str], str]:
    """A dockyardd on ``work`` (``extra``: its flags) with busybox imported: (process, host,
    the CLI's argv, its environment, a note saying which CLI). ``cli_kind`` "venv": daemon,
    supervisor and CLI as installed (with bytecode) in a fresh venv, nothing of the tree on
    PYTHONPATH (its modules would shadow the installed ones); "module": from this tree."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if cli_kind == "venv":
        dockyard = install_venv(work / "venv")
        env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        proc, host = start_daemon(work, env, str(work / "venv" / "bin" / "python"), *extra)
        cli = [dockyard, "-H", host]
        note = f"dockyardd, its supervisor and the CLI (`{dockyard}`) from a venv install of this tree"
    else:
        proc, host = start_daemon(work, env, sys.executable, *extra)
        cli = [sys.executable, "-m", "dockyard.cli.main", "-H", host]
        note = f"CLI: `{sys.executable} -m dockyard.cli.main` (site-packages .pth files included)"
    mk = subprocess.Popen([str(REPO / "contrib" / "mkrootfs-busybox"), "-"], stdout=subprocess.PIPE)
    subprocess.run([*cli, "import", "-c", 'CMD ["sh"]', "-", "busybox"], stdin=mk.stdout, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    assert mk.stdout is not None
    mk.stdout.close()
    assert mk.wait() == 0
    return proc, host, cli, env, note


def shut_down(proc: subprocess.Popen | None, work: Path, env: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """Stop the daemon and its supervisor, unmount what a failed run left, remove ``work``:
    (containers left, mounts left, mounts still there after unmounting)."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    left_containers = stop_supervisor(work / "exec", env)
    left = mounts_under(work)
    if left:
        from dockyard.mount import unmount_all

        for bundle in (work / "exec" / "bundles").glob("*"):
            unmount_all(str(bundle))
    still = mounts_under(work)
    if not still:  # never rmtree across a mount
        shutil.rmtree(work, ignore_errors=True)
    return left_containers, left, still


def parse_args(ap: argparse.ArgumentParser, script: str) -> argparse.Namespace:
    """The options every benchmark here takes (--workdir, --cli) added to ``ap``'s own, parsed;
    exits unless run as root."""
    ap.add_argument("--workdir", default="/var/tmp")
    ap.add_argument("--cli", choices=["venv", "module"], default="venv",
                    help="venv: dockyardd and the `dockyard` script of a fresh venv install, as a user runs "
                         "them (default); module: `python -m dockyard...` from this tree")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit(f"{script}: run as root (sudo python bench/{script}.py)")
    return args


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--idle", type=int, default=20)
    args = parse_args(ap, "bench_engine")
    cgroups_before = set(glob.glob("/sys/fs/cgroup/*/dockyard"))
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-engine-", dir=args.workdir))
    rows: list[tuple[str, str]] = []
    notes: list[str] = []
    proc = None
    env = dict(os.environ)
    try:
        proc, host, cli, env, note = launch(work, args.cli)
        notes.append(note)

        # (1) dockyard run --rm busybox true
        timed([*cli, "run", "--rm", "busybox", "true"], env)  # warm-up (starts the supervisor)
        t = [timed([*cli, "run", "--rm", "busybox", "true"], env) for _ in range(args.runs)]
        rows.append((f"dockyard run --rm busybox true ({args.runs} runs)",
                     f"median {statistics.median(t) * 1e3:.1f} ms, min {min(t) * 1e3:.1f} ms"))

        # (2) the official docker CLI against dockyardd
        docker = shutil.which("docker")
        if docker:
            denv = {**env, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "0", "DOCKER_CONFIG": str(work / "docker-config")}
            timed([docker, "run", "--rm", "busybox", "true"], denv)
            t = [timed([docker, "run", "--rm", "busybox", "true"], denv) for _ in range(args.runs)]
            version = subprocess.run([docker, "version", "--format", "{{.Client.Version}}"], env=denv,
                                     capture_output=True, text=True).stdout.strip()
            rows.append((f"docker CLI {version} -> dockyardd: run --rm busybox true ({args.runs} runs)",
                         f"median {statistics.median(t) * 1e3:.1f} ms, min {min(t) * 1e3:.1f} ms"))
        else:
            notes.append("docker CLI not installed: not measured")

        # (3) N x run -d busybox sleep 3600, one after another
        sup = int((work / "exec" / "supervisor.pid").read_text())
        time.sleep(2)  # idle: the supervisor trims its heap 0.5 s after its last request
        pss_empty = sum(pss_kb(p) for p in descendants(sup) if not in_container(p))
        ids = []
        start = time.perf_counter()
        for _ in range(args.idle):
            out = subprocess.run([*cli, "run", "-d", "busybox", "sleep", "3600"], env=env, check=True,
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True).stdout
            ids.append(out.strip())
        total = time.perf_counter() - start
        rows.append((f"{args.idle} x run -d busybox sleep 3600 (sequential)",
                     f"{total:.2f} s total, {total / args.idle * 1e3:.0f} ms each"))

        # (4) host-side PSS with N idle containers running: idle, i.e. once the supervisor
        # has trimmed its heap (0.5 s after the last request)
        time.sleep(2)
        host_side = [p for p in descendants(sup) if not in_container(p)]
        sup_pss = sum(pss_kb(p) for p in host_side)
        comms: dict[str, list[int]] = {}
        for p in host_side:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                name = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:60]
            comms.setdefault(name, []).append(pss_kb(p))
        for name, kbs in comms.items():
            notes.append(f"host-side: {len(kbs)} x `{name}`: {sum(kbs) / len(kbs) / 1024:.2f} MB PSS each")
        for p in host_side:
            parts = pss_parts(p)
            notes.append(f"pid {p}: " + ", ".join(f"{k} {v / 1024:.2f} MB" for k, v in parts.items()))
        rows.append((f"supervisor PSS / {args.idle} idle containers ({len(host_side)} host-side process(es))",
                     f"{sup_pss / args.idle / 1024:.2f} MB each ({sup_pss / 1024:.1f} MB total)"))
        rows.append((f"supervisor PSS added per idle container (PSS at {args.idle} minus PSS at 0, / {args.idle})",
                     f"{(sup_pss - pss_empty) / args.idle:.0f} kB each"))
        rows.append(("dockyardd PSS (shared by all containers)", f"{pss_kb(proc.pid) / 1024:.1f} MB"))

        # (5) CLI start-up
        t = [timed([*cli[:-2], "--help"], env) for _ in range(5)]  # cli without "-H host"
        rows.append(("dockyard --help (CLI start-up, 5 runs)",
                     f"median {statistics.median(t) * 1e3:.1f} ms, min {min(t) * 1e3:.1f} ms"))

        subprocess.run([*cli, "rm", "-f", *ids], env=env, check=True, stdout=subprocess.DEVNULL)
    finally:
        left_containers, left, still = shut_down(proc, work, env)
    assert not left_containers, f"containers left behind: {left_containers}"
    assert not left, f"mounts left behind under {work}: {left}"
    assert not still and not work.exists(), f"{work} not removed"
    assert proc is not None
    assert proc.returncode == 0, f"dockyardd exited with {proc.returncode}"
    # a daemon stopping with no container left gives its /dockyard parent cgroup back
    left_cgroups = sorted(set(glob.glob("/sys/fs/cgroup/*/dockyard")) - cgroups_before)
    assert not left_cgroups, f"parent cgroups left behind: {left_cgroups}"

    print("| measurement | result |")
    print("| --- | --- |")
    for what, result in rows:
        print(f"| {what} | {result} |")
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
