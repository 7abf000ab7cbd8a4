"""The lifecycle: create / start / state / kill / delete / run / exec / pause / resume /
ps / list, each checking the container's state first (runc's wording for refusals).

Process layout of ``create`` (and of ``exec``), all in a fresh single-threaded Python::

    runtime ──fork──> stage 1 ──fork──> stage 2 (container init / exec'd process)
      │ puts stage 1 in the cgroup,       │ setns into joined namespaces; unshare the user
      │ then sends "go"                   │ namespace (maps written by the runtime) then
      │ writes uid/gid maps on request    │ the others; fork: the child is PID 1 of a new
      │ takes a pidfd of stage 2, "bye"   │ pid namespace; reports its host pid, waits
      └ reads "created" / "error" / EOF   └ for "bye" (so the pid cannot be recycled), exits

``run`` and foreground ``exec`` make the runtime a child subreaper first, so stage 2 is
re-parented to it and its exit status can be waited for.

Stage 1 starts by making itself non-dumpable (inherited by stage 2 until its execve):
a container process can then neither ptrace it nor open /proc/<pid>/exe (the Python
interpreter, CVE-2019-5736) or /proc/<pid>/fd of it. Both stages close every inherited fd
they do not need at once, and the final process closes all but 0-2 and the preserved
ones, so no host fd (CVE-2024-21626) reaches the container. The init's cwd is "/" of
the container after pivot_root.

The children's code is in stages.py. All waiting is on events: the SOCK_SEQPACKET sync socket (EOF = every child copy closed,
i.e. exec'd or dead), pidfds (poll: readable when the process exits), the exec FIFO.
"""

from __future__ import annotations

import os
import select
import sys

from dockyard import syscalls
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.runtime import stages
from dockyard.runtime import state as st
from dockyard.runtime.state import CREATED, PAUSED, RUNNING, STOPPED, ContainerState, StateStore
from dockyard.suppress import suppress

# `typing`, `socket` and `signal` cost milliseconds to import and `state`/`kill` never
# need them at run time: annotations only (postponed), the rest imported where used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from _socket import socket as Socket
    from collections.abc import Callable
    from typing import Any


class ContainerError(DockyardError):
    """The container process failed to set up (the message comes from inside)."""


# Plain classes rather than dataclasses: @dataclass generates code at import time, and
# every container start imports this module.


class CreateOptions:
    """The flags of ``create`` / ``run`` beyond the bundle."""

    __slots__ = ("console_socket", "pid_file", "no_pivot", "preserve_fds", "stdio")

    def __init__(self, console_socket: str | None = None, pid_file: str | None = None,
                 no_pivot: bool = False, preserve_fds: int = 0,
                 stdio: tuple[int, int, int] | None = None) -> None:
        self.console_socket, self.pid_file = console_socket, pid_file
        self.no_pivot, self.preserve_fds = no_pivot, preserve_fds
        # the container's stdin/stdout/stderr (e.g. a supervisor's pipes); None: ours
        self.stdio = stdio


class ExecOptions:
    """The flags of ``exec`` that are not part of the process."""

    __slots__ = ("detach", "console_socket", "pid_file", "preserve_fds", "stdio")

    def __init__(self, detach: bool = False, console_socket: str | None = None,
                 pid_file: str | None = None, preserve_fds: int = 0,
                 stdio: tuple[int, int, int] | None = None) -> None:
        self.detach, self.console_socket = detach, console_socket
        self.pid_file, self.preserve_fds = pid_file, preserve_fds
        self.stdio = stdio


class ExecArgs:
    """runc exec's flags, turned into a process section by ``process_from_args``."""

    def __init__(self, args: list[str], tty: bool = False, user: str | None = None,
                 additional_gids: list[int] | None = None, cwd: str | None = None,
                 env: list[str] | None = None, caps: list[str] | None = None,
                 no_new_privs: bool = False) -> None:
        self.args, self.tty, self.user = list(args), tty, user
        self.additional_gids = list(additional_gids or [])
        self.cwd, self.env, self.caps = cwd, list(env or []), list(caps or [])
        self.no_new_privs = no_new_privs


def _default_warn(msg: str) -> None:
    print(f"dockyard-runtime: warning: {msg}", file=sys.stderr)


class Runtime:
    """An OCI runtime with runc's semantics over a state root.

    ``create``, ``run`` and ``exec`` fork; they must run in a single-threaded process.
    Called from a threaded one (the engine's daemon), they run the ``dockyard-runtime``
    CLI in a subprocess instead, so namespaces are never set up by forking a threaded
    program. Everything else works in-process from anywhere. (In-process, ``run`` and a
    foreground ``exec`` make the calling process a child subreaper, for good.)
    """

    def __init__(self, root: str = st.DEFAULT_ROOT, *, warn: Callable[[str], None] | None = None,
                 debug: Callable[[str], None] | None = None, delegate: bool = True) -> None:
        """``delegate=False`` (the CLI itself): never hand a fork to a subprocess, fail
        instead — a CLI that delegated to itself would recurse without end."""
        self.root = os.path.abspath(root)
        self.delegate = delegate
        self.store = StateStore(self.root)
        self.warn = warn or _default_warn
        self.debug = debug or (lambda _msg: None)
        self.netns_pool: Any = None  # a NetnsPool (netns_pool.py), for a long-lived caller
        # True for a caller that reaps its exited children itself (a SIGCHLD handler): stage 1
        # then exits without being waited for (~2 ms: tearing down a forked address space)
        self.reaps_children = False

    # ------------------------------------------------------------------ queries

    def state(self, container_id: str) -> dict[str, Any]:
        state = self.store.load(container_id)
        doc = state.public()
        if doc["status"] != "created":
            # the OOM-killed flag lives in the cgroup, which stays until delete
            with suppress(OSError, DockyardError):
                cg = _cgroup(state)
                if cg.exists():
                    doc["oomKilled"] = cg.oom_kills() > 0
        return doc

    def stats(self, container_id: str) -> dict[str, Any]:
        """Memory, cpu and pids figures of the container's cgroup (runc's ``events --stats``)."""
        state = self.store.load(container_id)
        cg = _cgroup(state)
        if not cg.exists():
            raise Conflict(f'container "{container_id}" is not running')
        return cg.stats()

    def list(self) -> list[dict[str, Any]]:
        out = []
        for cid in self.store.ids():
            try:
                doc = self.store.load(cid).public()
            except (NotFound, InvalidArgument):
                continue  # being created, or debris of a crashed create
            with suppress(OSError):
                doc["owner"] = _owner_name(os.stat(self.store.dir(cid)).st_uid)
            out.append(doc)
        return out

    def ps(self, container_id: str) -> list[int]:
        state = self.store.load(container_id)
        cg = _cgroup(state)
        return sorted(cg.pids()) if cg.exists() else []

    # ------------------------------------------------------------------ create / start / run

    def create(self, container_id: str, bundle: str, opts: CreateOptions | None = None) -> dict[str, Any]:
        opts = opts or CreateOptions()
        if not self._may_fork():
            return self._via_cli(["create", "--bundle", bundle, *_create_flags(opts), container_id], opts.preserve_fds,
                                 stdio=opts.stdio)
        state, sock = self._create(container_id, bundle, opts)
        sock.close()
        return state.public()

    def start(self, container_id: str) -> None:
        with self.store.locked(container_id) as state:
            if state.status == STOPPED:
                raise Conflict("cannot start a container that has stopped")
            if state.status != CREATED:
                raise Conflict("cannot start an already running container")
            pidfd = _pidfd(state)
            if pidfd is None:  # died since the status was derived
                raise Conflict("cannot start a container that has stopped")
            fifo = self.store.fifo_path(container_id)
            try:
                fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                try:
                    # Opening the read end released the init's blocking open(O_WRONLY);
                    # it writes one byte. The pidfd turns readable if it dies instead.
                    poller = select.poll()
                    poller.register(fd, select.POLLIN)
                    poller.register(pidfd, select.POLLIN)
                    ready = dict(poller.poll())
                    data = os.read(fd, 1) if ready.get(fd, 0) & select.POLLIN else b""
                finally:
                    os.close(fd)
            finally:
                os.close(pidfd)
            os.unlink(fifo)
            if not data:
                raise ContainerError(f'container "{container_id}": the init exited before it was started')

    def run(self, container_id: str, bundle: str, opts: CreateOptions | None = None, *,
            detach: bool = False, keep: bool = False) -> int:
        """create + start; unless ``detach``, wait and return the exit status (128+n for a
        signal) and delete the container (unless ``keep``)."""
        opts = opts or CreateOptions()
        if not self._may_fork():
            flags = [*(["-d"] if detach else []), *(["--keep"] if keep else [])]
            return self._via_cli(["run", "--bundle", bundle, *flags, *_create_flags(opts), container_id],
                                 opts.preserve_fds, exit_status=True, stdio=opts.stdio)
        if not detach:
            _become_subreaper()  # the init is our grandchild: adopt it when stage 1 exits
        state, sock = self._create(container_id, bundle, opts)
        try:
            if detach:
                sock.close()
                self.start(container_id)
                return 0
            with _forward_signals(state.pid):
                try:
                    self.start(container_id)
                    _report_exec_error(sock, raise_it=False)  # its exit status says the rest
                    return _wait_status(state.pid)
                finally:
                    sock.close()
        finally:
            if not detach and not keep:
                self.delete(container_id, force=True)
            _reap_orphans()

    def _create(self, cid: str, bundle: str, opts: CreateOptions) -> tuple[ContainerState, Socket]:
        from dockyard.runtime import namespaces
        from dockyard.runtime.spec import load_spec, rootfs_path

        st.validate_id(cid)
        bundle = os.path.abspath(bundle)
        if os.path.exists(self.store.dir(cid)):  # cheap early answer; reserve() decides
            raise Conflict(f"container with id exists: {cid}")
        spec = load_spec(bundle)
        proc = spec["process"]
        _check_terminal(proc.get("terminal", False), opts.console_socket, detach=True)
        _check_preserved(opts.preserve_fds)
        from dockyard.runtime import process as _process

        _process.check_rlimits(proc)  # a clear refusal rather than stage 1's EPERM
        nsmap = namespaces.spec_namespaces(spec)
        linux = spec.get("linux", {})
        seccomp_filter = _prepare_seccomp(linux.get("seccomp"))
        _import_container_side()
        from dockyard.runtime.cgroups import open_cgroup

        cgroup_path = _cgroup_path(linux.get("cgroupsPath"), cid)
        cg = open_cgroup(cgroup_path)
        rootfs = rootfs_path(spec, bundle)
        ns_fds = namespaces.open_paths(nsmap)
        flags = namespaces.new_flags(nsmap)
        if self.netns_pool is not None and "network" in nsmap and nsmap["network"] is None and "user" not in nsmap:
            spare = self.netns_pool.take()
            if spare is not None:  # made ahead, lo up: joined instead of unshared
                ns_fds["network"] = spare
                flags &= ~syscalls.CloneFlag.NEWNET
        console_sock = None
        try:
            if proc.get("terminal"):
                assert opts.console_socket is not None
                from dockyard.runtime import console

                console_sock = console.connect(opts.console_socket)
            with self.store.reserve(cid):
                sock, child = _socketpair()
                kids = _Children()
                fifo_fd = -1
                try:
                    fifo = self.store.fifo_path(cid)
                    os.mkfifo(fifo, 0o622)
                    os.chmod(fifo, 0o622)  # umask-proof: a user-namespaced init must open it
                    fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
                    for w in cg.create(linux.get("resources") or {}) or []:
                        self.warn(str(w))
                    ctx = stages.InitContext(
                        spec=spec, bundle=bundle, rootfs=rootfs, ns_fds=ns_fds,
                        new_user="user" in nsmap and nsmap["user"] is None,
                        flags=flags, fifo_fd=fifo_fd, console=console_sock,
                        opts=opts, seccomp=seccomp_filter,
                    )
                    stage1 = stages.fork(child, stages.stage1_create, ctx, keep=[fifo_fd, *_fds(console_sock), *ns_fds.values()],
                                   preserve=opts.preserve_fds, stdio=opts.stdio)
                    kids.add(stage1)
                    child.close()
                    cg.add(stage1)
                    init_pid = self._handshake(sock, stage1, kids, linux, until="created")
                    if kids.exited(init_pid):
                        raise ContainerError("the container's init exited during setup")
                    state = ContainerState(
                        id=cid, bundle=bundle, rootfs=rootfs, pid=init_pid, created=st.now_rfc3339(),
                        annotations=dict(spec.get("annotations") or {}),
                        init_start_time=st.start_time(init_pid), cgroup_path=cgroup_path, config=spec,
                    )
                    self.store.save(state)
                    if opts.pid_file:
                        st.write_pid_file(opts.pid_file, init_pid)
                    state.status = CREATED
                    return state, sock
                except BaseException:
                    sock.close()
                    kids.kill_and_reap()
                    _destroy_cgroup(cg)
                    raise
                finally:
                    kids.close()
                    if fifo_fd >= 0:
                        os.close(fifo_fd)
                    child.close()
        finally:
            namespaces.close_all(ns_fds)
            if console_sock is not None:
                console_sock.close()

    def _handshake(self, sock: Socket, stage1: int, kids: _Children, linux: dict[str, Any],
                   until: str) -> int:
        """Serve the children until ``until`` arrives; returns the final process's pid."""
        from dockyard.runtime import namespaces, syncsock

        syncsock.send(sock, {"t": "go"})
        final_pid = 0
        while True:
            msg = syncsock.recv(sock)
            if msg is None:
                status = _reap(stage1)
                raise ContainerError("container process exited during setup" +
                                     (f" (stage 1 status {status})" if status else ""))
            kind = msg.get("t")
            if kind == "userns":
                namespaces.write_id_maps(stage1, linux.get("uidMappings", []), linux.get("gidMappings", []))
                syncsock.send(sock, {"t": "mapped"})
            elif kind == "pid":
                final_pid = int(msg["pid"])
                # A pidfd while stage 1, its parent, still waits for "bye": the pid cannot
                # have been reaped and reused yet, so every later signal hits this process.
                kids.add(final_pid)
                syncsock.send(sock, {"t": "bye"})
                if not self.reaps_children:
                    _reap(stage1)  # once reaped, its child has been reparented
                if until == "pid":
                    return final_pid
            elif kind == "error":
                raise ContainerError(msg.get("msg", "container setup failed"))
            elif kind == until:
                return final_pid

    # ------------------------------------------------------------------ signals, freezer

    def kill(self, container_id: str, sig: int = 15, all_processes: bool = False) -> None:
        """Signal the init (default SIGTERM), or with ``all_processes`` every process."""
        import _signal

        with self.store.locked(container_id) as state:
            if state.status == STOPPED and not all_processes:
                raise Conflict(f'container "{container_id}" is not running')
            if all_processes:
                cg = _cgroup(state)
                if cg.exists():
                    cg.kill_all(sig)
                return
            pidfd = _pidfd(state)
            if pidfd is None:
                raise Conflict(f'container "{container_id}" is not running')
            try:
                _signal.pidfd_send_signal(pidfd, sig)
            finally:
                os.close(pidfd)

    def pause(self, container_id: str) -> None:
        with self.store.locked(container_id) as state:
            if state.status != RUNNING:
                raise Conflict(f'container "{container_id}" is not running')
            _cgroup(state).freeze()

    def resume(self, container_id: str) -> None:
        with self.store.locked(container_id) as state:
            if state.status != PAUSED:
                raise Conflict(f'container "{container_id}" is not paused')
            _cgroup(state).thaw()

    # ------------------------------------------------------------------ delete

    def delete(self, container_id: str, force: bool = False) -> None:
        try:
            with self.store.locked(container_id) as state:
                if state.status in (RUNNING, PAUSED) and not force:
                    raise Conflict(f"cannot delete container {container_id} that is not stopped: {state.status}")
                self._destroy(state)
        except NotFound:
            if not force:
                raise
            # runc: -f on a missing container succeeds, clearing debris of a crashed create
            self.store.remove(container_id)

    def _destroy(self, state: ContainerState) -> None:
        import _signal

        cg = _cgroup(state)
        pidfd = _pidfd(state)
        if pidfd is not None:
            try:
                _signal.pidfd_send_signal(pidfd, _signal.SIGKILL)
                if state.status == PAUSED:
                    cg.thaw()  # a frozen task only acts on SIGKILL once thawed (cgroup v1)
                _wait_pidfds([pidfd])
            finally:
                os.close(pidfd)
            with suppress(ChildProcessError):
                os.waitpid(state.pid, os.WNOHANG)  # ours when `run` adopted it
        _destroy_cgroup(cg)
        self.store.remove(state.id)

    # ------------------------------------------------------------------ exec

    def exec(self, container_id: str, process: dict[str, Any], opts: ExecOptions | None = None) -> int:
        """Run ``process`` (an OCI process section) in the container. Returns its exit
        status, or 0 once it has been exec'd when ``opts.detach``."""
        from dockyard.runtime import namespaces
        from dockyard.runtime.spec import validate_process

        opts = opts or ExecOptions()
        if not self._may_fork():
            return self._exec_via_cli(container_id, process, opts)
        validate_process(process)
        _check_terminal(process.get("terminal", False), opts.console_socket, detach=opts.detach)
        _check_preserved(opts.preserve_fds)
        if not opts.detach:
            _become_subreaper()
        with self.store.locked(container_id) as state:
            if state.status == STOPPED:
                raise Conflict("cannot exec in a stopped container")
            if state.status == PAUSED:
                raise Conflict("cannot exec in a paused container")
            seccomp_filter = _prepare_seccomp(state.config.get("linux", {}).get("seccomp"))
            _import_container_side(for_init=False)
            pidfd = _pidfd(state)
            if pidfd is None:
                raise Conflict("cannot exec in a stopped container")
            ns_fds: dict[str, int] = {}
            console_sock = None
            sock, child = _socketpair()
            try:
                ns_fds = namespaces.open_process_namespaces(state.pid)
                if _pidfd_exited(pidfd):  # it died while we opened them: they may be a new process's
                    raise Conflict("cannot exec in a stopped container")
                if process.get("terminal"):
                    from dockyard.runtime import console

                    assert opts.console_socket is not None
                    console_sock = console.connect(opts.console_socket)
                ctx = stages.ExecContext(process=process, ns_fds=ns_fds, console=console_sock, opts=opts,
                                   seccomp=seccomp_filter)
                kids = _Children()
                try:
                    stage1 = stages.fork(child, stages.stage1_exec, ctx, keep=[*_fds(console_sock), *ns_fds.values()],
                                   preserve=opts.preserve_fds, stdio=opts.stdio)
                    kids.add(stage1)
                    child.close()
                    _cgroup(state).add(stage1)
                    pid = self._handshake(sock, stage1, kids, {}, until="pid")
                except BaseException:
                    sock.close()
                    kids.kill_and_reap()
                    raise
                finally:
                    kids.close()
            finally:
                os.close(pidfd)
                namespaces.close_all(ns_fds)
                if console_sock is not None:
                    console_sock.close()
                child.close()
        if opts.pid_file:
            st.write_pid_file(opts.pid_file, pid)
        try:
            if opts.detach:
                _report_exec_error(sock)
                return 0
            with _forward_signals(pid):
                _report_exec_error(sock, raise_it=False)
                return _wait_status(pid)
        finally:
            sock.close()
            if not opts.detach:
                # detached, the caller reaps: a subreaper (the supervisor) must see every
                # exit status itself, this process's and its containers' included
                _reap_orphans()

    def _may_fork(self) -> bool:
        """True to fork here; False to run the CLI in a subprocess instead."""
        if _single_threaded():
            return True
        if not self.delegate:
            raise ContainerError("namespace setup must run in a single-threaded process")
        return False

    def _via_cli(self, argv: list[str], preserve_fds: int, exit_status: bool = False,
                 stdio: tuple[int, int, int] | None = None) -> Any:
        code, err = _run_cli(self.root, argv, preserve_fds, stdio)
        # the CLI logs an error only when the runtime failed, never for a container
        # process's own status (127 for a missing executable included)
        if err is not None:
            raise err
        if exit_status:
            return code
        if code != 0:
            raise ContainerError(f"dockyard-runtime {argv[0]} failed ({code})")
        return self.state(argv[-1])

    def _exec_via_cli(self, cid: str, process: dict[str, Any], opts: ExecOptions) -> int:
        import tempfile

        from dockyard import jsonc

        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            f.write(jsonc.dumps(process))
            f.flush()
            flags = ["--process", f.name, *(["-d"] if opts.detach else [])]
            if opts.console_socket:
                flags += ["--console-socket", opts.console_socket]
            if opts.pid_file:
                flags += ["--pid-file", opts.pid_file]
            if opts.preserve_fds:
                flags += ["--preserve-fds", str(opts.preserve_fds)]
            code, err = _run_cli(self.root, ["exec", *flags, cid], opts.preserve_fds, opts.stdio)
        if err is not None:
            raise err  # the runtime failed (a process's own failure is only its status)
        return code


# --------------------------------------------------------------------------- exec arguments


def process_from_args(config_process: dict[str, Any], a: ExecArgs) -> dict[str, Any]:
    """runc exec without --process: the config's process with the flags applied."""
    import copy

    p = copy.deepcopy(config_process)
    p["args"] = list(a.args)
    p["terminal"] = a.tty
    p.pop("consoleSize", None)
    if a.cwd:
        p["cwd"] = a.cwd
    if a.env:
        p["env"] = list(p.get("env", [])) + list(a.env)
    user = dict(p.get("user") or {})
    if a.user:
        uid_s, _, gid_s = a.user.partition(":")
        try:
            user["uid"], user["gid"] = int(uid_s), int(gid_s) if gid_s else 0
        except ValueError:
            raise InvalidArgument(f"parsing {a.user} as uid[:gid]: not numbers") from None
    if a.additional_gids:
        user["additionalGids"] = list(a.additional_gids)
    p["user"] = user
    if a.caps:
        caps = dict(p.get("capabilities") or {})
        for key in ("bounding", "effective", "permitted"):
            caps[key] = list(dict.fromkeys([*caps.get(key, []), *a.caps]))
        p["capabilities"] = caps
    if a.no_new_privs:
        p["noNewPrivileges"] = True
    return p


# --------------------------------------------------------------------------- helpers


def _socketpair() -> tuple[Socket, Socket]:
    from dockyard.runtime import syncsock

    return syncsock.pair()


def _fds(sock: Socket | None) -> list[int]:
    return [sock.fileno()] if sock is not None else []


def _import_container_side(*, for_init: bool = True) -> None:
    """Import what the children run *before* forking: a child must not import (slow,
    and after pivot_root the modules are out of reach). ``exec`` needs no rootfs code."""
    import warnings  # noqa: F401 - os.execvpe imports it (in os.get_exec_path)

    from dockyard import syscalls  # noqa: F401
    from dockyard.runtime import capabilities, console, namespaces, process, syncsock  # noqa: F401

    if for_init:
        from dockyard.runtime import rootfs  # noqa: F401


def _prepare_seccomp(profile: dict[str, Any] | None) -> Any:
    """Compile the profile in the runtime: errors surface before anything exists, and the
    child only has to install the finished filter."""
    if not profile:
        return None
    from dockyard.runtime import seccomp

    try:
        flt = seccomp.prepare_shared(profile)
    except InvalidArgument as e:
        raise InvalidArgument(f"config.json: linux.seccomp: {e}") from None
    if flt.unknown:
        # runc only logs these; the issue asks for a clear error, so a typo cannot
        # silently let a syscall through
        raise InvalidArgument("config.json: linux.seccomp: unknown syscall: " + ", ".join(sorted(set(flt.unknown))))
    return flt


def _cgroup_path(configured: str | None, cid: str) -> str:
    """linux.cgroupsPath normalised (InvalidArgument before anything exists); without
    one, a cgroup named after the container, as runc does."""
    from dockyard.runtime.cgroups.base import parse_cgroup_path

    return parse_cgroup_path(configured or f"/{cid}")


def _cgroup(state: ContainerState) -> Any:
    from dockyard.runtime.cgroups import open_cgroup

    return open_cgroup(state.cgroup_path or f"/{state.id}")


def _destroy_cgroup(cg: Any) -> None:
    """Kill whatever is still in the cgroup, wait for it to go, remove the cgroup."""
    import _signal

    if not cg.exists():
        return
    for _ in range(100):  # a fork bomb can refill it; bounded, each round waits on events
        pids = list(cg.pids())
        if not pids:
            break
        cg.kill_all(_signal.SIGKILL)  # freezes first (no fork escapes it), thaws after
        fds = []
        for pid in pids:
            with suppress(OSError):
                fds.append(os.pidfd_open(pid))
        try:
            _wait_pidfds(fds)
        finally:
            for fd in fds:
                os.close(fd)
        _reap_orphans()
    cg.destroy()


def _pidfd(state: ContainerState) -> int | None:
    """A pidfd for the init, if it is alive and still the same process (pid reuse)."""
    if state.pid <= 0:
        return None
    try:
        fd = os.pidfd_open(state.pid)
    except OSError:
        return None
    # checked after opening: from here on the fd refers to this process, whatever the pid does
    if st.start_time(state.pid) != state.init_start_time:
        os.close(fd)
        return None
    return fd


def _pidfd_exited(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def _wait_pidfds(fds: list[int]) -> None:
    """Block until every process behind ``fds`` has exited."""
    pending = set(fds)
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN)
    while pending:
        for fd, _ev in poller.poll():
            poller.unregister(fd)
            pending.discard(fd)


class _Children:
    """The processes a create/exec forked, each with a pidfd taken while it could not
    have been reaped yet: rollback signals exactly them, never a recycled pid."""

    def __init__(self) -> None:
        self.fds: dict[int, int] = {}

    def add(self, pid: int) -> None:
        with suppress(OSError):
            self.fds[pid] = os.pidfd_open(pid)

    def exited(self, pid: int) -> bool:
        fd = self.fds.get(pid)
        return fd is None or _pidfd_exited(fd)

    def kill_and_reap(self) -> None:
        """SIGKILL, wait for the exit, reap those that are our children."""
        import _signal

        for fd in self.fds.values():
            with suppress(OSError):
                _signal.pidfd_send_signal(fd, _signal.SIGKILL)
        _wait_pidfds(list(self.fds.values()))
        for pid in self.fds:
            with suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def _reap(pid: int) -> int:
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return 0


def _reap_orphans() -> None:
    """As a subreaper we adopt the container's orphans; don't leave zombies."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _wait_status(pid: int) -> int:
    """Wait for ``pid`` (our child: adopted as subreaper) and return its exit status the
    way a shell reports it: the code, or 128 + the signal number."""
    while True:
        got, status = os.waitpid(pid, 0)
        if got == pid:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


def _report_exec_error(sock: Socket, raise_it: bool = True) -> None:
    """Wait until the process has exec'd (EOF) or said why it could not; the latter is
    printed, or raised for a caller that would otherwise report success."""
    from dockyard.runtime import syncsock

    msg = syncsock.recv(sock)
    if msg is not None and msg.get("t") == "error":
        if raise_it:
            raise ContainerError(msg.get("msg", "exec failed"))
        print(f"dockyard-runtime: {msg.get('msg')}", file=sys.stderr, flush=True)


class _forward_signals:  # noqa: N801 - used as a function
    """While we wait in the foreground, signals meant for the container go to it."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._old: dict[int, Any] = {}

    def _forward(self, signum: int, _frame: Any) -> None:
        with suppress(ProcessLookupError):
            os.kill(self._pid, signum)  # our (adopted) child until we reap it: no pid reuse

    def __enter__(self) -> None:
        import _signal

        for s in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1,
                  _signal.SIGUSR2, _signal.SIGWINCH):
            self._old[s] = _signal.signal(s, self._forward)

    def __exit__(self, *exc: object) -> None:
        import _signal

        for s, h in self._old.items():
            _signal.signal(s, h)


def _become_subreaper() -> None:
    from dockyard import syscalls

    syscalls.prctl(syscalls.Prctl.SET_CHILD_SUBREAPER, 1)


def _check_terminal(terminal: bool, console_socket: str | None, *, detach: bool) -> None:
    if terminal and not console_socket:
        raise InvalidArgument("process.terminal needs --console-socket (the runtime does not proxy a tty)")
    if console_socket and not terminal:
        raise InvalidArgument("--console-socket given but the process has no terminal (process.terminal/-t)")


def _check_preserved(n: int) -> None:
    if n < 0:
        raise InvalidArgument("--preserve-fds must not be negative")
    for fd in range(3, 3 + n):
        try:
            os.fstat(fd)
        except OSError:
            raise InvalidArgument(f"--preserve-fds {n}: fd {fd} is not open") from None


def _single_threaded() -> bool:
    """No thread but ours (and prewarm's, which is stopped before any fork)."""
    from dockyard.runtime import prewarm

    try:
        return len(os.listdir("/proc/self/task")) - prewarm.thread_count() == 1
    except OSError:
        import threading

        return threading.active_count() == 1


def _owner_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _create_flags(opts: CreateOptions) -> list[str]:
    flags: list[str] = []
    if opts.console_socket:
        flags += ["--console-socket", opts.console_socket]
    if opts.pid_file:
        flags += ["--pid-file", opts.pid_file]
    if opts.no_pivot:
        flags.append("--no-pivot")
    if opts.preserve_fds:
        flags += ["--preserve-fds", str(opts.preserve_fds)]
    return flags


def _cli_argv(root: str) -> list[str]:
    """The runtime CLI, started fast: no site (its .pth hooks cost tens of ms), the
    package found through PYTHONPATH-free sys.path insertion by -c."""
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = f"import sys; sys.path.insert(0, {pkg_parent!r}); from dockyard.runtime.cli import main; main()"
    return [sys.executable, "-S", "-c", code, "--root", root]


def _run_cli(root: str, argv: list[str], preserve_fds: int,
             stdio: tuple[int, int, int] | None = None) -> tuple[int, DockyardError | None]:
    """Run the CLI with the caller's stdio; (exit status, its last error). The error is
    read from a JSON ``--log`` file, as containerd reads runc's: capturing stderr in a
    pipe would hang, since a created container inherits the pipe and holds it open."""
    import subprocess
    import tempfile

    from dockyard import jsonc

    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        cmd = _cli_argv(root) + ["--log", log.name, "--log-format", "json"] + argv
        stdin, stdout, stderr = stdio or (None, None, None)
        res = subprocess.run(cmd, pass_fds=tuple(range(3, 3 + preserve_fds)), stdin=stdin, stdout=stdout, stderr=stderr)
        log.seek(0)
        error: DockyardError | None = None
        for line in log.read().decode(errors="replace").splitlines():
            try:
                entry = jsonc.loads(line)
            except ValueError:
                continue
            if entry.get("level") == "error":
                # the same error class the CLI raised, so an API caller can tell
                # "bad config" (400) from "exists" (409) from "setup failed" (500)
                from dockyard import errors

                cls = getattr(errors, str(entry.get("kind")), None)
                if not (isinstance(cls, type) and issubclass(cls, DockyardError)):
                    cls = ContainerError
                error = cls(str(entry.get("msg", "")))
    return res.returncode, error


__all__ = ["ContainerError", "CreateOptions", "ExecArgs", "ExecOptions", "Runtime", "process_from_args"]
