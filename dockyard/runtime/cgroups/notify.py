"""Waiting on cgroup events without polling loops.

cgroupfs (kernfs) signals a change of a notifying file (cgroup.events, memory.events) by
waking pollers with POLLPRI; inotify would see the same modification, but the stdlib has
no inotify and this package keeps out of ctypes, so an epoll on POLLPRI is the mechanism.
The epoll descriptor itself is exposed by ``fileno()``: it turns readable when the watched
file changed, so an asyncio loop can ``add_reader`` it. cgroup v1 OOM notification is an
eventfd registered through ``cgroup.event_control``.
"""

from __future__ import annotations

import errno
import os
import select
import time
from abc import ABC, abstractmethod

from dockyard.errors import Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:  # a Protocol for the type checker, a plain class at run time (no typing import)
    from collections.abc import Callable
    from typing import Protocol
else:
    Protocol = object


class FileWatch(Protocol):
    """A cgroupfs file being watched for changes."""

    def read(self) -> str:
        """The file's current content (also re-arms the notification)."""

    def wait(self, timeout: float | None) -> bool:
        """Block until the file changed since the last ``read``; False on timeout."""

    def fileno(self) -> int: ...

    def close(self) -> None: ...


class KernfsWatch:
    """POLLPRI on an open kernfs file: the kernel raises it when the file's content
    changes after our last read of it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._ep = select.epoll()
        try:
            self._ep.register(self._fd, select.EPOLLPRI | select.EPOLLERR)
        except OSError as e:
            self.close()
            # EPERM: not a pollable file, i.e. not on cgroupfs
            raise Unavailable(f"cannot watch {path} for changes: {e.strerror}") from None
        self.read()  # arms: the event is "changed since this open file last read it"

    def read(self) -> str:
        os.lseek(self._fd, 0, os.SEEK_SET)
        return os.read(self._fd, 1 << 16).decode()

    def wait(self, timeout: float | None) -> bool:
        try:
            return bool(self._ep.poll(-1 if timeout is None else max(timeout, 0)))
        except InterruptedError:
            return False

    def fileno(self) -> int:
        return self._ep.fileno()

    def close(self) -> None:
        self._ep.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> KernfsWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OomWatcher(ABC):
    """OOM events of one cgroup. ``fileno()`` turns readable on an event (for event
    loops); ``wait`` blocks. Open it before starting the work that may run out of memory."""

    @abstractmethod
    def fileno(self) -> int: ...

    @abstractmethod
    def wait(self, timeout: float | None = None) -> bool:
        """True once an OOM event happened since the last call (or since opening); False
        on timeout or when the cgroup is removed."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> OomWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventfdOomWatcher(OomWatcher):
    """cgroup v1: an eventfd the kernel signals when the memcg hits OOM. The kernel also
    signals it when the cgroup is removed, so each wake-up checks the cgroup is still there.
    ``register`` writes the "<eventfd> <oom_control fd>" line to cgroup.event_control."""

    def __init__(self, oom_control: str, event_control: str, register: Callable[[str, str], None]) -> None:
        self._event_control = event_control
        self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            cfd = os.open(oom_control, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            os.close(self._efd)
            raise Unavailable(f"cannot watch OOM events: {oom_control}: {e.strerror}") from None
        try:
            register(event_control, f"{self._efd} {cfd}")
        except BaseException:
            os.close(self._efd)
            raise
        finally:
            os.close(cfd)  # the kernel holds its own reference once registered

    def fileno(self) -> int:
        return self._efd

    def wait(self, timeout: float | None = None) -> bool:
        poller = select.poll()
        poller.register(self._efd, select.POLLIN)
        if not poller.poll(None if timeout is None else max(int(timeout * 1000), 0)):
            return False
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            return False
        return os.path.exists(self._event_control)

    def close(self) -> None:
        if self._efd >= 0:
            os.close(self._efd)  # closing the eventfd unregisters the event in the kernel
            self._efd = -1


class EventsOomWatcher(OomWatcher):
    """cgroup v2: memory.events changes (POLLPRI); an event is a rise of its ``oom`` or
    ``oom_kill`` counter (the file also changes on ``high``/``max`` events, which are not)."""

    def __init__(self, watch: FileWatch) -> None:
        self._watch = watch
        self._seen = self._counts(watch.read())

    @staticmethod
    def _counts(text: str) -> tuple[int, int]:
        values = dict(line.split(None, 1) for line in text.splitlines() if " " in line)
        return int(values.get("oom", 0)), int(values.get("oom_kill", 0))

    def fileno(self) -> int:
        return self._watch.fileno()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if not self._watch.wait(remaining):
                return False
            try:
                counts = self._counts(self._watch.read())
            except OSError as e:
                if e.errno in (errno.ENODEV, errno.ENOENT):
                    return False  # the cgroup was removed
                raise
            if counts[0] > self._seen[0] or counts[1] > self._seen[1]:
                self._seen = counts
                return True

    def close(self) -> None:
        self._watch.close()
