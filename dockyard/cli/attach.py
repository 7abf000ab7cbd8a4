"""Client side of a hijacked attach / exec stream, as ``run``, ``attach`` and ``exec`` use it.

Given the socket from :meth:`dockyard.cli.client.APIClient.hijack`, :func:`pump`

* copies stdin to the socket in a thread and, at stdin's EOF, half-closes the socket
  (``shutdown(SHUT_WR)``): the daemon sees stdin end while output keeps coming;
* in the calling thread, copies the output to stdout / stderr until the daemon
  closes: demultiplexed (stdcopy frames) without a TTY, raw with one;
* with a TTY: puts the local terminal in raw mode and restores it however the stream
  ends, reports the terminal size to a callback at start and on SIGWINCH (the resize
  API call is the caller's), and recognises the detach sequence (docker's default
  ``ctrl-p,ctrl-q``), which ends the pump without sending the sequence on.

Threads rather than one selector loop: writing stdin must never stop output from
being read (the daemon may be blocked writing output while we block writing input).
Imports are stdlib only, and the heavier ones happen inside :func:`pump`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

from dockyard.streams.detach import DEFAULT_DETACH_KEYS, EscapeMatcher, parse_detach_keys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (~3 ms)
if TYPE_CHECKING:
    import socket
    import threading
    from typing import IO, Any

__all__ = [
    "DEFAULT_DETACH_KEYS",
    "EscapeMatcher",
    "parse_detach_keys",
    "pump",
    "raw_terminal",
    "terminal_size",
]

_BLOCK = 64 * 1024

ResizeCallback = Callable[[int, int], None]  # (height, width), as the resize API takes them


# -------------------------------------------------------------------- terminal


def terminal_size(fd: int) -> tuple[int, int]:
    """(height, width) of the terminal on ``fd``."""
    size = os.get_terminal_size(fd)
    return size.lines, size.columns


@contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal on ``fd`` in raw mode (no echo, no line editing, no signals from
    ctrl-c / ctrl-z: every key goes to the container's TTY), restored on exit."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    # TCSANOW, not tty's default TCSAFLUSH: don't discard what was typed ahead.
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        # TCSADRAIN: output already written is shown with the settings it expects.
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


# ------------------------------------------------------------------------ pump


def _fileno(f: Any) -> int | None:
    try:
        return f.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _isatty(f: Any) -> bool:
    fd = _fileno(f)
    return fd is not None and os.isatty(fd)


def _binary(f: Any) -> IO[bytes] | None:
    # sys.stdout / sys.stderr are text streams: write to their binary buffer.
    return getattr(f, "buffer", f) if f is not None else None


class _Pump:
    def __init__(
        self,
        sock: socket.socket,
        stdin: Any,
        stdout: IO[bytes] | None,
        stderr: IO[bytes] | None,
        tty: bool,
        detach_keys: bytes | None,
    ) -> None:
        self.sock = sock
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.tty = tty
        self.matcher = EscapeMatcher(detach_keys) if tty and detach_keys else None
        self.detached = False
        # The pipe wakes the input thread's poll() on stdin; the flag is what it checks
        # (a plain attribute: threading is imported only when there is an input thread).
        self._stopped = False
        self._stop_r, self._stop_w = os.pipe()

    def close(self) -> None:
        os.close(self._stop_r)
        os.close(self._stop_w)

    # -- input thread
    def _inputs(self) -> Iterator[bytes]:
        """stdin's data as it comes; ends at EOF or when :meth:`stop_input` is called."""
        fd = _fileno(self.stdin)
        if fd is None:
            # A file object without a descriptor (tests, wrappers): can't be polled,
            # so it can't be interrupted either.
            read = getattr(self.stdin, "read1", None) or self.stdin.read
            while data := read(_BLOCK):
                yield data.encode() if isinstance(data, str) else data
            return
        import select

        # poll, not epoll: stdin may be a regular file (``< file``), which epoll refuses.
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            events = dict(poller.poll())
            if self._stop_r in events:
                return
            if events.get(fd, 0) & select.POLLNVAL:
                return
            data = os.read(fd, _BLOCK)
            if not data:
                return
            yield data

    def copy_input(self) -> None:
        import socket

        stopped = False
        try:
            for data in self._inputs():
                if self.matcher is not None:
                    data, detach = self.matcher.feed(data)
                    if data:
                        self.sock.sendall(data)
                    if detach:
                        self.detached = True
                        # Wake the output loop, which is blocked in recv.
                        self.sock.shutdown(socket.SHUT_RDWR)
                        return
                    continue
                self.sock.sendall(data)
            stopped = self._stopping()
            if not stopped:
                # stdin's EOF: half-close, the output keeps coming until the daemon closes.
                self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            # The daemon closed (EPIPE, ECONNRESET): the output side sees the end too.
            pass

    def _stopping(self) -> bool:
        return self._stopped

    def stop_input(self) -> None:
        self._stopped = True
        os.write(self._stop_w, b"x")

    # -- output, in the calling thread
    def copy_output(self) -> None:
        if self.tty:
            out = self.stdout
            while data := self.sock.recv(_BLOCK):
                if out is not None:
                    out.write(data)
                    out.flush()
            return
        from dockyard.streams.stdcopy import demux_to

        demux_to(self.sock, self.stdout, self.stderr)


def pump(
    sock: socket.socket,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    *,
    tty: bool = False,
    detach_keys: str | None = DEFAULT_DETACH_KEYS,
    on_resize: ResizeCallback | None = None,
    raw: bool | None = None,
) -> bool:
    """Run a hijacked stream to its end; returns True if the user detached.

    ``stdin``: a file to copy to the daemon (None: nothing to send, the socket is
    half-closed at once, as docker does without ``-i``). ``stdout`` / ``stderr``:
    where output goes (text streams like ``sys.stdout`` are written through their
    binary buffer; None discards). ``tty``: the stream is raw, not multiplexed.

    With ``tty``: ``detach_keys`` (docker's format, None to disable) end the pump when
    typed; ``raw`` (default: whether stdin is a terminal) puts stdin's terminal in
    raw mode for the duration; ``on_resize(height, width)`` is called with the size
    of stdout's terminal at start and after each SIGWINCH (when stdout is a terminal
    and this is the main thread, which alone may handle signals), from a helper
    thread, so it may make API calls; its exceptions are ignored, as docker does.

    Raises :class:`dockyard.streams.stdcopy.StreamError` for a malformed stream or an
    error the daemon sent in-band, ``DaemonUnreachable`` if the connection breaks.
    The socket is closed on return.
    """
    import socket
    import threading

    keys = parse_detach_keys(detach_keys) if tty and detach_keys else None
    p = _Pump(sock, stdin, _binary(stdout), _binary(stderr), tty, keys)
    if raw is None:
        raw = tty and stdin is not None and _isatty(stdin)
    input_thread: threading.Thread | None = None
    resizer: _Resizer | None = None
    try:
        with raw_terminal(_fileno(stdin)) if raw else nullcontext():  # type: ignore[arg-type]
            if tty and on_resize is not None and _isatty(stdout):
                resizer = _Resizer(on_resize, _fileno(stdout))  # type: ignore[arg-type]
                resizer.start()
            if stdin is None:
                sock.shutdown(socket.SHUT_WR)
            else:
                # A daemon thread: a stdin without a descriptor can't be interrupted,
                # and must not keep the process alive.
                import threading

                input_thread = threading.Thread(target=p.copy_input, name="attach-stdin", daemon=True)
                input_thread.start()
            try:
                p.copy_output()
            except OSError as e:
                if not p.detached:
                    from dockyard.cli.client import DaemonUnreachable

                    raise DaemonUnreachable(f"error reading the stream from the daemon: {e}") from None
            finally:
                # The output is over: stop reading stdin (leaving unread input for
                # whoever reads it next) before the terminal is restored.
                p.stop_input()
                if input_thread is not None and _fileno(stdin) is not None:
                    # Unblocks an input thread stuck in sendall to a daemon that
                    # stopped reading (say the output failed to parse).
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    input_thread.join()
    finally:
        if resizer is not None:
            resizer.stop()
        p.close()
        sock.close()
    return p.detached


class _Resizer:
    """Calls ``on_resize`` at start and on each SIGWINCH, from its own thread: a signal
    handler must not make HTTP calls (it runs between two bytecodes of whatever the
    main thread was doing), so it only queues a wake-up (``SimpleQueue.put`` is
    documented as safe from signal handlers)."""

    def __init__(self, on_resize: ResizeCallback, fd: int) -> None:
        import queue

        self._on_resize = on_resize
        self._fd = fd
        self._queue: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._old_handler: Any = None
        self._thread: Any = None

    def start(self) -> None:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGWINCH, lambda *_: self._queue.put(True))
        self._thread = threading.Thread(target=self._run, name="attach-resize", daemon=True)
        self._queue.put(True)  # the initial size, as docker sends it
        self._thread.start()

    def _run(self) -> None:
        while self._queue.get():
            try:
                height, width = terminal_size(self._fd)
                self._on_resize(height, width)
            except Exception:  # a failed resize must not end the session
                pass

    def stop(self) -> None:
        import signal

        if self._old_handler is not None:
            signal.signal(signal.SIGWINCH, self._old_handler)
        self._queue.put(False)
        self._thread.join()
