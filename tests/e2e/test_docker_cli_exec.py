"""``docker exec`` (the official docker CLI) against dockyardd: output and exit codes, ``-e``,
``--env-file``, ``-u``, ``-w``, ``-d``, ``-i`` with piped stdin, ``-t``, and ``-it`` on a
pseudo-terminal giving a working interactive shell; docker's errors.

Synchronisation by events: the CLI returns once the exec's exit is recorded, a FIFO orders a
detached writer and its reader, the pty's output is awaited line by line.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, _stop_and_check, start_daemon
from tests.fixtures.terminal import PtyProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed"),
]


@pytest.fixture
def ct(daemon: Daemon, busybox_image: str) -> Iterator[str]:
    """The name of a running container."""
    name = "exec-" + uuid.uuid4().hex[:10]
    daemon.docker("run", "-d", "--name", name, "-e", "FROM_CT=ct", "busybox", "sleep", "600")
    try:
        yield name
    finally:
        daemon.docker("rm", "-f", name, check=False)


def _docker_env(d: Daemon) -> dict[str, str]:
    return {**d.env, "DOCKER_HOST": d.host, "DOCKER_CONFIG": str(d.root / "docker-config")}


def test_exec_output_and_exit_code(daemon: Daemon, ct: str) -> None:
    res = daemon.docker("exec", ct, "echo", "hello")
    assert res.returncode == 0 and res.stdout == "hello\n" and res.stderr == ""
    res = daemon.docker("exec", ct, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert res.returncode == 3 and res.stdout == "out\n" and res.stderr == "err\n"


def test_exec_missing_and_unrunnable_commands(daemon: Daemon, ct: str) -> None:
    res = daemon.docker("exec", ct, "no-such-binary", check=False)
    assert res.returncode == 127
    assert res.stdout == ('OCI runtime exec failed: exec failed: unable to start container process: '
                          'exec: "no-such-binary": executable file not found in $PATH: unknown\r\n')
    res = daemon.docker("exec", ct, "/etc/passwd", check=False)
    assert res.returncode == 126 and "permission denied" in res.stdout


def test_exec_env_user_workdir(daemon: Daemon, ct: str, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=file\nFOO=overridden\n")
    res = daemon.docker("exec", "-e", "FOO=bar", "--env-file", str(env_file), "-u", "nobody", "-w", "/tmp", ct,
                        "sh", "-c", 'echo "$FROM_CT $FROM_FILE $FOO"; pwd; id -u')
    assert res.stdout == "ct file bar\n/tmp\n65534\n"


def test_exec_interactive_piped_stdin(daemon: Daemon, ct: str) -> None:
    res = daemon.docker("exec", "-i", ct, "sh", "-c", "tr a-z A-Z; echo end", input=b"piped input\n")
    assert res.stdout == "PIPED INPUT\nend\n"
    # without -i, stdin is not passed on: cat sees EOF at once
    res = daemon.docker("exec", ct, "cat", input=b"not sent\n")
    assert res.stdout == ""


def test_exec_detached(daemon: Daemon, ct: str) -> None:
    daemon.docker("exec", ct, "mkfifo", "/tmp/fifo")
    res = daemon.docker("exec", "-d", ct, "sh", "-c", "echo from-detached > /tmp/fifo")
    assert res.returncode == 0 and res.stdout == ""
    # the detached writer blocks until a reader opens the FIFO
    assert daemon.docker("exec", ct, "cat", "/tmp/fifo").stdout == "from-detached\n"
    # detached with a terminal: the process has one, and nobody attached
    daemon.docker("exec", "-d", "-t", ct, "sh", "-c", "tty > /tmp/fifo")
    assert daemon.docker("exec", ct, "cat", "/tmp/fifo").stdout.startswith("/dev/pts/")


def test_exec_tty_without_stdin(daemon: Daemon, ct: str) -> None:
    res = daemon.docker("exec", "-t", ct, "sh", "-c", "tty >/dev/null && echo is-a-tty; echo $TERM")
    assert res.stdout == "is-a-tty\r\nxterm\r\n"


def test_exec_it_interactive_shell_on_a_pty(daemon: Daemon, ct: str) -> None:
    argv = [shutil.which("docker") or "docker", "exec", "-it", ct, "sh"]
    with PtyProcess(argv, _docker_env(daemon), rows=30, cols=100) as term:
        term.expect(b"# ")  # the shell's prompt
        term.send(b"echo $((6*7)) $FROM_CT; stty size\r")
        seen = term.expect(b"30 100")  # the CLI's terminal size, passed at exec create
        assert b"42 ct" in seen
        term.send(b"tty\r")
        term.expect(b"/dev/pts/")
        term.send(b"exit 5\r")
        assert term.wait() == 5


def test_exec_it_detach_keys(daemon: Daemon, ct: str) -> None:
    argv = [shutil.which("docker") or "docker", "exec", "-it", "--detach-keys", "ctrl-x,x", ct, "sh"]
    with PtyProcess(argv, _docker_env(daemon)) as term:
        term.expect(b"# ")
        term.send(b"\x18x")
        assert term.wait() == 1  # docker/cli reports the detach as an error
        assert term.output.endswith(b"read escape sequence\r\n"), term.output
    # the shell runs on without a client
    ids = daemon.docker("inspect", "-f", "{{len .ExecIDs}}", ct).stdout.strip()
    assert ids == "1"


def test_exec_errors(daemon: Daemon, ct: str, busybox_image: str) -> None:
    res = daemon.docker("exec", "no-such-container", "true", check=False)
    assert res.returncode == 1
    assert "No such container: no-such-container" in res.stderr
    stopped = daemon.docker("create", "busybox", "true").stdout.strip()
    try:
        res = daemon.docker("exec", stopped, "true", check=False)
        assert res.returncode == 1
        assert res.stderr.strip() == f"Error response from daemon: container {stopped} is not running"
    finally:
        daemon.docker("rm", stopped)
    res = daemon.docker("exec", "-u", "no-such-user", ct, "true", check=False)
    assert res.returncode == 1
    assert "unable to find user no-such-user: no matching entries in passwd file" in res.stderr


def test_exec_after_daemon_kill(tmp_path: Path, busybox_tar: Path) -> None:
    """Live restore: after ``kill -9`` of the daemon, a new one execs in the container that
    kept running, and a detached exec started before is still there."""
    root = tmp_path / "lr"
    d = start_daemon(root)
    try:
        d.cli("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
        d.docker("run", "-d", "--name", "lr-exec", "busybox", "sleep", "600")
        d.docker("exec", "-d", "lr-exec", "sleep", "601")
        d.proc.kill()
        d.proc.wait()
        d.proc.returncode = 0  # killed on purpose: _stop_and_check looks at the second daemon
        d = start_daemon(root)
        assert d.docker("exec", "lr-exec", "echo", "still here").stdout == "still here\n"
        assert "sleep 601" in d.docker("exec", "lr-exec", "ps").stdout
        res = d.docker("exec", "lr-exec", "sh", "-c", "exit 9", check=False)
        assert res.returncode == 9
    finally:
        d.docker("rm", "-f", "lr-exec", check=False)
        _stop_and_check(d)
