"""A small event loop for the supervisor: epoll, callbacks, timers, signals, futures and
coroutines — the part of asyncio the supervisor uses.

Why not asyncio: importing it (with ssl, concurrent.futures, logging, ...) costs ~6 MB of
private memory, most of the supervisor's footprint. The supervisor is the only host-side
process an idle container costs, and the issue's goal is <= 0.4 MB per idle container, so
its imports are its memory.

Semantics kept from asyncio where the supervisor relies on them: callbacks and coroutine
steps run one at a time on this thread; a future's callbacks run on the next turn of the
loop, never inside ``set_result``; signal handlers run as ordinary callbacks (via
``signal.set_wakeup_fd``), never between two bytecodes of other code; a callback that
raises is reported on stderr and the loop goes on (asyncio logs it the same way).
Sockets on the loop: ``connection.py``.
"""

from __future__ import annotations

import _signal
import itertools
import os
import select
import sys
import time
from _collections import deque  # not collections: see dockyard/suppress.py
from _heapq import heappop, heappush  # heapq.py is only these, in Python

from dockyard.suppress import suppress

# annotations only: importing typing (and collections.abc's generics) costs memory the
# supervisor keeps for its whole life
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Generator
    from typing import Any

_IN = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP
_OUT = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR


class Handle:
    __slots__ = ("fn", "args", "cancelled")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args, self.cancelled = fn, args, False

    def cancel(self) -> None:
        self.cancelled = True


class Future:
    """A result that arrives later; ``await`` it from a coroutine run by ``create_task``."""

    __slots__ = ("_loop", "_done", "_result", "_exc", "_callbacks")

    def __init__(self, loop: Loop) -> None:
        self._loop = loop
        self._done = False
        self._result: Any = None
        self._exc: BaseException | None = None
        self._callbacks: list[Callable[[Future], Any]] = []

    def done(self) -> bool:
        return self._done

    def result(self) -> Any:
        if not self._done:
            raise RuntimeError("result is not ready")
        if self._exc is not None:
            raise self._exc
        return self._result

    def _finish(self) -> None:
        self._done = True
        for cb in self._callbacks:
            self._loop.call_soon(cb, self)
        self._callbacks.clear()

    def set_result(self, value: Any) -> None:
        if self._done:
            raise RuntimeError("future already done")
        self._result = value
        self._finish()

    def set_exception(self, exc: BaseException) -> None:
        if self._done:
            raise RuntimeError("future already done")
        self._exc = exc
        self._finish()

    def add_done_callback(self, fn: Callable[[Future], Any]) -> None:
        if self._done:
            self._loop.call_soon(fn, self)
        else:
            self._callbacks.append(fn)

    def __await__(self) -> Generator[Future, None, Any]:
        if not self._done:
            yield self
        return self.result()


class Task(Future):
    """Runs a coroutine; its result (or exception) becomes the task's. Dropping a task's
    caller does not cancel what it awaits (there is no cancellation: nothing needs it)."""

    __slots__ = ("_coro",)

    def __init__(self, loop: Loop, coro: Coroutine[Any, Any, Any]) -> None:
        super().__init__(loop)
        self._coro = coro
        loop.call_soon(self._step, None)

    def _step(self, _fut: Future | None) -> None:
        try:
            awaited = self._coro.send(None)  # a resumed __await__ reads the future's result
        except StopIteration as e:
            self.set_result(e.value)
            return
        except BaseException as e:  # noqa: BLE001 - the task's outcome, seen by its awaiter
            self.set_exception(e)
            return
        if not isinstance(awaited, Future):
            self._coro.close()
            self.set_exception(RuntimeError(f"a task awaited {awaited!r}, not a loop Future"))
            return
        awaited.add_done_callback(self._step)


class Loop:
    def __init__(self) -> None:
        self._ep = select.epoll()
        self._readers: dict[int, Handle] = {}
        self._writers: dict[int, Handle] = {}
        self._registered: dict[int, int] = {}  # fd -> epoll mask
        self._ready: deque[Handle] = deque()
        self._timers: list[tuple[float, int, Handle]] = []
        self._seq = itertools.count()
        self._signals: dict[int, Handle] = {}
        self._sig_r = self._sig_w = -1

    # ------------------------------------------------------------------ callbacks

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> Handle:
        h = Handle(fn, args)
        self._ready.append(h)
        return h

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Handle:
        h = Handle(fn, args)
        heappush(self._timers, (time.monotonic() + delay, next(self._seq), h))
        return h

    def create_future(self) -> Future:
        return Future(self)

    def create_task(self, coro: Coroutine[Any, Any, Any]) -> Task:
        return Task(self, coro)

    # ------------------------------------------------------------------ fds

    def _update(self, fd: int) -> None:
        mask = (_IN if fd in self._readers else 0) | (_OUT if fd in self._writers else 0)
        old = self._registered.get(fd)
        try:
            if not mask:
                if old is not None:
                    del self._registered[fd]
                    self._ep.unregister(fd)
            elif old is None:
                self._ep.register(fd, mask)
                self._registered[fd] = mask
            elif old != mask:
                self._ep.modify(fd, mask)
                self._registered[fd] = mask
        except FileNotFoundError:  # closed and reused: the kernel dropped the old entry
            if mask:
                self._ep.register(fd, mask)
                self._registered[fd] = mask
        except OSError:
            pass  # unregistering a closed fd: epoll forgot it when it was closed

    def add_reader(self, fd: int, fn: Callable[..., Any], *args: Any) -> None:
        old = self._readers.get(fd)
        if old is not None:
            old.cancel()
        self._readers[fd] = Handle(fn, args)
        self._update(fd)

    def remove_reader(self, fd: int) -> bool:
        h = self._readers.pop(fd, None)
        if h is not None:
            h.cancel()  # it may be queued already in this turn; the fd may be closed next
        self._update(fd)
        return h is not None

    def add_writer(self, fd: int, fn: Callable[..., Any], *args: Any) -> None:
        old = self._writers.get(fd)
        if old is not None:
            old.cancel()
        self._writers[fd] = Handle(fn, args)
        self._update(fd)

    def remove_writer(self, fd: int) -> bool:
        h = self._writers.pop(fd, None)
        if h is not None:
            h.cancel()  # it may be queued already in this turn; the fd may be closed next
        self._update(fd)
        return h is not None

    # ------------------------------------------------------------------ signals

    def add_signal_handler(self, sig: int, fn: Callable[..., Any], *args: Any) -> None:
        if self._sig_r < 0:
            self._sig_r, self._sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            _signal.set_wakeup_fd(self._sig_w, warn_on_full_buffer=False)
            self.add_reader(self._sig_r, self._read_signals)
        self._signals[sig] = Handle(fn, args)
        # a Python-level handler that does nothing: the C handler writes the number to the
        # wakeup fd, and the loop runs the real handler as a callback
        _signal.signal(sig, _noop_handler)
        _signal.siginterrupt(sig, False)

    def _read_signals(self) -> None:
        try:
            data = os.read(self._sig_r, 4096)
        except BlockingIOError:
            return
        for signum in dict.fromkeys(data):  # coalesce repeats, keep order
            h = self._signals.get(signum)
            if h is not None:
                self._ready.append(h)

    # ------------------------------------------------------------------ running

    def _run_once(self) -> None:
        if self._ready:
            timeout = 0.0
        elif self._timers:
            timeout = max(0.0, self._timers[0][0] - time.monotonic())
        else:
            timeout = -1
        for fd, ev in self._ep.poll(timeout):
            if ev & _IN and fd in self._readers:
                self._ready.append(self._readers[fd])
            if ev & _OUT and fd in self._writers:
                self._ready.append(self._writers[fd])
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            self._ready.append(heappop(self._timers)[2])
        for _ in range(len(self._ready)):
            h = self._ready.popleft()
            if not h.cancelled:
                try:
                    h.fn(*h.args)
                except Exception as e:  # noqa: BLE001 - one failed callback must not end the loop
                    self.report(h, e)

    def report(self, h: Handle, err: BaseException) -> None:
        """A callback raised: say so on stderr (as asyncio logs it) and go on."""
        import traceback  # only when something went wrong: it is a heavy import

        name = getattr(h.fn, "__qualname__", repr(h.fn))
        text = "".join(traceback.format_exception(err))
        with suppress(OSError, ValueError):
            sys.stderr.write(f"loop: exception in callback {name}:\n{text}")
            sys.stderr.flush()

    def run_until_complete(self, fut: Future) -> Any:
        while not fut.done():
            self._run_once()
        return fut.result()

    def close(self) -> None:
        if self._sig_w >= 0:
            with suppress(ValueError):
                _signal.set_wakeup_fd(-1)
            for fd in (self._sig_r, self._sig_w):
                os.close(fd)
            self._sig_r = self._sig_w = -1
        self._ep.close()


def _noop_handler(_signum: int, _frame: Any) -> None:
    pass
