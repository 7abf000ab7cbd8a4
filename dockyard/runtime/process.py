"""The container side of process setup, from an OCI ``process`` section to execve.

Two halves, because of user namespaces:

``apply_early``   in stage 1, while the process is still root in the host's user
                  namespace: rlimits and oom_score_adj. Inside a new user namespace the
                  process could no longer write its own (non-dumpable, so host-root-owned)
                  /proc/self/oom_score_adj; both settings are inherited by the container.
``exec_process``  last, inside the container: fds, user and groups, capabilities,
                  no_new_privileges, umask, cwd, env, signals, seccomp, then execve.
                  Never returns: on failure it reports and exits (127 not found,
                  126 not executable, 1 anything else).
"""

from __future__ import annotations

import _signal
import errno
import os
import resource

from dockyard import syscalls
from dockyard.errors import InvalidArgument
from dockyard.runtime import capabilities, pid1, syncsock

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs start-up time
    from typing import Any


def apply_early(process: dict[str, Any]) -> None:
    for rl in process.get("rlimits", []):
        kind = getattr(resource, rl["type"])
        try:
            resource.setrlimit(kind, (_rlim(rl["soft"]), _rlim(rl["hard"])))
        except (OSError, ValueError) as e:
            raise OSError(getattr(e, "errno", errno.EINVAL),
                          f"setrlimit {rl['type']} soft {rl['soft']} hard {rl['hard']}: {e}") from None
    if process.get("oomScoreAdj") is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(process["oomScoreAdj"]))


def _rlim(v: int) -> int:
    return resource.RLIM_INFINITY if v >= 2**64 - 1 else v


_CAP_SYS_RESOURCE = 24


def check_rlimits(process: dict[str, Any]) -> None:
    """Refuse, before anything exists, rlimits that stage 1 (a child of this process, with
    its capabilities) could not set: a hard limit above our own needs CAP_SYS_RESOURCE,
    which a host may not grant at all (missing from its capability bounding set), and
    RLIMIT_NOFILE can never go above fs.nr_open."""
    wanted = process.get("rlimits") or []
    if not wanted:
        return
    effective = syscalls.capget()[0]
    privileged = bool(effective >> _CAP_SYS_RESOURCE & 1)
    for rl in wanted:
        kind = getattr(resource, rl["type"], None)
        if kind is None:
            continue  # spec validation reports unknown types
        hard = _rlim(int(rl["hard"]))
        own = resource.getrlimit(kind)[1]
        if rl["type"] == "RLIMIT_NOFILE" and hard != resource.RLIM_INFINITY:
            nr_open = _nr_open()
            if nr_open is not None and hard > nr_open:
                raise InvalidArgument(f"cannot set the RLIMIT_NOFILE hard limit to {hard}: above the "
                                      f"kernel's maximum, fs.nr_open = {nr_open}")
        if privileged or own == resource.RLIM_INFINITY or (hard != resource.RLIM_INFINITY and hard <= own):
            continue
        where = ("it is not in this host's capability bounding set"
                 if syscalls.prctl(syscalls.Prctl.CAPBSET_READ, _CAP_SYS_RESOURCE) != 1
                 else "it is not in the runtime's effective set")
        shown = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        raise InvalidArgument(f"cannot raise the {rl['type']} hard limit to {shown}: the runtime's own hard "
                              f"limit is {own}, and raising it needs CAP_SYS_RESOURCE, which the runtime "
                              f"lacks ({where})")


def _nr_open() -> int | None:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def close_inherited_fds(preserve_fds: int, keep: int = -1) -> None:
    """Close every fd above 2 except the ``preserve_fds`` after it and ``keep`` (the sync
    socket, O_CLOEXEC, so the exec itself closes it and tells the runtime it happened)."""
    first = 3 + preserve_fds
    for fd in range(3, first):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass  # a hole in the preserved range: nothing to pass there
    if keep >= first:
        if keep > first:
            syscalls.close_range(first, keep - 1)
        syscalls.close_range(keep + 1)
    else:
        syscalls.close_range(first)


def reset_signals(unblock: bool = True) -> None:
    """Python ignores SIGPIPE and SIGXFSZ and may have handlers installed; ignored
    dispositions survive execve, so give the container the defaults and an empty mask
    (``unblock=False``: keep the mask, for the --init path that holds signals pending).
    Only dispositions that are not the default are reset: Python knows every signal's
    (it reads them all at start-up and tracks its own changes), so ~60 sigaction calls
    for signals already at their default are saved."""
    for sig in _signal.valid_signals():
        if sig in (_signal.SIGKILL, _signal.SIGSTOP) or _signal.getsignal(sig) == _signal.SIG_DFL:
            continue
        try:
            _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # the C library's internal real-time signals
    if unblock:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


def build_env(process: dict[str, Any], home: str | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in process.get("env", []):
        key, sep, value = entry.partition("=")
        if key:
            env[key] = value if sep else ""
    if "HOME" not in env and home:
        env["HOME"] = home  # runc: from the container's /etc/passwd
    return env


def passwd_home(uid: int) -> str:
    try:
        with open("/etc/passwd", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def exec_process(process: dict[str, Any], *, seccomp_filter: Any = None, preserve_fds: int = 0,
                 sync: Any = None, init: bool = False) -> None:
    """Turn this process into the container's process. Runs inside the container (after
    pivot_root or setns); ``seccomp_filter`` is a prepared seccomp.Filter or None; ``sync``
    is the runtime's socket, told about an exec failure before we exit. ``init``: fork
    first, the child execs and this process stays as the reaping init (see pid1)."""
    user = process.get("user", {})
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    nnp = bool(process.get("noNewPrivileges"))
    cwd = process.get("cwd") or "/"

    close_inherited_fds(preserve_fds, sync.fileno() if sync is not None else -1)
    if seccomp_filter is not None and not nnp:
        # without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we
        # still hold it (runc does the same); the profile must then allow what follows
        seccomp_filter.load()
    # cwd first, as root, so a directory only root can enter still works; retried below
    # as the user when root could not (root squashing on a network filesystem)
    try:
        os.chdir(cwd)
        cwd_done = True
    except OSError:
        cwd_done = False
    capabilities.keep_caps_across_setuid()
    os.setgroups(list(user.get("additionalGids", [])))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if not cwd_done:
        try:
            os.chdir(cwd)
        except OSError as e:
            _fail(sync, f'chdir to cwd ("{cwd}") set in config.json failed: {e.strerror.lower()}', 1)
    capabilities.apply(process.get("capabilities"))
    capabilities.keep_caps_across_setuid(False)
    if nnp:
        syscalls.prctl(syscalls.Prctl.SET_NO_NEW_PRIVS, 1)
    os.umask(user.get("umask", 0o022))
    env = build_env(process, passwd_home(uid))
    args = process["args"]
    reset_signals(unblock=not init)
    if seccomp_filter is not None and nnp:
        seccomp_filter.load()  # last: nothing after this needs a syscall the profile blocks
    if init:
        pid1.fork_command(args, sync)  # returns in the child only
    try:
        os.execvpe(args[0], args, env)
    except OSError as e:
        code = 127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126 if e.errno == errno.EACCES else 1
        _fail(sync, exec_error_message(args[0], e), code)


def exec_error_message(name: str, e: OSError) -> str:
    """runc's (Go's exec.LookPath) wording."""
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        if "/" not in name:
            return f'exec: "{name}": executable file not found in $PATH'
        return f'exec: "{name}": stat {name}: no such file or directory'
    return f'exec: "{name}": {(e.strerror or str(e)).lower()}'


def _fail(sync: Any, message: str, code: int) -> None:
    report_error(sync, message, code)
    os._exit(code)


def report_error(sync: Any, message: str, code: int = 1) -> None:
    """Tell the runtime if it still listens (it prints the message), else the container's
    stderr (after ``start``, the runtime that created the container is gone)."""
    if sync is not None and syncsock.send(sync, {"t": "error", "msg": message, "code": code}):
        return
    try:
        os.write(2, f"dockyard-runtime: {message}\n".encode())
    except OSError:
        pass
