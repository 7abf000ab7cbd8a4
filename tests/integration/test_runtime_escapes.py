"""Escape regression tests: each one is a known container-breakout class, run through
dockyard-runtime on the real kernel.

- CVE-2024-21626 class: a host fd leaked into the container (cwd /proc/self/fd/N).
- CVE-2019-5736 class: the runtime's own executable reachable through /proc/<pid>/exe.
- masked paths, privileged syscalls (mount, umount, modules, reboot, clock), no_new_privileges.
- CVE-2021-30465 class: a mount destination that is a symlink in the rootfs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.bundles import HostSnapshot, RuntimeCLI, default_config, make_bundle

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


@pytest.fixture
def rt(tmp_path: Path):
    cli = RuntimeCLI(tmp_path / "state")
    snapshot = HostSnapshot()
    yield cli
    left = cli.cleanup()
    assert not left, f"containers left behind: {left}"
    assert snapshot.new_mounts() == []


def run(rt: RuntimeCLI, bundle: Path, **kw) -> subprocess.CompletedProcess:
    return rt("run", "--bundle", bundle, rt.new_id(), check=False, **kw)


def test_leaked_host_fd_is_unreachable(rt: RuntimeCLI, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.mkdir()
    (secret / "flag").write_text("host data")
    script = (
        "for n in $(seq 0 255); do (cd /proc/self/fd/$n 2>/dev/null && ls flag 2>/dev/null && echo ESCAPED $n); done;"
        "echo cwd=$(readlink /proc/1/cwd); for f in /proc/1/fd/*; do echo link=$f:$(readlink $f); done"
    )
    bundle = make_bundle(tmp_path, ["sh", "-c", script])
    fd = os.open(secret, os.O_RDONLY | os.O_DIRECTORY)
    try:
        res = run(rt, bundle, pass_fds=(fd,))
    finally:
        os.close(fd)
    assert res.returncode == 0, res.stderr
    assert "ESCAPED" not in res.stdout and "flag" not in res.stdout
    assert "cwd=/" in res.stdout
    links = [line for line in res.stdout.splitlines() if line.startswith("link=")]
    assert links and not any("host-secret" in line for line in links), links
    # PID 1 holds its stdio and at most the shell's own transient fds, none of them a host dir
    assert all(line.split(":", 1)[1] in ("", "/dev/null") or "pipe:" in line or "(deleted)" in line
               or line.split(":", 1)[1].startswith("/proc") for line in links), links


def test_runtime_executable_not_reachable_during_exec(rt: RuntimeCLI, tmp_path: Path) -> None:
    """While execs happen, a scanner inside the container looks at every process's exe:
    it must never see (or be able to open) the host's Python interpreter."""
    scan = "while :; do for p in /proc/[0-9]*; do readlink $p/exe; (exec 3>>$p/exe) 2>/dev/null && echo WRITABLE $p; done; done"
    bundle = make_bundle(tmp_path, ["sh", "-c", f"({scan}) > /tmp/scan.log 2>/dev/null & exec sleep 3600"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", bundle, cid)
    for _ in range(15):
        assert rt("exec", cid, "true", check=False).returncode == 0
    out = rt("exec", cid, "sh", "-c", "kill %1 2>/dev/null; cat /tmp/scan.log").stdout
    assert "WRITABLE" not in out
    assert "python" not in out, [line for line in out.splitlines() if "python" in line][:5]
    rt("delete", "-f", cid)


def test_masked_paths_and_privileged_calls_denied(rt: RuntimeCLI, tmp_path: Path) -> None:
    host_pidns = os.readlink("/proc/self/ns/pid")
    script = f"""
    [ "$(readlink /proc/self/ns/pid)" = "{host_pidns}" ] && {{ echo SAME-PIDNS; exit 99; }}
    echo keys=$(wc -c < /proc/keys) timer=$(wc -c < /proc/timer_list) firmware=$(ls /sys/firmware | wc -l)
    mount -t tmpfs t /mnt 2>/dev/null; echo mount=$?
    umount /proc 2>/dev/null; echo umount=$?
    insmod /nonexistent.ko 2>/dev/null; echo insmod=$?
    date -s 2001-01-01 >/dev/null 2>&1; [ "$(date +%Y)" = 2001 ]; echo date=$?  # busybox exits 0 either way
    echo 1 > /proc/sys/kernel/panic 2>/dev/null; echo procsys=$?
    reboot -f 2>/dev/null; echo reboot=$?
    """
    bundle = make_bundle(tmp_path, ["sh", "-c", script])
    res = run(rt, bundle)
    assert res.returncode == 0, res.stdout + res.stderr
    values = dict(kv.split("=") for kv in res.stdout.split())
    assert values["keys"] == "0" and values["timer"] == "0" and values["firmware"] == "0"
    for call in ("mount", "umount", "insmod", "date", "procsys", "reboot"):
        assert values[call] != "0", f"{call} succeeded inside the container"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the setuid probe")
@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges_stops_setuid(rt: RuntimeCLI, tmp_path: Path, nnp: bool) -> None:
    src = tmp_path / "euid.c"
    src.write_text('#include <stdio.h>\n#include <unistd.h>\nint main(){printf("euid=%d\\n",(int)geteuid());return 0;}\n')
    bundle = make_bundle(tmp_path, ["/euid"], process={"user": {"uid": 1000, "gid": 1000}, "noNewPrivileges": nnp})
    probe = bundle / "rootfs" / "euid"
    subprocess.run(["gcc", "-static", "-O1", "-o", str(probe), str(src)], check=True)
    os.chown(probe, 0, 0)
    os.chmod(probe, 0o4755)
    res = run(rt, bundle)
    assert res.returncode == 0, res.stderr
    # without no_new_privileges the setuid bit works (the probe can tell the difference)
    assert res.stdout.strip() == ("euid=1000" if nnp else "euid=0")


@pytest.mark.parametrize("link", ["/", "../../../..", "{outside}"])
def test_symlinked_mount_destination_stays_inside(rt: RuntimeCLI, tmp_path: Path, link: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("untouched")
    src = tmp_path / "src"
    src.mkdir()
    (src / "payload").write_text("mounted")
    mounts = default_config(["true"])["mounts"] + [
        {"destination": "/evil/target", "type": "bind", "source": str(src), "options": ["rbind", "ro"]},
    ]
    bundle = make_bundle(tmp_path, ["sh", "-c", "cat /evil/target/payload; ls /evil/target"], mounts=mounts)
    (bundle / "rootfs" / "evil").symlink_to(link.format(outside=outside))
    before = sorted(os.listdir(outside))
    res = run(rt, bundle)
    assert res.returncode == 0, res.stderr
    assert "mounted" in res.stdout
    assert sorted(os.listdir(outside)) == before
    assert (outside / "sentinel").read_text() == "untouched"
    assert not (outside / "target").exists()
