"""dockyard.containers.config and names: docker's merge rules, defaults, validation
messages, container names; plus ocispec's pure parts (user resolution, env, seccomp)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from dockyard.containers import names
from dockyard.containers.config import (
    merge_image,
    normalize_create,
    parse_security_opts,
    parse_signal,
)
from dockyard.containers.ocispec import container_env, docker_seccomp_to_oci, resolve_user
from dockyard.errors import InvalidArgument


def create(body: dict[str, Any] | None = None, image: dict[str, Any] | None = None, **hc: Any):
    full = {"Image": "busybox", "Cmd": ["true"], **(body or {})}
    if hc:
        full["HostConfig"] = hc
    return normalize_create(full, image or {}, container_id="0123456789abcdef" * 4, swap_limit=True,
                            ncpus=2, available_cpus="0-1")


# --------------------------------------------------------------------------- merge rules

IMAGE = {
    "Entrypoint": ["/entry"], "Cmd": ["default-arg"], "Env": ["PATH=/img/bin", "A=img", "B=img"],
    "WorkingDir": "/srv", "User": "app", "Labels": {"a": "img", "b": "img"},
    "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}, "StopSignal": "SIGQUIT",
    "OnBuild": ["RUN echo"],
}

MERGES = [
    # (request, field, expected)
    ({}, "Entrypoint", ["/entry"]),
    ({}, "Cmd", ["default-arg"]),
    ({"Cmd": ["x"]}, "Cmd", ["x"]),
    ({"Cmd": ["x"]}, "Entrypoint", ["/entry"]),
    ({"Entrypoint": ["/other"]}, "Entrypoint", ["/other"]),
    ({"Entrypoint": ["/other"]}, "Cmd", None),  # a new entrypoint drops the image's Cmd
    ({"Entrypoint": ["/other"], "Cmd": ["y"]}, "Cmd", ["y"]),
    ({"Entrypoint": [""], "Cmd": ["sh"]}, "Entrypoint", [""]),
    ({"Entrypoint": [""], "Cmd": ["sh"]}, "Cmd", ["sh"]),
    ({}, "Env", ["PATH=/img/bin", "A=img", "B=img"]),
    ({"Env": ["A=req", "C=req"]}, "Env", ["A=req", "C=req", "PATH=/img/bin", "B=img"]),
    ({}, "WorkingDir", "/srv"),
    ({"WorkingDir": "/work/../w//x/"}, "WorkingDir", "/w/x"),
    ({}, "User", "app"),
    ({"User": "1000:1000"}, "User", "1000:1000"),
    ({"Labels": {"b": "req", "c": "req"}}, "Labels", {"a": "img", "b": "req", "c": "req"}),
    ({"ExposedPorts": {"443/tcp": {}}}, "ExposedPorts", {"80/tcp": {}, "443/tcp": {}}),
    ({"Volumes": {"/v": {}}}, "Volumes", {"/data": {}, "/v": {}}),
    ({}, "StopSignal", "SIGQUIT"),
    ({"StopSignal": "SIGUSR1"}, "StopSignal", "SIGUSR1"),
    ({}, "OnBuild", None),
]


@pytest.mark.parametrize(("request_cfg", "key", "expected"), MERGES)
def test_merge_rules(request_cfg: dict[str, Any], key: str, expected: Any) -> None:
    body = {"Image": "img", **request_cfg}
    res = normalize_create(body, IMAGE, swap_limit=True)
    assert res.config[key] == expected


def test_healthcheck_merge() -> None:
    image = {"Healthcheck": {"Test": ["CMD", "check"], "Interval": 5, "Retries": 3}, "Cmd": ["x"]}
    cfg = merge_image({"Healthcheck": {"Interval": 9}}, image)
    assert cfg["Healthcheck"] == {"Test": ["CMD", "check"], "Interval": 9, "Retries": 3}
    assert merge_image({}, image)["Healthcheck"] == image["Healthcheck"]
    assert merge_image({"Healthcheck": {"Test": ["NONE"]}}, image)["Healthcheck"]["Test"] == ["NONE"]


def test_defaults_as_inspect_shows() -> None:
    res = create()
    hc = res.host_config
    assert hc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert hc["ShmSize"] == 67108864
    assert hc["NetworkMode"] == "default" and hc["IpcMode"] == "private"
    assert hc["MemorySwap"] == 0 and hc["PidsLimit"] is None
    assert "/proc/kcore" in hc["MaskedPaths"] and "/proc/sys" in hc["ReadonlyPaths"]
    cfg = res.config
    assert cfg["Hostname"] == "0123456789ab"
    assert cfg["Image"] == "busybox" and cfg["Labels"] == {} and cfg["Tty"] is False


def test_memory_swap_defaults() -> None:
    assert create(Memory=64 << 20).host_config["MemorySwap"] == 128 << 20
    assert create(Memory=64 << 20, MemorySwap=-1).host_config["MemorySwap"] == -1
    res = normalize_create({"Image": "b", "Cmd": ["x"], "HostConfig": {"Memory": 64 << 20}}, {}, swap_limit=False)
    assert res.host_config["MemorySwap"] == -1
    assert "swap limit" in res.warnings[0]


def test_pids_limit_zero_and_negative_mean_unlimited() -> None:
    assert create(PidsLimit=0).host_config["PidsLimit"] is None
    assert create(PidsLimit=-1).host_config["PidsLimit"] is None
    assert create(PidsLimit=10).host_config["PidsLimit"] == 10


def test_privileged_clears_masked_paths() -> None:
    hc = create(Privileged=True).host_config
    assert hc["MaskedPaths"] is None and hc["ReadonlyPaths"] is None


# --------------------------------------------------------------------------- validation

ERRORS = [
    ({"Image": "bad image"}, {}, "invalid reference format"),
    ({"Image": "busybox:a:b"}, {}, "invalid reference format"),
    ({"Image": ""}, {}, "invalid reference format"),
    ({"Cmd": None}, {}, "No command specified"),
    ({"WorkingDir": "rel"}, {}, "the working directory 'rel' is invalid, it needs to be an absolute path"),
    ({"StopSignal": "SIGFOO"}, {}, "Invalid signal: SIGFOO"),
    ({"StopSignal": "99"}, {}, "Invalid signal: 99"),
    ({}, {"Memory": 1024}, "Minimum memory limit allowed is 6MB"),
    ({}, {"Memory": 64 << 20, "MemorySwap": 32 << 20},
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    ({}, {"MemorySwap": 32 << 20}, "You should always set the Memory limit when using Memoryswap limit, see usage"),
    ({}, {"MemoryReservation": 1024}, "Minimum memory reservation allowed is 6MB"),
    ({}, {"Memory": 10 << 20, "MemoryReservation": 20 << 20},
     "Minimum memory limit can not be less than memory reservation limit, see usage"),
    ({}, {"NanoCpus": 10**9, "CpuPeriod": 50000}, "Conflicting options: Nano CPUs and CPU Period cannot both be set"),
    ({}, {"NanoCpus": 10**9, "CpuQuota": 50000}, "Conflicting options: Nano CPUs and CPU Quota cannot both be set"),
    ({}, {"NanoCpus": 3 * 10**9}, "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"),
    ({}, {"CpuPeriod": 10}, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"),
    ({}, {"CpuQuota": 10}, "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    ({}, {"CpusetCpus": "a-b"}, "Invalid value a-b for cpuset cpus"),
    ({}, {"CpusetCpus": "3-1"}, "Invalid value 3-1 for cpuset cpus"),
    ({}, {"CpusetCpus": "0-7"}, "Requested CPUs are not available - requested 0-7, available: 0-1"),
    ({}, {"CpusetMems": "x"}, "Invalid value x for cpuset mems"),
    ({}, {"CapAdd": ["CAP_FOO"]}, 'invalid CapAdd: unknown capability: "CAP_FOO"'),
    ({}, {"CapDrop": ["bar"]}, 'invalid CapDrop: unknown capability: "CAP_BAR"'),
    ({}, {"Ulimits": [{"Name": "nofiles", "Soft": 1, "Hard": 1}]}, "invalid ulimit type: nofiles"),
    ({}, {"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]},
     "ulimit soft limit must be less than or equal to hard limit: 10 > 5"),
    ({}, {"SecurityOpt": ["bogus"]}, 'invalid --security-opt 1: "bogus"'),
    ({}, {"SecurityOpt": ["bogus=1"]}, 'invalid --security-opt 2: "bogus=1"'),
    ({}, {"SecurityOpt": ["no-new-privileges=maybe"]}, 'invalid --security-opt 2: "no-new-privileges=maybe"'),
    ({}, {"SecurityOpt": ["seccomp=default"]}, "Decoding seccomp profile failed: "),
    ({}, {"AutoRemove": True, "RestartPolicy": {"Name": "always"}},
     "conflicting options: cannot specify both --restart and --rm"),
    ({}, {"RestartPolicy": {"Name": "sometimes"}},
     "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"),
    ({}, {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}},
     "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
    ({}, {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}},
     "invalid restart policy: maximum retry count cannot be negative"),
    ({}, {"OomScoreAdj": 1001}, "Invalid value 1001, range for oom score adj is [-1000, 1000]"),
    ({}, {"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
    ({}, {"ShmSize": -1}, "SHM size can not be less than 0"),
    ({}, {"IpcMode": "weird"}, "invalid IPC mode: weird"),
]


@pytest.mark.parametrize(("body", "hc", "message"), ERRORS)
def test_validation_messages(body: dict[str, Any], hc: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        create(body, **hc)
    if message.endswith(": "):
        assert str(err.value).startswith(message)
    else:
        assert str(err.value) == message


def test_valid_values_pass() -> None:
    res = create({"StopSignal": "SIGRTMIN+3"}, RestartPolicy={"Name": "on-failure", "MaximumRetryCount": 2},
                 CpusetCpus="0,1", NanoCpus=1_500_000_000, SecurityOpt=["label=disable", "no-new-privileges"],
                 Ulimits=[{"Name": "nofile", "Soft": 10, "Hard": 20}], CapAdd=["ALL"], CapDrop=["net_raw"])
    hc = res.host_config
    assert res.config["StopSignal"] == "SIGRTMIN+3"
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert hc["NanoCpus"] == 1_500_000_000 and hc["CpusetCpus"] == "0,1"
    assert hc["Ulimits"] == [{"Name": "nofile", "Soft": 10, "Hard": 20}]
    assert create(AutoRemove=True, RestartPolicy={"Name": "no"}).host_config["AutoRemove"] is True


@pytest.mark.parametrize(("raw", "num"), [("SIGTERM", 15), ("term", 15), ("9", 9), ("SIGKILL", 9)])
def test_parse_signal(raw: str, num: int) -> None:
    assert parse_signal(raw) == num


def test_security_opts_parsed() -> None:
    sec = parse_security_opts(["no-new-privileges:true", "seccomp=unconfined", "label=type:x"])
    assert sec.no_new_privileges and sec.seccomp == "unconfined" and sec.labels == ["type:x"]
    prof = {"defaultAction": "SCMP_ACT_ALLOW"}
    assert parse_security_opts(["seccomp=" + json.dumps(prof)]).seccomp == prof


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["web", "/web", "a.b_c-d", "X9"])
def test_valid_names(name: str) -> None:
    assert names.validate_name(name) == "/" + name.lstrip("/")


@pytest.mark.parametrize("name", ["a", "-web", "_x", "we b", "a/b", "ümlaut", ""])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        names.validate_name(name)
    assert str(err.value) == f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"


def test_random_names() -> None:
    rng = random.Random(1)
    for i in range(200):
        name = names.random_name(i % 3, rng)
        assert re.fullmatch(r"[a-z]+_[a-z]+\d?", name), name
        names.validate_name(name)
    assert len(names.ADJECTIVES) >= 40 and len(names.SURNAMES) >= 40
    taken = {names.random_name(0, random.Random(7))}
    assert names.generate_name(taken, rng=random.Random(7)) not in taken


# --------------------------------------------------------------------------- ocispec helpers


def rootfs(tmp_path: Path, passwd: str, group: str) -> str:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(passwd)
    (tmp_path / "etc" / "group").write_text(group)
    return str(tmp_path)


def test_resolve_user(tmp_path: Path) -> None:
    root = rootfs(tmp_path, "root:x:0:0::/root:/bin/sh\nweb:x:100:101::/var/www:/bin/sh\n",
                  "root:x:0:\nwww:x:101:\nextra:x:500:web,other\nfoo:x:600:\n")
    u = resolve_user(root, "web")
    assert (u.uid, u.gid, u.additional_gids, u.home) == (100, 101, [500], "/var/www")
    u = resolve_user(root, "web:foo")
    assert (u.uid, u.gid, u.additional_gids) == (100, 600, [])
    u = resolve_user(root, "4321")
    assert (u.uid, u.gid, u.home) == (4321, 0, "/")
    u = resolve_user(root, "100:7", ["foo", "42"])
    assert (u.uid, u.gid, u.additional_gids) == (100, 7, [600, 42])
    assert resolve_user(root, "").home == "/root"
    with pytest.raises(InvalidArgument, match="unable to find user ghost: no matching entries in passwd file"):
        resolve_user(root, "ghost")
    with pytest.raises(InvalidArgument, match="unable to find group nog: no matching entries in group file"):
        resolve_user(root, "web:nog")


def test_resolve_user_stays_in_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("evil:x:7:7::/:/bin/sh\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to("../../../outside")
    with pytest.raises(InvalidArgument, match="unable to find user evil"):
        resolve_user(str(root), "evil")
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to(str(outside))
    with pytest.raises(InvalidArgument, match="unable to find user evil"):
        resolve_user(str(root), "evil")


def test_container_env_order() -> None:
    env = container_env({"Env": ["PATH=/x", "A=1"], "Tty": True}, "h", "/root")
    assert env == ["PATH=/x", "HOSTNAME=h", "TERM=xterm", "A=1", "HOME=/root"]
    assert container_env({"Env": ["HOME=/h"]}, "h", "/root")[-1] == "HOME=/h"


def test_docker_seccomp_profile_conversion() -> None:
    import os

    machine = os.uname().machine
    arch = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}.get(machine, "SCMP_ARCH_X86_64")
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [{"architecture": arch, "subArchitectures": ["SCMP_ARCH_X86"]},
                    {"architecture": "SCMP_ARCH_MIPS", "subArchitectures": []}],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["chown"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_CHOWN"]}},
        ],
    }
    out = docker_seccomp_to_oci(profile, ["CAP_CHOWN"])
    assert out["architectures"] == [arch, "SCMP_ARCH_X86"]
    assert [r["names"] for r in out["syscalls"]] == [["read", "write"]]
    out = docker_seccomp_to_oci(profile, ["CAP_SYS_ADMIN"])
    assert [r["names"] for r in out["syscalls"]] == [["read", "write"], ["mount"], ["chown"]]


def test_published_ports_warn_in_host_mode() -> None:
    body = {"Image": "b", "Cmd": ["x"], "HostConfig": {"NetworkMode": "host", "PortBindings": {"80/tcp": [{}]}}}
    res = normalize_create(body, {}, swap_limit=True)
    assert "Published ports are discarded when using host network mode" in res.warnings
    res = normalize_create({**body, "HostConfig": {"PortBindings": {"80/tcp": [{}]}}}, {}, swap_limit=True)
    assert not res.warnings
