"""New network namespaces made ahead of time, for a long-lived runtime process.

A container with a network namespace of its own pays for it in its create: ~0.7 ms for
``unshare(CLONE_NEWNET)`` and ~1 ms more for bringing ``lo`` up (the kernel adds its
addresses and routes). A pool made while the supervisor is idle turns that into a
``setns`` in stage 1. A spare namespace is exactly what stage 1 would have made: fresh,
owned by the host's user namespace, only ``lo``, up. Containers that create or join a
user namespace, or join a network namespace by path, never take one.

Each spare is kept as an open nsfs fd; a helper child makes it (a process cannot leave
its own network namespace) and exits once the fd is open. Must run single-threaded, like
everything that forks here.
"""

from __future__ import annotations

import os

from dockyard import syscalls
from dockyard.syscalls import CloneFlag


class NetnsPool:
    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._fds: list[int] = []
        self._broken = False  # a host that refuses: stop trying, containers unshare as before

    def take(self) -> int | None:
        """A spare namespace's fd (the caller owns it), or None when there is none."""
        return self._fds.pop() if self._fds else None

    def missing(self) -> int:
        """How many spares a fill would make (none on a host that refused one)."""
        return 0 if self._broken else self.size - len(self._fds)

    def fill(self, limit: int | None = None) -> None:
        """Make spares until the pool is full, or ``limit`` of them."""
        made = 0
        while not self._broken and len(self._fds) < self.size and (limit is None or made < limit):
            try:
                self._fds.append(_make_netns())
            except OSError:
                self._broken = True
            made += 1

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def __len__(self) -> int:
        return len(self._fds)


def _make_netns() -> int:
    from dockyard.runtime.namespaces import loopback_up
    from dockyard.runtime.stages import close_all_but

    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the helper child
        ok = b"n"
        try:
            # none of the supervisor's fds (client connections, containers' pipes) may
            # outlive their closing there because this child holds a copy
            close_all_but(sorted((ready_w, done_r)))
            syscalls.unshare(CloneFlag.NEWNET)
            loopback_up()
            ok = b"y"
        finally:
            os.write(ready_w, ok)
            os.read(done_r, 1)  # alive until the parent has the namespace open
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"y":
            raise OSError("could not make a network namespace")
        return os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)  # the child's read returns: it exits
        os.waitpid(pid, 0)
