"""The supervisor's half of ``docker exec``: start a process in a running container, hand its
stdio to the daemon, and report its exit.

``exec`` forks the process through ``Runtime.exec`` (detached: the call returns once the
process has exec'd, or raises what went wrong) with stdio made here: pipes, or a pty whose
master arrives over a console socket as in ``_create_tty``. The daemon's ends of the
streams (stdin's write end, stdout's and stderr's read ends, or the pty master) travel back
to it on the response with SCM_RIGHTS (the response's ``_fds``, sent with the line's first
byte: see ``connection.py``), so an exec's output never touches
the container's log nor this process's loop: the daemon pumps it to the API client. Streams
the daemon does not want (``-d``, or not attached) are /dev/null; a detached exec with a
terminal keeps its pty master here, drained and discarded, so the process keeps a live
terminal and ``exec_resize`` has something to size.

Exits: stage 1 of the runtime's exec exits at once, so the process is re-parented to us (the
supervisor is a child subreaper) and ``on_sigchld`` hands its status to ``exec_reaped``.
The process is registered before this op returns, and signal handlers run on the loop only
after it, so no exit is missed. ``exec_wait`` answers with the exit code.

Exec'd processes live in the container's pid namespace and cgroup: when the init dies the
kernel kills them, and the init is reaped only after they are (by us), so an exec's exit is
always recorded before its container's.
"""

from __future__ import annotations

import _signal
import errno
import fcntl
import os
import struct
import termios
from _collections import OrderedDict  # not collections: see dockyard/suppress.py

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.suppress import suppress

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing is not imported at run time
    from typing import Any

    from dockyard.supervisor.loop import Future, Loop

_READ_SIZE = 65536
_FINISHED_KEPT = 1024  # exit codes of finished execs kept for a late exec_wait


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


class ExecProc:
    """One exec'd process, from its start to its exit."""

    __slots__ = ("id", "cid", "pid", "exit_code", "exited", "tty_fd")

    def __init__(self, exec_id: str, cid: str, pid: int, exited: Future) -> None:
        self.id, self.cid, self.pid = exec_id, cid, pid
        self.exit_code: int | None = None
        self.exited = exited
        self.tty_fd = -1  # a detached exec's pty master, held (and drained) here


class _ExecTable:
    def __init__(self) -> None:
        self.by_id: dict[str, ExecProc] = {}
        self.by_pid: dict[int, ExecProc] = {}
        self.finished: OrderedDict[str, ExecProc] = OrderedDict()
        self.count = 0  # console sockets and pid files made: their names


class ExecOps:
    """Mixed into ``Supervisor``: the ``exec*`` ops and the reaper's hook for exec pids."""

    # provided by Supervisor
    root: str
    runtime: Any
    loop: Loop
    containers: dict[str, Any]

    @property
    def _execs(self) -> _ExecTable:
        table = self.__dict__.get("_exec_table")
        if table is None:
            table = self.__dict__["_exec_table"] = _ExecTable()
        return table

    # ------------------------------------------------------------------ ops

    def op_exec(self, req: dict[str, Any]) -> dict[str, Any]:
        """Start ``process`` (an OCI process section) in container ``id`` as exec ``exec_id``.

        ``stdin``/``stdout``/``stderr``: the streams the daemon wants (ignored with
        ``detach``). Answers ``{"pid", "streams"}`` where ``streams`` names the fds passed
        along, in order: "stdin" (write end), "stdout", "stderr" (read ends), or "tty"."""
        cid, exec_id, process = req.get("id"), req.get("exec_id"), req.get("process")
        if not isinstance(exec_id, str) or not exec_id or not isinstance(process, dict):
            raise InvalidArgument("exec needs an exec_id and a process")
        c = self.containers.get(cid) if isinstance(cid, str) else None
        if c is None:
            raise NotFound(f"No such container: {cid}")
        if c.exit_code is not None:
            raise Conflict(f"container {cid} is not running")
        table = self._execs
        if exec_id in table.by_id or exec_id in table.finished:
            raise Conflict(f"exec {exec_id} exists")
        table.count += 1
        detach = bool(req.get("detach"))
        tty = bool(process.get("terminal"))
        pid_file = os.path.join(self.root, f"exec-{table.count}.pid")
        ours: list[int] = []  # the process's ends, closed here whatever happens
        theirs: list[int] = []  # the daemon's ends, passed along (or closed on failure)
        names: list[str] = []
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        ours.append(null)
        try:
            if tty:
                master = self._exec_tty(c.id, process, pid_file, null)
                names, theirs = ["tty"], [master]
            else:
                stdio = [null, null, null]
                for i, name in enumerate(("stdin", "stdout", "stderr")):
                    if detach or not req.get(name):
                        continue
                    r, w = os.pipe2(os.O_CLOEXEC)
                    child_end, daemon_end = (r, w) if i == 0 else (w, r)
                    ours.append(child_end)
                    theirs.append(daemon_end)
                    names.append(name)
                    stdio[i] = child_end
                from dockyard.runtime.container import ExecOptions

                self.runtime.exec(c.id, process, ExecOptions(detach=True, pid_file=pid_file, stdio=tuple(stdio)))
            pid = _read_pid(pid_file)
        except BaseException:
            for fd in theirs:
                os.close(fd)
            raise
        finally:
            for fd in ours:
                os.close(fd)
            with suppress(FileNotFoundError):
                os.unlink(pid_file)
        ex = ExecProc(exec_id, c.id, pid, self.loop.create_future())
        table.by_id[exec_id] = ex
        table.by_pid[pid] = ex
        if tty and detach:
            # nobody attaches to a detached exec: its terminal stays here, drained
            ex.tty_fd = theirs.pop()
            names = []
            os.set_blocking(ex.tty_fd, False)
            self.loop.add_reader(ex.tty_fd, self._drain_exec_tty, ex)
        return {"pid": pid, "streams": names, "_fds": theirs}

    def _exec_tty(self, cid: str, process: dict[str, Any], pid_file: str, null: int) -> int:
        """Run a ``terminal`` process: its pty master comes over a console socket (sent
        before ``exec`` returns, so accepting afterwards never blocks)."""
        from dockyard.runtime.container import ExecOptions
        from dockyard.supervisor.consoles import ConsoleSocket

        with ConsoleSocket(self.root, f"exec-console-{self._execs.count}.sock") as sock:
            self.runtime.exec(cid, process, ExecOptions(detach=True, console_socket=sock.path, pid_file=pid_file,
                                                        stdio=(null, null, null)))
            try:
                return sock.receive()
            except BaseException:
                with suppress(Exception):
                    os.kill(_read_pid(pid_file), _signal.SIGKILL)  # our child: no pid reuse yet
                raise


    def _drain_exec_tty(self, ex: ExecProc) -> None:
        while True:
            try:
                if not os.read(ex.tty_fd, _READ_SIZE):
                    break
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.EIO:  # EIO: every slave fd is closed
                    raise
                break
        self._close_exec_tty(ex)

    def _close_exec_tty(self, ex: ExecProc) -> None:
        if ex.tty_fd >= 0:
            self.loop.remove_reader(ex.tty_fd)
            os.close(ex.tty_fd)
            ex.tty_fd = -1

    def _exec_get(self, req: dict[str, Any]) -> ExecProc:
        eid = req.get("exec_id")
        table = self._execs
        ex = (table.by_id.get(eid) or table.finished.get(eid)) if isinstance(eid, str) else None
        if ex is None:
            raise NotFound(f"No such exec instance: {eid}")
        return ex

    async def op_exec_wait(self, req: dict[str, Any]) -> dict[str, Any]:
        ex = self._exec_get(req)
        await ex.exited
        return {"exit_code": ex.exit_code, "pid": ex.pid}

    def op_exec_resize(self, req: dict[str, Any]) -> dict[str, Any]:
        """The window size of a detached exec's terminal (an attached one's master is the
        daemon's, which sizes it itself)."""
        ex = self._exec_get(req)
        try:
            h, w = int(req.get("h") or 0), int(req.get("w") or 0)
        except (TypeError, ValueError):
            raise InvalidArgument("resize needs integer h and w") from None
        if not (0 < h < 65536 and 0 < w < 65536):
            raise InvalidArgument(f"invalid terminal size {h}x{w}")
        if ex.tty_fd >= 0:
            fcntl.ioctl(ex.tty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", h, w, 0, 0))
        return {}

    # ------------------------------------------------------------------ exits

    def exec_reaped(self, pid: int, status: int) -> bool:
        """The reaper's hook: record ``pid``'s exit if it is an exec's; False otherwise."""
        table = self._execs
        ex = table.by_pid.pop(pid, None)
        if ex is None:
            return False
        ex.exit_code = _exit_code(status)
        if ex.tty_fd >= 0:
            with suppress(OSError):
                self._drain_exec_tty(ex)
            self._close_exec_tty(ex)
        del table.by_id[ex.id]
        table.finished[ex.id] = ex
        while len(table.finished) > _FINISHED_KEPT:
            table.finished.popitem(last=False)
        if not ex.exited.done():
            ex.exited.set_result(None)
        return True


def _read_pid(path: str) -> int:
    with open(path) as f:
        pid = int(f.read().strip())
    if pid <= 0:
        raise DockyardError(f"bad pid in {path}")
    return pid
