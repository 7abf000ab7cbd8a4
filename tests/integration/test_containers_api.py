"""Containers through the Docker Engine API, driven by docker-py: lifecycle, exit codes,
logs, errors in docker's shapes, copy-on-write between containers, inspect's shape.

Each test removes what it created (the ``client`` fixture force-removes leftovers, and the
daemon fixture's teardown asserts that no mounts, containers or processes are left).
Synchronisation is by events only: ``wait`` answers when the exit is recorded, a followed
log stream yields a line once it was written.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon, mounts_under

docker = pytest.importorskip("docker")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]


@pytest.fixture
def client(daemon: Daemon, busybox_image: str) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=daemon.host, timeout=60)
    try:
        yield c
    finally:
        for ct in c.containers.list(all=True):
            ct.remove(force=True)
        c.close()
    assert not mounts_under(str(daemon.root / "exec" / "bundles")), "a removed container left its rootfs mounted"


def test_run_returns_output(client: docker.DockerClient) -> None:
    out = client.containers.run("busybox", "echo hello", remove=False)
    assert out == b"hello\n"
    (ct,) = client.containers.list(all=True)
    assert ct.status == "exited" and ct.attrs["State"]["ExitCode"] == 0
    ct.remove()
    assert client.containers.list(all=True) == []


def test_exit_codes(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sh", "-c", "echo oops >&2; exit 3"], detach=True)
    assert ct.wait()["StatusCode"] == 3
    assert ct.logs(stdout=False, stderr=True) == b"oops\n"
    assert ct.logs(stdout=True, stderr=False) == b""
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run("busybox", ["sh", "-c", "exit 7"])
    assert e.value.exit_status == 7


def test_detached_logs_kill_remove(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sh", "-c", "echo started; exec sleep 60"], detach=True)
    ct.reload()
    assert ct.status == "running" and ct.attrs["State"]["Pid"] > 0
    lines = ct.logs(stream=True, follow=True)
    assert next(lines) == b"started\n"  # yielded once written: no sleeping here
    ct.kill()
    assert ct.wait()["StatusCode"] == 137
    assert list(lines) == []  # the follow ends once the container has exited
    ct.reload()
    assert ct.status == "exited"
    ct.remove()
    with pytest.raises(docker.errors.NotFound, match="No such container"):
        client.containers.get(ct.id)


def test_create_then_start(client: docker.DockerClient) -> None:
    ct = client.containers.create("busybox", ["echo", "created first"], name="create-then-start")
    assert ct.status == "created" and ct.name == "create-then-start"
    assert client.containers.get(ct.id[:12]).id == ct.id  # prefix lookup
    assert client.containers.get("create-then-start").id == ct.id  # name lookup
    ct.start()
    assert ct.wait()["StatusCode"] == 0
    assert ct.logs() == b"created first\n"
    ct.start()  # a stopped container starts again, with a fresh run
    assert ct.wait(condition="not-running")["StatusCode"] == 0
    assert ct.logs() == b"created first\ncreated first\n"
    ct.remove()


def test_stop_escalates_to_sigkill(client: docker.DockerClient) -> None:
    # sleep as PID 1 has no SIGTERM handler, so the kernel ignores SIGTERM: stop must escalate
    ct = client.containers.run("busybox", ["sleep", "60"], detach=True)
    t0 = time.monotonic()
    ct.stop(timeout=1)
    assert 0.9 <= time.monotonic() - t0 < 20
    ct.reload()
    assert ct.attrs["State"]["ExitCode"] == 137 and ct.status == "exited"
    # docker answers 304 for stopping a stopped container; docker-py accepts it silently
    ct.stop(timeout=1)
    ct.remove()


def test_stop_signal_honoured(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sh", "-c", "trap 'exit 42' USR1; echo trapped; while :; do sleep 0.1; done"],
                               detach=True, stop_signal="SIGUSR1")
    lines = client.api.logs(ct.id, stream=True, follow=True)
    assert next(lines) == b"trapped\n"  # the trap is set: a signal now cannot be missed
    ct.stop(timeout=30)
    assert ct.wait()["StatusCode"] == 42
    assert list(lines) == []
    ct.remove()


def test_name_conflict(client: docker.DockerClient) -> None:
    first = client.containers.create("busybox", "true", name="taken")
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create("busybox", "true", name="taken")
    assert e.value.status_code == 409
    assert e.value.explanation == (
        f'Conflict. The container name "/taken" is already in use by container "{first.id}". '
        "You have to remove (or rename) that container to be able to reuse that name.")
    first.remove()


def test_unknown_image(client: docker.DockerClient, daemon: Daemon) -> None:
    with pytest.raises(docker.errors.ImageNotFound) as e:
        client.containers.create("no-such-image:1", "true")
    assert e.value.status_code == 404 and "No such image" in e.value.explanation
    with pytest.raises(docker.errors.NotFound, match="No such container: nope"):
        client.api.inspect_container("nope")
    assert list((daemon.root / "exec" / "bundles").glob("*")) == []  # nothing was prepared


def test_remove_running_needs_force(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sleep", "60"], detach=True)
    with pytest.raises(docker.errors.APIError) as e:
        ct.remove()
    assert e.value.status_code == 409
    assert e.value.explanation == (f"You cannot remove a running container {ct.id}. Stop the container before "
                                   "attempting removal or force remove")
    ct.remove(force=True)
    assert client.containers.list(all=True) == []


def test_copy_on_write(client: docker.DockerClient, daemon: Daemon) -> None:
    a = client.containers.run("busybox", ["sh", "-c", "echo a > /etc/marker; rm /bin/true; echo ready; exec sleep 60"],
                              detach=True)
    b = client.containers.run("busybox", ["sh", "-c", "echo b > /etc/marker; echo ready; exec sleep 60"], detach=True)
    for ct in (a, b):  # both are running with their writes done
        assert next(ct.logs(stream=True, follow=True)) == b"ready\n"
    # each writable layer, seen from the host through the container's mounted rootfs
    rootfs = {ct.id: daemon.root / "exec" / "bundles" / ct.id / "rootfs" for ct in (a, b)}
    assert (rootfs[a.id] / "etc" / "marker").read_text() == "a\n"
    assert (rootfs[b.id] / "etc" / "marker").read_text() == "b\n"
    assert not (rootfs[a.id] / "bin" / "true").exists() and (rootfs[b.id] / "bin" / "true").exists()
    # a third container sees the image as it was
    out = client.containers.run("busybox", ["sh", "-c", "test ! -e /etc/marker && test -e /bin/true && echo pristine"])
    assert out == b"pristine\n"
    for ct in (a, b):
        ct.remove(force=True)


def test_writes_stay_in_their_container(client: docker.DockerClient) -> None:
    a = client.containers.run("busybox", ["sh", "-c", "echo a > /marker && cat /marker"], detach=True)
    assert a.wait()["StatusCode"] == 0
    b = client.containers.run("busybox", ["sh", "-c", "cat /marker 2>/dev/null || echo none"], detach=True)
    assert b.wait()["StatusCode"] == 0
    assert a.logs() == b"a\n" and b.logs() == b"none\n"
    a.start()  # a's writable layer survives its exit
    assert a.wait()["StatusCode"] == 0 and a.logs() == b"a\na\n"


def test_inspect_shape(client: docker.DockerClient, busybox_image: str) -> None:
    ct = client.containers.create("busybox", ["sh", "-c", "exit 0"], name="shape", environment=["A=1"],
                                  labels={"k": "v"}, working_dir="/tmp")
    info = client.api.inspect_container(ct.id)
    assert len(info["Id"]) == 64 and info["Name"] == "/shape"
    assert info["Image"] == busybox_image
    assert info["Path"] == "sh" and info["Args"] == ["-c", "exit 0"]
    assert info["State"]["Status"] == "created" and info["State"]["Running"] is False
    assert set(info["State"]) >= {"Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid",
                                  "ExitCode", "Error", "StartedAt", "FinishedAt"}
    assert info["Config"]["Env"][0] == "A=1" and info["Config"]["Labels"] == {"k": "v"}
    assert info["Config"]["WorkingDir"] == "/tmp" and info["Config"]["Image"] == "busybox"
    assert info["HostConfig"]["LogConfig"]["Type"] == "json-file"
    assert info["Mounts"] == [] and info["RestartCount"] == 0 and info["Platform"] == "linux"
    assert info["LogPath"].endswith(f"{ct.id}/{ct.id}-json.log")
    ct.start()
    ct.wait()
    info = client.api.inspect_container(ct.id)
    assert info["State"]["Status"] == "exited" and info["State"]["StartedAt"] <= info["State"]["FinishedAt"]
    summary = client.api.containers(all=True, filters={"name": "shape"})
    assert len(summary) == 1
    s = summary[0]
    assert s["Names"] == ["/shape"] and s["Command"] == "sh -c exit 0" and s["State"] == "exited"
    assert s["Status"].startswith("Exited (0) ") and s["ImageID"] == busybox_image
    assert client.api.containers() == []  # without all: running ones only
    assert client.api.containers(all=True, filters={"status": "running"}) == []
    assert client.api.containers(all=True, filters={"exited": "0"})[0]["Id"] == ct.id
    assert client.info()["Containers"] == 1 and client.info()["ContainersStopped"] == 1
    ct.remove()


def _raw_request(path: str, request: bytes) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    s.sendall(request)
    return s


def test_wait_flushes_headers_before_exit(client: docker.DockerClient, daemon: Daemon) -> None:
    ct = client.containers.run("busybox", ["sleep", "60"], detach=True)
    s = _raw_request(daemon.socket, f"POST /v1.44/containers/{ct.id}/wait?condition=not-running HTTP/1.1\r\n"
                                    "Host: d\r\nContent-Length: 0\r\n\r\n".encode())
    with s:
        head = b""
        while b"\r\n\r\n" not in head:  # arrives while the container still runs
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200")
        ct.reload()
        assert ct.status == "running"
        ct.kill()
        body = head.split(b"\r\n\r\n", 1)[1]
        while not body.endswith(b"0\r\n\r\n"):  # the chunked body's end
            chunk = s.recv(4096)
            assert chunk, f"connection closed early: {body!r}"
            body += chunk
    doc = json.loads(body[body.index(b"{"):body.index(b"}") + 1])
    assert doc == {"StatusCode": 137, "Error": None}
    ct.remove()


def test_attach_streams_output_and_stdin(client: docker.DockerClient) -> None:
    # StdinOnce (what `docker run -i` sets): the client's EOF closes the container's stdin;
    # docker-py has no argument for it, so the body is posted as is
    body = {"Image": "busybox", "Cmd": ["sh", "-c", "read line; echo got $line; echo err >&2"],
            "OpenStdin": True, "StdinOnce": True, "AttachStdin": True}
    created = client.api._result(client.api._post_json(client.api._url("/containers/create"), data=body), True)
    ct = client.containers.get(created["Id"])
    sock = client.api.attach_socket(ct.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    ct.start()
    raw = sock._sock
    raw.sendall(b"hi\n")
    raw.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = raw.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    # stdcopy frames: [stream, 0, 0, 0, size (big endian, 4 bytes)] payload
    frames = []
    while data:
        kind, size = data[0], int.from_bytes(data[4:8], "big")
        frames.append((kind, data[8:8 + size]))
        data = data[8 + size:]
    assert (1, b"got hi\n") in frames and (2, b"err\n") in frames
    assert ct.wait()["StatusCode"] == 0
    ct.remove()


def _attach_raw(client: docker.DockerClient, cid: str, **params: int) -> socket.socket:
    sock = client.api.attach_socket(cid, params={"stream": 1, **params})
    raw = sock._sock
    raw.settimeout(60)
    return raw


def _read_frames(raw: socket.socket, bufsize: int = 1 << 20, delay: float = 0.0) -> list[tuple[int, bytes]]:
    """stdcopy frames until the daemon closes; ``delay`` between reads: a slow client."""
    data = bytearray()
    while chunk := raw.recv(bufsize):
        data += chunk
        if delay:
            time.sleep(delay)
    frames = []
    while data:
        kind, size = data[0], int.from_bytes(data[4:8], "big")
        assert len(data) >= 8 + size
        frames.append((kind, bytes(data[8:8 + size])))
        del data[:8 + size]
    return frames


def test_attach_large_output_to_a_slow_client_arrives_complete_and_in_order(client: docker.DockerClient) -> None:
    # 20 MB of numbered 1000-byte lines: far beyond what the supervisor (1 MiB) and the
    # daemon buffer for a client, so the container is held back while the client dawdles
    n = 20_000
    script = 'BEGIN{s=sprintf("%990s",""); gsub(/ /,"x",s); for(i=0;i<N;i++) printf "%09d%s\\n", i, s}'
    ct = client.containers.create("busybox", ["awk", "-v", f"N={n}", script])
    raw = _attach_raw(client, ct.id, stdout=1, stderr=1)
    ct.start()
    time.sleep(0.5)  # nothing read yet
    frames = _read_frames(raw, bufsize=64 * 1024, delay=0.0005)
    raw.close()
    assert {k for k, _ in frames} == {1}
    assert b"".join(d for _, d in frames) == b"".join(b"%09d%s\n" % (i, b"x" * 990) for i in range(n))
    assert ct.wait()["StatusCode"] == 0
    ct.remove()


def test_attach_head_of_dev_zero(client: docker.DockerClient) -> None:
    ct = client.containers.create("busybox", ["head", "-c", "20000000", "/dev/zero"])
    raw = _attach_raw(client, ct.id, stdout=1)
    ct.start()
    frames = _read_frames(raw, bufsize=32 * 1024)
    raw.close()
    data = b"".join(d for _, d in frames)
    assert len(data) == 20_000_000 and data.count(0) == 20_000_000
    assert ct.wait()["StatusCode"] == 0
    ct.remove()


def test_attach_to_an_exited_container_streams_its_next_start(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sh", "-c", "echo x >> /runs; echo run $(wc -l < /runs); echo e >&2"],
                               detach=True)
    assert ct.wait()["StatusCode"] == 0
    raw = _attach_raw(client, ct.id, stdout=1)  # stdout only: the stderr line is not sent
    ct.start()
    assert _read_frames(raw) == [(1, b"run 2\n")]
    raw.close()
    assert ct.wait()["StatusCode"] == 0
    assert ct.logs(stderr=False) == b"run 1\nrun 2\n"
    ct.remove()


def test_output_while_nobody_is_attached_still_lands_in_the_log(client: docker.DockerClient) -> None:
    body = {"Image": "busybox", "Cmd": ["sh", "-c", "echo before; read x; echo after-$x; echo err >&2"],
            "OpenStdin": True, "StdinOnce": False}
    created = client.api._result(client.api._post_json(client.api._url("/containers/create"), data=body), True)
    ct = client.containers.get(created["Id"])
    ct.start()
    for line in ct.logs(stream=True, follow=True):
        assert line == b"before\n"  # written while nobody was attached: in the log
        break
    raw = _attach_raw(client, ct.id, stdin=1, stdout=1, stderr=1)
    raw.sendall(b"in\n")
    frames = _read_frames(raw)  # attached after "before": only what came later
    raw.close()
    assert sorted(frames) == [(1, b"after-in\n"), (2, b"err\n")]
    assert ct.wait()["StatusCode"] == 0
    assert ct.logs() == b"before\nafter-in\nerr\n"
    ct.remove()


def test_failed_create_leaves_nothing(client: docker.DockerClient, daemon: Daemon) -> None:
    # a sysctl that is not namespaced is refused by the runtime, after the snapshot, the
    # mount and the bundle were made; all of them must be undone
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create("busybox", "true", sysctls={"kernel.panic": "1"}, name="refused-create")
    assert "kernel.panic" in e.value.explanation
    assert client.containers.list(all=True) == []
    bundles = daemon.root / "exec" / "bundles"
    assert not bundles.exists() or list(bundles.iterdir()) == []
    assert not mounts_under(str(bundles))
    # the name is free again
    client.containers.create("busybox", "true", name="refused-create").remove()
