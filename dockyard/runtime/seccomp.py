"""Seccomp filters from an OCI ``linux.seccomp`` section, through libseccomp (ctypes).

libseccomp compiles the profile to BPF for every listed architecture; this module only
translates the OCI vocabulary and mirrors runc's choices:

- a syscall name libseccomp does not know (``seccomp_syscall_resolve_name`` returns
  __NR_SCMP_ERROR) is skipped silently. Names of syscalls that exist only on another
  architecture resolve to libseccomp "pseudo" numbers and are kept, so an error here means
  the name is unknown on *every* architecture this libseccomp knows; runc still only
  logs it (profiles name syscalls newer than the host's libseccomp), and so does
  ``load``. ``validate`` returns those names so a caller can warn, or raises for them
  with ``strict=True``;
- a rule whose action equals the default action is skipped (libseccomp rejects it);
- the conditions of one rule are ANDed, but libseccomp takes at most one condition per
  argument, so a rule with two conditions on the same argument becomes one rule per
  condition (ORed), as runc does;
- errnoRet defaults to EPERM for SCMP_ACT_ERRNO and SCMP_ACT_TRACE;
- the filter does not set no_new_privs (libseccomp would by default): that is
  ``process.noNewPrivileges``'s job. Loading therefore needs either no_new_privs or
  CAP_SYS_ADMIN: runc loads the filter before dropping capabilities when
  noNewPrivileges is false, and last thing before execve when it is true.

Everything is built (``prepare``) before anything is installed, and a failed build
releases the libseccomp context, so a bad profile never leaves a half-installed filter.
``prepare`` has libseccomp generate the BPF program once and releases its context;
``Filter.load()`` installs the program with one seccomp(2) call, the least work for a
freshly forked child.
"""

from __future__ import annotations

import ctypes
import errno
import os
from _collections_abc import Mapping  # loaded at start-up; collections.abc is not

from dockyard import syscalls
from dockyard.errors import InvalidArgument, Unavailable
from dockyard.runtime.seccomp_default import default_profile

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the supervisor keeps what it imports for life
    from typing import Any

__all__ = ["Filter", "default_profile", "load", "mode_of", "prepare", "resolve", "validate"]

LIBRARY = "libseccomp.so.2"

try:
    _lib: ctypes.CDLL | None = ctypes.CDLL(LIBRARY, use_errno=True)
    _load_error = ""
except OSError as _err:  # the engine still runs; only seccomp profiles are unavailable
    _lib = None
    _load_error = str(_err)


class _ArgCmp(ctypes.Structure):
    # struct scmp_arg_cmp from seccomp.h
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


if _lib is not None:
    _lib.seccomp_init.argtypes = [ctypes.c_uint32]
    _lib.seccomp_init.restype = ctypes.c_void_p
    _lib.seccomp_release.argtypes = [ctypes.c_void_p]
    _lib.seccomp_release.restype = None
    _lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    _lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    _lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    _lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    _lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    _lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp),
    ]
    _lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]

_NR_SCMP_ERROR = -1

# enum scmp_filter_attr (libseccomp >= 2.5)
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8

# Action values from seccomp.h; ERRNO and TRACE carry 16 bits of data.
_ACT_KILL_THREAD = 0x00000000
_ACT_KILL_PROCESS = 0x80000000
_ACT_TRAP = 0x00030000
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000
_ACT_LOG = 0x7FFC0000
_ACT_ALLOW = 0x7FFF0000
_SIMPLE_ACTIONS = {
    "SCMP_ACT_KILL": _ACT_KILL_THREAD,  # the kernel's original "kill" kills the thread
    "SCMP_ACT_KILL_THREAD": _ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": _ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": _ACT_TRAP,
    "SCMP_ACT_LOG": _ACT_LOG,
    "SCMP_ACT_ALLOW": _ACT_ALLOW,
}
_DATA_ACTIONS = {"SCMP_ACT_ERRNO": _ACT_ERRNO, "SCMP_ACT_TRACE": _ACT_TRACE}

_OPS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# OCI architecture -> libseccomp's name for it (resolved by the library, so an arch this
# libseccomp build does not know is reported rather than guessed).
_ARCHES = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc",
    "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64",
}

_FLAGS = {
    # libseccomp applies the filter to all threads; a container's init has one anyway
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
}

# the kernel's SECCOMP_FILTER_FLAG_* bit for each of those libseccomp attributes
_KERNEL_FLAG = {_ATTR_CTL_TSYNC: 1, _ATTR_CTL_LOG: 2, _ATTR_CTL_SSB: 4}

_MAX_ARGS = 6  # a Linux syscall has at most six arguments
_U64 = (1 << 64) - 1


def _require_lib() -> ctypes.CDLL:
    if _lib is None:
        raise Unavailable(f"seccomp needs {LIBRARY} (install libseccomp2): {_load_error}")
    return _lib


def resolve(name: str) -> int | None:
    """The native syscall number of ``name`` (a negative libseccomp pseudo number for a
    syscall that exists only on other architectures), or None if libseccomp does not know
    it on any architecture."""
    nr = _require_lib().seccomp_syscall_resolve_name(name.encode())
    return None if nr == _NR_SCMP_ERROR else nr


# --------------------------------------------------------------------------- translation


def _int(value: Any, what: str, top: int = _U64) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise InvalidArgument(f"seccomp {what} must be an integer in 0..{top}, not {value!r}")
    return value


def _action(name: Any, errno_ret: Any, what: str) -> int:
    if name in _SIMPLE_ACTIONS:
        return _SIMPLE_ACTIONS[name]
    if name in _DATA_ACTIONS:
        ret = errno.EPERM if errno_ret is None else _int(errno_ret, f"{what} errnoRet", 0xFFFF)
        return _DATA_ACTIONS[name] | ret
    if name == "SCMP_ACT_NOTIFY":
        raise InvalidArgument(f"seccomp {what} SCMP_ACT_NOTIFY is not supported (no seccomp agent)")
    # runc's wording
    raise InvalidArgument(f"string {name} is not a valid action for seccomp")


class _Rule:
    __slots__ = ("name", "action", "conds")

    def __init__(self, name: str, action: int, conds: list[tuple[int, int, int, int]]) -> None:
        self.name = name
        self.action = action
        self.conds = conds  # (index, op, datum_a, datum_b), ANDed


class _Plan:
    """A profile checked and translated to numbers; building it in libseccomp cannot fail
    for a reason the profile's author could fix."""

    def __init__(self, default: int, arches: list[tuple[str, int]], flags: list[int],
                 rules: list[_Rule], unknown: list[str]) -> None:
        self.default = default
        self.arches = arches
        self.flags = flags
        self.rules = rules
        self.unknown = unknown


def _plan(spec: Mapping[str, Any]) -> _Plan:
    lib = _require_lib()
    if not isinstance(spec, Mapping):
        raise InvalidArgument("linux.seccomp must be an object")
    if "defaultAction" not in spec:
        raise InvalidArgument("linux.seccomp.defaultAction is required")
    default = _action(spec["defaultAction"], spec.get("defaultErrnoRet"), "defaultAction")

    arches: list[tuple[str, int]] = []
    for arch in spec.get("architectures") or []:
        if arch not in _ARCHES:
            raise InvalidArgument(f"string {arch} is not a valid arch for seccomp")
        token = lib.seccomp_arch_resolve_name(_ARCHES[arch].encode())
        if token == 0:
            raise InvalidArgument(f"seccomp architecture {arch} is not supported by this {LIBRARY}")
        arches.append((arch, token))

    flags: list[int] = []
    for flag in spec.get("flags") or []:
        if flag not in _FLAGS:
            raise InvalidArgument(f"seccomp flag {flag} is not known to dockyard")
        flags.append(_FLAGS[flag])

    rules: list[_Rule] = []
    unknown: list[str] = []
    for i, call in enumerate(spec.get("syscalls") or []):
        what = f"syscalls[{i}]"
        if not isinstance(call, Mapping):
            raise InvalidArgument(f"seccomp {what} must be an object")
        names = call.get("names")
        if not isinstance(names, list) or not names:
            raise InvalidArgument(f"seccomp {what}.names must be a non-empty list")
        action = _action(call.get("action"), call.get("errnoRet"), what)
        conds: list[tuple[int, int, int, int]] = []
        for j, arg in enumerate(call.get("args") or []):
            if not isinstance(arg, Mapping):
                raise InvalidArgument(f"seccomp {what}.args[{j}] must be an object")
            op = arg.get("op")
            if op not in _OPS:
                raise InvalidArgument(f"string {op} is not a valid operator for seccomp")
            index = _int(arg.get("index"), f"{what}.args[{j}].index", _MAX_ARGS - 1)
            conds.append((index, _OPS[op], _int(arg.get("value", 0), f"{what}.args[{j}].value"),
                          _int(arg.get("valueTwo", 0), f"{what}.args[{j}].valueTwo")))
        indexes = [c[0] for c in conds]
        # libseccomp takes one condition per argument per rule: split into ORed rules (runc)
        groups = [[c] for c in conds] if len(set(indexes)) < len(indexes) else [conds]
        for name in names:
            if not isinstance(name, str) or not name:
                raise InvalidArgument("empty string is not a valid syscall")  # runc's wording
            if lib.seccomp_syscall_resolve_name(name.encode()) == _NR_SCMP_ERROR:
                unknown.append(name)
                continue
            if action == default:
                continue  # redundant, and libseccomp refuses it
            rules.extend(_Rule(name, action, group) for group in groups)
    return _Plan(default, arches, flags, rules, unknown)


def validate(spec: Mapping[str, Any], strict: bool = False) -> list[str]:
    """Check a ``linux.seccomp`` section without installing anything.

    Returns the syscall names libseccomp knows on no architecture (which ``load`` skips,
    as runc does); with ``strict`` those raise InvalidArgument instead. Unknown actions,
    operators, architectures and flags always raise InvalidArgument.
    """
    plan = _plan(spec)
    if strict and plan.unknown:
        raise InvalidArgument("unknown seccomp syscall: " + ", ".join(sorted(set(plan.unknown))))
    if plan.arches or plan.rules:
        prepare(spec)  # and let libseccomp itself judge the rules
    return plan.unknown


# --------------------------------------------------------------------------- building, loading


class Filter:
    """A profile compiled to the kernel's BPF program, ready to install. libseccomp
    generates the BPF once, in the process that prepares the filter; installing it is a
    single seccomp(2) call, so a forked child neither runs libseccomp (~4 ms of BPF
    generation per container) nor needs the library's context kept alive for it."""

    def __init__(self, program: bytes, flags: int, unknown: list[str]) -> None:
        self.program = program  # struct sock_filter[], 8 bytes per instruction
        self.flags = flags  # SECCOMP_FILTER_FLAG_* for seccomp(2)
        self.unknown = unknown  # syscall names skipped as unknown
        self._buffer = ctypes.create_string_buffer(program, len(program))  # made before any fork

    def load(self) -> None:
        """Install the filter in the calling process."""
        try:
            syscalls.seccomp_set_filter(self._buffer, len(self.program) // 8, self.flags)
        except OSError as e:
            if e.errno == errno.EACCES:
                raise OSError(e.errno, "seccomp: loading a filter needs no_new_privs or CAP_SYS_ADMIN "
                                       "(set process.noNewPrivileges, or load before dropping capabilities)") from None
            raise OSError(e.errno, f"seccomp: loading the filter: {os.strerror(e.errno)}") from None


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise InvalidArgument(f"seccomp: {what}: {os.strerror(-rc)}")


def prepare(spec: Mapping[str, Any]) -> Filter:
    """Check and compile a ``linux.seccomp`` section into a Filter, installing nothing."""
    plan = _plan(spec)
    lib = _require_lib()
    ctx = lib.seccomp_init(plan.default)
    if not ctx:
        raise OSError(errno.ENOMEM, "seccomp_init failed")
    try:
        # no_new_privs belongs to process.noNewPrivileges, not to the filter (runc)
        _check(lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0), "clearing the no_new_privs attribute")
        for arch, token in plan.arches:
            rc = lib.seccomp_arch_add(ctx, token)
            if rc < 0 and rc != -errno.EEXIST:  # the native arch is already there
                _check(rc, f"adding architecture {arch}")
        for attr in plan.flags:
            _check(lib.seccomp_attr_set(ctx, attr, 1), f"setting filter flag attribute {attr}")
        if len(plan.rules) > 32:
            # a binary tree over syscall numbers instead of a linear scan; optional, and
            # libseccomp <= 2.5.4 mishandles it for empty filters (runc's threshold)
            lib.seccomp_attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)
        for rule in plan.rules:
            nr = lib.seccomp_syscall_resolve_name(rule.name.encode())
            conds = (_ArgCmp * max(len(rule.conds), 1))(*[_ArgCmp(*c) for c in rule.conds])
            rc = lib.seccomp_rule_add_array(ctx, rule.action, nr, len(rule.conds), conds)
            _check(rc, f"adding a rule for syscall {rule.name}")
        return Filter(_export_bpf(lib, ctx), _kernel_flags(plan.flags), plan.unknown)
    finally:
        lib.seccomp_release(ctx)


def _export_bpf(lib: ctypes.CDLL, ctx: int) -> bytes:
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        _check(lib.seccomp_export_bpf(ctx, fd), "generating the BPF program")
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kernel_flags(attrs: list[int]) -> int:
    return sum(_KERNEL_FLAG[attr] for attr in set(attrs))


_compiled: dict[str, Filter] = {}
_COMPILED_MAX = 16


def prepare_shared(spec: Mapping[str, Any]) -> Filter:
    """``prepare`` memoised by profile content, for a long-lived process that forks many
    containers with the same profile (compiling docker's default takes ~3 ms). The Filter
    returned is shared: only forked children may ``load`` it."""
    from dockyard import jsonc

    key = jsonc.dumps(spec, sort_keys=True, separators=(",", ":"))
    flt = _compiled.get(key)
    if flt is None:
        flt = prepare(spec)
        if len(_compiled) >= _COMPILED_MAX:
            del _compiled[next(iter(_compiled))]
        _compiled[key] = flt
    return flt


def load(spec: Mapping[str, Any]) -> list[str]:
    """Install the filter an OCI ``linux.seccomp`` section describes in this process.

    Needs no_new_privs or CAP_SYS_ADMIN (see the module docstring). Returns the syscall
    names skipped as unknown to libseccomp. Raises InvalidArgument for a bad profile, with
    nothing installed.
    """
    flt = prepare(spec)
    flt.load()
    return flt.unknown


def mode_of(pid: int | str = "self") -> int:
    """The ``Seccomp:`` mode of a process: 0 disabled, 1 strict, 2 filter."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return int(line.split()[1])
    return 0  # a kernel without CONFIG_SECCOMP has no such line
