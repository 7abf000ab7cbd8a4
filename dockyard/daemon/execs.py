"""Exec instances: docker's ``POST /containers/{id}/exec``, ``/exec/{id}/start``,
``/exec/{id}/json`` and ``/exec/{id}/resize``.

An exec is a record in memory, as in docker (it does not outlive the daemon): created for a
running container, started at most once, inspectable until its container is removed or
restarted (or, once exited, for ``_KEEP_EXITED`` seconds, docker's garbage collection).

Starting one: the daemon builds the OCI process from the container's config.json (docker's
merge: the exec's args, env, cwd, user, terminal; every capability with ``Privileged``), the
supervisor forks it and passes the daemon its end of each stream over the unix socket with
SCM_RIGHTS (see ``dockyard/supervisor/execs.py``); ``api/execs.py`` pumps those fds to the
hijacked connection. The exit comes from the supervisor's ``exec_wait``, awaited on the API's
event loop (``watch``): no thread per exec.

Failures to start the process are reported as docker does (``OCI runtime exec failed: ...``)
with its exit codes: 126 cannot invoke, 127 not found, 128 anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fcntl
import json
import os
import secrets
import select
import struct
import termios
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound, Unavailable

_KEEP_EXITED = 300.0  # seconds an exited exec stays inspectable
_STARTED_WAIT = 10.0  # how long a resize waits for the exec to start (docker's figure)
_UNKNOWN_EXIT = 255
_EXIT_EACCES, _EXIT_NOT_FOUND, _EXIT_UNKNOWN = 126, 127, 128


@dataclass
class Exec:
    id: str
    container_id: str
    run: str  # the container's StartedAt when created: an exec belongs to one run
    entrypoint: str
    args: list[str]
    tty: bool
    open_stdin: bool
    open_stdout: bool
    open_stderr: bool
    privileged: bool
    user: str
    working_dir: str
    env: list[str]
    detach_keys: bytes
    console_size: list[int] | None
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    finished: float = 0.0  # monotonic time of the exit
    started: threading.Event = field(default_factory=threading.Event)  # started, or failed to
    master: int = -1  # an attached exec's pty master (the daemon's: resize sizes it)
    held_by_supervisor: bool = False  # a detached exec's pty master is the supervisor's
    done: asyncio.Future[None] | None = None  # on the API loop: set once the exit is recorded
    labels: dict[str, str] = field(default_factory=dict)  # the container's event attributes


@dataclass
class Session:
    """A started exec's streams: fd by name ("stdin", "stdout", "stderr" or "tty")."""

    exec: Exec
    fds: dict[str, int]
    supervisor: str  # the supervisor's socket, for the exit


def start_error(message: str) -> tuple[int, DockyardError]:
    """docker's reading of a runtime's start failure: the exec's exit code and the error
    (invalid parameter for a command that cannot run, unknown otherwise)."""
    text = f"OCI runtime exec failed: exec failed: unable to start container process: {message}: unknown"
    low = text.lower()
    if "permission denied" in low:
        return _EXIT_EACCES, InvalidArgument(text)
    if "is a directory" in low:
        return _EXIT_EACCES, InvalidArgument(text + ": permission denied")
    if "not a directory" in low:
        return _EXIT_NOT_FOUND, InvalidArgument(text)
    if any(m in low for m in ("executable file not found", "no such file or directory")):
        return _EXIT_NOT_FOUND, InvalidArgument(text)
    return _EXIT_UNKNOWN, DockyardError(text)


async def _acall(path: str, op: str, **kw: Any) -> dict[str, Any]:
    """One supervisor request from the event loop (the blocking client is for threads)."""
    from dockyard.supervisor.client import error_from

    try:
        reader, writer = await asyncio.open_unix_connection(path)
    except OSError as e:
        raise Unavailable(f"supervisor not running at {path}: {e.strerror}") from None
    try:
        writer.write(json.dumps({"op": op, **kw}).encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    if not line:
        raise Unavailable("supervisor closed the connection without an answer")
    resp: dict[str, Any] = json.loads(line)
    if not resp.pop("ok", False):
        raise error_from(resp.get("kind"), resp.get("error", "supervisor error"))
    return resp


def _set_winsize(fd: int, h: int, w: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", h, w, 0, 0))


class ExecService:
    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._execs: dict[str, Exec] = {}
        self._tasks: set[asyncio.Task[Any]] = set()  # exit waiters and detached pumps

    # ------------------------------------------------------------------ lookup

    def _container(self, ref: str) -> Any:
        return self.engine.containers.lookup(ref)

    @staticmethod
    def _check_running(rec: Any, ref: str) -> None:
        if rec.status != "running":
            raise Conflict(f"container {rec.id} is not running")
        if getattr(rec, "paused", False):
            raise Conflict(f"Container {ref} is paused, unpause the container before exec")

    def _get(self, eid: str) -> tuple[Exec, Any]:
        """The exec and its container's record; NotFound once the container is gone or has
        been restarted since (docker drops a container's execs when it stops)."""
        with self._lock:
            ex = self._execs.get(eid)
        rec = None
        if ex is not None:
            with contextlib.suppress(NotFound):
                rec = self.engine.containers.lookup(ex.container_id)
            if rec is None or (rec.started_at != ex.run and ex.exit_code is None and not ex.running):
                self._forget(ex)
                ex = None
        if ex is None:
            raise NotFound(f"No such exec instance: {eid}")
        return ex, rec

    def _forget(self, ex: Exec) -> None:
        with self._lock:
            if self._execs.get(ex.id) is ex:
                del self._execs[ex.id]

    def _gc(self) -> None:
        now = time.monotonic()
        with self._lock:
            old = [e for e in self._execs.values() if e.exit_code is not None and now - e.finished > _KEEP_EXITED]
            for e in old:
                del self._execs[e.id]

    def live_ids(self, cid: str) -> list[str] | None:
        """Container inspect's ExecIDs: the container's execs that have not exited (null
        when there are none, as docker says it)."""
        with self._lock:
            ids = [e.id for e in self._execs.values() if e.container_id == cid and e.exit_code is None]
        return ids or None

    # ------------------------------------------------------------------ events

    def _event(self, ex: Exec, action: str, attributes: dict[str, str]) -> None:
        bus = getattr(self.engine, "events", None)
        if bus is not None:
            bus.emit("container", action, ex.container_id, {**attributes, **ex.labels})

    @staticmethod
    def _labels(rec: Any) -> dict[str, str]:
        attrs = dict(rec.config.get("Labels") or {})
        if rec.config.get("Image"):
            attrs["image"] = rec.config["Image"]
        attrs["name"] = rec.name.lstrip("/")
        return attrs

    def _command(self, ex: Exec) -> str:
        return ex.entrypoint + " " + " ".join(ex.args)  # docker's, trailing space and all

    # ------------------------------------------------------------------ create / inspect

    def create(self, ref: str, body: Any, console_size_ok: bool = True) -> str:
        if not isinstance(body, dict):
            raise InvalidArgument("invalid JSON: the body must be an object")
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd:
            raise InvalidArgument("No exec command specified")
        if not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
            raise InvalidArgument("invalid JSON: Cmd must be a list of strings")
        self.engine.warmer.kick()  # the exec's cgroup attach follows with the start
        env = body.get("Env") or []
        if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
            raise InvalidArgument("invalid JSON: Env must be a list of strings")
        for key in ("User", "WorkingDir", "DetachKeys"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise InvalidArgument(f"invalid JSON: {key} must be a string")
        size = body.get("ConsoleSize") if console_size_ok else None
        if size is not None and not (isinstance(size, list) and len(size) == 2
                                     and all(isinstance(v, int) and v >= 0 for v in size)):
            raise InvalidArgument("invalid JSON: ConsoleSize must be [height, width]")
        rec = self._container(ref)
        self._check_running(rec, ref)
        tty = bool(body.get("Tty"))
        user = body.get("User") or rec.config.get("User") or ""
        if body.get("User"):
            from dockyard.containers.ocispec import resolve_user

            # docker looks the user up at create already, for an early error
            resolve_user(os.path.join(rec.bundle, "rootfs"), user, list(rec.host_config.get("GroupAdd") or []))
        keys = b""
        if body.get("DetachKeys"):
            from dockyard.streams.detach import parse_detach_keys

            try:
                keys = parse_detach_keys(body["DetachKeys"])
            except InvalidArgument:
                raise InvalidArgument(f"Invalid escape keys ({body['DetachKeys']}) provided") from None
        ex = Exec(
            id=secrets.token_hex(32), container_id=rec.id, run=rec.started_at, entrypoint=cmd[0],
            args=list(cmd[1:]), tty=tty, open_stdin=bool(body.get("AttachStdin")),
            open_stdout=bool(body.get("AttachStdout")), open_stderr=bool(body.get("AttachStderr")),
            privileged=bool(body.get("Privileged")), user=user,
            working_dir=body.get("WorkingDir") or rec.config.get("WorkingDir") or "",
            env=self._env(rec, tty, env), detach_keys=keys,
            console_size=list(size) if size and all(size) else None, labels=self._labels(rec),
        )
        self._gc()
        with self._lock:
            self._execs[ex.id] = ex
        self._event(ex, "exec_create: " + self._command(ex), {"execID": ex.id})
        return ex.id

    @staticmethod
    def _env(rec: Any, tty: bool, extra: list[str]) -> list[str]:
        """docker's: PATH, HOSTNAME, TERM with a TTY, the container's Env over them, the
        exec's over that. (HOME comes from the runtime, from the user's passwd entry.)"""
        from dockyard.containers.ocispec import _replace_or_append, container_env

        hostname = rec.config.get("Hostname") or ""
        with contextlib.suppress(OSError, ValueError), open(os.path.join(rec.bundle, "config.json")) as f:
            hostname = json.load(f).get("hostname") or hostname
        base = container_env({"Tty": tty, "Env": rec.config.get("Env") or []}, hostname or rec.id[:12])
        return _replace_or_append(base, extra)

    def inspect(self, eid: str) -> dict[str, Any]:
        ex, _rec = self._get(eid)
        return {
            "ID": ex.id, "Running": ex.running, "ExitCode": ex.exit_code,
            "ProcessConfig": {"tty": ex.tty, "entrypoint": ex.entrypoint, "arguments": ex.args,
                              "privileged": ex.privileged, "user": ex.user},
            "OpenStdin": ex.open_stdin, "OpenStderr": ex.open_stderr, "OpenStdout": ex.open_stdout,
            "CanRemove": False, "ContainerID": ex.container_id,
            "DetachKeys": _b64(ex.detach_keys), "Pid": ex.pid,
        }

    # ------------------------------------------------------------------ start

    def begin(self, eid: str) -> Exec:
        """Checks before the start (before the connection is hijacked, so they are HTTP
        errors); marks the exec running."""
        ex, rec = self._get(eid)
        self._check_running(rec, rec.id)
        with self._lock:
            if ex.exit_code is not None:
                raise Conflict(f"exec command {ex.id} has already run")
            if ex.running:
                raise Conflict(f"exec command {ex.id} is already running")
            ex.running = True
        self._event(ex, "exec_start: " + self._command(ex), {"execID": ex.id})
        return ex

    def _process(self, ex: Exec, rec: Any, console_size: list[int] | None) -> dict[str, Any]:
        """The container's OCI process with the exec's settings (docker's merge)."""
        with open(os.path.join(rec.bundle, "config.json")) as f:
            spec = json.load(f)
        p = copy.deepcopy(spec.get("process") or {})
        p["args"] = [ex.entrypoint, *ex.args]
        p["env"] = list(ex.env)
        p["cwd"] = ex.working_dir or "/"
        p["terminal"] = ex.tty
        p.pop("consoleSize", None)
        size = console_size or ex.console_size
        if ex.tty and size and all(size):
            p["consoleSize"] = {"height": int(size[0]), "width": int(size[1])}
        if ex.user:
            from dockyard.containers.ocispec import resolve_user

            u = resolve_user(os.path.join(rec.bundle, "rootfs"), ex.user, list(rec.host_config.get("GroupAdd") or []))
            user = {k: v for k, v in (p.get("user") or {}).items() if k == "umask"}
            user.update({"uid": u.uid, "gid": u.gid})
            if u.additional_gids:
                user["additionalGids"] = list(u.additional_gids)
            p["user"] = user
        if ex.privileged:
            from dockyard.runtime.capabilities import all_caps

            caps = all_caps()
            p["capabilities"] = {"bounding": list(caps), "effective": list(caps), "permitted": list(caps)}
        return p

    def launch(self, ex: Exec, console_size: list[int] | None, attach: bool) -> Session:
        """Start the process (blocking: call it from a thread). ``attach``: the daemon gets
        the streams the exec attaches; else every stream is /dev/null (a terminal stays with
        the supervisor). A failure to start sets docker's exit code and raises docker's error."""
        try:
            try:
                rec = self.engine.containers.lookup(ex.container_id)
                self._check_running(rec, rec.id)
                process = self._process(ex, rec, console_size)
                sup = self.engine.supervisor()
                resp, fds = sup.call_fds("exec", id=ex.container_id, exec_id=ex.id, process=process,
                                         detach=not attach, stdin=ex.open_stdin, stdout=ex.open_stdout,
                                         stderr=ex.open_stderr)
            except NotFound:
                raise Conflict(f"container {ex.container_id} is not running") from None
            except Conflict as e:
                if "paused" in str(e):
                    raise Conflict(f"Container {ex.container_id} is paused, unpause the container before exec") from None
                raise Conflict(f"container {ex.container_id} is not running") from None
            except Unavailable:
                raise
            except InvalidArgument as e:
                if str(e).startswith("unable to find"):
                    raise
                code, err = start_error(str(e))
                self._failed(ex, code)
                raise err from None
            except DockyardError as e:
                code, err = start_error(str(e))
                self._failed(ex, code)
                raise err from None
        except BaseException:
            if ex.exit_code is None:
                self._failed(ex, _EXIT_EACCES)  # docker's default for a start that failed
            raise
        names = list(resp.get("streams") or [])
        session = Session(ex, dict(zip(names, fds, strict=False)), sup.path)
        for fd in fds[len(names):]:
            os.close(fd)  # more than announced: not ours to keep
        with self._lock:
            ex.pid = int(resp.get("pid") or 0)
            if "tty" in session.fds:
                ex.master = session.fds["tty"]
            elif ex.tty:
                ex.held_by_supervisor = True
        ex.started.set()
        return session

    def _failed(self, ex: Exec, code: int) -> None:
        with self._lock:
            ex.running = False
            ex.exit_code = code
            ex.finished = time.monotonic()
        ex.started.set()

    def watch(self, session: Session) -> asyncio.Future[None]:
        """On the API loop: a task that records the exit when the supervisor reports it;
        returns a future set after that (the exec's ``done``)."""
        ex = session.exec
        loop = asyncio.get_running_loop()
        ex.done = loop.create_future()

        async def waiter() -> None:
            try:
                res = await _acall(session.supervisor, "exec_wait", exec_id=ex.id)
                code = res.get("exit_code")
                code = _UNKNOWN_EXIT if code is None else int(code)
            except (DockyardError, OSError, ValueError):
                code = _UNKNOWN_EXIT  # the supervisor went away: the status is lost
            self._exited(ex, code)

        task = asyncio.ensure_future(waiter())
        self.keep(task)
        return ex.done

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Hold a reference to a background task until it ends."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _exited(self, ex: Exec, code: int) -> None:
        with self._lock:
            ex.running = False
            ex.exit_code = code
            ex.finished = time.monotonic()
        self._event(ex, "exec_die", {"execID": ex.id, "exitCode": str(code)})
        if ex.done is not None and not ex.done.done():
            ex.done.set_result(None)

    def run_probe(self, cid: str, command: list[str], timeout: float) -> tuple[int, str]:
        """Run ``command`` in the running container and wait for it, from a worker thread
        (a health probe): its exit code and the start of its output. Past ``timeout`` the
        process is killed and the code is -1, as docker reports it."""
        eid = self.create(cid, {"Cmd": command, "AttachStdout": True, "AttachStderr": True})
        ex = self.begin(eid)
        session = self.launch(ex, None, attach=True)
        fds = [fd for name, fd in session.fds.items() if name != "stdin"]
        out = bytearray()
        deadline = time.monotonic() + timeout
        timed_out = False
        try:
            open_fds = list(fds)
            while open_fds:
                left = deadline - time.monotonic()
                ready = select.select(open_fds, [], [], max(left, 0))[0] if left > 0 else []
                if not ready:
                    timed_out = True
                    if ex.pid:
                        with contextlib.suppress(OSError):
                            os.kill(ex.pid, 9)
                    break
                for fd in ready:
                    data = os.read(fd, 65536)
                    if not data:
                        open_fds.remove(fd)
                    elif len(out) < 4096:
                        out += data
            try:
                code = self.engine.supervisor().call("exec_wait", exec_id=ex.id).get("exit_code")
                code = _UNKNOWN_EXIT if code is None else int(code)
            except DockyardError:
                code = _UNKNOWN_EXIT
        finally:
            for fd in session.fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._exited(ex, code)
        if timed_out:
            return -1, f"Health check exceeded timeout ({timeout:g}s)"
        return code, out.decode(errors="replace")

    def detached(self, ex: Exec) -> None:
        """The client typed the detach keys: the process runs on without it."""
        self._event(ex, "exec_detach", {"execID": ex.id})

    def release_master(self, ex: Exec) -> None:
        """Close an attached exec's pty master (under the lock a resize takes)."""
        with self._lock:
            if ex.master >= 0:
                os.close(ex.master)
                ex.master = -1

    # ------------------------------------------------------------------ resize

    def resize(self, eid: str, h: int, w: int) -> None:
        ex, rec = self._get(eid)
        self._check_running(rec, rec.id)
        if not ex.started.wait(_STARTED_WAIT):
            raise DockyardError("timeout waiting for exec session ready")
        if ex.pid == 0:
            raise InvalidArgument("exec process is not started")
        if not ex.tty or ex.exit_code is not None:
            return
        with self._lock:
            if ex.master >= 0:
                _set_winsize(ex.master, h, w)
                return
        if ex.held_by_supervisor:
            with contextlib.suppress(NotFound):
                self.engine.supervisor().call("exec_resize", exec_id=ex.id, h=h, w=w)


def _b64(data: bytes) -> str:
    """Go's JSON encoding of a []byte (docker's DetachKeys)."""
    import base64

    return base64.b64encode(data).decode()
