"""``dockyard events``: the daemon's event stream, printed as docker prints it.

``--since``/``--until`` are turned into unix timestamps here, as docker/cli's
GetTimestamp does (a Go duration is relative to now, an RFC3339 time or a date is
converted, anything else is sent as given); ``--filter`` goes to the daemon; ``--format``
is a Go template over docker's event message (``json`` for one JSON object per line).
"""

from __future__ import annotations

import re
import time
from typing import Any

from dockyard.cli.context import CLIError, Context
from dockyard.cli.flags import parse_filters
from dockyard.cli.main import new_parser

_DURATION = re.compile(r"-?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# the layouts docker/cli accepts besides RFC3339 with a zone (no zone: local time)
_LOCAL_LAYOUTS = ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d")


def timestamp(value: str | None, now: float | None = None) -> str | None:
    """docker/cli's GetTimestamp: the value as ``seconds.nanoseconds`` since the epoch."""
    if not value:
        return None
    now = time.time() if now is None else now
    if value != "0" and _DURATION.fullmatch(value):
        secs = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
        return str(int(now - (-secs if value.startswith("-") else secs)))
    from dockyard.logs import parse_time

    try:
        ns = parse_time(value)
        return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"
    except ValueError:
        pass
    for layout in _LOCAL_LAYOUTS:
        try:
            t = time.strptime(value, layout)
        except ValueError:
            continue
        frac = value.rpartition(".")[2] if layout.endswith("%f") else ""
        ns = int(frac[:9].ljust(9, "0")) if frac else 0
        return f"{int(time.mktime(t))}.{ns:09d}"
    return value  # unix seconds, or something the daemon will refuse with its own message


def format_time(time_nano: int) -> str:
    """Go's ``2006-01-02T15:04:05.000000000Z07:00`` in local time."""
    sec, ns = divmod(time_nano, 1_000_000_000)
    lt = time.localtime(sec)
    off = lt.tm_gmtoff
    if off == 0:
        zone = "Z"
    else:
        sign = "+" if off > 0 else "-"
        zone = f"{sign}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", lt) + f".{ns:09d}" + zone


def pretty(ev: dict[str, Any]) -> str:
    """docker's default line: time, type, action, actor ID, then ``(k=v, ...)`` sorted."""
    out = ""
    if ev.get("timeNano"):
        out = format_time(int(ev["timeNano"])) + " "
    elif ev.get("time"):
        out = format_time(int(ev["time"]) * 1_000_000_000) + " "
    actor = ev.get("Actor") or {}
    out += f"{ev.get('Type', '')} {ev.get('Action', '')} {actor.get('ID', '')}"
    attrs = actor.get("Attributes") or {}
    if attrs:
        out += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return out


class _Actor:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.ID = doc.get("ID", "")
        self.Attributes = doc.get("Attributes") or {}

    def to_dict(self) -> dict[str, Any]:
        return {"ID": self.ID, "Attributes": self.Attributes}


class Message:
    """docker's events.Message for templates: Go field names, JSON in docker's key order."""

    def __init__(self, ev: dict[str, Any]) -> None:
        self.Status, self.ID, self.From = ev.get("status", ""), ev.get("id", ""), ev.get("from", "")
        self.Type, self.Action = ev.get("Type", ""), ev.get("Action", "")
        self.Actor = _Actor(ev.get("Actor") or {})
        self.Scope, self.Time, self.TimeNano = ev.get("scope", ""), ev.get("time", 0), ev.get("timeNano", 0)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (("status", self.Status), ("id", self.ID), ("from", self.From)):
            if value:
                out[key] = value
        out.update({"Type": self.Type, "Action": self.Action, "Actor": self.Actor.to_dict(), "scope": self.Scope,
                    "time": self.Time, "timeNano": self.TimeNano})
        return out


def cmd_events(ctx: Context, args: list[str], prog: str = "dockyard events") -> int:
    p = new_parser(prog, usage=f"{prog} [OPTIONS]", description="Get real time events from the server")
    p.add_argument("--since", help="Show all events created since timestamp")
    p.add_argument("--until", help="Stream events until this timestamp")
    p.add_argument("-f", "--filter", action="append", help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template")
    o = p.parse_args(args)
    tmpl = None
    if o.format:
        from dockyard.cli.templates import TemplateError, parse

        try:
            tmpl = parse("{{json .}}" if o.format == "json" else o.format)
            tmpl.execute(Message({}))
        except TemplateError as e:
            raise CLIError("Error parsing format: " + str(e).removeprefix("template parsing error: "), 64) from None
    now = time.time()
    params: dict[str, Any] = {"since": timestamp(o.since, now), "until": timestamp(o.until, now)}
    flt = parse_filters(o.filter)
    if flt:
        params["filters"] = flt
    with ctx.client.get("/events", params=params, stream=True) as resp:
        for ev in resp.iter_json():
            ctx.out.write((tmpl.execute(Message(ev)) if tmpl is not None else pretty(ev)) + "\n")
            ctx.out.flush()
    return 0
