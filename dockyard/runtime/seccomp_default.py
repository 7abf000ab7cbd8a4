"""dockyard's default seccomp profile: Docker's default semantics, written as a deny-list.

Docker's documentation ("Seccomp security profiles for Docker") names the significant
syscalls its default profile blocks, why, and which capability already gates each one;
the profile lets a container that was given that capability use the matching syscalls.
Docker writes this as an allow-list (default SCMP_ACT_ERRNO). dockyard writes the same
decisions the other way round: default SCMP_ACT_ALLOW and an EPERM rule per blocked
syscall. That keeps the profile short and lets syscalls newer than this table (and than
libseccomp) work, where an allow-list would answer EPERM and break glibc's ENOSYS fallbacks.
The cost is that a dangerous *new* syscall must be added here by hand: the new mount API
(fsopen, open_tree, ...) and io_uring are listed for that reason.

Argument-dependent rules:

- clone: creating namespaces needs CAP_SYS_ADMIN; without it clone is denied when its
  flags carry any CLONE_NEW* bit of 0x7E020000 (the flags are argument 0, argument 1 on
  s390/s390x where clone takes the stack first). clone3 passes its flags in memory, which
  seccomp cannot read, so without CAP_SYS_ADMIN it fails with ENOSYS and glibc falls back
  to clone.
- personality: only PER_LINUX (0), PER_LINUX32 (8), UNAME26 (0x20000), their union
  (0x20008) and the query value 0xffffffff are allowed; everything else (BSD emulation,
  READ_IMPLIES_EXEC, ...) is denied whatever the capabilities.
- ptrace: Docker blocks it only on kernels older than 4.8 (where a tracer could bypass
  seccomp); on newer kernels the kernel's own ptrace checks and CAP_SYS_PTRACE decide.
"""

from __future__ import annotations

import errno
import os

from dockyard.errors import InvalidArgument
from dockyard.runtime import capabilities

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the supervisor keeps what it imports for life
    from collections.abc import Iterable
    from typing import Any

# Each entry: (capabilities, any of which lifts the block; the syscalls it blocks).
# Names missing on an architecture are skipped by libseccomp for that architecture.
_GATED: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    # The kernel keyring is not namespaced: no container gets it.
    ((), ("add_key", "keyctl", "request_key")),
    # Obsolete interfaces nothing in a container needs; less kernel surface.
    ((), ("get_kernel_syms", "query_module", "nfsservctl", "sysfs", "_sysctl", "uselib", "ustat")),
    # io_uring bypasses seccomp for the operations it performs (Docker blocks it since 25.0).
    ((), ("io_uring_setup", "io_uring_enter", "io_uring_register")),
    # Mounts, namespaces, swap, quotas, x86 real mode: privileged kernel state.
    (("CAP_SYS_ADMIN",), (
        "mount", "umount", "umount2", "pivot_root", "unshare", "setns",
        "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
        "swapon", "swapoff", "quotactl", "quotactl_fd", "lookup_dcookie", "fanotify_init",
        "vm86", "vm86old",
    )),
    # File handles bypass path permission checks (the "shocker" container breakout).
    (("CAP_DAC_READ_SEARCH",), ("open_by_handle_at",)),
    (("CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH"), ("name_to_handle_at",)),
    # Inspecting or writing another process's memory.
    (("CAP_SYS_PTRACE",), (
        "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
        # userfaultfd handles page faults of the caller's own memory, but it is a favourite
        # exploitation primitive; the kernel gates full use of it with CAP_SYS_PTRACE too.
        "userfaultfd",
    )),
    # The clock is not namespaced.
    (("CAP_SYS_TIME",), (
        "settimeofday", "stime", "clock_settime", "clock_settime64", "clock_adjtime",
        "clock_adjtime64",
    )),
    # Kernel modules.
    (("CAP_SYS_MODULE",), ("init_module", "finit_module", "delete_module", "create_module")),
    # Rebooting the host, or loading a kernel to boot into.
    (("CAP_SYS_BOOT",), ("reboot", "kexec_load", "kexec_file_load")),
    (("CAP_SYS_PACCT",), ("acct",)),
    # I/O port access.
    (("CAP_SYS_RAWIO",), ("iopl", "ioperm")),
    # NUMA memory policy and page migration.
    (("CAP_SYS_NICE",), (
        "get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind", "move_pages",
        "migrate_pages",
    )),
    (("CAP_SYS_TTY_CONFIG",), ("vhangup",)),
    (("CAP_SYS_CHROOT",), ("chroot",)),
    (("CAP_SYSLOG",), ("syslog",)),
    # Loading BPF programs and profiling leak host information.
    (("CAP_BPF", "CAP_SYS_ADMIN"), ("bpf",)),
    (("CAP_PERFMON", "CAP_SYS_ADMIN"), ("perf_event_open",)),
)

CLONE_NS_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET

# Allowed personality(2) values: subsets of PER_LINUX32 | UNAME26, and the query 0xffffffff.
PERSONA_BITS = 0x0008 | 0x0020000
PERSONA_QUERY = 0xFFFFFFFF

# machine -> (OCI architectures a container may use, argument index of clone's flags)
_MACHINES: dict[str, tuple[tuple[str, ...], int]] = {
    "x86_64": (("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"), 0),
    "aarch64": (("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"), 0),
    "s390x": (("SCMP_ARCH_S390X", "SCMP_ARCH_S390"), 1),
    "ppc64le": (("SCMP_ARCH_PPC64LE",), 0),
    "riscv64": (("SCMP_ARCH_RISCV64",), 0),
}
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "SCMP_ARCH_X86_64": "x86_64",
            "SCMP_ARCH_AARCH64": "aarch64", "SCMP_ARCH_S390X": "s390x",
            "SCMP_ARCH_PPC64LE": "ppc64le", "SCMP_ARCH_RISCV64": "riscv64"}


def _deny(names: Iterable[str], errno_ret: int = errno.EPERM, args: list[dict] | None = None) -> dict:
    rule: dict[str, Any] = {"names": sorted(names), "action": "SCMP_ACT_ERRNO", "errnoRet": errno_ret}
    if args:
        rule["args"] = args
    return rule


def _masked(index: int, mask: int, value: int) -> dict:
    return {"index": index, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ"}


def _bit_patterns_outside(bits: int) -> list[tuple[int, int]]:
    """(set_bit, clear_bit) pairs whose union is exactly the 32-bit values that have a bit
    outside ``bits`` set and are not 0xffffffff.

    Why: libseccomp accepts one comparison per argument per rule, so "arg not in a set"
    cannot be one rule; it has to be a union of single MASKED_EQ tests. A test "bit k set
    and bit j clear" never matches an allowed value (those have no bit outside ``bits``,
    or no clear bit). Coverage: take a denied x, a bit i of x outside ``bits``, and the
    cyclic run of set bits around i (not all 32 bits, as x != 0xffffffff). If the run ends
    at a bit e outside ``bits``, (e, e+1) matches; if it starts at such a bit s, (s, s-1)
    does; otherwise both ends are bits of ``bits`` and one extra pair per such (start, end)
    covers it: (a free bit inside the run, the bit after its end).
    """
    free = [b for b in range(32) if not bits >> b & 1]
    pairs = {(k, (k + 1) % 32) for k in free} | {(k, (k - 1) % 32) for k in free}
    ends = [b for b in range(32) if bits >> b & 1]
    for start in ends:
        for end in ends:
            if start == end:
                continue
            run = [(start + n) % 32 for n in range((end - start) % 32 + 1)]
            inside = [b for b in run if b in free]
            if inside:
                pairs.add((inside[0], (end + 1) % 32))
    return sorted(pairs)


def _personality_rules() -> list[dict]:
    rules = [_deny(["personality"], args=[{"index": 0, "value": PERSONA_QUERY, "op": "SCMP_CMP_GT"}])]
    for set_bit, clear_bit in _bit_patterns_outside(PERSONA_BITS):
        mask = (1 << set_bit) | (1 << clear_bit)
        rules.append(_deny(["personality"], args=[_masked(0, mask, 1 << set_bit)]))
    return rules


def persona_allowed(value: int) -> bool:
    """The personality(2) values the default profile lets through (for tests and docs)."""
    return value == PERSONA_QUERY or (value & ~PERSONA_BITS) == 0


def _kernel_at_least(release: str, major: int, minor: int) -> bool:
    try:
        parts = release.split("-")[0].split(".")
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (IndexError, ValueError):
        return True  # an unparsable release is a modern, custom-built kernel


def default_profile(caps: Iterable[str] | None = None, arch: str | None = None,
                    kernel_release: str | None = None) -> dict:
    """An OCI ``linux.seccomp`` section with Docker's default semantics for a container
    holding ``caps`` (default: docker's 14), on ``arch`` (default: this machine; x86_64,
    aarch64, s390x, ppc64le, riscv64, or their Go/OCI names) and kernel ``kernel_release``
    (default: the running one; it only matters for ptrace)."""
    held = {capabilities.normalize(c) for c in (capabilities.DEFAULT_CAPS if caps is None else caps)}
    machine = arch or os.uname().machine  # platform.machine() without importing platform
    machine = _ALIASES.get(machine, machine)
    if machine not in _MACHINES:
        raise InvalidArgument(f"no default seccomp profile for architecture {arch or machine!r}")
    arches, clone_flags_arg = _MACHINES[machine]

    denied: set[str] = set()
    for lifted_by, names in _GATED:
        if not held.intersection(lifted_by):
            denied.update(names)
    if not _kernel_at_least(kernel_release or os.uname().release, 4, 8) and "CAP_SYS_PTRACE" not in held:
        denied.add("ptrace")

    syscalls = [_deny(denied)]
    if "CAP_SYS_ADMIN" not in held:
        syscalls.append(_deny(["clone3"], errno.ENOSYS))
        # one rule per namespace bit: rules are ORed, the conditions inside one are ANDed
        for bit in range(32):
            if CLONE_NS_FLAGS >> bit & 1:
                syscalls.append(_deny(["clone"], args=[_masked(clone_flags_arg, 1 << bit, 1 << bit)]))
    syscalls.extend(_personality_rules())
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": list(arches),
        "syscalls": syscalls,
    }
