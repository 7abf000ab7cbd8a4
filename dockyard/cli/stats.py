"""``dockyard stats``: docker's live table of container resource usage.

As docker/cli does: one stats stream per container (``stream=0`` with ``--no-stream``: one
sample, its CPU figure from two samples a second apart), each read by its own thread with
its own connection; without container names, the running containers (``-a``: all) plus
those that start later, followed through ``/events``. The table is redrawn every half
second; on a terminal in place (cursor home, clear to end of line / screen), otherwise
printed whole each time.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from dockyard.cli.context import CLIError, Context
from dockyard.cli.main import new_parser

DEFAULT_FORMAT = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
HEADERS = {"Container": "CONTAINER", "Name": "NAME", "ID": "CONTAINER ID", "CPUPerc": "CPU %",
           "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
           "PIDs": "PIDS"}
_REFRESH = 0.5  # seconds between redraws, as docker's
_FIRST_WAIT = 2.0  # docker gives a container this long to deliver its first sample


def cpu_percent(pre: dict[str, Any], cur: dict[str, Any]) -> float:
    cpu_delta = (cur.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system_delta = cur.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cur.get("online_cpus") or len((cur.get("cpu_usage") or {}).get("percpu_usage") or [])
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def memory_usage(mem: dict[str, Any]) -> float:
    """Usage without the inactive file cache (v1: total_inactive_file, v2: inactive_file)."""
    usage = mem.get("usage", 0)
    stats = mem.get("stats") or {}
    if "total_inactive_file" in stats and stats["total_inactive_file"] < usage:
        return float(usage - stats["total_inactive_file"])
    if stats.get("inactive_file", 0) < usage:
        return float(usage - stats.get("inactive_file", 0))
    return float(usage)


def entry(container: str, s: dict[str, Any]) -> dict[str, Any]:
    """The figures docker's table shows, from one stats record."""
    mem = s.get("memory_stats") or {}
    used = memory_usage(mem)
    limit = float(mem.get("limit", 0))
    rx = sum(n.get("rx_bytes", 0) for n in (s.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (s.get("networks") or {}).values())
    blk_read = blk_write = 0
    for e in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = (e.get("op") or " ")[0].lower()
        if op == "r":
            blk_read += e.get("value", 0)
        elif op == "w":
            blk_write += e.get("value", 0)
    return {
        "container": container, "name": s.get("name", ""), "id": s.get("id", ""),
        "cpu": cpu_percent(s.get("precpu_stats") or {}, s.get("cpu_stats") or {}),
        "mem": used, "limit": limit, "mem_percent": used / limit * 100.0 if limit else 0.0,
        "rx": rx, "tx": tx, "blk_read": blk_read, "blk_write": blk_write,
        "pids": (s.get("pids_stats") or {}).get("current", 0), "invalid": False,
    }


def row(e: dict[str, Any], trunc: bool) -> dict[str, str]:
    from dockyard.cli import units

    name = e["name"].lstrip("/") or "--"
    ident = units.truncate_id(e["id"]) if trunc else e["id"]
    if e["invalid"]:
        return {"Container": e["container"], "Name": name, "ID": ident, "CPUPerc": "--", "MemUsage": "-- / --",
                "MemPerc": "--", "NetIO": "--", "BlockIO": "--", "PIDs": "--"}
    return {
        "Container": e["container"], "Name": name, "ID": ident,
        "CPUPerc": f"{e['cpu']:.2f}%",
        "MemUsage": f"{units.bytes_size(e['mem'])} / {units.bytes_size(e['limit'])}",
        "MemPerc": f"{e['mem_percent']:.2f}%",
        "NetIO": f"{units.human_size(e['rx'], 3)} / {units.human_size(e['tx'], 3)}",
        "BlockIO": f"{units.human_size(e['blk_read'], 3)} / {units.human_size(e['blk_write'], 3)}",
        "PIDs": str(e["pids"]),
    }


class _Collector:
    """The containers followed and their latest figures (shared with the reader threads)."""

    def __init__(self, host: str | None, stream: bool) -> None:
        self.host, self.stream = host, stream
        self.lock = threading.Lock()
        self.entries: dict[str, dict[str, Any]] = {}  # container -> entry, in order added
        self.errors: dict[str, str] = {}
        self.first: dict[str, threading.Event] = {}

    def add(self, container: str) -> bool:
        with self.lock:
            if container in self.entries or any(e["id"] == container for e in self.entries.values()):
                return False
            self.entries[container] = {"container": container, "name": "", "id": container, "invalid": True}
            self.first[container] = threading.Event()
        threading.Thread(target=self._collect, args=(container,), daemon=True).start()
        return True

    def remove(self, cid: str) -> None:
        with self.lock:
            for key in [k for k, e in self.entries.items() if k == cid or e["id"] == cid]:
                del self.entries[key]

    def wait_first(self) -> None:
        deadline = time.monotonic() + _FIRST_WAIT
        for ev in list(self.first.values()):
            ev.wait(max(0.0, deadline - time.monotonic()))

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self.entries.values()]

    def _set(self, container: str, e: dict[str, Any] | None, error: str | None = None) -> None:
        with self.lock:
            if container in self.entries:
                if e is not None:
                    self.entries[container] = e
                else:
                    self.entries[container]["invalid"] = True
            if error:
                self.errors[container] = error
        self.first[container].set()

    def _collect(self, container: str) -> None:
        from dockyard.cli.client import APIClient, APIError, quote

        client = APIClient(self.host)
        path = f"/containers/{quote(container)}/stats"
        try:
            if not self.stream:
                s = client.get(path, params={"stream": False}).json() or {}
                self._set(container, entry(container, s))
                return
            with client.get(path, params={"stream": True}, stream=True) as resp:
                for s in resp.iter_json():
                    self._set(container, entry(container, s))
        except APIError as e:
            self._set(container, None, f"Error response from daemon: {e.message}")
        except Exception as e:  # the connection broke: show "--", as docker does
            self._set(container, None, str(e) if not self.stream else None)
        finally:
            client.close()


def _follow_events(ctx: Context, col: _Collector, all_: bool) -> None:
    """Add containers as they start (``-a``: as they are created); drop them when they die
    (without ``-a``) or are removed."""
    from dockyard.cli.client import APIClient

    add = {"start", "create"} if all_ else {"start"}
    drop = {"destroy"} if all_ else {"destroy", "die"}
    client = APIClient(ctx.host)
    try:
        with client.get("/events", params={"filters": {"type": ["container"]}}, stream=True) as resp:
            for ev in resp.iter_json():
                action, cid = ev.get("Action") or ev.get("status"), (ev.get("Actor") or {}).get("ID") or ev.get("id")
                if not cid:
                    continue
                if action in add:
                    col.add(cid)
                elif action in drop:
                    col.remove(cid)
    except Exception:
        return  # the table keeps showing what it has
    finally:
        client.close()


def cmd_stats(ctx: Context, args: list[str], prog: str = "dockyard stats") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS] [CONTAINER...]",
                   description="Display a live stream of container(s) resource usage statistics")
    p.add_argument("containers", nargs="*")
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("--no-stream", action="store_true", help="Disable streaming stats and only pull the first result")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate output")
    p.add_argument("--format", help="Format output using a custom template")
    o = p.parse_args(args)
    from dockyard.cli.formatting import render
    from dockyard.cli.templates import TemplateError

    fmt = o.format or DEFAULT_FORMAT
    try:
        render([], fmt, DEFAULT_FORMAT, HEADERS)  # a bad template fails before anything starts
    except TemplateError as e:
        raise CLIError(str(e), 1) from None
    col = _Collector(ctx.host, stream=not o.no_stream)
    show_all = not o.containers
    if show_all:
        if not o.no_stream:
            threading.Thread(target=_follow_events, args=(ctx, col, o.all), daemon=True).start()
        for c in ctx.client.get("/containers/json", params={"all": o.all}).json() or []:
            col.add(c["Id"])
    else:
        for name in o.containers:
            col.add(name)
    col.wait_first()
    if not show_all and col.errors:
        for msg in col.errors.values():
            ctx.error(msg)
        return 1

    def table() -> str:  # the header even with no container, as docker 28 prints it
        return render([row(e, not o.no_trunc) for e in col.snapshot()], fmt, DEFAULT_FORMAT, HEADERS)

    if o.no_stream:
        ctx.out.write(table())
        return 0
    tty = ctx.out.isatty()
    while True:
        if not show_all and not col.snapshot():
            if tty:
                ctx.out.write("\033[H\033[J")
            return 0
        text = table()
        if tty:
            lines = text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            ctx.out.write("\033[H" + "".join(line + "\033[K\n" for line in lines) + "\033[J")
        else:
            ctx.out.write(text)
        ctx.out.flush()
        time.sleep(_REFRESH)
