"""``logs -f`` across processes: a writer in a subprocess (as the supervisor is) appends and
rotates while a follower in this process reads. The writer is driven over a pipe and
acknowledges each command, so every wait here is on an event, never on a sleep."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.logs import FollowStop, LogFollower, LogRecord, aread_logs, read_logs

REPO = Path(__file__).resolve().parents[2]

# reads commands from stdin, answers "ok" after each; writes arrive in odd-sized chunks that
# cut lines, as a pipe from a container would deliver them
WRITER = r"""
import sys
from dockyard.logs import JSONFileWriter
path, max_size, max_file, compress = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
w = JSONFileWriter(path, max_size, max_file, compress)
for cmd in sys.stdin:
    op, *args = cmd.split()
    if op == "write":
        first, count, stream = int(args[0]), int(args[1]), args[2]
        data = b"".join(b"line %08d %s\n" % (i, b"p" * (i % 97)) for i in range(first, first + count))
        for pos in range(0, len(data), 3001):
            w.write(stream, data[pos:pos + 3001])
    elif op == "close":
        w.close()
    sys.stdout.write("ok\n")
    sys.stdout.flush()
"""


class Writer:
    def __init__(self, path: Path, max_size: int, max_file: int, compress: bool = False) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(max_size), str(max_file), "1" if compress else "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, bufsize=1)
        self.sent = 0
        self.acked = 0

    def send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        self.sent += 1

    def wait_ack(self) -> None:
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == "ok\n", "writer died"
        self.acked += 1

    def do(self, cmd: str) -> None:
        self.send(cmd)
        while self.acked < self.sent:
            self.wait_ack()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        assert self.proc.returncode == 0


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "c-json.log"


def number(rec: LogRecord) -> int:
    assert rec.data.endswith(b"\n") and not rec.partial
    return int(rec.data.split()[1])


def files_of(log: Path) -> list[str]:
    return sorted(p.name for p in log.parent.iterdir())


@pytest.mark.parametrize("compress", [False, True])
def test_follow_across_rotations_loses_nothing(log: Path, compress: bool) -> None:
    batch, batches = 2000, 24  # ~150 KB per batch, ~3.6 MB in total
    w = Writer(log, max_size=256 * 1024, max_file=3, compress=compress)
    w.do("write 0 1 stdout")  # the file exists before the follower starts
    stop = FollowStop()
    got: list[int] = []
    follower = read_logs(str(log), follow=True, stop=stop)
    try:
        # keep at most two batches (< one file) in flight: the writer runs concurrently with
        # this reader but never rotates away a file the reader has not reached (max_file=3)
        w.send(f"write 1 {batch} stdout")
        w.send(f"write {1 + batch} {batch} stdout")
        next_batch = 2
        for rec in follower:
            got.append(number(rec))
            if len(got) == 1 + (next_batch - 1) * batch and next_batch < batches:
                w.wait_ack()
                w.send(f"write {1 + next_batch * batch} {batch} stdout")
                next_batch += 1
            if len(got) == 1 + batches * batch:
                w.do("close")
                stop.set()  # the writer is done: drain and end
    finally:
        follower.close()
        stop.close()
        w.close()
    assert got == list(range(1 + batches * batch))  # in order, none lost, none duplicated
    rotated = [n for n in files_of(log) if n != "c-json.log"]
    assert rotated == (["c-json.log.1.gz", "c-json.log.2.gz"] if compress else ["c-json.log.1", "c-json.log.2"])


def test_follow_with_tail_then_new_lines(log: Path) -> None:
    w = Writer(log, max_size=64 * 1024, max_file=3)
    w.do("write 0 500 stdout")
    stop = FollowStop()
    it = read_logs(str(log), follow=True, stop=stop, tail=3, stdout=True, stderr=False)
    try:
        assert [number(next(it)) for _ in range(3)] == [497, 498, 499]
        w.do("write 500 5 stderr")  # filtered out
        w.do("write 505 5 stdout")
        assert [number(next(it)) for _ in range(5)] == [505, 506, 507, 508, 509]
        w.do("close")
        stop.set()
        assert list(it) == []
    finally:
        it.close()
        stop.close()
        w.close()


def run_follower(follower: Iterator[LogRecord], sink: list[int], done: threading.Event) -> None:
    try:
        for rec in follower:
            sink.append(number(rec))
    finally:
        done.set()


@pytest.mark.parametrize("how", ["cancel", "set"])
def test_follow_stops_promptly_when_signalled(log: Path, how: str) -> None:
    w = Writer(log, max_size=64 * 1024, max_file=3)
    w.do("write 0 10 stdout")
    stop = FollowStop()
    got: list[int] = []
    done = threading.Event()
    with LogFollower(str(log)) as f:
        t = threading.Thread(target=run_follower, args=(f.iterate(stop), got, done))
        t.start()
        try:
            # the follower is idle, blocked on inotify + the stop pipe
            assert not done.wait(0.3)
            started = time.monotonic()
            getattr(stop, how)()
            assert done.wait(5)
            assert time.monotonic() - started < 0.5
        finally:
            stop.cancel()
            t.join(10)
            stop.close()
            w.do("close")
            w.close()
    assert got == list(range(10))


def test_stop_drains_what_was_written_before(log: Path) -> None:
    w = Writer(log, max_size=32 * 1024, max_file=50)
    w.do("write 0 1 stdout")
    stop = FollowStop()
    got: list[int] = []
    done = threading.Event()
    t = threading.Thread(target=run_follower, args=(read_logs(str(log), follow=True, stop=stop), got, done))
    t.start()
    try:
        w.do("write 1 3000 stdout")  # several rotations' worth, written before the stop
        w.do("close")
        stop.set()
        assert done.wait(30)
    finally:
        stop.cancel()
        t.join(10)
        stop.close()
        w.close()
    assert got == list(range(3001))


def test_follower_started_after_rotation_picks_up(log: Path) -> None:
    w = Writer(log, max_size=64 * 1024, max_file=4)
    w.do("write 0 2000 stdout")  # ~150 KB: rotated at least twice already
    assert len(files_of(log)) >= 3
    retained = [number(r) for r in read_logs(str(log))]
    assert retained == list(range(retained[0], 2000))
    stop = FollowStop()
    it = read_logs(str(log), follow=True, stop=stop)
    try:
        assert [number(next(it)) for _ in retained] == retained  # the history, oldest first
        w.do("write 2000 1500 stdout")  # and more rotations while following
        got = [number(next(it)) for _ in range(1500)]
        assert got == list(range(2000, 3500))
        w.do("close")
        stop.set()
        assert list(it) == []
    finally:
        it.close()
        stop.close()
        w.close()


def test_follow_before_the_file_exists(log: Path) -> None:
    stop = FollowStop()
    got: list[int] = []
    done = threading.Event()
    t = threading.Thread(target=run_follower, args=(read_logs(str(log), follow=True, stop=stop), got, done))
    t.start()
    w = Writer(log, max_size=64 * 1024, max_file=3)
    try:
        w.do("write 0 100 stdout")
        w.do("close")
        stop.set()
        assert done.wait(10)
    finally:
        stop.cancel()
        t.join(10)
        stop.close()
        w.close()
    assert got == list(range(100))


def test_follower_that_falls_far_behind_skips_but_stays_ordered(log: Path) -> None:
    # more rotations than max_file while the follower is not reading: the lost files are
    # gone (as with docker); what it does read is in order and without duplicates
    w = Writer(log, max_size=16 * 1024, max_file=2)
    w.do("write 0 10 stdout")
    stop = FollowStop()
    with LogFollower(str(log)) as f:
        first = f.read_available()
        assert [number(r) for r in first] == list(range(10))
        w.do("write 10 3000 stdout")
        w.do("close")
        stop.set()
        rest = [number(r) for r in f.iterate(stop)]
    stop.close()
    w.close()
    assert rest == sorted(set(rest)) and rest[0] == 10 and rest[-1] == 3009
    assert len(rest) < 3000  # rotated-out files were skipped, not waited for


def test_threading_event_stop_is_accepted(log: Path) -> None:
    w = Writer(log, max_size=64 * 1024, max_file=3)
    w.do("write 0 50 stdout")
    w.do("close")
    stop = threading.Event()
    stop.set()  # writer already done: drain and end
    assert [number(r) for r in read_logs(str(log), follow=True, stop=stop)] == list(range(50))
    w.close()


def test_asyncio_follow(log: Path) -> None:
    async def main() -> list[int]:
        w = Writer(log, max_size=64 * 1024, max_file=3)
        w.do("write 0 10 stdout")
        stop = asyncio.Event()
        got: list[int] = []

        async def consume() -> None:
            async for batch in aread_logs(str(log), follow=True, stop=stop):
                got.extend(number(r) for r in batch)
                if got and got[-1] == 9:
                    # the event loop must not be blocked while following: drive the writer
                    # from a thread and signal the end from the loop
                    await asyncio.to_thread(w.do, "write 10 1500 stdout")
                    await asyncio.to_thread(w.do, "close")
                    stop.set()

        await asyncio.wait_for(consume(), 30)
        w.close()
        return got

    assert asyncio.run(main()) == list(range(1510))
