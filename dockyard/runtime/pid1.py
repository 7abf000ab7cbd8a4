"""``--init``: the container's PID 1 as a minimal init that reaps and forwards signals.

docker bind-mounts tini as /sbin/docker-init and runs ``docker-init -- CMD``. dockyard
ships no C binary, so its runtime does the same job itself, in the container's init.

A bundle whose config.json carries the annotation ``org.dockyard.init: "true"`` gets:

1. from the moment the init is created, every signal blocked: one sent after ``start``
   while the init still sets up stays pending instead of being dropped (PID 1 of a pid
   namespace ignores signals it has no handler for), and is forwarded later;
2. at the very end of process setup, when user, groups, capabilities, no_new_privs and
   seccomp are those of the container's process (as tini's are under docker), a fork:
   the child puts itself in a process group of its own (the terminal's foreground group
   if there is one, so a ^C reaches the command and not the init), unblocks every signal
   and execve's the command, as pid 2;
3. the parent stays PID 1, makes itself non-dumpable, ignores SIGTTIN/SIGTTOU, leaves the
   fault signals unblocked (tini's choices), becomes a child subreaper when it is not
   PID 1 (no pid namespace), closes every fd (0-2 included: it never writes), and loops:
   SIGCHLD reaps every exited child, any other catchable signal is forwarded to the
   command. When the command has exited and nothing is left to reap, it exits with the
   command's status (128 + n when signal n killed it), like tini.

The loop itself, on x86_64, is not Python: a forked copy of the runtime (or of the
supervisor, which forks every container) would keep the interpreter's whole heap — pages
it shares copy-on-write with the process it was forked from, and that become its own as
that process goes on (a full garbage collection there touches them all): megabytes per
container. Instead the init execs a 236-byte reaper (pid1_x86_64.s; the bytes are below,
a test re-assembles the source and compares) wrapped in a minimal ELF header, from a
sealed memfd: no file on any filesystem, nothing of the host reachable through
/proc/1/exe, and a few pages of memory. Its argv is ``/sbin/docker-init -- CMD...`` and
it names itself ``docker-init``, so ``ps`` shows what it shows under docker. Where that
cannot run (another architecture, a seccomp profile refusing memfd_create or execveat,
vm.memfd_noexec=2; or DOCKYARD_PID1=python in the runtime's environment, for tests) the
same loop runs in Python: the garbage collector frozen, the command line rewritten in
place (through /proc/self/mem) so that neither the host interpreter's path nor the
runtime's arguments show.

Everything here runs in the forked container init, after pivot_root: nothing may be
imported lazily (``container._import_container_side`` imports this module first).
"""

from __future__ import annotations

import _signal
import errno
import fcntl
import gc
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ANNOTATION = "org.dockyard.init"
TITLE = "/sbin/docker-init"  # what ps shows for PID 1, as under docker

_SYNCHRONOUS = {_signal.SIGSEGV, _signal.SIGBUS, _signal.SIGILL, _signal.SIGFPE, _signal.SIGTRAP,
                _signal.SIGSYS, _signal.SIGABRT}
_IGNORED = {_signal.SIGTTIN, _signal.SIGTTOU}

# pid1_x86_64.s, assembled (as --64; objcopy -O binary -j .text). It ends with two slots,
# patched before use: the 8-byte mask of signals to wait for, then the 4-byte command pid.
_X86_64 = bytes.fromhex(
    "b89d000000bf0400000031f60f05b89d000000bf0f000000488d35b20000000f05b803000000bf030000"
    "000f058b1db50000004531ed4881ec00010000b880000000488d3d970000004889e631d241ba08000000"
    "0f0583f811741185c07ede89c689dfb83e0000000f05ebd1b83d000000bfffffffff488db42480000000"
    "ba010000004531d20f0585c07e3139d875dc8b8c248000000089ca83e27f7409448da280000000eb0e41"
    "89cc41c1ec084181e4ff00000041bd01000000ebaf4585ed0f8477ffffffb8e70000004489e70f05f464"
    "6f636b65722d696e6974000f1f00000000000000000000000000"
)
_READY_FD = 3  # closed by the reaper after PR_SET_NAME (pid1_x86_64.s)
_MFD_EXEC = 0x10  # Linux >= 6.3: an executable memfd even under vm.memfd_noexec=1


def wanted(spec: dict[str, Any]) -> bool:
    """Does this config.json ask for the init (``org.dockyard.init: "true"``)?"""
    return (spec.get("annotations") or {}).get(ANNOTATION) == "true"


def forwarded() -> set[int]:
    """The signals the init waits for: everything catchable but the fault signals and the
    terminal stop signals it ignores."""
    return {int(s) for s in _signal.valid_signals()} - {int(_signal.SIGKILL), int(_signal.SIGSTOP)} \
        - {int(s) for s in _SYNCHRONOUS | _IGNORED}


def hold_signals() -> None:
    """Block every signal: one sent to the container while its init still sets up (after
    ``start`` released it) stays pending, and the init forwards it once the command runs
    (as PID 1 of a pid namespace with default dispositions, it would be dropped)."""
    _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())


def fork_command(args: list[str], sync: Any = None) -> None:
    """Fork the command's process. Returns in the child only (which then execve's); the
    parent becomes the init and never returns. ``sync`` is the runtime's socket: the
    init closes its copy at once, so the runtime sees EOF when the child has exec'd (or
    reads the child's error report)."""
    hold_signals()  # no SIGCHLD can be lost (and anything sent meanwhile is forwarded)
    # The command waits until the init has become docker-init (the write end closes when
    # the reaper is exec'd — it is close-on-exec — or when the Python loop closes every
    # fd): a `ps` run as the command would otherwise see PID 1 still under its old name.
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    try:
        child = os.fork()
    except OSError as e:
        from dockyard.runtime import process

        _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
        process.report_error(sync, f"init: fork: {e.strerror or e}", 1)
        os._exit(1)
    if child == 0:
        os.close(ready_w)
        os.read(ready_r, 1)  # EOF once the init is ready
        os.close(ready_r)
        _isolate()
        _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
        return
    os.close(ready_r)
    try:
        if sync is not None:
            sync.close()
        _become_init()
        _exec_reaper(child, [TITLE, "--", *args], ready_w)  # returns only if it could not
        _set_title([TITLE, "--", *args])
        _close_all()
        gc.disable()
        gc.freeze()  # a collection would copy every page still shared with our parent
        code = _loop(child)
    except BaseException:  # noqa: BLE001 - never return into the runtime's code
        code = 1
    os._exit(code)


def _isolate() -> None:
    """The command's own process group, in the terminal's foreground if there is one
    (SIGTTOU is still blocked here, so tcsetpgrp from the background is allowed)."""
    try:
        os.setpgid(0, 0)
    except OSError:
        return
    try:
        if os.isatty(0):
            os.tcsetpgrp(0, os.getpgrp())
    except OSError:
        pass  # not our controlling terminal (ENOTTY / ENXIO): nothing to hand over


def _become_init() -> None:
    from dockyard import syscalls

    syscalls.prctl(syscalls.Prctl.SET_DUMPABLE, 0)
    if os.getpid() != 1:
        syscalls.prctl(syscalls.Prctl.SET_CHILD_SUBREAPER, 1)  # kept across execve
    for sig in _IGNORED:
        _signal.signal(sig, _signal.SIG_IGN)  # kept across execve
    _signal.pthread_sigmask(_signal.SIG_SETMASK, forwarded())  # kept across execve, pending ones too


def _close_all(*keep: int) -> None:
    """Close every fd but ``keep``."""
    from dockyard import syscalls

    low = 0
    for fd in sorted(set(keep)):
        if fd > low:
            syscalls.close_range(low, fd - 1)
        low = fd + 1
    syscalls.close_range(low)


# --------------------------------------------------------------------------- the native reaper


def reaper_image(child: int, machine: str | None = None) -> bytes | None:
    """The reaper as an ELF executable for this machine, waiting for ``forwarded()`` and
    forwarding to ``child``; None where there is no native reaper."""
    if (machine or os.uname().machine) != "x86_64":
        return None
    code = bytearray(_X86_64)
    code[-12:-4] = sum(1 << (s - 1) for s in forwarded()).to_bytes(8, "little")
    code[-4:] = child.to_bytes(4, "little")
    return _elf(bytes(code), machine=62)


def _elf(code: bytes, machine: int) -> bytes:
    """A position-independent ELF64 executable (ET_DYN, no interpreter: the kernel maps
    it at a random base) of one read+execute segment holding the headers and ``code``,
    plus a non-executable stack."""
    ehsize, phentsize, phnum = 64, 56, 2
    entry = ehsize + phentsize * phnum
    size = entry + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little endian, version 1, SysV
    header = ident + struct.pack("<HHIQQQIHHHHHH", 3, machine, 1, entry, ehsize, 0, 0, ehsize,
                                 phentsize, phnum, 64, 0, 0)
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, size, size, 0x1000)  # PT_LOAD, R+X
    stack = struct.pack("<IIQQQQQQ", 0x6474E551, 6, 0, 0, 0, 0, 0, 16)  # PT_GNU_STACK, R+W
    return header + load + stack + code


def _exec_reaper(child: int, argv: list[str], ready_w: int) -> None:
    """Become the native reaper; returns if it cannot run. ``ready_w`` goes to the reaper
    as fd 3, which it closes once it is named docker-init."""
    if os.environ.get("DOCKYARD_PID1") == "python":
        return
    image = reaper_image(child)
    if image is None:
        return
    fd = -1
    try:
        flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
        try:
            fd = os.memfd_create("docker-init", flags | _MFD_EXEC)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            fd = os.memfd_create("docker-init", flags)  # a kernel before MFD_EXEC
        if os.write(fd, image) != len(image):
            return
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
        # the reaper closes fd 3 once it has named itself: the command's signal to go on
        if fd == _READY_FD:
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _READY_FD + 1)
            os.close(fd)
            fd = moved
        os.dup2(ready_w, _READY_FD, inheritable=True)
        _close_all(fd, _READY_FD)
        os.execve(fd, argv, {})
    except OSError:
        pass
    finally:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


# --------------------------------------------------------------------------- the Python loop


def _set_title(argv: list[str]) -> None:
    """Our comm and cmdline become ``argv``: the forked process would otherwise show the
    runtime's (or the supervisor's) command line. The cmdline is the original argv area
    (arg_start..arg_end of /proc/self/stat), overwritten and NUL-padded; never grown."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(os.path.basename(argv[0])[:15])
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # fields 48, 49 of proc(5)
        if end <= start:
            return
        title = b"\0".join(os.fsencode(a) for a in argv)[: end - start - 1]
        fd = os.open("/proc/self/mem", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, title.ljust(end - start, b"\0"), start)
        finally:
            os.close(fd)
    except (OSError, ValueError, IndexError):
        pass  # cosmetic only (no /proc mounted, a seccomp profile refusing it...)


def _loop(child: int) -> int:
    waited = forwarded()
    status: int | None = None
    while True:
        info = _signal.sigwaitinfo(waited)
        if info.si_signo != _signal.SIGCHLD:
            try:
                os.kill(child, info.si_signo)  # still our unreaped child: no pid reuse
            except OSError:
                pass
            continue
        while True:
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == child:
                code = os.waitstatus_to_exitcode(raw)
                status = code if code >= 0 else 128 - code
        if status is not None:
            return status
