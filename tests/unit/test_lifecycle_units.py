"""The pure parts of the lifecycle additions: event filters and times, stats records from
cgroup v1 and v2 trees (scratch directories laid out like /sys/fs/cgroup), the CLI's stats
figures and event printing, and ``top``'s ps parsing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dockyard.cli import events as cli_events
from dockyard.cli import stats as cli_stats
from dockyard.daemon import stats
from dockyard.daemon.api.events import include, parse_event_time
from dockyard.daemon.top import parse_ps, validate_ps_args
from dockyard.errors import InvalidArgument
from dockyard.runtime.cgroups import open_cgroup


def _event(typ: str, action: str, actor: str, **attrs: str) -> dict:
    return {"Type": typ, "Action": action, "Actor": {"ID": actor, "Attributes": attrs}, "scope": "local",
            "time": 1, "timeNano": 1_000_000_000}


CT = _event("container", "start", "abc123", name="web", image="busybox:latest", tier="front")
IMG = _event("image", "tag", "sha256:feed", name="busybox:v1")
EXEC = _event("container", "exec_start: sh -c true", "abc123", name="web")


@pytest.mark.parametrize(("flt", "ct", "img"), [
    ({}, True, True),
    ({"type": ["container"]}, True, False),
    ({"event": ["start"]}, True, False),
    ({"event": ["stop"]}, False, False),
    ({"container": ["web"]}, True, False),
    ({"container": ["abc"]}, True, False),  # an ID prefix
    ({"container": ["we"]}, True, False),  # docker's fuzzy match: a name prefix too
    ({"container": ["other"]}, False, False),
    ({"image": ["busybox"]}, True, True),  # tags stripped on both sides
    ({"image": ["busybox:latest"]}, True, False),
    ({"image": ["sha256:feed"]}, False, True),
    ({"label": ["tier"]}, True, False),
    ({"label": ["tier=front"]}, True, False),
    ({"label": ["tier=back"]}, False, False),
    ({"label": ["tier", "missing"]}, False, False),  # every label must match
    ({"scope": ["swarm"]}, False, False),
])
def test_event_filters(flt: dict, ct: bool, img: bool) -> None:
    assert include(CT, flt) is ct
    assert include(IMG, flt) is img


def test_event_filter_exec_prefix() -> None:
    assert include(EXEC, {"event": ["exec_start"]})  # docker matches these without the command
    assert not include(EXEC, {"event": ["exec"]})


def test_event_times() -> None:
    now = 1_700_000_000 * 10**9
    assert parse_event_time(None) is None and parse_event_time("") is None
    assert parse_event_time("1700000000", now) == now
    assert parse_event_time("1700000000.5", now) == now + 500_000_000
    assert parse_event_time("1700000000.000000001", now) == now + 1
    assert parse_event_time("10m", now) == now - 600 * 10**9
    assert parse_event_time("1h30m", now) == now - 5400 * 10**9
    assert parse_event_time("-1s", now) == now + 10**9
    assert parse_event_time("2023-11-14T22:13:20Z", now) == now
    with pytest.raises(InvalidArgument):
        parse_event_time("yesterday", now)


def test_cli_timestamps() -> None:
    now = 1_700_000_000.25
    assert cli_events.timestamp("10m", now) == "1699999400"
    assert cli_events.timestamp("2023-11-14T22:13:20.5Z", now) == "1700000000.500000000"
    assert cli_events.timestamp("1700000000", now) == "1700000000"
    assert cli_events.timestamp("0", now) == "0"
    local = cli_events.timestamp("2023-11-14", now)
    assert local == f"{int(time.mktime(time.strptime('2023-11-14', '%Y-%m-%d')))}.000000000"


def test_cli_pretty_event(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        ev = {**CT, "timeNano": 1_700_000_000_123_456_789}
        assert cli_events.pretty(ev) == ("2023-11-14T22:13:20.123456789Z container start abc123 "
                                         "(image=busybox:latest, name=web, tier=front)")
        msg = cli_events.Message({"status": "start", "id": "abc123", "from": "busybox", **CT})
        assert msg.Actor.Attributes["name"] == "web" and msg.TimeNano == 1_000_000_000
        assert list(msg.to_dict())[:4] == ["status", "id", "from", "Type"]
    finally:
        monkeypatch.undo()
        time.tzset()


def test_cli_stats_figures() -> None:
    s = {
        "name": "/web", "id": "f" * 64,
        "cpu_stats": {"cpu_usage": {"total_usage": 3_000, "percpu_usage": [1, 2]}, "system_cpu_usage": 20_000},
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 10_000},
        "memory_stats": {"usage": 10 * 2**20, "limit": 100 * 2**20, "stats": {"total_inactive_file": 2 * 2**20}},
        "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "Write", "value": 10},
                                                       {"op": "Total", "value": 4106}]},
        "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 0}},
        "pids_stats": {"current": 3},
    }
    e = cli_stats.entry("web", s)
    assert e["cpu"] == pytest.approx(40.0)  # 2000/10000 of the machine, times 2 CPUs
    row = cli_stats.row(e, trunc=True)
    assert row == {"Container": "web", "Name": "web", "ID": "f" * 12, "CPUPerc": "40.00%",
                   "MemUsage": "8MiB / 100MiB", "MemPerc": "8.00%", "NetIO": "1.5kB / 0B",
                   "BlockIO": "4.1kB / 10B", "PIDs": "3"}
    v2 = {"usage": 1000, "stats": {"inactive_file": 400}}
    assert cli_stats.memory_usage(v2) == 600
    zero = cli_stats.row(cli_stats.entry("x", stats.empty("/x", "a" * 64)), trunc=True)
    assert (zero["CPUPerc"], zero["MemUsage"], zero["PIDs"]) == ("0.00%", "0B / 0B", "0")


def _write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_stats_sample_cgroup_v1(tmp_path: Path) -> None:
    d = "dockyard/c1"
    _write(tmp_path, f"memory/{d}/memory.usage_in_bytes", "8192\n")
    _write(tmp_path, f"memory/{d}/memory.max_usage_in_bytes", "16384\n")
    _write(tmp_path, f"memory/{d}/memory.limit_in_bytes", "9223372036854771712\n")
    _write(tmp_path, f"memory/{d}/memory.failcnt", "2\n")
    _write(tmp_path, f"memory/{d}/memory.stat", "cache 4096\nrss 4096\ntotal_inactive_file 1024\nswap 0\n")
    _write(tmp_path, f"cpu,cpuacct/{d}/cpuacct.usage", "5000\n")
    _write(tmp_path, f"cpu,cpuacct/{d}/cpuacct.usage_percpu", "3000 2000\n")
    _write(tmp_path, f"cpu,cpuacct/{d}/cpuacct.usage_user", "4000\n")
    _write(tmp_path, f"cpu,cpuacct/{d}/cpuacct.usage_sys", "1000\n")
    _write(tmp_path, f"cpu,cpuacct/{d}/cpu.stat", "nr_periods 3\nnr_throttled 1\nthrottled_time 7\n")
    _write(tmp_path, f"pids/{d}/pids.current", "2\n")
    _write(tmp_path, f"pids/{d}/pids.max", "max\n")
    _write(tmp_path, f"blkio/{d}/blkio.throttle.io_service_bytes_recursive", "8:0 Read 512\n8:0 Write 64\nTotal 576\n")
    _write(tmp_path, f"blkio/{d}/blkio.throttle.io_serviced_recursive", "8:0 Read 1\n8:0 Write 1\nTotal 2\n")
    cg = open_cgroup("/" + d, root=str(tmp_path))
    s = stats.sample(cg, "/web", "id1", mem_total=1 << 30)
    assert s["name"] == "/web" and s["id"] == "id1" and s["preread"] == stats.ZERO_TIME
    assert s["cpu_stats"]["cpu_usage"] == {"total_usage": 5000, "percpu_usage": [3000, 2000],
                                           "usage_in_kernelmode": 1000, "usage_in_usermode": 4000}
    assert s["cpu_stats"]["throttling_data"] == {"periods": 3, "throttled_periods": 1, "throttled_time": 7}
    assert s["cpu_stats"]["online_cpus"] == len([c for c in open("/proc/stat") if c[:3] == "cpu" and c[3].isdigit()])
    mem = s["memory_stats"]
    assert (mem["usage"], mem["max_usage"], mem["failcnt"], mem["limit"]) == (8192, 16384, 2, 1 << 30)
    assert mem["stats"]["total_inactive_file"] == 1024 and mem["stats"]["cache"] == 4096
    assert mem["stats"]["hierarchical_memsw_limit"] == 0  # docker's key set, 0 when the kernel has none
    assert s["pids_stats"] == {"current": 2}  # "max": no limit, omitted as docker's omitempty does
    assert s["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 512}, {"major": 8, "minor": 0, "op": "Write", "value": 64}]
    assert s["blkio_stats"]["sectors_recursive"] == []


def test_stats_sample_cgroup_v2(tmp_path: Path) -> None:
    _write(tmp_path, "cgroup.controllers", "cpu io memory pids\n")
    d = tmp_path / "dockyard" / "c2"
    for name, text in {
        "memory.current": "4096\n", "memory.max": "1048576\n", "memory.events": "low 0\nhigh 0\nmax 1\noom 5\n",
        "memory.stat": "anon 2048\nfile 1024\ninactive_file 512\n",
        "cpu.stat": "usage_usec 30\nuser_usec 20\nsystem_usec 10\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
        "pids.current": "1\n", "pids.max": "100\n", "io.stat": "259:0 rbytes=100 wbytes=200 rios=1 wios=2\n",
    }.items():
        _write(d, name, text)
    cg = open_cgroup("/dockyard/c2", root=str(tmp_path))
    s = stats.sample(cg, "/web", "id2", mem_total=1 << 30)
    assert s["cpu_stats"]["cpu_usage"] == {"total_usage": 30_000, "usage_in_kernelmode": 10_000,
                                           "usage_in_usermode": 20_000}
    mem = s["memory_stats"]
    assert (mem["usage"], mem["limit"], mem["failcnt"]) == (4096, 1048576, 5) and "max_usage" not in mem
    assert mem["stats"]["inactive_file"] == 512 and mem["stats"]["anon"] == 2048 and "total_cache" not in mem["stats"]
    assert s["pids_stats"] == {"current": 1, "limit": 100}
    assert s["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 259, "minor": 0, "op": "read", "value": 100}, {"major": 259, "minor": 0, "op": "write", "value": 200}]
    assert s["blkio_stats"]["io_serviced_recursive"] is None


def test_stats_chain_and_empty() -> None:
    a = stats.empty("/x", "id")
    assert a["memory_stats"] == {} and a["cpu_stats"] == stats.zero_cpu()
    b = stats.chain({"read": "now", "cpu_stats": {"n": 2}}, {"read": "then", "cpu_stats": {"n": 1}})
    assert b["preread"] == "then" and b["precpu_stats"] == {"n": 1}
    total, online = stats.system_cpu()
    assert total > 0 and online == os.cpu_count()


def test_parse_ps() -> None:
    out = ("UID PID PPID LWP C NLWP STIME TTY TIME CMD\n"
           "root 10 1 10 0 2 10:00 ? 00:00:00 sleep 100\n"
           "root - - 11 0 - 10:00 ? 00:00:00 -\n"
           "root 12 1 12 0 1 10:00 ? 00:00:00 other process\n"
           "root - - 13 0 - 10:00 ? 00:00:00 -\n")
    res = parse_ps(out, {10})
    assert res["Titles"][-1] == "CMD"
    assert res["Processes"] == [["root", "10", "1", "10", "0", "2", "10:00", "?", "00:00:00", "sleep 100"],
                                ["root", "-", "-", "11", "0", "-", "10:00", "?", "00:00:00", "-"]]
    validate_ps_args("-o pid=PID,comm")
    with pytest.raises(InvalidArgument, match='specifying "user=PID" is not allowed'):
        validate_ps_args("-o pid,comm -o user=PID")
