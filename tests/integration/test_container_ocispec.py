"""build_spec against the real kernel: a docker create body -> normalize_create ->
build_spec -> config.json in a busybox bundle -> ``dockyard-runtime run``; the container
reports what it sees (cgroup files, /proc/self/status, id, ulimit, env). Every test checks
that no container, cgroup, mount or process is left behind."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.containers.config import normalize_create
from dockyard.containers.ocispec import build_spec
from dockyard.errors import InvalidArgument
from dockyard.runtime.capabilities import CAPS, DEFAULT_CAPS, all_caps
from tests.fixtures.bundles import HostSnapshot, RuntimeCLI, cgroup_dirs, make_rootfs

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]

V1 = not os.path.exists("/sys/fs/cgroup/cgroup.controllers")


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[RuntimeCLI]:
    snap = HostSnapshot()
    cli = RuntimeCLI(tmp_path / "state")
    yield cli
    left = cli.cleanup()
    assert left == [], f"containers left behind: {left}"
    for cid in cli.ids:
        assert cgroup_dirs(cid) == [], f"cgroups left behind for {cid}"
        assert [d for d in cgroup_dirs("dockyard") if os.path.exists(os.path.join(d, cid))] == []
    assert snap.new_mounts(under=tmp_path) == [], "mounts left behind"
    assert snap.new_processes(marker=str(tmp_path), ids=cli.ids) == [], "processes left behind"


def bundle_for(tmp_path: Path, rt: RuntimeCLI, body: dict[str, Any], image: dict[str, Any] | None = None,
               rootfs_hook: Any = None) -> tuple[str, Path]:
    cid = rt.new_id("dyo")
    bundle = tmp_path / cid
    bundle.mkdir()
    rootfs = make_rootfs(bundle / "rootfs")
    if rootfs_hook:
        rootfs_hook(rootfs)
    res = normalize_create({"Image": "busybox", **body}, image or {"Cmd": ["sh"]}, container_id=cid)
    spec = build_spec(cid, res.config, res.host_config, str(rootfs))
    (bundle / "config.json").write_text(json.dumps(spec, indent=1))
    return cid, bundle


def run(tmp_path: Path, rt: RuntimeCLI, script: str, hc: dict[str, Any] | None = None, **body: Any) -> str:
    cid, bundle = bundle_for(tmp_path, rt, {"Cmd": ["sh", "-c", script], "HostConfig": hc or {}, **body})
    res = rt("run", "--bundle", bundle, cid, check=False)
    assert res.returncode == 0, f"exit {res.returncode}: {res.stdout} {res.stderr}"
    return res.stdout


def status(out: str, key: str) -> str:
    for line in out.splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{key} not in {out!r}")


def mask(names: list[str]) -> int:
    m = 0
    for n in names:
        m |= 1 << CAPS[n]
    return m


def host_bounding() -> int:
    with open("/proc/self/status") as f:
        return int(status(f.read(), "CapBnd"), 16)


# --------------------------------------------------------------------------- process


def test_env_cwd_hostname_user_default(rt: RuntimeCLI, tmp_path: Path) -> None:
    out = run(tmp_path, rt, "echo H=$(hostname); echo PWD=$(pwd); env; id -u",
              Env=["FOO=bar"], WorkingDir="/tmp", Hostname="boxy")
    lines = out.splitlines()
    assert "H=boxy" in lines and "PWD=/tmp" in lines
    assert "FOO=bar" in lines and "HOSTNAME=boxy" in lines
    assert any(line.startswith("PATH=/usr/local/sbin:") for line in lines)
    assert "HOME=/root" in lines
    assert lines[-1] == "0"


def test_default_hostname_is_short_id(rt: RuntimeCLI, tmp_path: Path) -> None:
    cid, bundle = bundle_for(tmp_path, rt, {"Cmd": ["hostname"]})
    assert rt("run", "--bundle", bundle, cid).stdout.strip() == cid[:12]


def test_user_nobody_from_rootfs_passwd(rt: RuntimeCLI, tmp_path: Path) -> None:
    def hook(rootfs: Path) -> None:
        (rootfs / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\nextra:x:4000:nobody\n")

    cid, bundle = bundle_for(tmp_path, rt, {"Cmd": ["sh", "-c", "id -u; id -g; id -G; echo $HOME"], "User": "nobody"},
                             rootfs_hook=hook)
    out = rt("run", "--bundle", bundle, cid).stdout.split("\n")
    assert out[0] == "65534" and out[1] == "65534"
    assert set(out[2].split()) == {"65534", "4000"}
    assert out[3] == "/home"


def test_user_numeric_and_group_add(rt: RuntimeCLI, tmp_path: Path) -> None:
    out = run(tmp_path, rt, "id -u; id -g; id -G", hc={"GroupAdd": ["nogroup", "777"]}, User="1234:55")
    lines = out.split("\n")
    assert lines[0] == "1234" and lines[1] == "55"
    assert {"65534", "777"} <= set(lines[2].split())


@pytest.mark.parametrize("target", ["host-file", "/etc/passwd"])
def test_passwd_symlink_does_not_read_host_file(rt: RuntimeCLI, tmp_path: Path, target: str) -> None:
    host_file = tmp_path / "host-passwd"
    host_file.write_text("hostonlyuser:x:4242:4242::/:/bin/sh\n")
    link_to = str(host_file) if target == "host-file" else "/etc/passwd"
    host_user = "hostonlyuser"
    if target == "/etc/passwd":
        names = [ln.split(":")[0] for ln in Path("/etc/passwd").read_text().splitlines() if ln and ln[0] != "#"]
        host_user = next((n for n in names if n not in ("root", "nobody")), "")
        if not host_user:
            pytest.skip("the host's /etc/passwd has no user besides root and nobody")

    def hook(rootfs: Path) -> None:
        (rootfs / "etc" / "passwd").unlink()
        (rootfs / "etc" / "passwd").symlink_to(link_to)

    cid = rt.new_id("dyo")
    rootfs = make_rootfs(tmp_path / cid / "rootfs")
    hook(rootfs)
    res = normalize_create({"Image": "busybox", "Cmd": ["id"], "User": host_user}, {})
    with pytest.raises(InvalidArgument, match=f"unable to find user {host_user}: no matching entries in passwd file"):
        build_spec(cid, res.config, res.host_config, str(rootfs))


# --------------------------------------------------------------------------- security


def test_cap_add_drop_in_capeff(rt: RuntimeCLI, tmp_path: Path) -> None:
    out = run(tmp_path, rt, "cat /proc/self/status", hc={"CapAdd": ["NET_ADMIN"], "CapDrop": ["chown", "CAP_KILL"]})
    want = [c for c in DEFAULT_CAPS if c not in ("CAP_CHOWN", "CAP_KILL")] + ["CAP_NET_ADMIN"]
    assert int(status(out, "CapEff"), 16) == mask(want)
    assert int(status(out, "CapBnd"), 16) == mask(want)


def test_privileged_full_bounding_no_seccomp(rt: RuntimeCLI, tmp_path: Path) -> None:
    out = run(tmp_path, rt, "cat /proc/self/status; ls /dev | wc -l",
              hc={"Privileged": True})
    assert int(status(out, "CapBnd"), 16) == mask(all_caps()) & host_bounding()
    assert status(out, "Seccomp") == "0"


def test_default_seccomp_and_nnp(rt: RuntimeCLI, tmp_path: Path) -> None:
    out = run(tmp_path, rt, "cat /proc/self/status")
    assert status(out, "Seccomp") == "2" and status(out, "NoNewPrivs") == "0"
    out = run(tmp_path, rt, "cat /proc/self/status", hc={"SecurityOpt": ["no-new-privileges"]})
    assert status(out, "NoNewPrivs") == "1"
    out = run(tmp_path, rt, "cat /proc/self/status", hc={"SecurityOpt": ["no-new-privileges:false"]})
    assert status(out, "NoNewPrivs") == "0"


def test_seccomp_unconfined(rt: RuntimeCLI, tmp_path: Path) -> None:
    out = run(tmp_path, rt, "cat /proc/self/status", hc={"SecurityOpt": ["seccomp=unconfined"]})
    assert status(out, "Seccomp") == "0"


def test_seccomp_profile_content(rt: RuntimeCLI, tmp_path: Path) -> None:
    # what the docker CLI sends for --security-opt seccomp=profile.json: the file's content
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    out = run(tmp_path, rt, "mkdir /tmp/x 2>&1; cat /proc/self/status",
              hc={"SecurityOpt": ["seccomp=" + json.dumps(profile)]})
    assert status(out, "Seccomp") == "2"
    assert "Operation not permitted" in out


def test_read_only_root(rt: RuntimeCLI, tmp_path: Path) -> None:
    out = run(tmp_path, rt, "touch /x 2>&1; echo rc=$?; touch /dev/shm/ok && echo shm-ok", hc={"ReadonlyRootfs": True})
    assert "Read-only file system" in out and "rc=1" in out and "shm-ok" in out


def test_masked_paths(rt: RuntimeCLI, tmp_path: Path) -> None:
    out = run(tmp_path, rt, "test -c /proc/timer_list && echo timer-list-masked; echo 1 > /proc/sys/kernel/domainname; echo rc=$?")
    assert "timer-list-masked" in out and "rc=1" in out
    out = run(tmp_path, rt, "test -f /proc/timer_list && echo timer-list-visible; true", hc={"Privileged": True})
    assert "timer-list-visible" in out


def test_ulimits(rt: RuntimeCLI, tmp_path: Path) -> None:
    out = run(tmp_path, rt, "ulimit -Sn; ulimit -Hn; ulimit -Su",
              hc={"Ulimits": [{"Name": "nofile", "Soft": 512, "Hard": 2048}, {"Name": "nproc", "Soft": 77, "Hard": 77}]})
    assert out.split() == ["512", "2048", "77"]


# --------------------------------------------------------------------------- resources


def cg_read(controller: str, name: str) -> str:
    return f"cat /sys/fs/cgroup/{controller}/{name}" if V1 else f"cat /sys/fs/cgroup/{name}"


@pytest.mark.skipif(not V1, reason="file names checked are cgroup v1's")
def test_cgroup_limits(rt: RuntimeCLI, tmp_path: Path) -> None:
    hc = {"Memory": 64 << 20, "MemoryReservation": 32 << 20, "PidsLimit": 42, "NanoCpus": 1_500_000_000,
          "CpuShares": 512, "CpusetCpus": "0"}
    script = "; ".join([
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        "cat /sys/fs/cgroup/memory/memory.soft_limit_in_bytes",
        "cat /sys/fs/cgroup/pids/pids.max",
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us",
        "cat /sys/fs/cgroup/cpu/cpu.cfs_period_us",
        "cat /sys/fs/cgroup/cpu/cpu.shares",
        "cat /sys/fs/cgroup/cpuset/cpuset.cpus",
        "cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo no-memsw",
    ])
    # the cgroup namespace roots each controller at the container's cgroup
    out = run(tmp_path, rt, script, hc=hc).split()
    assert out[:7] == [str(64 << 20), str(32 << 20), "42", "150000", "100000", "512", "0"]
    assert out[7] in (str(128 << 20), "no-memsw")


@pytest.mark.skipif(not V1, reason="file names checked are cgroup v1's")
def test_cpu_quota_period_and_swap(rt: RuntimeCLI, tmp_path: Path) -> None:
    out = run(tmp_path, rt, "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us; "
              "cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo no-memsw",
              hc={"CpuQuota": 25000, "CpuPeriod": 50000, "Memory": 32 << 20, "MemorySwap": 96 << 20}).split()
    assert out[:2] == ["25000", "50000"]
    assert out[2] in (str(96 << 20), "no-memsw")


# --------------------------------------------------------------------------- namespaces


def test_network_none_and_host(rt: RuntimeCLI, tmp_path: Path) -> None:
    host_net = os.readlink("/proc/self/ns/net")
    out = run(tmp_path, rt, "readlink /proc/self/ns/net; ls /sys/class/net", hc={"NetworkMode": "none"})
    assert out.split()[0] != host_net and out.split()[1:] == ["lo"]
    out = run(tmp_path, rt, "readlink /proc/self/ns/net; hostname", hc={"NetworkMode": "host"})
    assert out.split()[0] == host_net
    assert out.split()[1] == os.uname().nodename


def test_default_network_is_private(rt: RuntimeCLI, tmp_path: Path) -> None:
    out = run(tmp_path, rt, "readlink /proc/self/ns/net")
    assert out.strip() != os.readlink("/proc/self/ns/net")


def test_pid_and_uts_host(rt: RuntimeCLI, tmp_path: Path) -> None:
    out = run(tmp_path, rt, "readlink /proc/self/ns/pid; readlink /proc/self/ns/uts; echo $$",
              hc={"PidMode": "host", "UTSMode": "host"}).split()
    assert out[0] == os.readlink("/proc/self/ns/pid") and out[1] == os.readlink("/proc/self/ns/uts")
    assert out[2] != "1"


def test_shm_size(rt: RuntimeCLI, tmp_path: Path) -> None:
    out = run(tmp_path, rt, "df -k /dev/shm | tail -1", hc={"ShmSize": 16 << 20})
    assert out.split()[1] == str(16 << 10)
