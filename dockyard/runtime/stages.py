"""The forked side of create and exec: what stage 1 and stage 2 run.

Everything here runs in a child of the runtime, between ``os.fork()`` and either
``execve`` or ``os._exit``: it never returns into the runtime's code. Errors are
reported over the sync socket (see syncsock) and end the process. The parent side, and
the protocol's description, are in container.py.
"""

from __future__ import annotations

import os
import sys

from dockyard.suppress import suppress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from _socket import socket as Socket
    from collections.abc import Callable
    from typing import Any, NoReturn

    from dockyard.runtime.container import CreateOptions, ExecOptions


class InitContext:
    """What the forked children of ``create`` work from."""

    def __init__(self, *, spec: dict[str, Any], bundle: str, rootfs: str, ns_fds: dict[str, int],
                 new_user: bool, flags: int, fifo_fd: int, console: Socket | None,
                 opts: CreateOptions, seccomp: Any) -> None:
        self.spec, self.bundle, self.rootfs, self.ns_fds = spec, bundle, rootfs, ns_fds
        self.new_user, self.flags, self.fifo_fd, self.console = new_user, flags, fifo_fd, console
        self.opts, self.seccomp = opts, seccomp


class ExecContext:
    """What the forked children of ``exec`` work from."""

    def __init__(self, *, process: dict[str, Any], ns_fds: dict[str, int], console: Socket | None,
                 opts: ExecOptions, seccomp: Any) -> None:
        self.process, self.ns_fds, self.console, self.opts, self.seccomp = process, ns_fds, console, opts, seccomp


def fork(child_sock: Socket, target: Callable[[Socket, Any], NoReturn], ctx: Any,
          keep: list[int], preserve: int, stdio: tuple[int, int, int] | None = None) -> int:
    """Fork; in the child run ``target(child_sock, ctx)``, which never returns. ``keep``:
    the fds (besides stdio, the preserved ones and the socket) the child may hold;
    ``stdio``: fds that become the child's 0, 1 and 2 (default: the caller's own)."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()  # or the child would inherit (and never write) the buffers
    from dockyard.runtime import prewarm

    prewarm.stop()  # fork from a single-threaded process, always
    pid = os.fork()
    if pid:
        return pid
    try:
        if stdio is not None:
            _install_stdio(stdio)
        _child_start(child_sock, keep, preserve)
        target(child_sock, ctx)
    except BaseException as e:  # noqa: BLE001 - everything is reported to the runtime
        _child_fail(child_sock, e)
    os._exit(1)


def _child_start(sock: Socket, keep: list[int], preserve: int) -> None:
    from dockyard import syscalls
    from dockyard.runtime import process

    # Before anything else: no ptrace, no /proc/<pid>/{exe,fd,mem,...} for anyone but
    # host root, for this process and (inherited over fork) the container's init.
    syscalls.prctl(syscalls.Prctl.SET_DUMPABLE, 0)
    process.reset_signals()
    # The state-dir lock, the parent's end of the socket, log files...: none of the
    # runtime's fds may stay open here (a held flock would block `start` forever).
    close_all_but(sorted({0, 1, 2, *range(3, 3 + preserve), sock.fileno(), *keep}))


def _install_stdio(stdio: tuple[int, int, int]) -> None:
    """dup2 the given fds onto 0, 1, 2 (the copies are inheritable). Each source is first
    duplicated above 2, so a source that is itself one of 0-2 is not overwritten early."""
    copies = [os.dup(fd) for fd in stdio]
    for target_fd, fd in enumerate(copies):
        os.dup2(fd, target_fd)
    for fd in copies:
        os.close(fd)


def close_all_but(keep: list[int]) -> None:
    """Close every fd but ``keep`` (sorted)."""
    from dockyard import syscalls

    prev = -1
    for fd in keep:
        if fd > prev + 1:
            syscalls.close_range(prev + 1, fd - 1)
        prev = fd
    syscalls.close_range(prev + 1)


def _child_fail(sock: Socket, e: BaseException) -> NoReturn:
    from dockyard.runtime import process

    process.report_error(sock, _describe(e))
    os._exit(1)


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}" + (f": {e.filename}" if e.filename else "")
    return str(e) or type(e).__name__


def _expect(sock: Socket, kind: str) -> None:
    from dockyard.runtime import syncsock

    msg = syncsock.recv(sock)
    if msg is None or msg.get("t") != kind:
        os._exit(1)  # the runtime gave up on us


def stage1_create(sock: Socket, ctx: InitContext) -> NoReturn:
    from dockyard import syscalls
    from dockyard.runtime import namespaces, process, syncsock

    _expect(sock, "go")  # the runtime has put us in the cgroup: everything below is in it
    process.apply_early(ctx.spec["process"])
    namespaces.join(ctx.ns_fds)
    if ctx.new_user:
        syscalls.unshare(syscalls.CloneFlag.NEWUSER)
        syncsock.send(sock, {"t": "userns"})
        _expect(sock, "mapped")
        namespaces.become_ns_root()
    if ctx.flags:
        # after the cgroup join, so a new cgroup namespace is rooted at the container's
        syscalls.unshare(ctx.flags)
        if ctx.flags & syscalls.CloneFlag.NEWNET:
            namespaces.loopback_up()
    pid = os.fork()
    if pid == 0:
        try:
            _container_init(sock, ctx)
        except BaseException as e:  # noqa: BLE001
            _child_fail(sock, e)
    syncsock.send(sock, {"t": "pid", "pid": pid})
    _expect(sock, "bye")  # the runtime holds a pidfd for our child now
    os._exit(0)


def _container_init(sock: Socket, ctx: InitContext) -> NoReturn:
    from dockyard import syscalls
    from dockyard.runtime import console, pid1, process, rootfs, syncsock

    spec, proc = ctx.spec, ctx.spec["process"]
    rootfs.setup_rootfs(spec, ctx.bundle)
    if spec.get("hostname"):
        syscalls.sethostname(spec["hostname"])
    if spec.get("domainname"):
        syscalls.setdomainname(spec["domainname"])
    rootfs.pivot_to(ctx.rootfs, no_pivot=ctx.opts.no_pivot)
    os.chdir("/")  # never keep a cwd outside the container's root
    if proc.get("terminal"):
        assert ctx.console is not None
        rootfs.bind_console(console.setup_terminal(ctx.console, proc.get("consoleSize")))
    rootfs.finish_rootfs(spec)
    syncsock.send(sock, {"t": "created"})
    init = pid1.wanted(spec)
    if init:
        pid1.hold_signals()  # from here on, a signal for the container waits for the command
    # Wait for `start`: opening a FIFO for writing blocks until someone opens it for
    # reading. The FIFO's host path is unreachable after pivot_root; reopen the O_PATH fd
    # the runtime handed us through this process's own /proc entry.
    fifo = os.open(f"/proc/self/fd/{ctx.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fifo, b"0")
    os.close(fifo)
    os.close(ctx.fifo_fd)
    process.exec_process(proc, seccomp_filter=ctx.seccomp, preserve_fds=ctx.opts.preserve_fds, sync=sock,
                         init=init)
    os._exit(1)


def stage1_exec(sock: Socket, ctx: ExecContext) -> NoReturn:
    from dockyard.runtime import namespaces, process, syncsock

    _expect(sock, "go")
    process.apply_early(ctx.process)
    namespaces.join(ctx.ns_fds)  # the mount namespace last: root and cwd become the container's
    pid = os.fork()  # the pid namespace applies to children only
    if pid == 0:
        try:
            os.chdir("/")
            if ctx.process.get("terminal"):
                from dockyard.runtime import console

                assert ctx.console is not None
                console.setup_terminal(ctx.console, ctx.process.get("consoleSize"))
            process.exec_process(ctx.process, seccomp_filter=ctx.seccomp,
                                 preserve_fds=ctx.opts.preserve_fds, sync=sock)
        except BaseException as e:  # noqa: BLE001
            _child_fail(sock, e)
    syncsock.send(sock, {"t": "pid", "pid": pid})
    _expect(sock, "bye")  # the runtime holds a pidfd for our child now
    os._exit(0)
