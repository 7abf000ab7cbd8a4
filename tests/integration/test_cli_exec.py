"""``dockyard exec``: output and exit codes (the command's own, 126 / 127 for one that cannot
run, 1 for daemon errors), ``-e``/``--env-file``/``-u``/``-w``/``--privileged``, ``-d``,
``-i`` with piped stdin, ``-t``, and ``-it`` on a pseudo-terminal: an interactive shell,
resize, detach keys.

Synchronisation by events: the CLI returns once the exec's exit is recorded, a FIFO orders a
detached writer and its reader, the pty's output is awaited.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon
from tests.fixtures.terminal import PtyProcess

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]


@pytest.fixture
def ct(daemon: Daemon, busybox_image: str) -> Iterator[str]:
    name = "cliexec-" + uuid.uuid4().hex[:10]
    daemon.cli("run", "-d", "--name", name, "-e", "FROM_CT=ct", "-w", "/etc", "busybox", "sleep", "600")
    try:
        yield name
    finally:
        daemon.cli("rm", "-f", name, check=False)


def _argv(d: Daemon, *args: str) -> list[str]:
    return [sys.executable, "-m", "dockyard.cli.main", "-H", d.host, *args]


def test_output_and_exit_codes(daemon: Daemon, ct: str) -> None:
    res = daemon.cli("exec", ct, "echo", "hello")
    assert res.returncode == 0 and res.stdout == "hello\n"
    res = daemon.cli("exec", ct, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")
    res = daemon.cli("exec", ct, "no-such-binary", check=False)
    assert res.returncode == 127 and 'exec: "no-such-binary": executable file not found in $PATH' in res.stdout
    res = daemon.cli("exec", ct, "/etc/passwd", check=False)
    assert res.returncode == 126 and "permission denied" in res.stdout


def test_env_user_workdir_privileged(daemon: Daemon, ct: str, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("FROM_FILE=file\n")
    res = daemon.cli("exec", "-e", "FOO=bar", "--env-file", str(env_file), "-u", "nobody", "-w", "/tmp", ct,
                     "sh", "-c", 'echo "$FROM_CT $FROM_FILE $FOO"; pwd; id -u')
    assert res.stdout == "ct file bar\n/tmp\n65534\n"
    assert daemon.cli("exec", ct, "pwd").stdout == "/etc\n"  # the container's working directory
    plain = daemon.cli("exec", ct, "grep", "CapEff", "/proc/self/status").stdout.split()[1]
    privileged = daemon.cli("exec", "--privileged", ct, "grep", "CapEff", "/proc/self/status").stdout.split()[1]
    assert int(privileged, 16) & (1 << 21) and not int(plain, 16) & (1 << 21)  # CAP_SYS_ADMIN


def test_interactive_piped_stdin_and_detached(daemon: Daemon, ct: str) -> None:
    res = daemon.cli("exec", "-i", ct, "sh", "-c", "tr a-z A-Z; echo end", input=b"piped\nlines\n")
    assert res.stdout == "PIPED\nLINES\nend\n"
    daemon.cli("exec", ct, "mkfifo", "/tmp/fifo")
    res = daemon.cli("exec", "-d", ct, "sh", "-c", "echo from-detached > /tmp/fifo")
    assert res.returncode == 0 and res.stdout == ""
    assert daemon.cli("exec", ct, "cat", "/tmp/fifo").stdout == "from-detached\n"


def test_tty_without_stdin(daemon: Daemon, ct: str) -> None:
    res = daemon.cli("exec", "-t", ct, "sh", "-c", "tty >/dev/null && echo is-a-tty; echo err >&2", raw=True)
    assert res.stdout == b"is-a-tty\r\nerr\r\n" and res.stderr == ""


def test_it_interactive_shell_on_a_pty(daemon: Daemon, ct: str) -> None:
    with PtyProcess(_argv(daemon, "exec", "-it", ct, "sh"), daemon.env, rows=30, cols=100) as term:
        term.expect(b"# ")
        term.send(b"echo $((6*7)) $FROM_CT; stty size\r")
        seen = term.expect(b"30 100")  # the terminal's size, passed at exec create
        assert b"42 ct" in seen
        # in the foreground once it prints (the quotes keep the echoed command line apart)
        term.send(b"sh -c 'echo ar\"\"med; exec sleep 600'\r")
        term.expect(b"armed\r\n")
        term.send(b"\x03")  # ctrl-c: for the container's terminal (the CLI's is raw), not the CLI
        term.expect(b"# ")
        term.send(b"echo $((40+2))\r")
        term.expect(b"42")
        term.send(b"exit 6\r")
        assert term.wait() == 6


def test_it_detach_keys_leave_the_process_running(daemon: Daemon, ct: str) -> None:
    with PtyProcess(_argv(daemon, "exec", "-it", "--detach-keys", "ctrl-x,x", ct, "sh"), daemon.env) as term:
        term.expect(b"# ")
        term.send(b"\x18x")
        assert term.wait() == 1
        assert term.output.endswith(b"read escape sequence\r\n")
    assert daemon.cli("inspect", "-f", "{{len .ExecIDs}}", ct).stdout.strip() == "1"


def test_errors(daemon: Daemon, ct: str) -> None:
    res = daemon.cli("exec", "no-such-container", "true", check=False)
    assert res.returncode == 1
    assert res.stderr == "Error response from daemon: No such container: no-such-container\n"
    stopped = daemon.cli("create", "busybox", "true").stdout.strip()
    try:
        res = daemon.cli("exec", stopped, "true", check=False)
        assert res.returncode == 1
        assert res.stderr == f"Error response from daemon: container {stopped} is not running\n"
    finally:
        daemon.cli("rm", stopped)
    res = daemon.cli("exec", ct, check=False)
    assert res.returncode == 1 and "requires at least 2 arguments" in res.stderr
    res = daemon.cli("exec", "-it", ct, "true", input=b"", check=False)
    assert res.returncode == 1 and res.stderr == "the input device is not a TTY\n"
