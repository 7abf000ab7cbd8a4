"""``GET /containers/{id}/top``: the host's ``ps`` filtered to a container's processes.

As dockerd does: ``ps`` runs on the host with the caller's arguments (``-ef`` by default)
plus ``-q<pid,...>`` selecting the container's processes; options that cannot be combined
with ``-q`` make ps fail, and it is run again without it. Either way the rows are filtered
by the PID column against the container's pids (thread rows, whose PID column is ``-``,
follow the process row they belong to), and fields beyond the title count are joined into
the last column (the command line has spaces).
"""

from __future__ import annotations

import re
import subprocess

from dockyard.errors import DockyardError, InvalidArgument

# "-o user=PID" would title another column PID and fool the filter: only "pid=" may
_RENAMED_PID = re.compile(r"\s+([^\s]*)=\s*(PID[^\s]*)")
_ASCII_WS = re.compile(r"[\t\n\f\r ]+")  # docker splits on ASCII whitespace only


def validate_ps_args(ps_args: str) -> None:
    for key, value in _RENAMED_PID.findall(ps_args):
        if key != "pid":
            raise InvalidArgument(f'specifying "{key}={value}" is not allowed')


def _fields(line: str) -> list[str]:
    return [f for f in _ASCII_WS.split(line) if f]


def parse_ps(output: str, pids: set[int]) -> dict[str, list]:
    lines = output.split("\n")
    titles = _fields(lines[0]) if lines else []
    if "PID" not in titles:
        raise DockyardError("Couldn't find PID field in ps output")
    at = titles.index("PID")
    processes: list[list[str]] = []
    follows = False  # the last process row was the container's: its thread rows are too

    def add(fields: list[str]) -> None:
        head = fields[: len(titles) - 1]
        processes.append(head + [" ".join(fields[len(titles) - 1:])])

    for line in lines[1:]:
        fields = _fields(line)
        if len(fields) <= at:
            continue
        if fields[at] == "-":
            if follows:
                add(fields)
            continue
        try:
            pid = int(fields[at])
        except ValueError:
            raise DockyardError(f"Unexpected pid '{fields[at]}'") from None
        follows = pid in pids
        if follows:
            add(fields)
    return {"Titles": titles, "Processes": processes}


def top(pids: list[int], ps_args: str = "") -> dict[str, list]:
    """Run ``ps`` for ``pids`` and return docker's ``{"Titles", "Processes"}``."""
    ps_args = ps_args or "-ef"
    validate_ps_args(ps_args)
    args = [a for a in ps_args.split(" ") if a]
    proc = None
    if pids:
        proc = subprocess.run(["ps", *args, "-q" + ",".join(map(str, pids))], capture_output=True, text=True)
    if proc is None or proc.returncode != 0:
        proc = subprocess.run(["ps", *args], capture_output=True, text=True)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[0]
            raise DockyardError(f"ps: {first}")
    return parse_ps(proc.stdout, set(pids))
