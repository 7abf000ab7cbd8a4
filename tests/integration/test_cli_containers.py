"""The dockyard CLI's container commands against the session daemon: run (foreground,
detached, interactive, --rm), ps, logs, stop, rm, and docker's exit codes and messages.

Every test removes what it creates; the ``cleanup`` fixture force-removes leftovers
should an assertion fail half-way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from tests.conftest import Daemon, mounts_under

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]


def _name() -> str:
    return "cli-" + uuid.uuid4().hex[:10]


def test_run_rm_echo(cli: Daemon) -> None:
    name = _name()
    res = cli.cli("run", "--rm", "--name", name, "busybox", "echo", "hello")
    assert res.returncode == 0
    assert res.stdout == "hello\n"
    assert name not in cli.cli("ps", "-a", "--format", "{{.Names}}").stdout.split()


def test_run_rm_exit_codes(cli: Daemon) -> None:
    """run --rm's waiter is answered when the record goes, with the exit code the exit
    left (not the one of the record the waiter saw last, before the exit), and the name
    is free at once; the container's files follow (ps settles on them)."""
    name = _name()
    for code in (3, 0, 137, 42, 1):
        res = cli.cli("run", "--rm", "--name", name, "busybox", "sh", "-c", f"exit {code}", check=False)
        assert res.returncode == code, res.stderr
    assert cli.cli("ps", "-aq").stdout == ""
    assert list((cli.root / "exec" / "bundles").iterdir()) == []
    assert mounts_under(str(cli.root / "exec")) == []


@pytest.mark.parametrize("init", [[], ["--init"]])
def test_container_signals_are_default(cli: Daemon, init: list[str]) -> None:
    """Nothing ignored, nothing blocked in the command: the supervisor's Python ignores
    SIGPIPE and SIGXFSZ, and an ignored disposition survives execve."""
    out = cli.cli("run", "--rm", *init, "busybox", "grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status").stdout
    assert out.split() == ["SigBlk:", "0" * 16, "SigIgn:", "0" * 16], out


def test_run_exit_code_and_stderr(cli: Daemon) -> None:
    name = _name()
    res = cli.cli("run", "--name", name, "busybox", "sh", "-c", "echo e >&2; exit 3", check=False)
    try:
        assert res.returncode == 3, res.stderr
        assert res.stderr == "e\n"
        assert res.stdout == ""
        status = cli.cli("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}").stdout
        assert status.startswith("Exited (3)"), status
    finally:
        cli.cli("rm", name)


def test_run_interactive_stdin(cli: Daemon) -> None:
    res = cli.cli("run", "-i", "--rm", "busybox", "cat", input=b"abc", raw=True)
    # the bytes as written, as docker's attach streams them (the json log, like docker's,
    # ends the unterminated last line with "\n")
    assert res.stdout == b"abc"
    res = cli.cli("run", "-i", "--rm", "busybox", "cat", input=b"line 1\nline 2\n")
    assert res.stdout == "line 1\nline 2\n"
    assert res.returncode == 0


def test_run_env_workdir_user(cli: Daemon) -> None:
    res = cli.cli("run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000", "-h", "box",
                  "busybox", "sh", "-c", 'echo "$FOO $(pwd) $(id -u) $(hostname)"')
    assert res.stdout == "bar /tmp 1000 box\n"


def test_detached_lifecycle(cli: Daemon) -> None:
    name = _name()
    res = cli.cli("run", "-d", "--name", name, "busybox", "sh", "-c", "echo one; echo two; exec sleep 300")
    cid = res.stdout.strip()
    assert len(cid) == 64 and all(c in "0123456789abcdef" for c in cid), res.stdout
    try:
        ps = cli.cli("ps").stdout.splitlines()
        assert ps[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
        (line,) = [row for row in ps if row.endswith(name)]
        assert line.startswith(cid[:12])
        assert " Up " in line
        assert '"sh -c echo one; ech…"' in line
        assert cli.cli("ps", "-q").stdout.split().count(cid[:12]) == 1
        assert cli.cli("ps", "--format", "{{.Names}}").stdout.split().count(name) == 1
        # the container writes its log concurrently: follow it until both lines arrived
        follow = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "-H", cli.host, "logs", "-f", name],
                                  stdout=subprocess.PIPE, env=cli.env)
        try:
            assert follow.stdout is not None
            assert [follow.stdout.readline(), follow.stdout.readline()] == [b"one\n", b"two\n"]
        finally:
            follow.terminate()
            follow.wait(timeout=30)
        assert cli.cli("logs", name).stdout == "one\ntwo\n"
        assert cli.cli("logs", "--tail", "1", name).stdout == "two\n"
        assert cli.cli("logs", "-n", "1", name).stdout == "two\n"
        assert cli.cli("logs", "--since", "1h", name).stdout == "one\ntwo\n"
        assert cli.cli("logs", "--until", "1h", name).stdout == ""
        stamped = cli.cli("logs", "-t", name).stdout.splitlines()
        assert len(stamped) == 2 and stamped[1].endswith(" two") and "T" in stamped[1].split(" ")[0]
        assert cli.cli("inspect", "--format", "{{.State.Status}}", name).stdout == "running\n"
        assert cli.cli("stop", "-t", "1", name).stdout == f"{name}\n"
        assert cli.cli("wait", name).stdout in ("137\n", "143\n")
        assert name not in cli.cli("ps", "--format", "{{.Names}}").stdout.split()
        (line,) = [row for row in cli.cli("ps", "-a").stdout.splitlines() if row.endswith(name)]
        assert " Exited (" in line
        assert cli.cli("container", "ls", "-a", "-q", "--no-trunc").stdout.split().count(cid) == 1
    finally:
        rm = cli.cli("rm", "-f", name, check=False)
    assert rm.returncode == 0 and rm.stdout == f"{name}\n"
    assert name not in cli.cli("ps", "-a", "--format", "{{.Names}}").stdout.split()


def test_run_missing_image(cli: Daemon) -> None:
    # --pull never: no registry is asked (the default would try Docker Hub, which tests never do)
    res = cli.cli("run", "--rm", "--pull", "never", "nosuchimage", "true", check=False)
    assert res.returncode == 125
    assert "Unable to find image" not in res.stderr
    assert "dockyard: Error response from daemon: No such image: nosuchimage:latest" in res.stderr
    res = cli.cli("run", "--pull", "sometimes", "busybox", "true", check=False)
    assert res.returncode == 125 and "invalid pull option: 'sometimes'" in res.stderr


def test_ps_format_names_and_filters(cli: Daemon) -> None:
    name = _name()
    cli.cli("run", "--name", name, "-l", "purpose=cli-test", "busybox", "true")
    try:
        assert cli.cli("ps", "-a", "--format", "{{.Names}}").stdout.split().count(name) == 1
        assert cli.cli("ps", "-l", "--format", "{{.Names}}").stdout == f"{name}\n"
        assert cli.cli("ps", "-n", "1", "--format", "{{.Names}} {{.State}}").stdout == f"{name} exited\n"
        assert cli.cli("ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}}").stdout == f"{name}\n"
        assert cli.cli("ps", "--format", "{{.Names}}").stdout.split().count(name) == 0
    finally:
        cli.cli("rm", name)


def test_errors_exit_1(cli: Daemon) -> None:
    for args in (("stop", "nosuchcontainer"), ("rm", "nosuchcontainer"), ("logs", "nosuchcontainer"),
                 ("kill", "nosuchcontainer")):
        res = cli.cli(*args, check=False)
        assert res.returncode == 1, args
        assert "No such container: nosuchcontainer" in res.stderr, (args, res.stderr)
    res = cli.cli("inspect", "nosuchcontainer", check=False)
    assert res.returncode == 1 and "No such object: nosuchcontainer" in res.stderr


def test_start_attach_and_inspect_falls_back_to_images(cli: Daemon) -> None:
    name = _name()
    cli.cli("create", "--name", name, "busybox", "sh", "-c", "echo started; exit 4")
    try:
        res = cli.cli("start", "-a", name, check=False)
        assert res.returncode == 4 and res.stdout == "started\n"
        assert cli.cli("container", "inspect", "-f", "{{.State.ExitCode}}", name).stdout == "4\n"
    finally:
        cli.cli("container", "rm", name)
    assert cli.cli("inspect", "-f", "{{.Id}}", "busybox").stdout.startswith("sha256:")


def test_start_attach_of_an_exited_container_streams_its_next_run(cli: Daemon) -> None:
    name = _name()
    # the writable layer counts the runs
    cli.cli("run", "--name", name, "busybox", "sh", "-c", "echo x >> /runs; echo run $(wc -l < /runs)")
    try:
        res = cli.cli("start", "-a", name)
        assert res.returncode == 0 and res.stdout == "run 2\n"  # the new run only, not the log replayed
        assert cli.cli("logs", name).stdout == "run 1\nrun 2\n"
    finally:
        cli.cli("rm", name)


def test_logs_follow_ends_with_the_container(cli: Daemon) -> None:
    name = _name()
    cli.cli("run", "-d", "--name", name, "busybox", "sh", "-c", "echo a; echo b >&2; sleep 0.3; echo c")
    try:
        res = cli.cli("logs", "-f", name)
        assert res.stdout == "a\nc\n" and res.stderr == "b\n"
    finally:
        cli.cli("rm", "-f", name)


def test_bad_format_template_is_one_line_error(cli: Daemon) -> None:
    res = cli.cli("ps", "--format", "{{.Foo", check=False)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
