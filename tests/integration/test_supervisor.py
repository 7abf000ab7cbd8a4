"""dockyard-supervisor with real containers: lifecycle over the JSON-lines socket, exit
codes, json-file logs, stdin, errors, single-threadedness, and live restore (a container
outlives its supervisor and a new one adopts it).

Synchronisation is by events only: the supervisor's ``ready`` line, the ``wait`` op (answered
when the exit is reaped), pidfds for process exits.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.logs import read_logs
from dockyard.supervisor import command as supervisor_command
from dockyard.supervisor.client import SupervisorClient
from tests.fixtures.bundles import (
    REPO,
    HostSnapshot,
    cgroup_dirs,
    make_bundle,
    runtime_argv,
    runtime_env,
    wait_exit,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]


class Sup:
    """A supervisor subprocess on a tmp root, and the ids handed out to containers."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "sup"
        self.runtime_root = tmp_path / "rt"
        self.tmp = tmp_path
        self.ids: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = SupervisorClient(str(self.root / "supervisor.sock"), timeout=60)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            supervisor_command(sys.executable, str(self.root), str(self.runtime_root)),
            stderr=subprocess.PIPE, env=runtime_env(), cwd=REPO)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()  # blocks until it listens (or dies: EOF)
        assert line == b"ready\n", f"supervisor did not start: {line!r} {self.proc.stderr.read()!r}"

    def stop(self) -> None:
        """SIGTERM, wait for a clean exit (containers are left running)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        self.proc = None

    def call(self, op: str, **kw: object) -> dict:
        return self.client.call(op, **kw)

    def new_id(self) -> str:
        cid = f"dockyard-test-{uuid.uuid4().hex[:12]}"
        self.ids.append(cid)
        return cid

    def run(self, args: list[str], stdin: bool = False, start: bool = True) -> tuple[str, Path]:
        cid = self.new_id()
        log = self.tmp / f"{cid}.log"
        self.call("create", id=cid, bundle=str(make_bundle(self.tmp, args)), log_path=str(log),
                  log_opts={}, stdin=stdin)
        if start:
            self.call("start", id=cid)
        return cid, log


def _records(log: Path) -> list[tuple[str, str]]:
    return [(r["stream"], r["log"]) for r in map(json.loads, log.read_text().splitlines())]


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Sup]:
    snap = HostSnapshot()
    s = Sup(tmp_path)
    s.start()
    try:
        yield s
    finally:
        if s.proc is not None:
            s.stop()
        left = sorted(os.listdir(s.runtime_root)) if s.runtime_root.exists() else []
        for cid in left:
            subprocess.run([*runtime_argv(s.runtime_root), "delete", "-f", cid], env=runtime_env(),
                           capture_output=True, timeout=60)
    assert left == [], f"containers left behind: {left}"
    cgroups = [d for cid in s.ids for d in cgroup_dirs(cid)]
    assert cgroups == [], f"cgroups left behind: {cgroups}"
    assert snap.new_mounts(under=tmp_path) == [], "mounts left behind"
    assert snap.new_processes(marker=str(tmp_path), ids=s.ids) == [], "processes left behind"


def test_exit_code_and_logs(sup: Sup) -> None:
    cid, log = sup.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert sup.call("wait", id=cid)["exit_code"] == 3
    assert sorted(_records(log)) == [("stderr", "err\n"), ("stdout", "out\n")]
    state = sup.call("state", id=cid)
    assert state["status"] == "stopped" and state["exit_code"] == 3 and state["oom_killed"] is False
    assert state["started_at"] and state["finished_at"]
    assert [c["id"] for c in sup.call("list")["containers"]] == [cid]
    sup.call("delete", id=cid)
    with pytest.raises(NotFound):
        sup.call("state", id=cid)


def test_kill_gives_128_plus_signal_and_several_waiters(sup: Sup) -> None:
    import threading

    cid, _ = sup.run(["sleep", "1000"])
    assert sup.call("state", id=cid)["status"] == "running"
    results: list[int] = []
    # a second waiter from another thread, as the daemon's handlers would wait
    t = threading.Thread(target=lambda: results.append(sup.call("wait", id=cid)["exit_code"]))
    t.start()
    sup.call("kill", id=cid, signal="KILL")
    assert sup.call("wait", id=cid)["exit_code"] == 137
    t.join(30)
    assert results == [137]
    sup.call("delete", id=cid)


def test_delete_force_running(sup: Sup) -> None:
    cid, _ = sup.run(["sleep", "1000"])
    with pytest.raises(Conflict):
        sup.call("delete", id=cid)
    sup.call("delete", id=cid, force=True)
    assert sup.call("list")["containers"] == []


def test_stdin(sup: Sup) -> None:
    cid, log = sup.run(["sh", "-c", "read l; echo got:$l"], stdin=True)
    sup.call("write_stdin", id=cid, data_b64=base64.b64encode(b"hello\n").decode())
    sup.call("close_stdin", id=cid)
    assert sup.call("wait", id=cid)["exit_code"] == 0
    assert _records(log) == [("stdout", "got:hello\n")]
    sup.call("delete", id=cid)


def test_tty(sup: Sup, tmp_path: Path) -> None:
    """``tty``: the supervisor takes the pty master from a console socket; the output is
    logged as stdout (with the pty's \\r\\n), stdin and resize go to the master."""
    cid = sup.new_id()
    log = tmp_path / f"{cid}.log"
    bundle = make_bundle(tmp_path, ["sh", "-c", "read l; echo got:$l; stty size; [ -t 0 ] && echo tty"],
                         process={"terminal": True})
    sup.call("create", id=cid, bundle=str(bundle), log_path=str(log), log_opts={}, stdin=True, tty=True)
    sup.call("resize", id=cid, h=33, w=101)
    sup.call("start", id=cid)
    sup.call("write_stdin", id=cid, data_b64=base64.b64encode(b"hi\n").decode())
    assert sup.call("wait", id=cid)["exit_code"] == 0
    records = _records(log)
    assert {s for s, _ in records} == {"stdout"}
    out = "".join(text for _, text in records)
    assert "got:hi\r\n" in out and "33 101\r\n" in out and "tty\r\n" in out
    sup.call("resize", id=cid, h=10, w=10)  # exited: ignored
    sup.call("delete", id=cid)
    assert [p for p in os.listdir(sup.root) if p.startswith("console-")] == []


def test_tty_echo(sup: Sup, tmp_path: Path) -> None:
    cid = sup.new_id()
    log = tmp_path / f"{cid}.log"
    bundle = make_bundle(tmp_path, ["echo", "hi"], process={"terminal": True})
    sup.call("create", id=cid, bundle=str(bundle), log_path=str(log), log_opts={}, tty=True)
    sup.call("start", id=cid)
    assert sup.call("wait", id=cid)["exit_code"] == 0
    assert _records(log) == [("stdout", "hi\r\n")]
    sup.call("delete", id=cid)


def test_errors(sup: Sup, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="bundle"):
        sup.call("create", id=sup.new_id(), bundle=str(tmp_path / "nope"), log_path=None)
    with pytest.raises(NotFound):
        sup.call("state", id="no-such-container")
    with pytest.raises(InvalidArgument):
        sup.call("frobnicate")
    cid, _ = sup.run(["sleep", "1000"])
    with pytest.raises(Conflict):
        sup.call("start", id=cid)
    with pytest.raises(Conflict):
        sup.call("create", id=cid, bundle=str(make_bundle(tmp_path, ["true"])), log_path=None)
    sup.call("delete", id=cid, force=True)


def test_single_threaded_after_containers(sup: Sup) -> None:
    assert sup.proc is not None
    for _ in range(3):
        cid, _ = sup.run(["true"])
        assert sup.call("wait", id=cid)["exit_code"] == 0
        sup.call("delete", id=cid)
    assert len(os.listdir(f"/proc/{sup.proc.pid}/task")) == 1


@pytest.fixture
def subreaper() -> Iterator[None]:
    """This test process as child subreaper while the test runs: the inits a stopped
    supervisor leaves behind become our children, so the test decides when they are reaped."""
    from dockyard import syscalls

    syscalls.prctl(syscalls.Prctl.SET_CHILD_SUBREAPER, 1)
    try:
        yield
    finally:
        syscalls.prctl(syscalls.Prctl.SET_CHILD_SUBREAPER, 0)


def test_live_restore(subreaper: None, sup: Sup) -> None:
    cid, log = sup.run(["sh", "-c", "echo before; exec sleep 1000"])
    done, _ = sup.run(["sh", "-c", "exit 7"])
    assert sup.call("wait", id=done)["exit_code"] == 7
    pid = sup.call("state", id=cid)["pid"]
    # the line is in the log before the supervisor goes (after that a write would meet a
    # closed pipe: see the restart limitation in dockyard.supervisor.server)
    follow = read_logs(str(log), follow=True)
    assert next(follow).data == b"before\n"
    follow.close()
    sup.stop()
    assert not (sup.root / "supervisor.sock").exists()
    os.kill(pid, 0)  # still there: SIGTERM on the supervisor does not touch containers
    assert _records(log) == [("stdout", "before\n")]  # written before the restart: kept
    sup.start()
    state = sup.call("state", id=cid)
    assert state["status"] == "running" and state["pid"] == pid and state["adopted"]
    assert sup.call("state", id=done)["exit_code"] == 7  # recorded before the restart
    sup.call("kill", id=cid, signal=9)
    wait_exit(pid)
    os.waitpid(pid, 0)  # we are its parent now (subreaper); reaping lets the kernel record the status
    # not the supervisor's child: the status comes from PIDFD_GET_INFO (Linux >= 6.15)
    assert sup.call("wait", id=cid)["exit_code"] == 137
    sup.call("delete", id=cid)
    sup.call("delete", id=done)


def test_create_to_start_latency(sup: Sup, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, ["true"])
    times = []
    for _ in range(5):
        cid = sup.new_id()
        t0 = time.perf_counter()
        sup.call("create", id=cid, bundle=str(bundle), log_path=str(tmp_path / f"{cid}.log"))
        sup.call("start", id=cid)
        times.append((time.perf_counter() - t0) * 1000)
        assert sup.call("wait", id=cid)["exit_code"] == 0
        sup.call("delete", id=cid)
    print(f"\ncreate+start of `true` (ms): {', '.join(f'{t:.1f}' for t in times)}; "
          f"median {sorted(times)[len(times) // 2]:.1f}")



# --------------------------------------------------------------------------- attach


def _lines_cmd(n: int) -> tuple[list[str], bytes]:
    """A command printing ``n`` numbered 1000-byte lines, and what it prints."""
    script = 'BEGIN{s=sprintf("%990s",""); gsub(/ /,"x",s); for(i=0;i<N;i++) printf "%09d%s\\n", i, s}'
    return ["awk", "-v", f"N={n}", script], b"".join(b"%09d%s\n" % (i, b"x" * 990) for i in range(n))


def _attach(sup: Sup, cid: str) -> socket.socket:
    """An ``attach`` connection, past its ``{"ok": true}`` line."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(str(sup.root / "supervisor.sock"))
    s.sendall(json.dumps({"op": "attach", "id": cid}).encode() + b"\n")
    line = b""
    while not line.endswith(b"\n"):
        byte = s.recv(1)
        assert byte, f"closed before the answer: {line!r}"
        line += byte
    assert json.loads(line) == {"ok": True}
    return s


def _read_frames(s: socket.socket) -> list[tuple[int, bytes]]:
    """Every stdcopy frame until the supervisor closes the connection."""
    data = bytearray()
    while chunk := s.recv(1 << 20):
        data += chunk
    frames = []
    while data:
        kind, size = data[0], int.from_bytes(data[4:8], "big")
        assert data[1:4] == b"\0\0\0" and len(data) >= 8 + size
        frames.append((kind, bytes(data[8:8 + size])))
        del data[:8 + size]
    return frames


def test_attach_streams_raw_output_and_ends_with_the_run(sup: Sup) -> None:
    # a last line without newline: the attach gets the bytes as written, the log (as
    # docker's json-file) a terminated line
    cid, log = sup.run(["sh", "-c", "printf abc; printf err >&2"], start=False)
    with _attach(sup, cid) as s:
        sup.call("start", id=cid)
        frames = _read_frames(s)  # returns once the supervisor closed: exited and drained
    assert b"".join(d for k, d in frames if k == 1) == b"abc"
    assert b"".join(d for k, d in frames if k == 2) == b"err"
    assert sup.call("wait", id=cid)["exit_code"] == 0
    assert sorted(_records(log)) == [("stderr", "err\n"), ("stdout", "abc\n")]
    sup.call("delete", id=cid)


def test_attach_to_a_finished_run_waits_for_the_next(sup: Sup, tmp_path: Path) -> None:
    cid, log = sup.run(["sh", "-c", "echo run"])
    assert sup.call("wait", id=cid)["exit_code"] == 0
    with _attach(sup, cid) as s:
        # the daemon's restart of an exited container: delete (keeping attach streams), create
        sup.call("delete", id=cid, restart=True)
        sup.call("create", id=cid, bundle=str(make_bundle(tmp_path, ["sh", "-c", "echo second"])),
                 log_path=str(log), log_opts={})
        sup.call("start", id=cid)
        assert _read_frames(s) == [(1, b"second\n")]
    assert sup.call("wait", id=cid)["exit_code"] == 0
    # a real delete ends an attach stream that waits for a next run
    with _attach(sup, cid) as s:
        sup.call("delete", id=cid)
        assert _read_frames(s) == []
    # the supervisor does not hold the container (yet): the stream waits for its create
    with _attach(sup, cid) as s:
        sup.call("create", id=cid, bundle=str(make_bundle(tmp_path, ["echo", "third"])), log_path=None)
        sup.call("start", id=cid)
        assert _read_frames(s) == [(1, b"third\n")]
    sup.call("delete", id=cid)


def test_attach_backpressure_blocks_the_container_not_the_data(sup: Sup, tmp_path: Path) -> None:
    """A client that does not read holds the container at a full pipe (the log stops
    growing short of the output); once it reads, every byte arrives in order."""
    args, expected = _lines_cmd(10_000)  # 10 MB, far beyond the 1 MiB an attach buffers
    cid = sup.new_id()
    log = tmp_path / f"{cid}.log"
    sup.call("create", id=cid, bundle=str(make_bundle(tmp_path, args)), log_path=str(log),
             log_opts={"max-size": "-1"})
    with _attach(sup, cid) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sup.call("start", id=cid)
        sizes = [-1]
        deadline = time.monotonic() + 30
        while True:  # until the log stops growing: the container is blocked
            time.sleep(0.3)
            sizes.append(log.stat().st_size if log.exists() else 0)
            if sizes[-1] == sizes[-2] or time.monotonic() > deadline:
                break
        assert sizes[-1] == sizes[-2], f"the container kept writing to an unread attach: {sizes}"
        logged = sum(len(r.data) for r in read_logs(str(log)))
        assert 0 < logged < 3 * 1024 * 1024, logged  # ~1 MiB buffered here + the socket's
        assert sup.call("state", id=cid)["status"] == "running"
        frames = _read_frames(s)
    assert {k for k, _ in frames} == {1}
    assert b"".join(d for _, d in frames) == expected
    assert sup.call("wait", id=cid)["exit_code"] == 0
    assert sum(len(r.data) for r in read_logs(str(log))) == len(expected)
    sup.call("delete", id=cid)


def test_a_dropped_attach_resumes_the_container_and_the_log_gets_everything(sup: Sup, tmp_path: Path) -> None:
    args, expected = _lines_cmd(3000)  # 3 MB: a stalled attach would block it for good
    cid = sup.new_id()
    log = tmp_path / f"{cid}.log"
    sup.call("create", id=cid, bundle=str(make_bundle(tmp_path, args)), log_path=str(log),
             log_opts={"max-size": "-1"})
    s = _attach(sup, cid)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sup.call("start", id=cid)
    assert s.recv(8)[0] == 1  # some output arrived; then the client goes away without reading on
    time.sleep(0.3)
    s.close()
    assert sup.call("wait", id=cid)["exit_code"] == 0
    assert b"".join(r.data for r in read_logs(str(log))) == expected
    sup.call("delete", id=cid)


def test_attach_errors(sup: Sup) -> None:
    with pytest.raises(InvalidArgument):
        sup.call("attach")
