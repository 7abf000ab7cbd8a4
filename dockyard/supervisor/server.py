"""The supervisor's event loop: containers, their pipes, exits, and the JSON-lines server.

Everything runs on one loop (``loop.py``, not asyncio: see there why) in one thread. That
is not a style choice: containers are forked in-process (``Runtime(delegate=False)``),
which the runtime allows only from a single-threaded process, so no executor, no threads
(and hence no json-file ``compress``, whose writer compresses in a thread).

Attach: the ``attach`` op turns its connection into an output stream. After the
``{"ok": true}`` line, every chunk read from the container's stdout/stderr (a pty master
is stdout) is written to it as a docker stdcopy frame (``[stream, 0, 0, 0, len32 BE]``
then the bytes), besides going to the log; the connection is closed once the container
has exited and its outputs reached EOF. An attach to a container whose run is over (exited,
outputs closed) waits for its next run: the daemon restarts a container with ``delete``
(``restart: true``, which keeps such attachments) then ``create`` under the same id; a
real ``delete`` ends them. Backpressure: while an attached connection holds more than
``_ATTACH_HIGH`` unsent bytes the container's outputs are not read (the container blocks
on a full pipe, as with docker, rather than losing output), until every attached
connection is below ``_ATTACH_LOW``.

Exits: the supervisor is a child subreaper, so each container's init is reparented to it
when the runtime's stage 1 exits; SIGCHLD → ``waitpid(-1, WNOHANG)`` gives the exit status.
Containers adopted after a restart are not our children: their exit is seen on a pidfd and
the status read with ``PIDFD_GET_INFO`` when the kernel has it (255 otherwise: unknown).

Restart limitation: a restarted supervisor does not get the old one's pipe read ends, so
an adopted container's later output is lost (its writes fail with EPIPE/SIGPIPE once the
old supervisor is gone). The fix — holding the pipes across restarts (fd passing to the
successor or a pipe-holder) — is a later step.

Known race: the runtime's delete reaps orphans (``waitpid(-1)``) when a cgroup still holds
processes after the init died (containers without a pid namespace); as we are the subreaper,
that could swallow another container's exit status. ``delete`` therefore kills the init and
lets our reaper record its exit first, which leaves only the no-pid-namespace case open.
"""

from __future__ import annotations

import _signal
import binascii
import errno
import fcntl
import os
import select
import struct
import sys
import termios
import time

from dockyard import errors, jsonc, syscalls
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.logs.jsonfile import JSONFileWriter, format_time, parse_log_opts
from dockyard.runtime import usock
from dockyard.runtime.container import CreateOptions, Runtime
from dockyard.runtime.netns_pool import NetnsPool
from dockyard.supervisor import SOCKET_NAME
from dockyard.supervisor.connection import Connection, Listener
from dockyard.supervisor.execs import ExecOps
from dockyard.supervisor.loop import Future, Loop
from dockyard.suppress import suppress

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing is not imported at run time
    from typing import Any

_READ_SIZE = 65536
_ATTACH_HIGH = 1024 * 1024  # unsent bytes on an attached connection that pause the container's outputs
_ATTACH_LOW = 256 * 1024  # ... until every attached connection is below this
_FRAME = struct.Struct(">BxxxL")  # docker's stdcopy header: stream, 3 zero bytes, length
_STREAM_IDS = {"stdout": 1, "stderr": 2}
async def _coroutine() -> None:
    pass


_probe = _coroutine()
_CoroutineType = type(_probe)  # types.CoroutineType, without importing types
_probe.close()
del _probe

_TRIM_DELAY = 0.5  # seconds after a request before the C heap's free pages are given back
_REFILL_IDLE = 0.01  # seconds without a request before a spare network namespace is made
_UNKNOWN_EXIT = 255  # docker's code for "exit status not known"
_REAP_GRACE = 1.0  # seconds an adopted init's new parent gets to reap it (see _adopted_exit)


def _now() -> str:
    return format_time(time.time_ns())


def _signal_number(name: str) -> int:
    """A signal's number from its name, with or without "SIG", in any case ("term", "SIGKILL",
    "RTMIN"): the names ``signal.Signals`` has, read from ``_signal`` (``signal`` builds enums).
    KeyError for an unknown name."""
    full = "SIG" + name.upper().removeprefix("SIG")
    num = getattr(_signal, full, None)
    if full.startswith("SIG_") or not isinstance(num, int):  # SIG_DFL, SIG_BLOCK...: no signals
        raise KeyError(name)
    return num


def _error_kind(err: BaseException) -> str:
    """The most specific ``dockyard.errors`` class of ``err`` (ContainerError → DockyardError)."""
    for cls in type(err).__mro__:
        if getattr(errors, cls.__name__, None) is cls:
            return cls.__name__
    return "DockyardError"


# struct pidfd_info up to exit_code (PIDFD_INFO_SIZE_VER0 = 64 bytes), Linux >= 6.15
_PIDFD_INFO = struct.Struct("=QQ11Ii")
_PIDFD_GET_INFO = (3 << 30) | (_PIDFD_INFO.size << 16) | (0xFF << 8) | 11  # _IOWR(0xFF, 11, ...)
_PIDFD_INFO_EXIT = 1 << 3


def _pidfd_exit_status(pidfd: int) -> int | None:
    """The wait status of an exited non-child, if the kernel recorded it (after reaping)."""
    buf = bytearray(_PIDFD_INFO.pack(_PIDFD_INFO_EXIT, 0, *([0] * 11), 0))
    try:
        fcntl.ioctl(pidfd, _PIDFD_GET_INFO, buf)
    except OSError:
        return None
    fields = _PIDFD_INFO.unpack(buf)
    return fields[-1] if fields[0] & _PIDFD_INFO_EXIT else None


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code  # a signal: 128 + its number, as a shell says


class Container:
    """What the supervisor keeps per container; ``record()`` is what survives a restart."""

    def __init__(self, cid: str, bundle: str, log_path: str | None, log_opts: dict[str, str]) -> None:
        self.id, self.bundle, self.log_path, self.log_opts = cid, bundle, log_path, log_opts
        self.pid = 0
        self.created_at = _now()
        self.started_at: str | None = None
        self.finished_at: str | None = None
        self.exit_code: int | None = None
        self.oom_killed = False
        self.exited: Future | None = None  # set when the exit is known
        self.writer: JSONFileWriter | None = None
        self.outputs: dict[int, str] = {}  # read end -> stream name
        self.stdin_fd = -1
        self.stdin_buf = bytearray()
        self.stdin_closing = False
        self.tty_fd = -1  # the pty master (``tty`` containers): output and input both go through it
        self.pidfd = -1  # adopted containers only: not our child, so no SIGCHLD for them
        self.adopted = False
        self.attached: list[Connection] = []  # attach streams of this run
        self.out_paused = False  # outputs not read: an attached connection is behind

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "bundle": self.bundle, "log_path": self.log_path, "log_opts": self.log_opts,
                "pid": self.pid, "created_at": self.created_at, "started_at": self.started_at,
                "finished_at": self.finished_at, "exit_code": self.exit_code, "oom_killed": self.oom_killed}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Container:
        c = cls(rec["id"], rec.get("bundle", ""), rec.get("log_path"), rec.get("log_opts") or {})
        c.pid = int(rec.get("pid") or 0)
        c.created_at = rec.get("created_at") or c.created_at
        c.started_at, c.finished_at = rec.get("started_at"), rec.get("finished_at")
        c.exit_code, c.oom_killed = rec.get("exit_code"), bool(rec.get("oom_killed"))
        return c


class Supervisor(ExecOps):
    def __init__(self, loop: Loop, root: str, runtime_root: str) -> None:
        self.root = os.path.abspath(root)
        self.state_dir = os.path.join(self.root, "containers")
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.runtime = Runtime(runtime_root, delegate=False)
        self.runtime.netns_pool = NetnsPool()
        self.runtime.reaps_children = True  # on_sigchld reaps each create's stage 1
        self.containers: dict[str, Container] = {}
        self.by_pid: dict[int, Container] = {}
        self.loop = loop
        self.stopping = loop.create_future()
        self._consoles = 0  # console sockets made: their names
        self.pending_attach: dict[str, list[Connection]] = {}  # id -> attach streams for its next run
        self._trim: Any = None  # the pending malloc_trim timer
        self._refill: Any = None  # the pending refill of the network namespace pool
        self.refill_when_idle()

    # ------------------------------------------------------------------ persistence

    def _record_path(self, cid: str) -> str:
        return os.path.join(self.state_dir, f"{cid}.json")

    def save(self, c: Container) -> None:
        # write + rename: a supervisor killed mid-write leaves the old record, never half a
        # one. No fsync (it cost milliseconds per start and exit): the records matter to a
        # restarted supervisor, and a host crash ends the containers anyway.
        path = self._record_path(c.id)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(jsonc.dumps(c.record()))
        os.replace(tmp, path)

    def restore(self) -> None:
        """Load the records; adopt containers whose init still runs, learn which exited."""
        for name in sorted(os.listdir(self.state_dir)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.state_dir, name)) as f:
                    c = Container.from_record(jsonc.loads(f.read()))
            except (OSError, ValueError, KeyError):
                continue  # an interrupted write's leftovers (.tmp never matches) or garbage
            self.containers[c.id] = c
            c.exited = self.loop.create_future()
            if c.exit_code is not None:
                c.exited.set_result(None)
                continue
            self._adopt(c)
        # a container the runtime created just before a crash, before its record was saved
        for doc in self.runtime.list():
            if doc["id"] not in self.containers:
                c = Container(doc["id"], doc.get("bundle", ""), None, {})
                c.exited = self.loop.create_future()
                self.containers[c.id] = c
                self._adopt(c)
                self.save(c)

    def _adopt(self, c: Container) -> None:
        try:
            st = self.runtime.state(c.id)
        except NotFound:
            st = {"status": "stopped", "pid": 0}
        c.adopted = True
        pidfd = -1
        if st["status"] != "stopped" and st.get("pid"):
            with suppress(OSError):
                pidfd = os.pidfd_open(st["pid"])
            # re-check after opening: the pidfd now pins this process, not a reused pid
            if pidfd >= 0 and self.runtime.state(c.id)["status"] == "stopped":
                os.close(pidfd)
                pidfd = -1
        if pidfd < 0:
            # exited while no supervisor was there to reap it: the status is lost
            self._set_exit(c, _UNKNOWN_EXIT)
            return
        c.pid, c.pidfd = st["pid"], pidfd
        self.loop.add_reader(pidfd, self._adopted_exit, c)

    def _adopted_exit(self, c: Container) -> None:
        """The adopted init exited (pidfd readable). Its status is recorded by the kernel
        only once its new parent (pid 1 or another subreaper) reaps it, which the pidfd
        signals with POLLHUP: wait for that on an epoll watching HUP alone (the pidfd stays
        readable, so the loop's own reader would spin), at most ``_REAP_GRACE`` seconds —
        a parent that never reaps must not hold the waiters forever."""
        self.loop.remove_reader(c.pidfd)
        if self._adopted_status(c):
            return
        hup = select.epoll()
        hup.register(c.pidfd, 0)  # EPOLLHUP is always reported; no EPOLLIN

        def reaped() -> None:
            self.loop.remove_reader(hup.fileno())
            hup.close()
            timer.cancel()
            if not self._adopted_status(c):
                self._set_adopted_exit(c, None)

        timer = self.loop.call_later(_REAP_GRACE, reaped)
        self.loop.add_reader(hup.fileno(), reaped)

    def _adopted_status(self, c: Container) -> bool:
        status = _pidfd_exit_status(c.pidfd)
        if status is None:
            return False
        self._set_adopted_exit(c, status)
        return True

    def _set_adopted_exit(self, c: Container, status: int | None) -> None:
        os.close(c.pidfd)
        c.pidfd = -1
        self._set_exit(c, _UNKNOWN_EXIT if status is None else _exit_code(status))

    # ------------------------------------------------------------------ exits

    def on_sigchld(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            c = self.by_pid.pop(pid, None)
            if c is not None:
                self._set_exit(c, _exit_code(status))
            else:
                # an exec'd process (execs.py), or an orphan of some container (we are a
                # subreaper): reaping is all an orphan needs
                self.exec_reaped(pid, status)

    def _set_exit(self, c: Container, code: int) -> None:
        if c.exited is not None and c.exited.done():
            return
        c.exit_code = code
        c.finished_at = _now()
        with suppress(DockyardError, OSError):
            c.oom_killed = bool(self.runtime.state(c.id).get("oomKilled"))  # the cgroup stays until delete
        # The init of a pid namespace is reaped only after every process in it is gone, so
        # the pipes hold all the output there will be: drain it before answering waiters,
        # who then find every line in the log.
        for fd in list(c.outputs):
            self._pump(c, fd, drain=True)
        if not c.outputs:
            self._end_attach(c)
        with suppress(OSError):
            self.save(c)
        if c.exited is not None:
            c.exited.set_result(None)

    # ------------------------------------------------------------------ output and input

    def _pump(self, c: Container, fd: int, drain: bool = False) -> None:
        stream = c.outputs[fd]
        while True:
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.EIO:  # a pty master reads EIO once every slave fd is closed
                    raise
                data = b""
            if not data:
                if fd == c.tty_fd:
                    c.tty_fd = -1
                self.loop.remove_reader(fd)
                os.close(fd)
                del c.outputs[fd]
                if c.writer is not None:
                    c.writer.flush_partial(stream)
                if not c.outputs and c.exit_code is not None:
                    self._end_attach(c)
                return
            if c.writer is not None:
                c.writer.write(stream, data)
            if c.attached:
                self._emit(c, stream, data)
            if not drain:
                return  # one read per wake-up: a chatty container cannot starve the others

    def _close_io(self, c: Container) -> None:
        for fd in list(c.outputs):
            self.loop.remove_reader(fd)
            os.close(fd)
        c.outputs.clear()
        c.tty_fd = -1
        self._end_attach(c)
        self._close_stdin_now(c)
        if c.writer is not None:
            c.writer.close()
            c.writer = None

    def _close_stdin_now(self, c: Container) -> None:
        if c.stdin_fd >= 0:
            self.loop.remove_writer(c.stdin_fd)
            os.close(c.stdin_fd)
            c.stdin_fd = -1
        c.stdin_buf.clear()

    def _flush_stdin(self, c: Container) -> None:
        while c.stdin_buf:
            try:
                n = os.write(c.stdin_fd, c.stdin_buf)
            except BlockingIOError:
                self.loop.add_writer(c.stdin_fd, self._flush_stdin, c)
                return
            except BrokenPipeError:
                self._close_stdin_now(c)  # the reader is gone: input goes nowhere, as with docker
                return
            del c.stdin_buf[:n]
        self.loop.remove_writer(c.stdin_fd)
        if c.stdin_closing:
            self._close_stdin_now(c)

    # ------------------------------------------------------------------ attach

    def op_attach(self, req: dict[str, Any], conn: Connection) -> dict[str, Any]:
        """Make ``conn`` an attach stream of container ``id``: of its current run, or of its
        next one when this run is over (exited, outputs drained) or when we do not hold the
        container (yet: the daemon re-creates one a previous supervisor lost on its start).
        The connection ends with the run, or with a ``delete`` of the container."""
        cid = req.get("id")
        if not isinstance(cid, str) or not cid:
            raise InvalidArgument("attach needs an id")
        c = self.containers.get(cid)
        conn.owner = cid
        conn.on_close = self._attach_closed
        conn.on_flush = self._attach_flushed
        if c is None or (c.exit_code is not None and not c.outputs):
            self.pending_attach.setdefault(cid, []).append(conn)
        else:
            c.attached.append(conn)
        return {}

    def _emit(self, c: Container, stream: str, data: bytes) -> None:
        chunk = _FRAME.pack(_STREAM_IDS[stream], len(data)) + data
        behind = False
        for conn in tuple(c.attached):  # a failed send closes a connection: it leaves the list
            conn.send(chunk)
            behind = behind or conn.out_size > _ATTACH_HIGH
        if behind and not c.out_paused:
            c.out_paused = True
            for fd in c.outputs:
                self.loop.remove_reader(fd)

    def _resume_outputs(self, c: Container) -> None:
        if not c.out_paused or any(conn.out_size >= _ATTACH_LOW for conn in c.attached):
            return
        c.out_paused = False
        for fd in c.outputs:
            self.loop.add_reader(fd, self._pump, c, fd)

    def _attach_flushed(self, conn: Connection) -> None:
        c = self.containers.get(conn.owner)  # type: ignore[arg-type]
        if c is not None and c.out_paused and conn.out_size < _ATTACH_LOW:
            self._resume_outputs(c)

    def _attach_closed(self, conn: Connection) -> None:
        """An attached connection went away (or was ended): forget it."""
        c = self.containers.get(conn.owner)  # type: ignore[arg-type]
        if c is not None and conn in c.attached:
            c.attached.remove(conn)
            self._resume_outputs(c)
            return
        waiting = self.pending_attach.get(conn.owner)  # type: ignore[arg-type]
        if waiting is not None and conn in waiting:
            waiting.remove(conn)
            if not waiting:
                del self.pending_attach[conn.owner]  # type: ignore[arg-type]

    def _end_attach(self, c: Container) -> None:
        """The run is over: its attach streams end once what they hold is sent."""
        conns, c.attached = c.attached, []
        for conn in conns:
            conn.on_close = conn.on_flush = None
            conn.close_when_flushed()
        self._resume_outputs(c)  # nobody to wait for any more

    def _end_pending_attach(self, cid: str) -> None:
        for conn in self.pending_attach.pop(cid, ()):
            conn.on_close = conn.on_flush = None
            conn.close_when_flushed()

    # ------------------------------------------------------------------ ops

    def _get(self, cid: Any) -> Container:
        c = self.containers.get(cid) if isinstance(cid, str) else None
        if c is None:
            raise NotFound(f"No such container: {cid}")
        return c

    def op_create(self, req: dict[str, Any]) -> dict[str, Any]:
        cid, bundle = req.get("id"), req.get("bundle")
        if not isinstance(cid, str) or not isinstance(bundle, str):
            raise InvalidArgument("create needs an id and a bundle")
        if cid in self.containers:
            raise Conflict(f"container with id exists: {cid}")
        if not os.path.isfile(os.path.join(bundle, "config.json")):
            raise InvalidArgument(f"invalid bundle {bundle!r}: no config.json")
        log_opts = dict(req.get("log_opts") or {})
        opts = parse_log_opts(log_opts)
        if opts.compress:
            raise InvalidArgument("log-opt compress is not supported yet (it would need a thread)")
        c = Container(cid, os.path.abspath(bundle), req.get("log_path"), log_opts)
        if req.get("tty"):
            return self._create_tty(c, req, opts)
        ours: list[int] = []  # fds the container gets; closed here whatever happens
        try:
            if c.log_path:
                c.writer = opts.writer(c.log_path)
            # our read ends are non-blocking (the loop), the container's ends are not
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(out_r, False)
            c.outputs[out_r] = "stdout"
            ours.append(out_w)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(err_r, False)
            c.outputs[err_r] = "stderr"
            ours.append(err_w)
            if req.get("stdin"):
                in_r, in_w = os.pipe2(os.O_CLOEXEC)
                os.set_blocking(in_w, False)
                c.stdin_fd = in_w
            else:
                in_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            ours.append(in_r)
            st = self.runtime.create(cid, c.bundle, CreateOptions(stdio=(in_r, out_w, err_w)))
        except BaseException:
            self._close_io(c)
            raise
        finally:
            for fd in ours:
                os.close(fd)
        return self._created(c, st)

    def _created(self, c: Container, st: dict[str, Any]) -> dict[str, Any]:
        c.pid = int(st["pid"])
        c.exited = self.loop.create_future()
        self.by_pid[c.pid] = c
        self.containers[c.id] = c
        c.attached = self.pending_attach.pop(c.id, [])  # attached before this run was made
        for fd in c.outputs:
            self.loop.add_reader(fd, self._pump, c, fd)
        self.save(c)
        return {"pid": c.pid}

    def _create_tty(self, c: Container, req: dict[str, Any], opts: Any) -> dict[str, Any]:
        """A ``terminal: true`` container: the runtime connects to a console socket of ours
        during ``create`` and the container's init sends the pty master over it before the
        runtime's ``create`` returns (the message waits in the socket's buffer: nobody needs
        to accept while the runtime runs), so accepting afterwards never blocks the loop.
        The master carries the output (logged as stdout: a pty merges the streams) and stdin."""
        from dockyard.supervisor.consoles import ConsoleSocket

        self._consoles += 1
        null = -1
        try:
            with ConsoleSocket(self.root, f"console-{self._consoles}.sock") as sock:
                if c.log_path:
                    c.writer = opts.writer(c.log_path)
                null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                st = self.runtime.create(c.id, c.bundle, CreateOptions(console_socket=sock.path,
                                                                        stdio=(null, null, null)))
                try:
                    master = sock.receive()
                except BaseException:
                    with suppress(DockyardError, OSError):
                        self.runtime.kill(c.id, _signal.SIGKILL)
                    with suppress(DockyardError, OSError):
                        self.runtime.delete(c.id, force=True)
                    raise
        except BaseException:
            self._close_io(c)
            raise
        finally:
            if null >= 0:
                os.close(null)
        os.set_blocking(master, False)
        c.tty_fd = master
        c.outputs[master] = "stdout"
        if req.get("stdin"):
            c.stdin_fd = os.dup(master)  # its own fd: closing stdin must not close the output
        if req.get("height") and req.get("width"):
            with suppress(OSError, ValueError, TypeError):
                _set_winsize(master, int(req["height"]), int(req["width"]))
        return self._created(c, st)

    def op_resize(self, req: dict[str, Any]) -> dict[str, Any]:
        c = self._get(req.get("id"))
        try:
            h, w = int(req.get("h") or 0), int(req.get("w") or 0)
        except (TypeError, ValueError):
            raise InvalidArgument("resize needs integer h and w") from None
        if not (0 < h < 65536 and 0 < w < 65536):
            raise InvalidArgument(f"invalid terminal size {h}x{w}")
        if c.tty_fd < 0:
            if c.exit_code is None and c.outputs:
                raise Conflict(f"container {c.id} has no terminal")
            return {}  # exited (or adopted): nothing to resize, as docker ignores it
        _set_winsize(c.tty_fd, h, w)
        return {}

    def op_start(self, req: dict[str, Any]) -> dict[str, Any]:
        c = self._get(req.get("id"))
        if c.exit_code is not None:
            raise Conflict("cannot start a container that has stopped")
        self.runtime.start(c.id)
        c.started_at = _now()
        self.save(c)
        return {"pid": c.pid, "started_at": c.started_at}

    def op_kill(self, req: dict[str, Any]) -> dict[str, Any]:
        c = self._get(req.get("id"))
        sig = req.get("signal", _signal.SIGTERM)
        try:
            signum = int(sig) if not isinstance(sig, str) or sig.isdigit() else int(
                _signal_number(sig))
        except (KeyError, ValueError):
            raise InvalidArgument(f"invalid signal: {sig}") from None
        if c.exit_code is not None:
            raise Conflict(f"container {c.id} is not running")
        self.runtime.kill(c.id, signum)
        return {}

    async def op_delete(self, req: dict[str, Any]) -> dict[str, Any]:
        """Remove a container (``force``: a running one is killed first). ``restart``: the
        daemon creates it again right after (a new run under the same id), so attach
        streams waiting for its next run are kept; otherwise they end."""
        cid = req.get("id")
        if not req.get("restart") and isinstance(cid, str):
            self._end_pending_attach(cid)  # even for a container we do not hold
        c = self._get(cid)
        if c.exit_code is None:
            status = self._status(c)
            if status in ("running", "paused") and not req.get("force"):
                raise Conflict(f"cannot remove container {c.id}: container is {status}: stop the container "
                               "before removing or force remove")
            if status != "paused":
                # kill and let the reaper record the exit, then delete a stopped container:
                # the runtime's delete never gets to wait for (or reap) a live init itself
                with suppress(Conflict):
                    self.runtime.kill(c.id, _signal.SIGKILL)
                assert c.exited is not None
                await c.exited
        self.runtime.delete(c.id, force=True)  # a paused init is thawed and killed here
        if c.exit_code is None:
            self._set_exit(c, 128 + _signal.SIGKILL)
        self._close_io(c)
        self.by_pid.pop(c.pid, None)
        if c.pidfd >= 0:
            self.loop.remove_reader(c.pidfd)
            os.close(c.pidfd)
            c.pidfd = -1
        del self.containers[c.id]
        if not req.get("restart"):
            self._end_pending_attach(c.id)  # again: one may have come while the exit was awaited
        with suppress(FileNotFoundError):
            os.unlink(self._record_path(c.id))
        return {}

    def _status(self, c: Container) -> str:
        if c.exit_code is not None:
            return "stopped"
        try:
            return str(self.runtime.state(c.id)["status"])
        except NotFound:
            return "stopped"

    def op_state(self, req: dict[str, Any]) -> dict[str, Any]:
        c = self._get(req.get("id"))
        return self._public(c)

    def _public(self, c: Container) -> dict[str, Any]:
        status = self._status(c)
        return {"id": c.id, "status": status, "pid": c.pid if status != "stopped" else 0,
                "exit_code": c.exit_code, "oom_killed": c.oom_killed, "created_at": c.created_at,
                "started_at": c.started_at, "finished_at": c.finished_at, "log_path": c.log_path,
                "adopted": c.adopted}

    def op_list(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"containers": [self._public(c) for c in self.containers.values()]}

    async def op_wait(self, req: dict[str, Any]) -> dict[str, Any]:
        c = self._get(req.get("id"))
        assert c.exited is not None
        await c.exited
        return {"exit_code": c.exit_code, "oom_killed": c.oom_killed, "finished_at": c.finished_at}

    def op_write_stdin(self, req: dict[str, Any]) -> dict[str, Any]:
        c = self._get(req.get("id"))
        if c.stdin_fd < 0 or c.stdin_closing:
            raise Conflict(f"container {c.id} has no open stdin")
        try:
            data = binascii.a2b_base64(req.get("data_b64", ""), strict_mode=True)
        except (ValueError, TypeError):
            raise InvalidArgument("data_b64 is not base64") from None
        was_empty = not c.stdin_buf
        c.stdin_buf += data
        if was_empty:
            self._flush_stdin(c)
        return {}

    def op_close_stdin(self, req: dict[str, Any]) -> dict[str, Any]:
        c = self._get(req.get("id"))
        if c.stdin_fd >= 0:
            c.stdin_closing = True
            if not c.stdin_buf:
                self._close_stdin_now(c)  # else _flush_stdin closes it once the buffer is out
        return {}

    # ------------------------------------------------------------------ pause / resume

    # The cgroup freezer, through the runtime (its per-container lock orders them against
    # kill and delete). The status stays derived: a restarted supervisor, or daemon, reads
    # "paused" from the freezer through op_state. A cgroup v1 freeze polls freezer.state
    # until FROZEN: milliseconds for ordinary tasks, bounded by the runtime's timeout.

    def op_pause(self, req: dict[str, Any]) -> dict[str, Any]:
        c = self._get(req.get("id"))
        if c.exit_code is not None:
            raise Conflict(f"container {c.id} is not running")
        self.runtime.pause(c.id)
        return {}

    def op_resume(self, req: dict[str, Any]) -> dict[str, Any]:
        c = self._get(req.get("id"))
        if c.exit_code is not None:
            raise Conflict(f"container {c.id} is not paused")
        self.runtime.resume(c.id)
        return {}

    # ------------------------------------------------------------------ server

    def on_connection(self, sock: usock.Socket) -> None:
        Connection(self.loop, sock, self._on_line)

    def refill_when_idle(self) -> None:
        """Make a spare network namespace once no request came for a moment: one per quiet
        moment (~2 ms of this loop), never in the middle of a run's create, start, exit
        and delete, which follow each other within milliseconds."""
        if not self.runtime.netns_pool.missing():
            return
        if self._refill is not None:
            self._refill.cancel()
        self._refill = self.loop.call_later(_REFILL_IDLE, self._refill_now)

    def _refill_now(self) -> None:
        self._refill = None
        self.runtime.netns_pool.fill(limit=1)
        self.refill_when_idle()

    def trim_soon(self) -> None:
        """Give the C heap's free pages back to the kernel a moment after the requests stop.

        This process is the host-side memory of every container, and it lives long: what
        its imports and each create leave freed in the heap would stay resident for good."""
        if self._trim is None:
            self._trim = self.loop.call_later(_TRIM_DELAY, self._trim_now)

    def _trim_now(self) -> None:
        self._trim = None
        syscalls.malloc_trim()

    def _on_line(self, conn: Connection, line: bytes) -> None:
        """One request: answered now, or by a task once its coroutine is done (the
        connection hands over its next line only after the answer, so in order)."""
        self.trim_soon()
        self.refill_when_idle()
        try:
            req = jsonc.loads(line)
            if not isinstance(req, dict):
                raise InvalidArgument("a request is a JSON object")
            op = req.get("op")
            if op == "attach":
                result = self.op_attach(req, conn)
                conn.send(jsonc.dumps({"ok": True, **result}).encode() + b"\n")
                conn.start_streaming()
                return
            fn = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
            if fn is None:
                raise InvalidArgument(f"unknown op {op!r}")
            result = fn(req)
        except Exception as e:  # noqa: BLE001 - every request gets an answer
            self._answer(conn, _failure(e))
            return
        if isinstance(result, _CoroutineType):
            self.loop.create_task(self._answer_later(conn, result))
        else:
            self._answer(conn, {"ok": True, **result})

    async def _answer_later(self, conn: Connection, coro: Any) -> None:
        try:
            resp = {"ok": True, **(await coro)}
        except Exception as e:  # noqa: BLE001 - every request gets an answer
            resp = _failure(e)
        self._answer(conn, resp)

    def _answer(self, conn: Connection, resp: dict[str, Any]) -> None:
        fds = resp.pop("_fds", None)  # an exec's streams, for the daemon (execs.py)
        conn.send(jsonc.dumps(resp).encode() + b"\n", fds)
        conn.done()

    def shutdown(self) -> None:
        """Stop serving; containers keep running (live restore). Output pipes close with us."""
        for c in self.containers.values():
            for fd in list(c.outputs):
                # what the container wrote up to now still goes into the log
                with suppress(OSError):
                    self._pump(c, fd, drain=True)
            if c.writer is not None:
                with suppress(OSError, ValueError):
                    c.writer.close()
                c.writer = None


def _failure(err: BaseException) -> dict[str, Any]:
    """The error answer for ``err``."""
    if isinstance(err, DockyardError):
        return {"ok": False, "error": str(err), "kind": _error_kind(err)}
    if isinstance(err, ValueError):  # json, or a log option a constructor refused
        return {"ok": False, "error": str(err), "kind": "InvalidArgument"}
    if isinstance(err, OSError):
        return {"ok": False, "error": str(err), "kind": "DockyardError"}
    import traceback  # a bug: its traceback goes to our stderr (the daemon's supervisor.log)

    with suppress(OSError, ValueError):
        sys.stderr.write("".join(traceback.format_exception(err)))
        sys.stderr.flush()
    return {"ok": False, "error": f"supervisor: {type(err).__name__}: {err}", "kind": "DockyardError"}


def _set_winsize(fd: int, h: int, w: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", h, w, 0, 0))


def _alive(path: str) -> bool:
    s = usock.unix()
    try:
        s.connect(path)
    except OSError:
        return False
    finally:
        s.close()
    return True


def run(root: str, runtime_root: str) -> int:
    # the inits are our grandchildren: become their reaper when stage 1 exits
    syscalls.prctl(syscalls.Prctl.SET_CHILD_SUBREAPER, 1)
    loop = Loop()
    try:
        sup = Supervisor(loop, root, runtime_root)

        def stop() -> None:
            if not sup.stopping.done():
                sup.stopping.set_result(None)

        loop.add_signal_handler(_signal.SIGCHLD, sup.on_sigchld)
        loop.add_signal_handler(_signal.SIGTERM, stop)
        loop.add_signal_handler(_signal.SIGINT, stop)
        sup.restore()
        sup.on_sigchld()  # exits that happened before the handler was installed
        path = os.path.join(sup.root, SOCKET_NAME)
        if _alive(path):
            raise Conflict(f"a supervisor is already serving {path}")
        with suppress(FileNotFoundError):
            os.unlink(path)  # a dead predecessor's socket
        listener = Listener(loop, path, sup.on_connection)
        sup.trim_soon()
        print("ready", file=sys.stderr, flush=True)
        try:
            loop.run_until_complete(sup.stopping)
        finally:
            listener.close()
            with suppress(FileNotFoundError):
                os.unlink(path)
            sup.shutdown()
    finally:
        loop.close()
    return 0
