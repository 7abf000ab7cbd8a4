"""dockyard.runtime.seccomp against the real kernel. Every filter is loaded in a forked child
(pytest here is single-threaded) that first moves to a private mount namespace, so a call
that is *not* blocked cannot touch the host; it reports over a pipe and leaves with os._exit.

Syscalls are made raw (libc ``syscall`` with the number libseccomp resolves) so that glibc
wrappers, caches and fallbacks do not hide what the kernel answered. The probes use bad
arguments wherever a successful call would have effects: they fail with EINVAL / ENOENT /
ESRCH / EBADF when they reach the kernel, and with EPERM (or the profile's errno) when the
filter stops them. Each probe is first run without a filter to show it can tell the two apart.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pickle
import random
import signal
from collections.abc import Callable
from typing import Any

import pytest

from dockyard import syscalls
from dockyard.errors import InvalidArgument, Unavailable
from dockyard.runtime import seccomp
from dockyard.runtime.capabilities import DEFAULT_CAPS
from dockyard.runtime.seccomp_default import (
    CLONE_NS_FLAGS,
    PERSONA_BITS,
    _bit_patterns_outside,
    default_profile,
    persona_allowed,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the probes and filters need root"),
    pytest.mark.skipif(seccomp._lib is None, reason="libseccomp.so.2 not installed"),
]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

NOBODY = 65534
HUGE_PID = 0x3FFFFFFF  # above pid_max: ESRCH when the call reaches the kernel
CLONE_THREAD = 0x00010000
CLONE_NEWNS = 0x00020000


def sys_errno(name: str, *args: int | bytes | None) -> int:
    """Make syscall ``name`` raw; 0 on success, else the errno."""
    nr = seccomp.resolve(name)
    assert nr is not None and nr >= 0, f"{name} is not a syscall on this architecture"
    cargs = [ctypes.c_char_p(a) if isinstance(a, bytes | type(None)) else ctypes.c_long(a) for a in args]
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(nr), *cargs)
    return ctypes.get_errno() if ret == -1 else 0


def wrapped(fn: Callable[[], object]) -> int:
    try:
        fn()
    except OSError as err:
        return err.errno or -1
    return 0


class _Timeval(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("usec", ctypes.c_long)]


def _settimeofday_bad() -> int:
    tv = _Timeval(0, 2_000_000)  # usec out of range: EINVAL before the clock is touched
    nr = seccomp.resolve("settimeofday")
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.byref(tv), None)
    return ctypes.get_errno() if ret == -1 else 0


def _setns_own_mnt() -> int:
    fd = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    try:
        return wrapped(lambda: syscalls.setns(fd, 0))
    finally:
        os.close(fd)


# name -> probe returning 0 or an errno. Blocked by the default profile (docker's caps).
BLOCKED: dict[str, Callable[[], int]] = {
    "mount": lambda: wrapped(lambda: syscalls.mount("none", "/mnt", "tmpfs")),
    "umount2": lambda: wrapped(lambda: syscalls.umount("/nonexistent-dockyard")),
    "unshare": lambda: wrapped(lambda: syscalls.unshare(syscalls.CloneFlag.NEWNS)),
    "setns": _setns_own_mnt,
    "pivot_root": lambda: sys_errno("pivot_root", b"/nonexistent-a", b"/nonexistent-b"),
    "reboot": lambda: sys_errno("reboot", 0, 0, 0, 0),  # bad magic: EINVAL, never a reboot
    "init_module": lambda: sys_errno("init_module", None, 0, b""),
    "finit_module": lambda: sys_errno("finit_module", -1, b"", 0),
    "delete_module": lambda: sys_errno("delete_module", b"dockyard-none", 0),
    "settimeofday": _settimeofday_bad,
    "clock_settime": lambda: sys_errno("clock_settime", 0x7FFF, None),  # bad clock id
    "clock_adjtime": lambda: sys_errno("clock_adjtime", 0x7FFF, None),
    "keyctl": lambda: sys_errno("keyctl", 0, -3, 0),  # KEYCTL_GET_KEYRING_ID, session, no create
    "add_key": lambda: sys_errno("add_key", None, None, None, 0, 0),
    "process_vm_readv": lambda: sys_errno("process_vm_readv", HUGE_PID, None, 0, None, 0, 0),
    "kcmp": lambda: sys_errno("kcmp", HUGE_PID, HUGE_PID, 0, 0, 0),
    "personality": lambda: sys_errno("personality", 0x0400000),  # READ_IMPLIES_EXEC
    "bpf": lambda: sys_errno("bpf", 0xFFFF, None, 0),
    "perf_event_open": lambda: sys_errno("perf_event_open", None, 0, -1, -1, 0),
    "open_by_handle_at": lambda: sys_errno("open_by_handle_at", -1, None, 0),
    "name_to_handle_at": lambda: sys_errno("name_to_handle_at", -1, b"", None, None, 0),
    "fsopen": lambda: sys_errno("fsopen", b"dockyard-nofs", 0),
    "open_tree": lambda: sys_errno("open_tree", -1, b"/nonexistent-dockyard", 0),
    "swapon": lambda: sys_errno("swapon", b"/nonexistent-dockyard", 0),
    "acct": lambda: sys_errno("acct", b"/nonexistent-dockyard/x"),
    "iopl": lambda: sys_errno("iopl", 99),
    "mbind": lambda: sys_errno("mbind", 0, 0, 0xFFFF, None, 0, 0),
    "userfaultfd": lambda: sys_errno("userfaultfd", 0x7FFFFFFF),
    "io_uring_setup": lambda: sys_errno("io_uring_setup", 0, None),
    "quotactl": lambda: sys_errno("quotactl", 0x7FFFFFFF, None, 0, None),
    "clone_newns": lambda: sys_errno("clone", CLONE_NEWNS | CLONE_THREAD, 0, 0, 0, 0),
}
# What the host itself may refuse with EPERM whatever the filter (sysctls, lockdown).
HOST_MAY_DENY = {"bpf", "perf_event_open", "io_uring_setup", "kexec_load", "userfaultfd"}


def in_child(fn: Callable[[], Any], profile: dict | None = None) -> tuple[int, Any]:
    """Fork; in the child: private mount namespace, then ``load(profile)``, then ``fn()``.
    Returns (exit code or -signal, result); re-raises the child's exception."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            syscalls.unshare(syscalls.CloneFlag.NEWNS)
            syscalls.mount(None, "/", None, syscalls.MountFlag.REC | syscalls.MountFlag.PRIVATE)
            if profile is not None:
                seccomp.load(profile)
            out: tuple[str, Any] = ("ok", fn())
        except BaseException as err:  # noqa: BLE001 - everything goes back to the parent
            out = ("err", err)
        try:
            data = pickle.dumps(out)
        except Exception as err:  # noqa: BLE001
            data = pickle.dumps(("err", RuntimeError(f"unpicklable: {err!r}")))
        os.write(w, data)
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 1 << 16):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if not chunks:
        return code, None
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "err":
        raise value
    return code, value


def run(fn: Callable[[], Any], profile: dict | None = None) -> Any:
    code, value = in_child(fn, profile)
    assert code == 0, f"child exited {code}"
    return value


def probe_all(probes: dict[str, Callable[[], int]]) -> Callable[[], dict[str, int]]:
    return lambda: {name: probe() for name, probe in probes.items()}


# --------------------------------------------------------------------------- the default profile


@pytest.fixture(scope="module")
def baseline() -> dict[str, int]:
    return run(probe_all(BLOCKED))


def test_probes_reach_the_kernel_without_a_filter(baseline: dict[str, int]) -> None:
    wrong = {n: errno.errorcode.get(e, e) for n, e in baseline.items()
             if e == errno.EPERM and n not in HOST_MAY_DENY}
    assert wrong == {}, "these probes cannot tell a seccomp EPERM from the kernel's"


def test_default_profile_blocks_significant_syscalls() -> None:
    got = run(probe_all(BLOCKED), default_profile(DEFAULT_CAPS))
    assert {n: errno.errorcode.get(e, e) for n, e in got.items() if e != errno.EPERM} == {}


def test_default_profile_allows_ordinary_work(tmp_path) -> None:
    path = tmp_path / "f"

    def work() -> dict[str, Any]:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.write(fd, b"hello")
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 5)
        os.close(fd)
        pid = os.fork()  # clone without namespace flags
        if pid == 0:
            os._exit(7)
        _, status = os.waitpid(pid, 0)
        return {
            "data": data,
            "getpid": sys_errno("getpid"),
            "fork": os.waitstatus_to_exitcode(status),
            "personality(0)": sys_errno("personality", 0),
            "personality(query)": sys_errno("personality", 0xFFFFFFFF),
            "personality(LINUX32)": sys_errno("personality", 0x0008),
            "personality(UNAME26|LINUX32)": sys_errno("personality", 0x20008),
            "clone_thread_only": sys_errno("clone", CLONE_THREAD, 0, 0, 0, 0),  # EINVAL from the kernel
            "mode": seccomp.mode_of(),
        }

    got = run(work, default_profile(DEFAULT_CAPS))
    assert got["data"] == b"hello" and got["fork"] == 7 and got["getpid"] == 0
    assert got["personality(0)"] == got["personality(query)"] == 0
    assert got["personality(LINUX32)"] == got["personality(UNAME26|LINUX32)"] == 0
    assert got["clone_thread_only"] == errno.EINVAL
    assert got["mode"] == 2


def test_mode_of_another_process() -> None:
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    flt = seccomp.prepare(default_profile())
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            flt.load()  # built by the parent: the child only installs it
            os.write(ready_w, b"x")
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(go_r)
    try:
        assert os.read(ready_r, 1) == b"x"
        assert seccomp.mode_of(pid) == 2
        assert seccomp.mode_of(os.getpid()) == 0
    finally:
        os.write(go_w, b"x")
        os.waitpid(pid, 0)
        for fd in (ready_r, go_w):
            os.close(fd)


def test_clone3_gets_enosys_and_namespace_clones_eperm() -> None:
    def probes() -> dict[str, int]:
        out = {"clone3": sys_errno("clone3", None, 0)}
        for bit in range(32):
            if CLONE_NS_FLAGS >> bit & 1:
                out[f"clone({1 << bit:#x})"] = sys_errno("clone", (1 << bit) | CLONE_THREAD, 0, 0, 0, 0)
        return out

    assert run(probes)["clone3"] == errno.EINVAL  # size 0: the kernel's answer
    got = run(probes, default_profile(DEFAULT_CAPS))
    assert got.pop("clone3") == errno.ENOSYS  # so glibc falls back to clone
    assert set(got.values()) == {errno.EPERM} and len(got) == 7


def test_personality_values() -> None:
    values = [0, 8, 0x20000, 0x20008, 0xFFFFFFFF, 0x0400000, 0x0006, 0x20009, 0x1_0000_0008,
              0xFFFFFFFE, 0x7FFFFFFF, 0x0008 | 0x0400000, 0x10000]

    def probes() -> dict[int, int]:
        out = {}
        for v in values:
            out[v] = sys_errno("personality", v)
            sys_errno("personality", 0)  # back to PER_LINUX for the next probe
        return out

    got = run(probes, default_profile(DEFAULT_CAPS))
    for v in values:
        want = 0 if persona_allowed(v) and v <= 0xFFFFFFFF else errno.EPERM
        assert got[v] == want, hex(v)


def _rule_matches(rule: dict, value: int) -> bool:
    for arg in rule.get("args", []):
        if arg["op"] == "SCMP_CMP_MASKED_EQ":
            if value & arg["value"] != arg["valueTwo"]:
                return False
        elif arg["op"] == "SCMP_CMP_GT":
            if not value > arg["value"]:
                return False
        else:
            raise AssertionError(arg["op"])
    return True


def test_personality_rules_are_exactly_the_allowed_set() -> None:
    """The deny rules are a union of single-condition tests (libseccomp takes one condition
    per argument); check the union against the allowed set over structured and random values."""
    rules = [r for r in default_profile()["syscalls"] if r["names"] == ["personality"]]
    denied = lambda v: any(_rule_matches(r, v) for r in rules)  # noqa: E731
    values = {0, 0xFFFFFFFF, 1 << 32, (1 << 64) - 1}
    for i in range(32):
        values |= {1 << i, 0xFFFFFFFF ^ (1 << i)}
        for j in range(32):
            values |= {(1 << i) | (1 << j), 0xFFFFFFFF ^ ((1 << i) | (1 << j)),
                       (1 << i) | PERSONA_BITS, 0xFFFFFFFF ^ (1 << i) ^ PERSONA_BITS}
    # contiguous runs, the case the proof singles out
    for start in range(32):
        for length in range(1, 32):
            values.add(sum(1 << ((start + n) % 32) for n in range(length)))
    rng = random.Random(1)
    values |= {rng.getrandbits(32) for _ in range(50_000)}
    values |= {rng.getrandbits(32) & (rng.getrandbits(32) | PERSONA_BITS) for _ in range(20_000)}
    wrong = [hex(v) for v in sorted(values) if denied(v) == (persona_allowed(v) and v <= 0xFFFFFFFF)]
    assert wrong == []
    assert len(_bit_patterns_outside(PERSONA_BITS)) < 70


def test_cap_sys_admin_lifts_mount_and_namespace_blocks(tmp_path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()

    def work() -> dict[str, int]:
        return {
            "mount": wrapped(lambda: syscalls.mount("tmpfs", str(target), "tmpfs")),
            "umount2": wrapped(lambda: syscalls.umount(str(target))),
            "unshare": wrapped(lambda: syscalls.unshare(syscalls.CloneFlag.NEWNS)),
            "clone3": sys_errno("clone3", None, 0),
            "clone_newns": sys_errno("clone", CLONE_NEWNS | CLONE_THREAD, 0, 0, 0, 0),
            "bad_mount": wrapped(lambda: syscalls.mount("none", "/nonexistent-dockyard", "tmpfs")),
            "keyctl": sys_errno("keyctl", 0, -3, 0),
        }

    got = run(work, default_profile([*DEFAULT_CAPS, "CAP_SYS_ADMIN"]))
    assert got["mount"] == got["umount2"] == got["unshare"] == 0
    assert got["clone3"] == errno.EINVAL  # reached the kernel
    assert got["clone_newns"] == errno.EINVAL
    assert got["bad_mount"] == errno.ENOENT
    assert got["keyctl"] == errno.EPERM  # the keyring stays blocked whatever the caps


@pytest.mark.parametrize(
    ("cap", "syscall"),
    [
        ("CAP_SYS_PTRACE", "process_vm_readv"),
        ("CAP_SYS_PTRACE", "kcmp"),
        ("CAP_SYS_TIME", "settimeofday"),
        ("CAP_SYS_TIME", "clock_settime"),
        ("CAP_SYS_MODULE", "init_module"),
        ("CAP_SYS_BOOT", "reboot"),
        ("CAP_SYS_PACCT", "acct"),
        ("CAP_SYS_RAWIO", "iopl"),
        ("CAP_SYS_NICE", "mbind"),
        ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
        ("CAP_BPF", "bpf"),
        ("CAP_PERFMON", "perf_event_open"),
    ],
)
def test_capability_relaxations(cap: str, syscall: str, baseline: dict[str, int]) -> None:
    got = run(probe_all({syscall: BLOCKED[syscall]}), default_profile([*DEFAULT_CAPS, cap]))
    assert got[syscall] == baseline[syscall]


def test_profile_level_relaxations() -> None:
    def denied(caps: list[str], **kw: str) -> set[str]:
        prof = default_profile(caps, **kw)
        return {n for r in prof["syscalls"] if "args" not in r for n in r["names"]}

    base = denied(list(DEFAULT_CAPS))
    assert {"syslog", "vhangup", "swapoff", "kexec_load", "get_mempolicy"} <= base
    assert "chroot" not in base  # docker's defaults include CAP_SYS_CHROOT
    assert "chroot" in denied([])
    assert "syslog" not in denied(["CAP_SYSLOG"])
    assert "vhangup" not in denied(["CAP_SYS_TTY_CONFIG"])
    assert "name_to_handle_at" not in denied(["CAP_DAC_READ_SEARCH"])
    assert "bpf" not in denied(["CAP_SYS_ADMIN"]) and "perf_event_open" not in denied(["SYS_ADMIN"])
    # docker: ptrace is blocked only on kernels before 4.8
    assert "ptrace" not in base
    assert "ptrace" in denied(list(DEFAULT_CAPS), kernel_release="4.4.0-210-generic")
    assert "ptrace" not in denied([*DEFAULT_CAPS, "CAP_SYS_PTRACE"], kernel_release="4.4.0")
    # on s390x clone's flags are its second argument
    clone = [r for r in default_profile(arch="s390x")["syscalls"] if r["names"] == ["clone"]]
    assert {r["args"][0]["index"] for r in clone} == {1}
    assert default_profile(arch="arm64")["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    with pytest.raises(InvalidArgument):
        default_profile(arch="vax")
    with pytest.raises(InvalidArgument):
        default_profile(["CAP_NOPE"])


def test_ptrace_not_blocked_on_modern_kernels() -> None:
    probe = {"ptrace": lambda: sys_errno("ptrace", 16, HUGE_PID, 0, 0)}  # PTRACE_ATTACH
    assert run(probe_all(probe), default_profile(DEFAULT_CAPS)) == {"ptrace": errno.ESRCH}
    old = default_profile(DEFAULT_CAPS, kernel_release="4.4.0")
    assert run(probe_all(probe), old) == {"ptrace": errno.EPERM}


# --------------------------------------------------------------------------- custom profiles

# What this Python child needs between load() and os._exit: memory, the pipe, signals.
PYTHON_NEEDS = [
    "read", "write", "close", "exit", "exit_group", "brk", "mmap", "munmap", "mremap", "mprotect",
    "madvise", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "futex", "getpid", "gettid",
    "fstat", "newfstatat", "lseek", "ioctl", "getrandom", "clock_gettime", "sigaltstack",
]


def test_errno_default_with_allow_list() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EXDEV,  # distinguishable from any real answer
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
        "syscalls": [{"names": PYTHON_NEEDS, "action": "SCMP_ACT_ALLOW"}],
    }

    def work() -> dict[str, int]:
        return {
            "getpid": sys_errno("getpid"),
            "getppid": sys_errno("getppid"),
            "uname": wrapped(os.uname),
            "mkdir": wrapped(lambda: os.mkdir("/nonexistent-dockyard/x")),
        }

    got = run(work, profile)
    assert got == {"getpid": 0, "getppid": errno.EXDEV, "uname": errno.EXDEV, "mkdir": errno.EXDEV}


def test_arg_conditions() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            # deny personality only when arg0 == 8
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            # two conditions on one argument: ORed, as runc does (libseccomp takes one)
            {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},   # PRIO_PGRP
                      {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},  # PRIO_USER
            # conditions on different arguments: ANDed
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOTSUP,
             "args": [{"index": 0, "value": HUGE_PID, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]},
            # masked equality: value is the mask, valueTwo the expected result
            {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS,
             "args": [{"index": 0, "value": 0o700, "valueTwo": 0o700, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOTSUP,
             "args": [{"index": 1, "value": 16, "op": "SCMP_CMP_LT"}]},
        ],
    }

    def work() -> dict[str, int]:
        return {
            "personality(8)": sys_errno("personality", 8),
            "personality(0)": sys_errno("personality", 0),
            "personality(query)": sys_errno("personality", 0xFFFFFFFF),
            "getpriority(PROCESS)": sys_errno("getpriority", 0, 0),
            "getpriority(PGRP)": sys_errno("getpriority", 1, 0),
            "getpriority(USER)": sys_errno("getpriority", 2, 0),
            "kill(huge, 0)": sys_errno("kill", HUGE_PID, 0),
            "kill(huge, SIGCONT)": sys_errno("kill", HUGE_PID, signal.SIGCONT),
            "umask(0o077)": sys_errno("umask", 0o077),
            "umask(0o777)": sys_errno("umask", 0o777),
            "getcwd(small)": sys_errno("getcwd", None, 8),
            "getcwd(big)": sys_errno("getcwd", None, 4096),
        }

    assert run(work, profile) == {
        "personality(8)": errno.EPERM,  # errnoRet defaults to EPERM
        "personality(0)": 0,
        "personality(query)": 0,
        "getpriority(PROCESS)": 0,
        "getpriority(PGRP)": errno.EXDEV,
        "getpriority(USER)": errno.EXDEV,
        "kill(huge, 0)": errno.ENOTSUP,
        "kill(huge, SIGCONT)": errno.ESRCH,
        "umask(0o077)": 0,
        "umask(0o777)": errno.EROFS,
        "getcwd(small)": errno.ENOTSUP,
        "getcwd(big)": errno.EFAULT,  # reached the kernel with a NULL buffer
    }


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
                                    "SCMP_ACT_TRAP"])
def test_kill_and_trap_actions(action: str) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["getppid"], "action": action}]}
    code, value = in_child(lambda: sys_errno("getppid"), profile)
    assert value is None and code == -signal.SIGSYS


@pytest.mark.parametrize(
    ("action", "expected"),
    [("SCMP_ACT_LOG", 0), ("SCMP_ACT_TRACE", errno.ENOSYS)],  # TRACE without a tracer: ENOSYS
)
def test_log_and_trace_actions(action: str, expected: int) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getppid"], "action": action}]}
    assert run(lambda: sys_errno("getppid"), profile) == expected


def test_flags_and_architectures() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64",
                          "SCMP_ARCH_ARM"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}],
    }
    assert run(lambda: (sys_errno("getppid"), seccomp.mode_of()), profile) == (errno.EPERM, 2)


def test_unknown_syscall_names_are_skipped() -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["dockyard_no_such_call", "getppid"], "action": "SCMP_ACT_ERRNO"}]}
    assert seccomp.validate(profile) == ["dockyard_no_such_call"]
    with pytest.raises(InvalidArgument, match="unknown seccomp syscall: dockyard_no_such_call"):
        seccomp.validate(profile, strict=True)
    assert run(lambda: sys_errno("getppid"), profile) == errno.EPERM
    # a syscall that exists on another architecture only is kept (libseccomp pseudo number)
    other = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["vm86old"], "action": "SCMP_ACT_ERRNO"}]}
    assert seccomp.validate(other, strict=True) == []


GOOD_RULE = {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"defaultAction": "SCMP_ACT_FROB"}, "string SCMP_ACT_FROB is not a valid action for seccomp"),
        ({}, "linux.seccomp.defaultAction is required"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [GOOD_RULE, {"names": ["getpid"], "action": "ALLOW"}]},
         "string ALLOW is not a valid action for seccomp"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]},
         "string SCMP_ARCH_VAX is not a valid arch for seccomp"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            GOOD_RULE, {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQUALS"}]}]},
         "string SCMP_CMP_EQUALS is not a valid operator for seccomp"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 6, "value": 8, "op": "SCMP_CMP_EQ"}]}]},
         "syscalls[0].args[0].index must be an integer in 0..5"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FROB"]},
         "seccomp flag SECCOMP_FILTER_FLAG_FROB is not known to dockyard"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [""], "action": "SCMP_ACT_ERRNO"}]},
         "empty string is not a valid syscall"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]},
         "syscalls[0].names must be a non-empty list"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000},
         "defaultAction errnoRet must be an integer in 0..65535"),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, "SCMP_ACT_NOTIFY is not supported"),
    ],
)
def test_bad_profiles_never_half_install(profile: dict, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        seccomp.validate(profile)
    assert message in str(exc.value)

    def child() -> tuple[str, int]:
        try:
            seccomp.load(profile)
        except InvalidArgument as err:
            return str(err), seccomp.mode_of()
        return "loaded", seccomp.mode_of()

    err, mode = run(child)
    assert message in err and mode == 0


def test_load_needs_no_new_privs_or_cap_sys_admin() -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [GOOD_RULE]}

    def as_nobody(nnp: bool) -> Callable[[], tuple[str, int]]:
        def child() -> tuple[str, int]:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            if nnp:
                syscalls.prctl(syscalls.Prctl.SET_NO_NEW_PRIVS, 1)
            try:
                seccomp.load(profile)
            except OSError as err:
                return f"{errno.errorcode[err.errno]}: {err.strerror}", seccomp.mode_of()
            return "loaded", seccomp.mode_of()
        return child

    msg, mode = run(as_nobody(False))
    assert msg.startswith("EACCES") and "no_new_privs or CAP_SYS_ADMIN" in msg and mode == 0
    assert run(as_nobody(True)) == ("loaded", 2)


def test_missing_libseccomp_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "_lib", None)
    monkeypatch.setattr(seccomp, "_load_error", "libseccomp.so.2: cannot open shared object file")
    with pytest.raises(Unavailable) as exc:
        seccomp.load({"defaultAction": "SCMP_ACT_ALLOW"})
    assert "libseccomp.so.2" in str(exc.value) and "\n" not in str(exc.value)
    # building the default profile needs no library
    assert default_profile()["defaultAction"] == "SCMP_ACT_ALLOW"


def test_default_profile_shape() -> None:
    prof = default_profile()
    assert prof["defaultAction"] == "SCMP_ACT_ALLOW"
    assert seccomp.validate(prof, strict=True) == []
    for rule in prof["syscalls"]:
        assert rule["action"] == "SCMP_ACT_ERRNO"
        assert rule["errnoRet"] == (errno.ENOSYS if rule["names"] == ["clone3"] else errno.EPERM)
    blocked = {n for r in prof["syscalls"] if "args" not in r for n in r["names"]}
    documented = {  # docker's documentation table, less what it lets through on this kernel
        "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
        "finit_module", "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp",
        "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "move_pages",
        "nfsservctl", "open_by_handle_at", "perf_event_open", "pivot_root", "process_vm_readv",
        "process_vm_writev", "query_module", "quotactl", "reboot", "request_key", "set_mempolicy",
        "setns", "settimeofday", "stime", "swapon", "swapoff", "sysfs", "_sysctl", "umount",
        "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
        "name_to_handle_at", "io_uring_setup", "io_uring_enter", "io_uring_register",
    }
    assert documented - blocked == set()
