"""Hide the cost of the first cgroup attach behind the runtime's own start-up.

Moving a process into a cgroup (a write to ``cgroup.procs``, v1 or v2) takes the kernel's
global ``cgroup_threadgroup_rwsem`` for writing. Its first writer after a quiet period
waits for a whole RCU grace period (rcu_sync_enter: ~14 ms on the test VM, most of the
time ``run`` spends outside Python); writers that follow within a grace period of the
last one do not wait at all. So ``create``/``run``/``exec`` start one thread, first thing,
that migrates this process into the cgroup it is already in (a no-op move) and repeats
it every few milliseconds: the grace period elapses while Python imports modules and
reads the spec, and the container's real attach, just after the fork, is immediate.

The thread is stopped and joined *before* the runtime forks, so namespace setup still
happens in a single-threaded process. Everything here is best effort: any error and the
thread just ends (the attach then costs what it costs).
"""

from __future__ import annotations

import _thread
import os

_INTERVAL = 0.004  # well inside one grace period, so the fast path never lapses

_stop: _thread.LockType | None = None
_done: _thread.LockType | None = None


def _own_procs_file() -> str | None:
    """``cgroup.procs`` of the cgroup this process is in (v1 pids hierarchy, else v2)."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _id, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "pids" in controllers.split(","):
            candidates.append(f"/sys/fs/cgroup/pids{path}")
        elif controllers == "":
            candidates += [f"/sys/fs/cgroup{path}", f"/sys/fs/cgroup/unified{path}"]
    for d in candidates:
        procs = os.path.join(d, "cgroup.procs")
        if os.path.exists(procs):
            return procs
    return None


def _loop(path: str, stop: _thread.LockType, done: _thread.LockType) -> None:
    try:
        pid = str(os.getpid()).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            while True:
                os.write(fd, pid)
                if stop.acquire(timeout=_INTERVAL):
                    break
        finally:
            os.close(fd)
    except OSError:
        pass
    finally:
        done.release()


def start() -> None:
    """Start warming (idempotent). Only useful as root, before a cgroup attach."""
    global _stop, _done
    if _stop is not None or os.geteuid() != 0:
        return
    path = _own_procs_file()
    if path is None:
        return
    _stop, _done = _thread.allocate_lock(), _thread.allocate_lock()
    _stop.acquire()
    _done.acquire()
    _thread.start_new_thread(_loop, (path, _stop, _done))


def thread_count() -> int:
    """1 while the warming thread runs (callers counting threads must discount it)."""
    return 0 if _stop is None else 1


def stop() -> None:
    """Stop the thread and wait until it is gone: call before forking."""
    global _stop, _done
    if _stop is None or _done is None:
        return
    _stop.release()
    _done.acquire()
    _stop = _done = None


class Warmer:
    """The same trick for a long-lived, threaded process (the daemon): ``kick()`` when a
    container is about to be created or exec'd, and a thread keeps the rwsem's fast path
    open for ``seconds`` after the last kick — the grace period then elapses while the
    daemon prepares the snapshot and bundle, and the supervisor's attach (any process's
    migration counts: the rwsem is global) is immediate. Idle, it costs nothing."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._deadline = 0.0
        self._running = False
        self._path = _own_procs_file() if os.geteuid() == 0 else None

    def kick(self, seconds: float = 0.5) -> None:
        import threading
        import time

        if self._path is None:
            return
        with self._lock:
            self._deadline = max(self._deadline, time.monotonic() + seconds)
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._run, name="cgroup-warmer", daemon=True).start()

    def _run(self) -> None:
        import time

        assert self._path is not None
        pid = str(os.getpid()).encode()
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            self._path = None  # e.g. not allowed here: stop trying
            with self._lock:
                self._running = False
            return
        try:
            while True:
                with self._lock:
                    if time.monotonic() >= self._deadline:
                        self._running = False
                        return
                try:
                    os.write(fd, pid)
                except OSError:
                    with self._lock:
                        self._running = False
                    return
                time.sleep(_INTERVAL)
        finally:
            os.close(fd)
