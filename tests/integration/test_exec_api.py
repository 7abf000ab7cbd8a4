"""Exec through the Docker Engine API: the raw protocol (101 upgrade, 8-byte frames without a
TTY, raw bytes with one, stdin half-close), docker's inspect shape, resize, exit codes and
error statuses, detached starts, ExecIDs, events, and docker-py's exec_run / exec_* calls.

Synchronisation is by events only: a hijacked stream ends once the exec's exit is recorded,
a line printed by the exec says it runs, a FIFO orders a detached writer and a reader.
Every test removes the containers it made (the ``client`` fixture force-removes leftovers).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator

import pytest

from dockyard.cli.client import APIClient
from dockyard.streams.stdcopy import STDERR, STDOUT
from tests.conftest import Daemon

docker = pytest.importorskip("docker")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]


@pytest.fixture
def ct(client: docker.DockerClient) -> Iterator[docker.models.containers.Container]:
    """A running container to exec in."""
    c = client.containers.run("busybox", ["sleep", "600"], detach=True, environment={"FROM_CT": "ct"},
                              working_dir="/etc", hostname="exechost")
    try:
        yield c
    finally:
        c.remove(force=True)


@pytest.fixture
def raw(daemon: Daemon) -> Iterator[APIClient]:
    c = APIClient(daemon.host)
    try:
        yield c
    finally:
        c.close()


def _read_all(sock: socket.socket) -> bytes:
    out = bytearray()
    sock.settimeout(60)
    while chunk := sock.recv(65536):
        out += chunk
    return bytes(out)


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """docker's stdcopy frames: [stream, 0, 0, 0, size (4 bytes, big endian)] + payload."""
    out = []
    while data:
        assert len(data) >= 8, f"truncated frame header: {data!r}"
        stream, size = data[0], int.from_bytes(data[4:8], "big")
        assert data[1:4] == b"\0\0\0" and stream in (STDOUT, STDERR), data[:8]
        out.append((stream, data[8 : 8 + size]))
        data = data[8 + size :]
    return out


def _joined(frames: list[tuple[int, bytes]], stream: int) -> bytes:
    return b"".join(d for s, d in frames if s == stream)


def _exec(raw: APIClient, cid: str, cmd: list[str], **body: object) -> str:
    doc = {"AttachStdout": True, "AttachStderr": True, "Cmd": cmd, **body}
    return raw.post(f"/containers/{cid}/exec", body=doc).json()["Id"]


def _inspect(raw: APIClient, eid: str) -> dict:
    return raw.get(f"/exec/{eid}/json").json()


# ---------------------------------------------------------------------- the raw protocol


def test_start_upgrades_and_multiplexes(raw: APIClient, ct) -> None:
    eid = _exec(raw, ct.id, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    sock, status, headers = raw.hijack_response("POST", f"/exec/{eid}/start", body={"Detach": False, "Tty": False})
    with sock:
        assert status == 101
        assert headers["content-type"] == "application/vnd.docker.multiplexed-stream"
        assert headers["upgrade"] == "tcp" and headers["connection"].lower() == "upgrade"
        sock.shutdown(socket.SHUT_WR)  # no stdin
        frames = _frames(_read_all(sock))
    assert _joined(frames, STDOUT) == b"out\n"
    assert _joined(frames, STDERR) == b"err\n"
    # the stream ends once the exit is recorded: inspect has it at once
    info = _inspect(raw, eid)
    assert info["ExitCode"] == 3 and info["Running"] is False and info["Pid"] > 0


def test_stdin_half_close_is_eof_while_output_flows(raw: APIClient, ct) -> None:
    eid = _exec(raw, ct.id, ["sh", "-c", "cat; echo after-eof; echo bye >&2"], AttachStdin=True)
    sock, status, _ = raw.hijack_response("POST", f"/exec/{eid}/start", body={})
    with sock:
        assert status == 101
        sock.sendall(b"line one\nline two\n")
        sock.shutdown(socket.SHUT_WR)  # stdin's EOF: cat ends, the shell goes on printing
        frames = _frames(_read_all(sock))
    assert _joined(frames, STDOUT) == b"line one\nline two\nafter-eof\n"
    assert _joined(frames, STDERR) == b"bye\n"
    assert _inspect(raw, eid)["ExitCode"] == 0


def test_large_output_and_input_roundtrip(raw: APIClient, ct) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    eid = _exec(raw, ct.id, ["sh", "-c", "cat; cat /dev/null"], AttachStdin=True, AttachStderr=False)
    sock, _, _ = raw.hijack_response("POST", f"/exec/{eid}/start", body={})
    import threading

    def feed() -> None:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)

    writer = threading.Thread(target=feed)
    writer.start()
    with sock:
        data = _read_all(sock)
    writer.join()
    assert _joined(_frames(data), STDOUT) == payload


def test_tty_stream_is_raw(raw: APIClient, ct) -> None:
    eid = _exec(raw, ct.id, ["sh", "-c", "tty; echo out; echo err >&2"], Tty=True)
    sock, status, headers = raw.hijack_response("POST", f"/exec/{eid}/start", body={"Tty": True})
    with sock:
        assert status == 101 and headers["content-type"] == "application/vnd.docker.raw-stream"
        sock.shutdown(socket.SHUT_WR)
        data = _read_all(sock)
    # no frame headers; the pty turns \n into \r\n and merges stderr into the stream
    assert data.startswith(b"/dev/pts/"), data
    assert data.endswith(b"\r\nout\r\nerr\r\n"), data
    assert _inspect(raw, eid)["ExitCode"] == 0


def test_tty_console_size_and_resize(raw: APIClient, ct) -> None:
    eid = _exec(raw, ct.id, ["sh", "-c", "stty size; read x; stty size"], Tty=True, AttachStdin=True,
                ConsoleSize=[20, 70])
    sock, status, _ = raw.hijack_response("POST", f"/exec/{eid}/start", body={"Tty": True})
    with sock:
        assert status == 101
        sock.settimeout(60)
        first = b""
        while b"\n" not in first:
            first += sock.recv(4096)
        assert first.startswith(b"20 70\r\n"), first  # the size given at create
        raw.post(f"/exec/{eid}/resize", params={"h": 33, "w": 111})
        sock.sendall(b"go\r")
        rest = first + _read_all(sock)
    assert rest.endswith(b"33 111\r\n"), rest
    # resizing an exited exec, or one without a TTY, is no error
    raw.post(f"/exec/{eid}/resize", params={"h": 10, "w": 10})


def test_detach_keys_end_the_session_not_the_process(client: docker.DockerClient, raw: APIClient, ct) -> None:
    since = time.time() - 1
    eid = _exec(raw, ct.id, ["sh", "-c", "echo ready; read x; echo never"], Tty=True, AttachStdin=True,
                DetachKeys="ctrl-a,b")
    sock = raw.hijack("POST", f"/exec/{eid}/start", body={"Tty": True})
    with sock:
        sock.settimeout(60)
        seen = b""
        while b"ready" not in seen:
            seen += sock.recv(4096)
        sock.sendall(b"\x01b")  # the daemon recognises the keys and ends the session
        rest = _read_all(sock)
    assert b"never" not in rest
    info = _inspect(raw, eid)
    assert info["Running"] is True and info["ExitCode"] is None  # still waiting in `read`
    events = client.events(since=since, until=time.time() + 1, decode=True,
                           filters={"container": ct.id, "event": "exec_detach"})
    assert [e["Actor"]["Attributes"]["execID"] for e in events] == [eid]


def test_resize_errors(raw: APIClient, ct) -> None:
    from dockyard.cli.client import APIError

    with pytest.raises(APIError) as e:
        raw.post("/exec/nope/resize", params={"h": 10, "w": 10})
    assert e.value.status == 404 and e.value.message == "No such exec instance: nope"
    eid = _exec(raw, ct.id, ["true"])
    with pytest.raises(APIError) as e:
        raw.post(f"/exec/{eid}/resize", params={"h": "x", "w": 10})
    assert e.value.status == 400


def test_start_without_upgrade_gets_200_stream(daemon: Daemon, raw: APIClient, ct) -> None:
    eid = _exec(raw, ct.id, ["echo", "plain"])
    body = json.dumps({"Detach": False}).encode()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(daemon.socket)
        s.sendall(f"POST /v1.41/exec/{eid}/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        s.settimeout(60)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        s.shutdown(socket.SHUT_WR)  # after the head: a client's EOF before it ends the request
        data += _read_all(s)
    head, _, stream = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert _joined(_frames(stream), STDOUT) == b"plain\n"


# ---------------------------------------------------------------------- inspect, exit codes, errors


def test_inspect_shape(raw: APIClient, ct) -> None:
    eid = _exec(raw, ct.id, ["sh", "-c", "id -u"], User="nobody", DetachKeys="ctrl-x,y", AttachStdin=False)
    info = _inspect(raw, eid)
    assert info == {
        "ID": eid, "Running": False, "ExitCode": None,
        "ProcessConfig": {"tty": False, "entrypoint": "sh", "arguments": ["-c", "id -u"], "privileged": False,
                          "user": "nobody"},
        "OpenStdin": False, "OpenStderr": True, "OpenStdout": True, "CanRemove": False,
        "ContainerID": ct.id, "DetachKeys": "GHk=", "Pid": 0,  # Go's []byte: base64 of ctrl-x, y
    }
    sock = raw.hijack("POST", f"/exec/{eid}/start", body={})
    with sock:
        sock.shutdown(socket.SHUT_WR)
        assert _joined(_frames(_read_all(sock)), STDOUT) == b"65534\n"
    info = _inspect(raw, eid)
    assert info["ExitCode"] == 0 and info["Running"] is False and info["Pid"] > 0


def test_exit_codes_of_commands_that_cannot_run(client: docker.DockerClient, ct) -> None:
    res = ct.exec_run(["sh", "-c", "exit 7"])
    assert res.exit_code == 7 and res.output == b""
    # docker: the start succeeds, the runtime's message comes as output, 127 / 126 as the code
    res = ct.exec_run(["no-such-binary", "x"])
    assert res.exit_code == 127
    assert res.output == (b'OCI runtime exec failed: exec failed: unable to start container process: '
                          b'exec: "no-such-binary": executable file not found in $PATH: unknown\r\n')
    res = ct.exec_run(["/etc/passwd"])
    assert res.exit_code == 126 and b"permission denied" in res.output
    res = ct.exec_run(["/no/such/path"])
    assert res.exit_code == 127 and b"no such file or directory" in res.output


def test_detached_start_of_missing_binary_is_an_error(client: docker.DockerClient, ct) -> None:
    eid = client.api.exec_create(ct.id, ["no-such-binary"])["Id"]
    with pytest.raises(docker.errors.APIError) as e:
        client.api.exec_start(eid, detach=True)
    assert e.value.status_code == 400 and "executable file not found" in e.value.explanation
    assert client.api.exec_inspect(eid)["ExitCode"] == 127


def test_errors(client: docker.DockerClient, ct, raw: APIClient) -> None:
    stopped = client.containers.create("busybox", ["true"])
    with pytest.raises(docker.errors.APIError) as e:
        client.api.exec_create(stopped.id, ["echo"])
    assert e.value.status_code == 409 and e.value.explanation == f"container {stopped.id} is not running"
    with pytest.raises(docker.errors.NotFound) as e:
        client.api.exec_create("no-such-container", ["echo"])
    assert e.value.explanation == "No such container: no-such-container"
    with pytest.raises(docker.errors.NotFound) as e:
        client.api.exec_inspect("no-such-exec")
    assert e.value.explanation == "No such exec instance: no-such-exec"
    with pytest.raises(docker.errors.NotFound):
        client.api.exec_start("no-such-exec")
    with pytest.raises(docker.errors.APIError) as e:
        client.api.exec_create(ct.id, [])
    assert e.value.status_code == 400 and e.value.explanation == "No exec command specified"
    with pytest.raises(docker.errors.APIError) as e:
        client.api.exec_create(ct.id, ["id"], user="no-such-user")
    assert e.value.status_code == 400
    assert e.value.explanation == "unable to find user no-such-user: no matching entries in passwd file"
    # started twice
    eid = client.api.exec_create(ct.id, ["true"])["Id"]
    client.api.exec_start(eid)
    with pytest.raises(docker.errors.APIError) as e:
        client.api.exec_start(eid)
    assert e.value.status_code == 409 and e.value.explanation == f"exec command {eid} has already run"
    # created while running, started after the container stopped
    eid = client.api.exec_create(ct.id, ["true"])["Id"]
    ct.kill()
    assert ct.wait()["StatusCode"] == 137
    with pytest.raises(docker.errors.APIError) as e:
        client.api.exec_start(eid)
    assert e.value.status_code == 409 and e.value.explanation == f"container {ct.id} is not running"
    stopped.remove()


# ---------------------------------------------------------------------- detach, ExecIDs, container stop


def test_detached_exec_and_exec_ids(client: docker.DockerClient, ct) -> None:
    assert client.api.inspect_container(ct.id)["ExecIDs"] is None
    assert ct.exec_run(["mkfifo", "/tmp/fifo"]).exit_code == 0
    reader = client.api.exec_create(ct.id, ["cat", "/tmp/fifo"])["Id"]
    out = client.api.exec_start(reader, stream=True)  # returns once the stream is set up
    t0 = time.monotonic()
    writer = client.api.exec_create(ct.id, ["sh", "-c", "echo from-detached > /tmp/fifo; exec sleep 600"])["Id"]
    assert set(client.api.inspect_container(ct.id)["ExecIDs"]) == {reader, writer}
    assert client.api.exec_start(writer, detach=True) == ""
    assert time.monotonic() - t0 < 30  # a detached start does not wait for the process
    assert b"".join(out) == b"from-detached\n"  # written by the detached exec, read by the attached one
    info = client.api.exec_inspect(writer)
    assert info["Running"] is True and info["ExitCode"] is None and info["Pid"] > 0
    assert client.api.exec_inspect(reader)["ExitCode"] == 0
    assert client.api.inspect_container(ct.id)["ExecIDs"] == [writer]  # the live ones only


def test_detached_tty_exec_keeps_its_terminal_and_resizes(client: docker.DockerClient, raw: APIClient, ct) -> None:
    assert ct.exec_run(["mkfifo", "/tmp/gate", "/tmp/out1", "/tmp/out2"]).exit_code == 0
    # the detached process waits at the gate; its pty master is held by the supervisor
    eid = _exec(raw, ct.id, ["sh", "-c", "read x < /tmp/gate; tty > /tmp/out1; stty size > /tmp/out2"], Tty=True)
    assert raw.post(f"/exec/{eid}/start", body={"Detach": True, "Tty": True}).read() == b""
    raw.post(f"/exec/{eid}/resize", params={"h": 44, "w": 55})
    res = ct.exec_run(["sh", "-c", "echo go > /tmp/gate; cat /tmp/out1 /tmp/out2"])
    lines = res.output.splitlines()
    assert lines[0].startswith(b"/dev/pts/") and lines[1] == b"44 55", res.output


def test_execs_die_with_their_container(client: docker.DockerClient, ct) -> None:
    eid = client.api.exec_create(ct.id, ["sh", "-c", "echo started; exec sleep 600"])["Id"]
    out = client.api.exec_start(eid, stream=True)
    assert next(out) == b"started\n"
    ct.kill()
    assert list(out) == []  # the stream ends with the process, killed with the container
    info = client.api.exec_inspect(eid)
    assert info["ExitCode"] == 137 and info["Running"] is False
    assert ct.wait()["StatusCode"] == 137
    assert client.api.inspect_container(ct.id)["ExecIDs"] is None


# ---------------------------------------------------------------------- the process: env, user, cwd, caps


def test_env_user_workdir(client: docker.DockerClient, ct) -> None:
    res = ct.exec_run(["sh", "-c", 'echo "$FROM_CT $FOO $HOSTNAME $HOME"; pwd; id -u; id -g'],
                      environment={"FOO": "bar"}, workdir="/tmp", user="nobody")
    assert res.exit_code == 0
    assert res.output == b"ct bar exechost /home\n/tmp\n65534\n65534\n"
    # defaults: the container's working directory and user, exec env over the container's
    res = ct.exec_run(["sh", "-c", "echo $FROM_CT; pwd; id -u"], environment=["FROM_CT=exec"])
    assert res.output == b"exec\n/etc\n0\n"
    res = ct.exec_run(["sh", "-c", "id -u; id -g"], user="0:65534")
    assert res.output == b"0\n65534\n"


def _cap_eff(output: bytes) -> int:
    line = next(ln for ln in output.decode().splitlines() if ln.startswith("CapEff:"))
    return int(line.split()[1], 16)


def test_privileged_exec_gets_every_capability(client: docker.DockerClient, ct) -> None:
    normal = _cap_eff(ct.exec_run(["cat", "/proc/self/status"]).output)
    privileged = _cap_eff(ct.exec_run(["cat", "/proc/self/status"], privileged=True).output)
    assert privileged & normal == normal and privileged != normal
    assert privileged & (1 << 21)  # CAP_SYS_ADMIN, which docker's default set lacks
    assert not normal & (1 << 21)


# ---------------------------------------------------------------------- docker-py


def test_docker_py_exec_run_modes(client: docker.DockerClient, ct) -> None:
    cmd = ["sh", "-c", "echo out; echo err >&2"]
    res = ct.exec_run(cmd, demux=True)
    assert res.exit_code == 0 and res.output == (b"out\n", b"err\n")
    res = ct.exec_run(cmd, stream=True)
    assert res.exit_code is None  # streamed: no code yet
    assert sorted(b"".join(res.output).splitlines()) == [b"err", b"out"]
    res = ct.exec_run(["tty"], tty=True)
    assert res.exit_code == 0 and res.output.startswith(b"/dev/pts/") and res.output.endswith(b"\r\n")
    res = ct.exec_run(["sh", "-c", "echo $TERM"], tty=True)
    assert res.output == b"xterm\r\n"


def test_docker_py_socket_with_stdin(client: docker.DockerClient, ct) -> None:
    res = ct.exec_run(["sh", "-c", "tr a-z A-Z; echo done"], stdin=True, socket=True)
    sock = res.output._sock
    try:
        sock.sendall(b"hello exec\n")
        sock.shutdown(socket.SHUT_WR)
        frames = _frames(_read_all(sock))
    finally:
        sock.close()
    assert _joined(frames, STDOUT) == b"HELLO EXEC\ndone\n"


def test_low_level_create_start_inspect(client: docker.DockerClient, ct) -> None:
    api = client.api
    eid = api.exec_create(ct.id, ["sh", "-c", "echo $A; exit 4"], environment={"A": "low"}, workdir="/")["Id"]
    assert len(eid) == 64
    assert api.exec_start(eid) == b"low\n"
    info = api.exec_inspect(eid)
    assert info["ExitCode"] == 4 and info["ContainerID"] == ct.id
    assert info["ProcessConfig"] == {"tty": False, "entrypoint": "sh", "arguments": ["-c", "echo $A; exit 4"],
                                     "privileged": False, "user": ""}
    eid = api.exec_create(ct.id, ["sh", "-c", "echo o; echo e >&2"], tty=False)["Id"]
    assert api.exec_start(eid, demux=True) == (b"o\n", b"e\n")


def test_events(client: docker.DockerClient, ct) -> None:
    since = time.time() - 1
    res = ct.exec_run(["sh", "-c", "exit 2"])
    assert res.exit_code == 2
    events = [e for e in client.events(since=since, until=time.time() + 1, decode=True,
                                       filters={"container": ct.id})
              if e["Action"].startswith("exec_")]
    actions = [e["Action"] for e in events]
    assert actions == ["exec_create: sh -c exit 2", "exec_start: sh -c exit 2", "exec_die"], actions
    eid = events[0]["Actor"]["Attributes"]["execID"]
    assert {e["Actor"]["Attributes"]["execID"] for e in events} == {eid}
    die = events[2]["Actor"]["Attributes"]
    assert die["exitCode"] == "2" and die["image"] == "busybox" and die["name"] == ct.name
