"""The official docker CLI running containers on dockyardd: run (attach + wait + start),
exit codes, --rm, detached containers with ps, logs, stop and rm."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, _stop_and_check, start_daemon

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]


@pytest.fixture
def dk(daemon: Daemon, busybox_image: str) -> Iterator[Daemon]:
    try:
        yield daemon
    finally:
        left = daemon.docker("ps", "-aq", check=False).stdout.split()
        if left:
            daemon.docker("rm", "-f", *left, check=False)


def test_run_rm_prints_and_removes(dk: Daemon) -> None:
    res = dk.docker("run", "--rm", "busybox", "echo", "hello")
    assert res.stdout == "hello\n" and res.returncode == 0
    assert dk.docker("ps", "-aq").stdout.split() == []  # --rm: gone once run returns


def test_run_exit_code_and_stderr(dk: Daemon) -> None:
    res = dk.docker("run", "--name", "exits3", "busybox", "sh", "-c", "echo to-err >&2; exit 3", check=False)
    assert res.returncode == 3
    assert res.stderr == "to-err\n" and res.stdout == ""
    state = json.loads(dk.docker("inspect", "exits3").stdout)[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 3
    dk.docker("rm", "exits3")


def test_run_stdin(dk: Daemon) -> None:
    res = dk.docker("run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z", input=b"shout\n")
    assert res.stdout == "SHOUT\n"


def test_run_stdin_output_is_the_raw_bytes(dk: Daemon) -> None:
    # attach streams what the container wrote: no newline added to an unterminated line
    res = dk.docker("run", "--rm", "-i", "busybox", "cat", input=b"abc")
    assert res.stdout == "abc" and res.returncode == 0


def test_start_attach_of_an_exited_container_streams_its_next_run(dk: Daemon) -> None:
    dk.docker("run", "--name", "twice", "busybox", "sh", "-c", "echo x >> /runs; echo run $(wc -l < /runs)")
    res = dk.docker("start", "-a", "twice")
    assert res.stdout == "run 2\n"  # the new run's output only
    assert dk.docker("logs", "twice").stdout == "run 1\nrun 2\n"
    dk.docker("rm", "twice")


def test_attach_to_a_running_container(dk: Daemon) -> None:
    dk.docker("run", "-d", "-i", "--name", "att", "busybox", "sh", "-c", "echo early; read x; echo got $x; exit 5")
    deadline = time.monotonic() + 30
    while dk.docker("logs", "att").stdout != "early\n":  # written before we attach
        assert time.monotonic() < deadline
        time.sleep(0.05)
    res = dk.docker("attach", "att", input=b"hello\n", check=False)
    # what it wrote before the attach is in the log, not in the attach stream
    assert res.stdout == "got hello\n" and res.returncode == 5
    assert dk.docker("logs", "att").stdout == "early\ngot hello\n"
    dk.docker("rm", "att")


def test_run_unknown_image_and_bad_name(dk: Daemon) -> None:
    res = dk.docker("create", "--pull", "never", "no-such-image:1", check=False)
    assert res.returncode != 0 and "No such image" in res.stderr
    dk.docker("create", "--name", "dup", "busybox", "true")
    res = dk.docker("create", "--name", "dup", "busybox", "true", check=False)
    assert res.returncode != 0
    # the CLI shows the message itself, not the raw JSON body
    assert 'Error response from daemon: Conflict. The container name "/dup" is already in use by container' in res.stderr
    assert '{"message"' not in res.stderr
    dk.docker("rm", "dup")


def test_detached_ps_logs_stop_rm(dk: Daemon) -> None:
    cid = dk.docker("run", "-d", "--name", "sleeper", "busybox", "sh", "-c", "echo up; exec sleep 60").stdout.strip()
    assert len(cid) == 64
    ps = dk.docker("ps", "--no-trunc", "--format", "{{.ID}}|{{.Names}}|{{.Image}}|{{.Status}}").stdout.splitlines()
    assert len(ps) == 1
    pid, name, image, status = ps[0].split("|")
    assert (pid, name, image) == (cid, "sleeper", "busybox") and status.startswith("Up ")
    # -f ends when the container exits; --until bounds a plain read
    assert dk.docker("logs", "sleeper").stdout == "up\n"
    ts = dk.docker("logs", "-t", "sleeper").stdout
    assert ts.endswith(" up\n") and ts[:4].isdigit()
    assert dk.docker("stop", "-t", "1", "sleeper").stdout.strip() == "sleeper"
    assert dk.docker("ps", "-q").stdout.split() == []
    all_ps = dk.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.splitlines()
    assert len(all_ps) == 1 and all_ps[0].startswith("sleeper Exited (137) ")
    assert dk.docker("rm", "sleeper").stdout.strip() == "sleeper"
    assert dk.docker("ps", "-aq").stdout.split() == []


def test_ps_all_shows_exited(dk: Daemon) -> None:
    dk.docker("run", "--name", "done0", "busybox", "true")
    dk.docker("run", "--name", "done1", "busybox", "false", check=False)
    assert dk.docker("ps", "-q").stdout.split() == []
    lines = dk.docker("ps", "-a", "--format", "{{.Names}}|{{.Status}}|{{.Command}}").stdout.splitlines()
    by_name = dict(line.split("|", 1) for line in lines)
    assert by_name["done0"].startswith("Exited (0) ") and by_name["done1"].startswith("Exited (1) ")
    assert dk.docker("ps", "-a", "-q", "--filter", "exited=1").stdout.split() == \
        [dk.docker("inspect", "-f", "{{.Id}}", "done1").stdout.strip()[:12]]
    table = dk.docker("ps", "-a").stdout.splitlines()
    assert table[0].split()[:3] == ["CONTAINER", "ID", "IMAGE"]
    dk.docker("rm", "done0", "done1")


def test_kill_and_rm_force(dk: Daemon) -> None:
    dk.docker("run", "-d", "--name", "victim", "busybox", "sleep", "60")
    res = dk.docker("rm", "victim", check=False)
    assert res.returncode != 0 and "You cannot remove a running container" in res.stderr
    dk.docker("kill", "victim")
    assert dk.docker("wait", "victim").stdout.strip() == "137"
    dk.docker("run", "-d", "--name", "victim2", "busybox", "sleep", "60")
    assert dk.docker("rm", "-f", "victim", "victim2").stdout.split() == ["victim", "victim2"]


def test_live_restore_after_daemon_kill(tmp_path: Path, busybox_tar: Path) -> None:
    """kill -9 the daemon while a container runs: a new daemon on the same roots reuses the
    supervisor, finds the container running, sees what it wrote meanwhile, and stops it."""
    root = tmp_path / "lr"
    d = start_daemon(root)
    try:
        d.cli("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
        d.docker("run", "-d", "--name", "survivor", "busybox", "sh", "-c",
                 "trap 'echo after; exit 5' TERM; echo before; while :; do sleep 0.1; done")
        d.docker("run", "--name", "quick", "busybox", "true")
        d.proc.kill()
        d.proc.wait()
        d.proc.returncode = 0  # killed on purpose: _stop_and_check looks at the second daemon
        d2 = start_daemon(root)
        d = d2
        ps = d.docker("ps", "--format", "{{.Names}} {{.Status}}").stdout.split()
        assert ps[:2] == ["survivor", "Up"]
        assert d.docker("logs", "survivor").stdout == "before\n"
        assert d.docker("inspect", "-f", "{{.State.ExitCode}}", "quick").stdout.strip() == "0"
        d.docker("stop", "survivor")
        assert d.docker("wait", "survivor").stdout.strip() == "5"
        assert d.docker("logs", "survivor").stdout == "before\nafter\n"
        d.docker("rm", "survivor", "quick")
    finally:
        for name in ("survivor", "quick"):
            d.docker("rm", "-f", name, check=False)
        _stop_and_check(d)


def test_run_tty(dk: Daemon) -> None:
    # -t without -i needs no terminal on the CLI's side; the pty turns \n into \r\n
    res = dk.docker("run", "-t", "--rm", "busybox", "echo", "hi")
    assert res.stdout == "hi\r\n" and res.returncode == 0
    assert dk.docker("ps", "-aq").stdout.split() == []


def test_run_tty_logs_raw(dk: Daemon) -> None:
    res = dk.docker("run", "-t", "--name", "ttylogs", "busybox", "sh", "-c", "echo out; echo err >&2; [ -t 1 ]",
                    check=False)
    assert res.returncode == 0 and res.stdout == "out\r\nerr\r\n"
    logs = dk.docker("logs", "ttylogs")
    assert logs.stdout == "out\r\nerr\r\n" and logs.stderr == ""
    dk.docker("rm", "ttylogs")


def test_dockyard_cli_run_tty(dk: Daemon) -> None:
    # the same container through dockyard's own CLI (its pump reads the raw stream)
    res = dk.cli("run", "-t", "--rm", "busybox", "sh", "-c", "echo hi", raw=True)
    assert res.stdout == b"hi\r\n" and res.returncode == 0
