"""Render the daemon's JSON message streams (pull, push, load, build, import...)
the way docker's ``jsonmessage.DisplayJSONMessagesStream`` does.

On a terminal each message with an ``id`` and progress owns one line, rewritten
in place (cursor up N, erase line, text, ``\\r``, cursor down N) with a progress
bar; any message without progress "forgets" those lines, so later progress for
the same id starts a new line (as docker does for ``pull -a``). Not on a terminal:
progress updates are dropped and everything else is one plain line, no escapes.
"""

from __future__ import annotations

import os
import time

from dockyard.cli.units import human_size
from dockyard.errors import DockyardError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (~3 ms)
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, TextIO

__all__ = ["StreamError", "display_stream", "progress_string", "go_duration"]

# ANSI sequences docker emits (via github.com/morikuni/aec).
_ERASE_LINE = "\x1b[2K"


def _up(n: int) -> str:
    return f"\x1b[{n}A" if n > 0 else ""


def _down(n: int) -> str:
    return f"\x1b[{n}B" if n > 0 else ""


class StreamError(DockyardError):
    """An ``error``/``errorDetail`` message in a stream: the operation failed
    although the HTTP status was 200. ``str()`` is the daemon's message."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def go_duration(seconds: int) -> str:
    """time.Duration.String() for whole seconds: ``0s``, ``45s``, ``1m30s``, ``2h0m5s``."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{sign}{h}h{m}m{sec}s"
    if m:
        return f"{sign}{m}m{sec}s"
    return f"{sign}{sec}s"


def progress_string(detail: Mapping[str, Any], width: int = 200, now: float | None = None) -> str:
    """docker's JSONProgress.String(): ``[====>    ]  12.3MB/45.6MB 3s``.

    The bar (50 cells) is shown only when the terminal is wider than 110 columns
    and the time left only when wider than 50, as docker does.
    """
    current = int(detail.get("current") or 0)
    total = int(detail.get("total") or 0)
    units = detail.get("units") or ""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        if units:
            return f"{current} {units}"
        return f"{human_size(current):>8}"

    percentage = min(int(current / total * 100) // 2, 50)
    bar = ""
    if width > 110:
        bar = "[" + "=" * percentage + ">" + " " * max(50 - percentage, 0) + "] "

    numbers = ""
    if detail.get("hidecounts"):
        pass
    elif not units:
        numbers = f"{human_size(current):>8}/{human_size(total)}"
        if current > total:  # a wonky total: show only what we have
            numbers = f"{human_size(current):>8}"
    else:
        numbers = f"{current}/{total} {units}"
        if current > total:
            numbers = f"{current} {units}"

    left = ""
    start = int(detail.get("start") or 0)
    if current > 0 and start > 0 and percentage < 50 and width > 50:
        if now is None:
            now = time.time()
        # Go: (elapsed / current) * remaining, truncated to whole seconds.
        elapsed_ns = int((now - start) * 1e9)
        per_unit_ns = elapsed_ns // current
        left = " " + go_duration((total - current) * per_unit_ns // 1_000_000_000)
    return bar + numbers + left


def _timestamp(msg: Mapping[str, Any]) -> str:
    # RFC3339NanoFixed in local time: 2006-01-02T15:04:05.000000000Z07:00
    time_nano = msg.get("timeNano") or 0
    secs = msg.get("time") or 0
    if not time_nano and not secs:
        return ""
    if time_nano:
        secs, nanos = divmod(int(time_nano), 1_000_000_000)
    else:
        secs, nanos = int(secs), 0
    tm = time.localtime(secs)
    off = tm.tm_gmtoff or 0
    if off == 0:
        zone = "Z"
    else:
        sign = "+" if off > 0 else "-"
        hh, mm = divmod(abs(off) // 60, 60)
        zone = f"{sign}{hh:02d}:{mm:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", tm) + f".{nanos:09d}{zone} "


def _terminal_width(out: TextIO) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 200  # docker's fallback when the window size is unknown


def display_stream(
    messages: Iterable[Mapping[str, Any]],
    out: TextIO,
    *,
    tty: bool | None = None,
    width: int | None = None,
    status_only: bool = False,
    now: float | None = None,
) -> list[Any]:
    """Print a stream of daemon JSON messages; return the ``aux`` payloads seen.

    ``tty`` forces terminal mode on or off (default: ``out.isatty()``); ``width``
    overrides the terminal width used for the progress bar. ``status_only``
    drops progress updates even on a terminal (plain lines only), for commands
    whose output docker keeps terse. An error message is raised as
    :class:`StreamError` after everything before it has been written.
    """
    if tty is None:
        isatty = getattr(out, "isatty", None)
        tty = bool(isatty and isatty())
    if status_only:
        tty = False
    if width is None:
        width = _terminal_width(out) if tty else 200
    aux: list[Any] = []
    ids: dict[str, int] = {}
    write = out.write
    # each message shows as it comes, as docker's does: a pipe's (block-buffered) stdout too
    flush = getattr(out, "flush", None) or (lambda: None)

    for msg in messages:
        if not isinstance(msg, dict):
            continue
        if msg.get("aux") is not None:
            aux.append(msg["aux"])
            continue
        ident = msg.get("id") or ""
        detail = msg.get("progressDetail")
        has_progress = detail is not None
        progress_msg = msg.get("progress") or ""
        diff = 0
        if ident and (has_progress or progress_msg):
            line = ids.get(ident)
            if line is None:
                # A new id takes the next line: newline now, then climb back to it.
                line = len(ids)
                ids[ident] = line
                if tty:
                    write("\n")
            diff = len(ids) - line
            if tty:
                write(_up(diff))
        else:
            # Output that isn't progress invalidates the remembered lines.
            ids = {}

        error = _display(msg, write, tty, width, now, detail, progress_msg)
        if ident and tty:
            write(_down(diff))
        flush()
        if error is not None:
            raise error
    return aux


def _display(
    msg: Mapping[str, Any],
    write: Any,
    tty: bool,
    width: int,
    now: float | None,
    detail: Any,
    progress_msg: str,
) -> StreamError | None:
    err_detail = msg.get("errorDetail")
    if err_detail is not None or msg.get("error"):
        code = None
        message = msg.get("error") or ""
        if isinstance(err_detail, dict):
            code = err_detail.get("code")
            message = err_detail.get("message") or message
        if code == 401:
            message = "authentication is required"
        return StreamError(str(message), code)

    stream = msg.get("stream") or ""
    status = msg.get("status") or ""
    detail_map: Mapping[str, Any] = detail if isinstance(detail, dict) else {}
    endl = ""
    if tty and not stream and detail is not None:
        write(_ERASE_LINE + "\r")
        endl = "\r"
    elif detail is not None and progress_string(detail_map, width, now):
        return None  # no progress bars off a terminal
    parts = [_timestamp(msg)]
    if msg.get("id"):
        parts.append(f"{msg['id']}: ")
    if msg.get("from"):
        parts.append(f"(from {msg['from']}) ")
    if detail is not None and tty:
        parts.append(f"{status} {progress_string(detail_map, width, now)}{endl}")
    elif progress_msg:
        parts.append(f"{status} {progress_msg}{endl}")
    elif stream:
        parts.append(f"{stream}{endl}")
    else:
        parts.append(f"{status}{endl}\n")
    write("".join(parts))
    return None
