"""The fast parser for `run`/`create` flags against argparse (the fallback): on every input
it either leaves the decision to argparse (None) or gives exactly argparse's result."""

from __future__ import annotations

import pytest

from dockyard.cli.containers import _bools, _fast_run_args, _run_parser

CASES = [
    ["busybox"],
    ["busybox", "echo", "hi"],
    ["--rm", "busybox", "true"],
    ["-it", "--rm", "busybox", "sh"],
    ["-dit", "busybox", "sh", "-c", "echo -x --rm"],
    ["-e", "A=1", "-eB=2", "--env=C=3", "--env", "D", "busybox"],
    ["--name", "web", "-p", "80", "busybox"],  # -p unknown here: argparse decides
    ["--rm=false", "-i=true", "busybox"],
    ["--rm=maybe", "busybox"],
    ["--init", "busybox"], ["--init=false", "busybox"], ["--init=true", "busybox"],
    ["--memory", "64m", "--memory-swap", "-1", "busybox"],
    ["-m64m", "-c", "512", "--cpus=1.5", "busybox"],
    ["--net", "none", "busybox"], ["--network=host", "busybox"],
    ["-h", "myhost", "busybox"], ["--hostname=x", "busybox"],
    ["--cap-add", "NET_ADMIN", "--cap-add=SYS_TIME", "--cap-drop", "ALL", "busybox"],
    ["--security-opt", "no-new-privileges", "--ulimit", "nofile=10:20", "busybox"],
    ["-u", "1000:1000", "-w", "/tmp", "--entrypoint", "", "busybox"],
    ["--entrypoint=", "busybox"],
    ["-l", "a=b", "--label", "c", "--stop-signal", "USR1", "--stop-timeout", "3", "busybox"],
    ["--read-only", "--privileged", "busybox"],
    ["--interact", "busybox"],  # an abbreviation: argparse's rule
    ["--", "busybox"], ["-"], [], ["--rm"], ["-e"], ["--name"], ["--name", "-x", "busybox"],
    ["-e=X", "busybox"], ["-x", "busybox"], ["--help"],
    ["busybox", "--rm"],  # after the image everything is the command's
]


@pytest.mark.parametrize("run", [True, False])
@pytest.mark.parametrize("args", CASES, ids=[" ".join(c) or "<none>" for c in CASES])
def test_fast_parser_agrees_with_argparse(args: list[str], run: bool) -> None:
    if not run and any(a.startswith("-d") and not a.startswith("--") for a in args):
        args = [a.replace("d", "", 1) if a.startswith("-d") else a for a in args]
    fast = _fast_run_args(args, run)
    if fast is None:
        return  # argparse decides (the CLI tests cover its answers)
    p = _run_parser("dockyard run", "", run)
    slow = p.parse_args(_bools(p, args))
    assert vars(fast) == vars(slow)


def test_fast_parser_takes_the_common_forms() -> None:
    for args in (["-it", "--rm", "busybox", "sh"], ["-d", "--name", "x", "-e", "A=1", "busybox", "sleep", "9"],
                 ["--rm", "busybox", "true"]):
        assert _fast_run_args(args, True) is not None, args
