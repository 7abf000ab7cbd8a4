"""Differential tests: the same bundle through runc (the oracle) and dockyard-runtime; a
checker inside the container reports what it sees, and the reports must match."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.bundles import HostSnapshot, RuntimeCLI, cgroup_dirs, make_bundle

CHECKER = Path(__file__).resolve().parent.parent / "fixtures" / "checker.sh"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is installed by the test command (apt)"),
]


def host_namespaces() -> str:
    return " ".join(
        f"{ns}:{os.readlink(f'/proc/self/ns/{ns}').split('[')[1].rstrip(']')}"
        for ns in ("pid", "mnt", "uts", "ipc", "net", "cgroup", "user")
    )


def parse_report(text: str) -> dict[str, Any]:
    report: dict[str, Any] = {"mount": set(), "rlimit": set()}
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key in ("mount", "rlimit"):
            report[key].add(value)
        else:
            report[key] = value
    assert report.get("end") == "ok", f"checker did not finish:\n{text}"
    return report


def run_both(tmp_path: Path, **overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the checker under runc and under dockyard-runtime with the same config."""
    reports = []
    snapshot = HostSnapshot()
    for name in ("runc", "dockyard"):
        cid = f"diff-{name}-{uuid.uuid4().hex[:8]}"
        linux = {**overrides.get("linux", {}), "cgroupsPath": f"/dockyard-test-{cid}"}
        bundle = make_bundle(
            tmp_path / name, ["sh", "/checker.sh", host_namespaces()],
            **{**overrides, "linux": linux},
        )
        shutil.copy(CHECKER, bundle / "rootfs" / "checker.sh")
        if name == "runc":
            argv = ["runc", "--root", str(tmp_path / "runc-state"), "run", "--bundle", str(bundle), cid]
            res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        else:
            rt = RuntimeCLI(tmp_path / "dockyard-state")
            res = rt("run", "--bundle", bundle, cid, check=False)
        assert res.returncode == 0, f"{name}: {res.stderr}"
        reports.append(parse_report(res.stdout))
        assert not cgroup_dirs(f"dockyard-test-{cid}"), f"{name} left its cgroup"
    assert snapshot.new_mounts() == []
    return reports[0], reports[1]


def assert_same(runc: dict[str, Any], ours: dict[str, Any], ignore: tuple[str, ...] = ()) -> None:
    keys = sorted((set(runc) | set(ours)) - set(ignore))
    diffs = []
    for k in keys:
        a, b = runc.get(k), ours.get(k)
        if a == b:
            continue
        if isinstance(a, set) and isinstance(b, set):
            diffs.append(f"{k}: only runc={sorted(a - b)} only dockyard={sorted(b - a)}")
        else:
            diffs.append(f"{k}: runc={a!r} dockyard={b!r}")
    assert not diffs, "reports differ:\n" + "\n".join(diffs)


def test_docker_defaults(tmp_path: Path) -> None:
    runc, ours = run_both(tmp_path)
    assert runc["CapBnd"] == "00000000a80425fb"  # docker's default 14
    assert runc["Seccomp"] == "2" and runc["ns.pid"] == "private"
    assert int(runc["lo"].split()[-1], 16) & 0x1, runc["lo"]  # loopback is up in a new netns
    assert_same(runc, ours)


def test_user_groups_rlimits_and_process(tmp_path: Path) -> None:
    runc, ours = run_both(
        tmp_path,
        hostname="differential",
        process={
            "user": {"uid": 65534, "gid": 65534, "additionalGids": [10, 20], "umask": 0o077},
            "cwd": "/tmp",
            "noNewPrivileges": True,
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}, {"type": "RLIMIT_NPROC", "soft": 50, "hard": 60}],
            "oomScoreAdj": 100,
            "env": ["PATH=/bin:/usr/bin", "A=b"],
        },
    )
    assert runc["uid"] == "65534" and runc["groups"] == "65534 10 20" and runc["umask"] == "0077"
    assert runc["hostname"] == "differential" and runc["NoNewPrivs"] == "1"
    assert_same(runc, ours)


def test_capability_sets(tmp_path: Path) -> None:
    caps = ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]
    runc, ours = run_both(
        tmp_path,
        process={"user": {"uid": 1000, "gid": 1000}, "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps}},
    )
    assert runc["CapAmb"] == "0000000000000401"
    assert_same(runc, ours)


def test_readonly_root_and_mounts(tmp_path: Path) -> None:
    src = tmp_path / "shared-src"
    src.mkdir()
    (src / "file").write_text("x")
    from tests.fixtures.bundles import default_config

    mounts = default_config(["true"])["mounts"] + [
        {"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind", "ro"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]},
    ]
    runc, ours = run_both(tmp_path, root={"path": "rootfs", "readonly": True}, mounts=mounts)
    assert runc["root-writable"] == "no"
    assert any(m.startswith("/data ") for m in runc["mount"])
    assert_same(runc, ours)


def test_cgroup_limits(tmp_path: Path) -> None:
    resources = {"memory": {"limit": 64 << 20, "reservation": 32 << 20}, "pids": {"limit": 100},
                 "cpu": {"shares": 512, "quota": 50000, "period": 100000}}
    runc, ours = run_both(tmp_path, linux={"resources": resources})
    assert_same(runc, ours)


def test_user_namespace() -> None:
    from tests.fixtures.bundles import default_config

    namespaces = default_config(["true"])["linux"]["namespaces"] + [{"type": "user"}]
    maps = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    # the mapped root must be able to reach the bundle: pytest's own tmp dirs are 0700
    base = Path(tempfile.mkdtemp(prefix="dockyard-userns-"))
    try:
        os.chmod(base, 0o755)
        runc, ours = run_both(base, linux={"namespaces": namespaces, "uidMappings": maps, "gidMappings": maps})
    finally:
        shutil.rmtree(base)
    assert runc["ns.user"] == "private" and runc["uid"] == "0"
    assert_same(runc, ours)
