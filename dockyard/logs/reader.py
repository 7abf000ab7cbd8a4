"""Reading json-file logs: ``docker logs`` with ``--tail``, ``--since``, ``--until`` and ``-f``.

The writer (in the supervisor process) appends and rotates; readers live in the daemon.

* Files are read oldest first: ``path.N[.gz]`` ... ``path.1[.gz]``, ``path``. The whole set is
  opened while holding the log directory's ``flock`` shared (the writer renames under it
  exclusively), so a reader never sees a half-done rotation; from then on it reads through
  its open fds, and a rename or deletion cannot take lines away from it.
* ``tail=N`` counts the last N records (as docker: a 16 KiB-split line is several records, and
  the count is taken before stream and time filters, as docker's daemon applies those after
  the driver's tail). Plain files are scanned backwards in 64 KiB blocks; gzip files are
  streamed, keeping only a count.
* Following is by inode: the follower keeps its fd on the file it is reading and a single
  inotify watch on the directory (IN_MODIFY of a child, IN_CREATE, IN_MOVED_FROM/TO); one
  directory watch sees writes to ``path`` and to the renamed ``path.1`` alike and cannot race
  with a rename the way a watch on a path can. When ``path`` names another inode, the old fd
  is drained to EOF (the writer never writes to it again once renamed) and the files newer
  than it are opened under the lock: normally just the new ``path``; if the follower fell
  behind several rotations, every rotated file in between, oldest first.
* Events are only hints: after every wake-up the follower reads to EOF and re-checks, so a
  coalesced or overflowed inotify queue cannot lose lines.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import select
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from dockyard import syscalls
from dockyard.logs.jsonfile import decode_log_text, parse_time, read_gzip_extra, rotation_lock

_BLOCK = 64 * 1024
_WATCH_MASK = (syscalls.InotifyMask.MODIFY | syscalls.InotifyMask.CREATE | syscalls.InotifyMask.MOVED_TO
               | syscalls.InotifyMask.MOVED_FROM | syscalls.InotifyMask.CLOSE_WRITE
               | syscalls.InotifyMask.DELETE)


class LogRecord(NamedTuple):
    stream: str  # "stdout" | "stderr"
    data: bytes  # the original bytes, including the trailing "\n" unless partial
    time: float  # seconds since the epoch (float: convenience; exact value in time_ns)
    time_str: str  # the timestamp as stored in the file (RFC3339Nano, UTC)
    partial: bool  # a piece of a longer line (no trailing "\n")
    time_ns: int


def _parse_line(line: bytes) -> LogRecord | None:
    try:
        obj = json.loads(line)
        data = decode_log_text(obj["log"])
        time_str = obj["time"]
        ns = parse_time(time_str)
        stream = obj.get("stream", "stdout")
    except (ValueError, KeyError, TypeError):
        return None  # a torn or foreign line must not end `docker logs`; docker skips it too
    return LogRecord(stream, data, ns / 1e9, time_str, not data.endswith(b"\n"), ns)


@dataclass
class _Filter:
    stdout: bool = True
    stderr: bool = True
    since_ns: int | None = None
    until_ns: int | None = None

    def keep(self, rec: LogRecord) -> bool:
        if not (self.stdout if rec.stream == "stdout" else self.stderr if rec.stream == "stderr" else True):
            return False
        if self.since_ns is not None and rec.time_ns < self.since_ns:
            return False
        return not (self.until_ns is not None and rec.time_ns > self.until_ns)


def _secs_to_ns(ts: float | None) -> int | None:
    if ts is None:
        return None
    sec = int(ts)
    return sec * 1_000_000_000 + round((ts - sec) * 1_000_000_000)


# --------------------------------------------------------------------------- the file set


class _File:
    """One log file opened under the rotation lock: a plain file read through ``fd`` from
    ``offset``, or a gzip file (complete, never written again) whose first ``skip`` lines are
    dropped (tail)."""

    def __init__(self, fd: int, gz: bool, ino: int) -> None:
        self.fd = fd
        self.gz = gz
        self.ino = ino  # for gz: the inode of the uncompressed original (dockyardIno)
        self.offset = 0
        self.skip = 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def read_lines(self) -> Iterator[bytes]:
        """Complete lines from ``offset`` to the current EOF; ``offset`` advances past each.
        A torn last line (writer mid-write) is left for the next call."""
        if self.gz:
            yield from self._gz_lines()
            return
        size = _BLOCK * 4
        while True:
            chunk = os.pread(self.fd, size, self.offset)
            if not chunk:
                return
            end = chunk.rfind(b"\n")
            if end < 0:
                if len(chunk) < size:
                    return  # torn record at EOF: wait for the rest
                size *= 2  # a record larger than the block: read more at once
                continue
            for line in chunk[:end].split(b"\n"):
                self.offset += len(line) + 1
                yield line

    def _gz_lines(self) -> Iterator[bytes]:
        skip = self.skip
        for line in _gz_iter_lines(self.fd):
            if skip:
                skip -= 1
                continue
            yield line

    def count_lines(self, end: int | None = None) -> int:
        if self.gz:
            return sum(1 for _ in _gz_iter_lines(self.fd))
        total = 0
        pos = 0
        end = os.fstat(self.fd).st_size if end is None else end
        while pos < end:
            chunk = os.pread(self.fd, min(_BLOCK * 16, end - pos), pos)
            if not chunk:
                break
            total += chunk.count(b"\n")
            pos += len(chunk)
        return total


def _gz_iter_lines(fd: int) -> Iterator[bytes]:
    # a raw zlib stream over pread keeps the fd's own offset untouched and needs no file object
    dec = zlib.decompressobj(zlib.MAX_WBITS | 16)
    pos = 0
    rest = b""
    while True:
        chunk = os.pread(fd, _BLOCK * 4, pos)
        if not chunk:
            break
        pos += len(chunk)
        data = rest + dec.decompress(chunk)
        lines = data.split(b"\n")
        rest = lines.pop()
        yield from lines
        if dec.eof:
            break


_NAME_RE_CACHE: dict[str, re.Pattern[str]] = {}


def _list_files(path: str) -> list[tuple[int, str, bool]]:
    """(index, name, gz) of the log set, newest (index 0, ``path`` itself) first."""
    directory, base = os.path.split(path)
    pat = _NAME_RE_CACHE.get(base)
    if pat is None:
        pat = _NAME_RE_CACHE[base] = re.compile(re.escape(base) + r"(?:\.(\d+)(\.gz)?)?\Z")
    found = []
    for name in os.listdir(directory):
        m = pat.match(name)
        if m:
            found.append((int(m.group(1) or 0), os.path.join(directory, name), bool(m.group(2))))
    found.sort(key=lambda t: (t[0], t[2]))
    return found


def _gz_ino(fd: int) -> int | None:
    extra = read_gzip_extra(fd)
    if not extra:
        return None
    try:
        return int(json.loads(extra).get("dockyardIno"))
    except (ValueError, TypeError, AttributeError):
        return None  # docker's own .gz: no inode recorded


def _open_set(path: str, after_ino: int | None = None) -> list[_File]:
    """Open the log files oldest first; with ``after_ino``, only those newer than the file
    whose (original) inode that is — all of them if it is gone (we fell too far behind)."""
    with rotation_lock(path, exclusive=False):
        entries = _list_files(path)
        opened: list[tuple[int, _File]] = []
        try:
            for index, name, gz in entries:
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                ino = os.fstat(fd).st_ino
                if gz:
                    ino = _gz_ino(fd) or -1
                opened.append((index, _File(fd, gz, ino)))
        except BaseException:
            for _, f in opened:
                f.close()
            raise
    if after_ino is not None:
        # plain matches first; a .gz recording the inode is ours only if no plain file is
        # (inode numbers are reused once a file is gone: the newest gz match is ours)
        pos = next((i for i, (_, f) in enumerate(opened) if not f.gz and f.ino == after_ino), None)
        if pos is None:
            pos = next((i for i, (_, f) in enumerate(opened) if f.gz and f.ino == after_ino), None)
        if pos is not None:
            for _, f in opened[pos:]:
                f.close()
            opened = opened[:pos]
    opened.reverse()  # oldest first
    return [f for _, f in opened]


def _apply_tail(files: list[_File], tail: int) -> list[_File]:
    """Position ``files`` (oldest first) so that reading them yields the last ``tail`` lines;
    returns the files still to read, closing the others. The newest plain file is always
    kept (at its end if it contributes nothing): a follower continues from it."""
    need = tail
    first = 0  # index of the oldest file that contributes
    for i in range(len(files) - 1, -1, -1):
        if need <= 0:
            first = i + 1
            break
        f = files[i]
        if f.gz:
            n = f.count_lines()
            f.skip = max(0, n - need)
            need -= n - f.skip
        else:
            # count only complete lines: a torn record at EOF is not a line yet
            end = _rfind_newline(f.fd, os.fstat(f.fd).st_size) + 1
            f.offset, found = _backward_lines(f.fd, end, need)
            need -= found
    keep = files[first:]
    newest = files[-1]
    if not keep and not newest.gz:
        newest.offset = _rfind_newline(newest.fd, os.fstat(newest.fd).st_size) + 1
        keep = [newest]
    for f in files[:first]:
        if f not in keep:
            f.close()
    return keep


def _rfind_newline(fd: int, end: int) -> int:
    pos = end
    while pos > 0:
        start = max(0, pos - _BLOCK)
        chunk = os.pread(fd, pos - start, start)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            return start + idx
        pos = start
    return -1


def _backward_lines(fd: int, end: int, need: int) -> tuple[int, int]:
    """Scan backwards from ``end`` (just after a newline) for ``need`` lines; returns
    (offset of the first of them, how many were found)."""
    if need <= 0:
        return end, 0
    found = 0
    pos = end
    # the newline ending the last line is at end-1; the N-th line from the end starts after
    # the (N+1)-th newline counted backwards, or at 0
    newlines = 0
    while pos > 0:
        start = max(0, pos - _BLOCK)
        chunk = os.pread(fd, pos - start, start)
        idx = len(chunk)
        while True:
            idx = chunk.rfind(b"\n", 0, idx)
            if idx < 0:
                break
            newlines += 1
            if newlines == need + 1:
                return start + idx + 1, need
        pos = start
    found = newlines
    return 0, found


def _iter_records(files: Iterable[_File], flt: _Filter) -> Iterator[LogRecord]:
    for f in files:
        for line in f.read_lines():
            rec = _parse_line(line)
            if rec is not None and flt.keep(rec):
                yield rec


# --------------------------------------------------------------------------- stop token


class FollowStop:
    """Ends a follow: ``set()`` once nothing more will be written (the container exited):
    the follower drains what is on disk, then ends; ``cancel()`` ends it at once (the client
    went away). Backed by a pipe so a follower blocked in ``select`` wakes immediately."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._set = False
        self._cancelled = False

    def set(self) -> None:
        self._set = True
        self._wake()

    def cancel(self) -> None:
        self._cancelled = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._w, b"x")

    def is_set(self) -> bool:
        return self._set or self._cancelled

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def fileno(self) -> int:
        return self._r

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)


StopLike = FollowStop | threading.Event | Callable[[], bool]
_POLL_FALLBACK = 0.05  # only for stop objects without a file descriptor to wait on


def _stop_state(stop: StopLike | None) -> tuple[bool, bool]:
    """(stop requested, cancelled)."""
    if stop is None:
        return False, False
    if isinstance(stop, FollowStop):
        return stop.is_set(), stop.cancelled
    if isinstance(stop, threading.Event):
        return stop.is_set(), False
    return bool(stop()), False


# --------------------------------------------------------------------------- follower


class LogFollower:
    """Non-blocking core of ``docker logs -f``: ``read_available()`` returns what is new,
    ``fileno()`` becomes readable when there may be more. Usable from a thread (see
    ``iterate``) or from asyncio (see ``aread_logs``)."""

    def __init__(self, path: str, *, stdout: bool = True, stderr: bool = True,
                 since: float | None = None, until: float | None = None,
                 tail: int | str | None = None) -> None:
        self.path = os.path.abspath(path)
        self._filter = _Filter(stdout, stderr, _secs_to_ns(since), _secs_to_ns(until))
        self.past_until = False
        self._ino_fd = syscalls.inotify_init1()
        try:
            # watch before opening anything: every write after our first read raises an event
            syscalls.inotify_add_watch(self._ino_fd, os.path.dirname(self.path), _WATCH_MASK)
            files = _open_set(self.path)
        except BaseException:
            os.close(self._ino_fd)
            raise
        tail_n = _tail_count(tail)
        if tail_n is not None and files:
            files = _apply_tail(files, tail_n)
        # rotated files are complete: a queue to drain; the newest plain file is live
        # (if it was rotated meanwhile, the first EOF finds out and switches as usual)
        self._live: _File | None = None
        self._last_ino: int | None = files[-1].ino if files else None
        if files and not files[-1].gz:
            self._live = files.pop()
        self._backlog: collections.deque[_File] = collections.deque(files)
        self._lines: Iterator[bytes] | None = None

    def fileno(self) -> int:
        return self._ino_fd

    def read_available(self, limit: int = 4096) -> list[LogRecord]:
        """Up to ``limit`` new records without blocking (fewer: nothing more right now)."""
        out: list[LogRecord] = []
        while True:
            line = self._next_line()
            if line is None:
                return out
            rec = _parse_line(line)
            if rec is None:
                continue
            if self._filter.until_ns is not None and rec.time_ns > self._filter.until_ns:
                self.past_until = True  # nothing later can be in range: the follow is over
                return out
            if self._filter.keep(rec):
                out.append(rec)
                if len(out) >= limit:
                    return out

    def _next_line(self) -> bytes | None:
        while True:
            if self._lines is not None:
                line = next(self._lines, None)
                if line is not None:
                    return line
                self._lines = None
            if self._backlog:
                f = self._backlog[0]
                if f.fd < 0:  # already drained
                    self._backlog.popleft()
                    continue
                self._lines = _drain_then_close(f)
                self._backlog.popleft()
                continue
            # the live file: drain pending inotify events first so none are left queued for
            # data we are about to read anyway
            syscalls.inotify_read(self._ino_fd)
            if self._live is None:
                # no file yet, or ours was renamed with nothing newer: anything newer now?
                files = _open_set_if_exists(self.path, self._last_ino)
                if not files:
                    return None
                self._last_ino = files[-1].ino
                if not files[-1].gz:
                    self._live = files.pop()
                self._backlog.extend(files)
                continue
            self._lines = self._live.read_lines()
            line = next(self._lines, None)
            if line is not None:
                return line
            self._lines = None
            if _same_file(self.path, self._live.fd):
                return None  # at EOF of the current file: wait for an event
            self._switch()

    def _switch(self) -> None:
        """``path`` is another inode now: finish the old file, queue the newer ones."""
        assert self._live is not None
        old = self._live
        newer = _open_set(self.path, after_ino=old.ino)
        self._live = None
        if newer:
            self._last_ino = newer[-1].ino
        if newer and not newer[-1].gz:
            self._live = newer.pop()
        # the old file first: the writer finished it before renaming it, so EOF is final
        self._backlog.extend([old, *newer])

    def iterate(self, stop: StopLike | None = None) -> Iterator[LogRecord]:
        """Blocking iteration for a thread: ends after ``stop`` is set and the files are
        drained, at once on ``FollowStop.cancel()``, or when ``until`` has passed."""
        stop_fd = stop.fileno() if isinstance(stop, FollowStop) else None
        while True:
            stopping, cancelled = _stop_state(stop)
            if cancelled:
                return
            recs = self.read_available()
            yield from recs
            if self.past_until:
                return
            if recs:
                continue  # maybe more right away
            if stopping:
                return
            fds = [self._ino_fd] if stop_fd is None else [self._ino_fd, stop_fd]
            timeout = _POLL_FALLBACK if stop is not None and stop_fd is None else None
            select.select(fds, [], [], timeout)

    def close(self) -> None:
        for f in [*self._backlog, *([self._live] if self._live else [])]:
            f.close()
        self._backlog.clear()
        self._live = None
        if self._ino_fd >= 0:
            os.close(self._ino_fd)
            self._ino_fd = -1

    def __enter__(self) -> LogFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drain_then_close(f: _File) -> Iterator[bytes]:
    try:
        yield from f.read_lines()
    finally:
        f.close()


def _open_set_if_exists(path: str, after_ino: int | None) -> list[_File]:
    try:
        return _open_set(path, after_ino)
    except FileNotFoundError:  # the directory itself is gone (container removed)
        return []


def _same_file(path: str, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False  # mid-rotation or removed: _switch decides under the lock


def _tail_count(tail: int | str | None) -> int | None:
    if tail is None or tail == "all":
        return None
    n = int(tail)
    return None if n < 0 else n  # docker treats a negative tail as "all"


# --------------------------------------------------------------------------- public API


def read_logs(path: str, *, stdout: bool = True, stderr: bool = True, since: float | None = None,
              until: float | None = None, tail: int | str | None = None, follow: bool = False,
              stop: StopLike | None = None) -> Iterator[LogRecord]:
    """Records of the json-file log at ``path`` (rotated files included), oldest first.

    ``tail``: last N records (None or "all": everything). ``since``/``until``: seconds since
    the epoch, inclusive. ``follow``: keep yielding as the writer appends, across rotations,
    until ``stop`` (a ``FollowStop``, ``threading.Event`` or callable) says the writer is done
    and the files are drained. Formatting timestamps is the caller's business
    (``format_time_fixed`` gives docker's ``-t`` form).
    """
    if follow:
        with LogFollower(path, stdout=stdout, stderr=stderr, since=since, until=until, tail=tail) as f:
            yield from f.iterate(stop)
        return
    try:
        files = _open_set(os.path.abspath(path))
    except FileNotFoundError:
        return
    try:
        tail_n = _tail_count(tail)
        if tail_n is not None and files:
            files = _apply_tail(files, tail_n)
        flt = _Filter(stdout, stderr, _secs_to_ns(since), _secs_to_ns(until))
        yield from _iter_records(files, flt)
    finally:
        for f in files:
            f.close()


async def aread_logs(path: str, *, stdout: bool = True, stderr: bool = True,
                     since: float | None = None, until: float | None = None,
                     tail: int | str | None = None, follow: bool = False,
                     stop: asyncio.Event | None = None, batch: int = 1024) -> AsyncIterator[list[LogRecord]]:
    """asyncio form of ``read_logs``, yielding batches of records; the inotify fd is watched
    by the event loop, so no thread is needed. ``stop`` set: drain, then end."""
    loop = asyncio.get_running_loop()
    with LogFollower(path, stdout=stdout, stderr=stderr, since=since, until=until, tail=tail) as f:
        wake = asyncio.Event()
        if follow:
            loop.add_reader(f.fileno(), wake.set)
        try:
            while True:
                stopping = stop is not None and stop.is_set()
                wake.clear()  # before reading: an event during the read sets it again
                recs = f.read_available(batch)
                if recs:
                    yield recs
                if f.past_until:
                    return
                if len(recs) == batch:
                    continue
                if not follow or stopping:
                    return
                waiters = [asyncio.ensure_future(wake.wait())]
                if stop is not None:
                    waiters.append(asyncio.ensure_future(stop.wait()))
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
        finally:
            if follow:
                loop.remove_reader(f.fileno())
