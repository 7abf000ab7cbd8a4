"""Container lifecycle additions through the Engine API (docker-py and raw requests):
restart, pause/unpause (the freezer really stops the processes), rename, top, stats
(one-shot, two-sample and streamed, with real figures from a busy container), sizes,
``info`` counts, and ``/events`` (streamed, filtered, since/until, history).

Synchronisation is by API answers and events: ``pause`` answers once the cgroup is frozen,
``wait`` once the exit is recorded, an event stream yields an event once it happened.
The one timed window is the check that a frozen counter does not move.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import Daemon, _stop_and_check, start_daemon

docker = pytest.importorskip("docker")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]

# PID 1 of a pid namespace ignores SIGTERM unless it handles it: these exit 3 on TERM
TRAP = "trap 'exit 3' TERM; echo up; sleep 1000 & wait"
COUNTER = "trap 'exit 3' TERM; i=0; while :; do i=$((i+1)); echo $i > /tmp/count; done"


def _name(prefix: str = "lc") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _rootfs_file(daemon: Daemon, cid: str, path: str) -> Path:
    return daemon.root / "exec" / "bundles" / cid / "rootfs" / path.lstrip("/")


def _counter(f: Path) -> str:
    """The counter the container writes ("" between the truncate and the write of ``echo >``)."""
    return f.read_text().strip() if f.exists() else ""


def _changes(f: Path, old: str, deadline: float) -> str:
    """Wait until the counter shows a value other than ``old``."""
    while True:
        now = _counter(f)
        if now and now != old:
            return now
        assert time.monotonic() < deadline, f"{f} stayed at {old!r}"


def _events(client: docker.DockerClient, since: float, **filters: object) -> list[dict]:
    """The history since ``since`` up to now: the stream ends by itself (``until`` is past)."""
    return list(client.events(since=since, until=time.time() + 0.001, filters=filters or None, decode=True))


# ------------------------------------------------------------------ restart


def test_restart_running_container(client: docker.DockerClient) -> None:
    t0 = time.time()
    ct = client.containers.run("busybox", ["sh", "-c", TRAP], detach=True, name=_name())
    logs = ct.logs(stream=True, follow=True)
    assert next(logs) == b"up\n"
    ct.reload()
    pid, started = ct.attrs["State"]["Pid"], ct.attrs["State"]["StartedAt"]
    ct.restart(timeout=5)
    ct.reload()
    assert ct.status == "running"
    assert ct.attrs["State"]["Pid"] not in (0, pid)
    assert ct.attrs["State"]["StartedAt"] > started
    again = ct.logs(stream=True, follow=True)  # lines are yielded once written
    assert (next(again), next(again)) == (b"up\n", b"up\n")
    again.close()
    actions = [(e["Action"], e["Actor"]["Attributes"].get("signal") or e["Actor"]["Attributes"].get("exitCode"))
               for e in _events(client, t0, container=ct.id)]
    assert actions == [("create", None), ("start", None), ("kill", "15"), ("die", "3"), ("stop", None),
                       ("start", None), ("restart", None)], actions
    ct.remove(force=True)


def test_restart_stopped_and_auto_remove(client: docker.DockerClient) -> None:
    ct = client.containers.create("busybox", ["sh", "-c", TRAP], name=_name())
    ct.restart()  # never started: restart starts it
    ct.reload()
    assert ct.status == "running"
    ct.remove(force=True)
    # --rm: the restart's stop must not remove the container; a later stop does
    auto = client.containers.run("busybox", ["sh", "-c", TRAP], detach=True, auto_remove=True, name=_name())
    auto.restart(timeout=5)
    auto.reload()
    assert auto.status == "running"
    removed = threading.Thread(target=lambda: client.api.wait(auto.id, condition="removed"))
    removed.start()
    auto.stop(timeout=5)
    removed.join(30)
    assert not removed.is_alive()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(auto.id)


def test_restart_unknown_container(client: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.NotFound, match="No such container: nope-"):
        client.api.restart("nope-" + uuid.uuid4().hex[:6])


# ------------------------------------------------------------------ pause / unpause


def test_pause_freezes_processes(client: docker.DockerClient, daemon: Daemon) -> None:
    info0 = client.info()
    ct = client.containers.run("busybox", ["sh", "-c", COUNTER], detach=True, name=_name())
    counter = _rootfs_file(daemon, ct.id, "/tmp/count")
    deadline = time.monotonic() + 30
    _changes(counter, _changes(counter, "", deadline), deadline)  # running: it advances
    ct.pause()
    frozen = _counter(counter)
    time.sleep(0.3)  # an observation window, not synchronisation: nothing may move in it
    assert _counter(counter) == frozen
    ct.reload()
    state = ct.attrs["State"]
    assert (state["Status"], state["Paused"], state["Running"]) == ("paused", True, True)
    (listed,) = client.api.containers(filters={"id": ct.id})
    assert listed["State"] == "paused" and listed["Status"].endswith("(Paused)")
    assert [c["Id"] for c in client.api.containers(filters={"status": "paused", "id": ct.id})] == [ct.id]
    assert client.api.containers(filters={"status": "running", "id": ct.id}) == []
    info = client.info()
    assert info["ContainersPaused"] == info0["ContainersPaused"] + 1
    assert info["ContainersRunning"] == info0["ContainersRunning"]
    with pytest.raises(docker.errors.APIError, match=f"Container {ct.id} is already paused") as e:
        ct.pause()
    assert e.value.status_code == 409
    ct.unpause()
    _changes(counter, frozen, deadline)  # thawed: it moves again
    with pytest.raises(docker.errors.APIError, match=f"Container {ct.id} is not paused") as e:
        ct.unpause()
    assert e.value.status_code == 409
    ct.reload()
    assert ct.attrs["State"]["Status"] == "running" and not ct.attrs["State"]["Paused"]
    # stop of a paused container: thawed so that the stop signal acts (the trap's exit 3)
    ct.pause()
    ct.stop(timeout=10)
    assert ct.wait()["StatusCode"] == 3
    ct.reload()
    assert ct.status == "exited" and not ct.attrs["State"]["Paused"]
    with pytest.raises(docker.errors.APIError, match=f"Container {ct.id} is not running") as e:
        ct.pause()
    assert e.value.status_code == 409
    with pytest.raises(docker.errors.APIError, match=f"Container {ct.id} is not paused"):
        ct.unpause()
    ct.remove()


def test_remove_and_kill_paused(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sleep", "600"], detach=True, name=_name())
    ct.pause()
    with pytest.raises(docker.errors.APIError, match="You cannot remove a paused container") as e:
        ct.remove()
    assert e.value.status_code == 409
    ct.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(ct.id)
    killed = client.containers.run("busybox", ["sleep", "600"], detach=True, name=_name())
    killed.pause()
    killed.kill()
    assert killed.wait()["StatusCode"] == 137
    killed.remove()


def test_pause_survives_daemon_restart(tmp_path: Path, busybox_tar: Path) -> None:
    """The paused state lives in the freezer: a daemon started after a kill -9 reads it
    back from the supervisor."""
    d = start_daemon(tmp_path / "pr")
    try:
        d.cli("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
        c = docker.DockerClient(base_url=d.host, timeout=60)
        ct = c.containers.run("busybox", ["sleep", "613"], detach=True, name="frozen")
        ct.pause()
        c.close()
        d.proc.kill()
        d.proc.wait()
        d.proc.returncode = 0  # killed on purpose: the check looks at the second daemon
        d = start_daemon(tmp_path / "pr")
        c = docker.DockerClient(base_url=d.host, timeout=60)
        ct = c.containers.get("frozen")
        assert ct.attrs["State"]["Status"] == "paused" and ct.attrs["State"]["Paused"]
        assert c.info()["ContainersPaused"] == 1
        ct.unpause()
        ct.reload()
        assert ct.status == "running"
        ct.remove(force=True)
        c.close()
    finally:
        d.cli("rm", "-f", "frozen", check=False)
        _stop_and_check(d)


# ------------------------------------------------------------------ rename


def test_rename(client: docker.DockerClient) -> None:
    t0 = time.time()
    old, new, other = _name(), _name(), _name()
    ct = client.containers.create("busybox", ["true"], name=old, labels={"lc.test": "rename"})
    ct.rename(new)
    assert client.containers.get(new).id == ct.id
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(old)
    (ev,) = _events(client, t0, container=ct.id, event="rename")
    assert ev["Actor"]["Attributes"] == {"oldName": "/" + old, "name": new, "image": "busybox",
                                         "lc.test": "rename"}
    taken = client.containers.create("busybox", ["true"], name=other)
    with pytest.raises(docker.errors.APIError) as e:
        ct.rename(other)
    assert e.value.status_code == 409
    assert (f'Error when allocating new name: Conflict. The container name "/{other}" is already in use by '
            f'container "{taken.id}"') in str(e.value)
    with pytest.raises(docker.errors.APIError, match="same name as its current name") as e:
        ct.rename(new)
    assert e.value.status_code == 400
    with pytest.raises(docker.errors.APIError, match="Invalid container name") as e:
        ct.rename("bad name!")
    assert e.value.status_code == 400
    taken.remove()
    ct.remove()


# ------------------------------------------------------------------ top


def test_top(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sh", "-c", "sleep 600 & exec sleep 700"], detach=True, name=_name())
    deadline = time.monotonic() + 30
    while True:  # until the shell has forked and both have exec'd sleep (no event says so)
        top = ct.top()
        if sorted(p[-1] for p in top["Processes"]) == ["sleep 600", "sleep 700"]:
            break
        assert time.monotonic() < deadline, top
    assert top["Titles"][:3] == ["UID", "PID", "PPID"] and top["Titles"][-1] == "CMD"
    ct.reload()
    assert str(ct.attrs["State"]["Pid"]) in [p[1] for p in top["Processes"]]
    assert all(int(p[1]) != os.getpid() for p in top["Processes"])  # only the container's rows
    custom = ct.top(ps_args="-o pid,comm")
    assert custom["Titles"] == ["PID", "COMMAND"]
    assert [p[1] for p in custom["Processes"]] == ["sleep", "sleep"]
    with pytest.raises(docker.errors.APIError, match='specifying "user=PID" is not allowed'):
        ct.top(ps_args="-o user=PID")
    ct.kill()
    ct.wait()
    with pytest.raises(docker.errors.APIError, match=f"Container {ct.id} is not running") as e:
        ct.top()
    assert e.value.status_code == 409
    ct.remove()


# ------------------------------------------------------------------ stats


def _check_shape(s: dict, name: str, cid: str) -> None:
    assert s["name"] == "/" + name and s["id"] == cid
    assert set(s) >= {"read", "preread", "pids_stats", "blkio_stats", "num_procs", "storage_stats", "cpu_stats",
                      "precpu_stats", "memory_stats"}
    assert set(s["blkio_stats"]) >= {"io_service_bytes_recursive", "io_serviced_recursive"}


def test_stats_of_a_busy_container(client: docker.DockerClient) -> None:
    name = _name()
    ct = client.containers.run("busybox", ["sh", "-c", "while :; do :; done"], detach=True, name=name)
    s = ct.stats(stream=False)  # two samples a second apart
    _check_shape(s, name, ct.id)
    cpu, pre = s["cpu_stats"], s["precpu_stats"]
    assert cpu["cpu_usage"]["total_usage"] > pre["cpu_usage"]["total_usage"] > 0
    assert cpu["system_cpu_usage"] > pre["system_cpu_usage"] > 0
    assert cpu["online_cpus"] == os.cpu_count()
    assert cpu["cpu_usage"]["usage_in_usermode"] + cpu["cpu_usage"]["usage_in_kernelmode"] > 0
    assert s["preread"] < s["read"]
    percent = ((cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"])
               / (cpu["system_cpu_usage"] - pre["system_cpu_usage"]) * cpu["online_cpus"] * 100)
    assert percent > 20, percent  # a busy loop keeps one CPU near 100%
    mem = s["memory_stats"]
    assert mem["usage"] > 0 and mem["limit"] > 0
    assert "total_inactive_file" in mem["stats"] or "inactive_file" in mem["stats"]
    assert s["pids_stats"]["current"] >= 1
    one = client.api.stats(ct.id, stream=False, one_shot=True)
    assert one["precpu_stats"]["cpu_usage"]["total_usage"] == 0 and one["preread"].startswith("0001-")
    assert one["cpu_stats"]["cpu_usage"]["total_usage"] >= cpu["cpu_usage"]["total_usage"]
    # streamed: chunked, one record a second, each with the previous one's figures
    resp = client.api._get(client.api._url("/containers/{0}/stats", ct.id), stream=True)
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    lines = resp.iter_lines()
    first, second = json.loads(next(lines)), json.loads(next(lines))
    resp.close()
    assert first["preread"].startswith("0001-") and second["preread"] == first["read"]
    assert second["precpu_stats"] == first["cpu_stats"]
    assert second["cpu_stats"]["cpu_usage"]["total_usage"] > first["cpu_stats"]["cpu_usage"]["total_usage"]
    ct.remove(force=True)


def test_stats_of_a_stopped_container(client: docker.DockerClient) -> None:
    name = _name()
    ct = client.containers.create("busybox", ["true"], name=name)
    s = ct.stats(stream=False)
    _check_shape(s, name, ct.id)
    assert s["read"] == "0001-01-01T00:00:00Z" and s["memory_stats"] == {} and s["pids_stats"] == {}
    assert s["cpu_stats"]["cpu_usage"]["total_usage"] == 0
    stream = client.api.stats(ct.id, stream=True, decode=True)
    zero = next(stream)  # streamed too, zeroed, as docker does
    assert zero["read"] == "0001-01-01T00:00:00Z" and zero["cpu_stats"]["cpu_usage"]["total_usage"] == 0
    ct.remove()
    rest = list(stream)  # the stream ends once the container is removed
    assert all(z["read"].startswith("0001-") for z in rest)


# ------------------------------------------------------------------ size and info


def test_size(client: docker.DockerClient) -> None:
    name = _name()
    ct = client.containers.run("busybox", ["sh", "-c", "head -c 1000 /dev/zero > /payload"], detach=True, name=name)
    assert ct.wait()["StatusCode"] == 0
    image_size = client.images.get("busybox").attrs["Size"]
    (listed,) = client.api.containers(all=True, size=True, filters={"name": name})
    assert listed["SizeRw"] == 1000 and listed["SizeRootFs"] == image_size + 1000
    (plain,) = client.api.containers(all=True, filters={"name": name})
    assert "SizeRw" not in plain
    doc = client.api._result(client.api._get(client.api._url("/containers/{0}/json", ct.id), params={"size": 1}),
                             json=True)
    assert (doc["SizeRw"], doc["SizeRootFs"]) == (1000, image_size + 1000)
    assert "SizeRw" not in client.api.inspect_container(ct.id)
    ct.remove(v=True)  # -v is accepted (there are no volumes yet)


def test_info_counts(client: docker.DockerClient) -> None:
    before = client.info()
    running = client.containers.run("busybox", ["sleep", "600"], detach=True, name=_name())
    paused = client.containers.run("busybox", ["sleep", "600"], detach=True, name=_name())
    paused.pause()
    stopped = client.containers.create("busybox", ["true"], name=_name())
    after = client.info()
    deltas = {k: after[k] - before[k] for k in ("Containers", "ContainersRunning", "ContainersPaused",
                                                "ContainersStopped")}
    assert deltas == {"Containers": 3, "ContainersRunning": 1, "ContainersPaused": 1, "ContainersStopped": 1}
    for ct in (running, paused, stopped):
        ct.remove(force=True)


# ------------------------------------------------------------------ events


def test_events_streamed_with_filters(client: docker.DockerClient) -> None:
    name = _name()
    resp = client.api._get(client.api._url("/events"), params={"filters": json.dumps(
        {"container": [name], "event": ["start", "die"]})}, stream=True)
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    lines = resp.iter_lines()
    ct = client.containers.run("busybox", ["sh", "-c", "exit 4"], name=name, labels={"lc.k": "v"}, detach=True)
    start, die = json.loads(next(lines)), json.loads(next(lines))
    resp.close()
    assert (start["Type"], start["Action"], die["Action"]) == ("container", "start", "die")
    assert start["status"] == "start" and start["from"] == "busybox" and start["id"] == start["Actor"]["ID"]
    assert die["Actor"]["Attributes"]["exitCode"] == "4" and "execDuration" in die["Actor"]["Attributes"]
    assert die["Actor"]["Attributes"]["name"] == name and die["Actor"]["Attributes"]["lc.k"] == "v"
    assert start["timeNano"] <= die["timeNano"] and start["time"] == start["timeNano"] // 10**9
    assert ct.wait()["StatusCode"] == 4
    ct.remove()


def test_events_since_until_and_history(client: docker.DockerClient) -> None:
    t0 = time.time()
    name = _name()
    client.containers.run("busybox", ["true"], name=name, labels={"lc.events": name}, remove=True)
    t1 = time.time()
    # removed (docker-py removes it after the wait): its events stay in the history
    history = _events(client, t0, label=f"lc.events={name}")
    assert [e["Action"] for e in history] == ["create", "start", "die", "destroy"]
    assert [e["Action"] for e in _events(client, t0, label=f"lc.events={name}", event=["die", "destroy"])] == \
           ["die", "destroy"]
    assert _events(client, t1 + 0.001, label=f"lc.events={name}") == []  # since after them
    assert [e["Action"] for e in _events(client, t0, image="busybox", container=name)] == \
           ["create", "start", "die", "destroy"]
    assert _events(client, t0, label=f"lc.events={name}", type="image") == []
    # until alone replays the history up to it; in the future, the stream lasts until then
    began = time.monotonic()
    replay = client.events(until=time.time() + 1, filters={"label": f"lc.events={name}"}, decode=True)
    assert [e["Action"] for e in replay] == ["create", "start", "die", "destroy"]
    assert 0.5 < time.monotonic() - began < 10
    bad = client.api._get(client.api._url("/events"), params={"filters": json.dumps({"bogus": ["x"]})})
    assert bad.status_code == 400 and bad.json()["message"] == "invalid filter 'bogus'"
    bad = client.api._get(client.api._url("/events"), params={"since": str(t1), "until": str(t0)})
    assert bad.status_code == 400 and "cannot be after `until` time" in bad.json()["message"]


def test_image_events(client: docker.DockerClient, daemon: Daemon, busybox_tar: Path) -> None:
    t0 = time.time()
    repo = "lc-events-" + uuid.uuid4().hex[:8]
    image = client.images.get("busybox")
    image.tag(repo, "v1")
    client.images.remove(f"{repo}:v1")
    events = _events(client, t0, type="image")
    assert [(e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"]["name"]) for e in events] == [
        ("tag", image.id, f"{repo}:v1"), ("untag", image.id, image.id)]
    assert [e["Action"] for e in _events(client, t0, image=repo)] == ["tag"]
    # an image of its own: import, save, load, then removed for good (untag + delete)
    t1 = time.time()
    own = daemon.cli("import", "-c", "LABEL lc.image=own", str(busybox_tar), f"{repo}:own").stdout.strip()
    archive = b"".join(client.images.get(own).save())
    client.images.load(archive)
    client.images.remove(f"{repo}:own")
    events = _events(client, t1, type="image")
    assert [(e["Action"], e["Actor"]["ID"]) for e in events] == [
        ("import", own), ("save", own), ("load", own), ("untag", own), ("delete", own)]
    assert all(e["Actor"]["Attributes"]["name"] == own for e in events)
    assert [e["Actor"]["Attributes"].get("lc.image") for e in events] == ["own", "own", "own", "own", None]
