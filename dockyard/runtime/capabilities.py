"""Linux capabilities: names, docker's --cap-add/--cap-drop arithmetic, and applying an OCI
``process.capabilities`` section in the container's init process.

Order in the container's init (runc's, and the one ``apply`` is written for)::

    keep_caps_across_setuid()            # PR_SET_KEEPCAPS: a uid change keeps `permitted`
    os.setgroups(...); os.setgid(...); os.setuid(...)
    apply(spec["process"]["capabilities"])
        # 1. drop from the bounding set what `bounding` does not list
        # 2. capset inheritable / permitted / effective
        # 3. clear the ambient set, raise each `ambient` cap
    ... seccomp, then execve

runc drops the bounding set *before* the uid switch; ``apply`` does it after, which is
equivalent: the bounding set does not change across setuid, and ``apply`` first raises its
effective set to its permitted set so that it holds CAP_SETPCAP (needed by
PR_CAPBSET_DROP) even after a uid switch cleared the effective set. Calling ``apply`` as
root without a uid switch works too.
"""

from __future__ import annotations

import errno
import os

from dockyard import syscalls
from dockyard.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the supervisor keeps what it imports for life
    from collections.abc import Iterable, Mapping

# Numbers from include/uapi/linux/capability.h. Each name is "CAP_" + the kernel's.
CAPS: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}
_NAMES: dict[int, str] = {num: name for name, num in CAPS.items()}

# Docker's default set for a non-privileged container, in docker's order.
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

ALL = "ALL"  # the magic value of --cap-add / --cap-drop
KINDS = ("bounding", "effective", "inheritable", "permitted", "ambient")


def last_cap() -> int:
    """The highest capability number the running kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        # /proc not mounted (early in a container's init): assume the kernel knows all of ours.
        return max(CAPS.values())


def all_caps() -> list[str]:
    """Every capability both dockyard and the kernel know, by number: what docker gives a
    privileged container (its GetAllCapabilities also stops at cap_last_cap)."""
    top = last_cap()
    return [name for name, num in sorted(CAPS.items(), key=lambda kv: kv[1]) if num <= top]


def normalize(name: str) -> str:
    """``chown``, ``CHOWN`` and ``CAP_CHOWN`` -> ``CAP_CHOWN``; unknown names raise, with
    docker's wording (``unknown capability: "CAP_FOO"``, quoting the normalized name)."""
    cap = name.strip().upper()
    if not cap.startswith("CAP_"):
        cap = "CAP_" + cap
    if cap not in CAPS:
        raise InvalidArgument(f'unknown capability: "{cap}"')
    return cap


def parse(names: Iterable[str]) -> set[int]:
    """Capability names (any spelling ``normalize`` accepts) -> their numbers."""
    return {CAPS[normalize(n)] for n in names}


def _mask(nums: Iterable[int]) -> int:
    out = 0
    for n in nums:
        out |= 1 << n
    return out


def names_of(mask: int) -> list[str]:
    """A capability bit mask -> names, by number (``CAP_<n>`` for numbers we do not name)."""
    return [_NAMES.get(n, f"CAP_{n}") for n in range(mask.bit_length()) if mask >> n & 1]


def _normalize_docker(names: Iterable[str] | None, field: str) -> list[str]:
    out: list[str] = []
    for n in names or ():
        if n.strip().upper() == ALL:
            out.append(ALL)
            continue
        try:
            out.append(normalize(n))
        except InvalidArgument as err:
            # docker's daemon wraps the same error: 'invalid CapAdd: unknown capability: "CAP_X"'
            raise InvalidArgument(f"invalid {field}: {err}") from None
    return out


def merge_docker(
    cap_add: Iterable[str] | None,
    cap_drop: Iterable[str] | None,
    privileged: bool = False,
    defaults: Iterable[str] = DEFAULT_CAPS,
) -> list[str]:
    """The capability list of a container, with docker's semantics (TweakCapabilities):

    - privileged: every capability the kernel knows, whatever add/drop say;
    - ``ALL`` in cap_add: every capability except those in cap_drop;
    - ``ALL`` in cap_drop: exactly cap_add;
    - otherwise: the defaults minus cap_drop, then cap_add (so an add beats a drop).

    Names are validated (and normalized) even for a privileged container, as docker's
    create-time validation does; cap_add first, so its error wins.
    """
    adds = _normalize_docker(cap_add, "CapAdd")
    drops = _normalize_docker(cap_drop, "CapDrop")
    if privileged:
        return all_caps()
    if ALL in adds:
        result = [c for c in all_caps() if c not in drops]
    elif ALL in drops:
        result = adds
    else:
        result = [normalize(c) for c in defaults if normalize(c) not in drops] + adds
    return list(dict.fromkeys(result))  # docker may repeat a name; keep its order, once


# --------------------------------------------------------------------------- applying


def keep_caps_across_setuid(enable: bool = True) -> None:
    """PR_SET_KEEPCAPS: let a switch from uid 0 to non-zero uids keep the permitted set
    (the kernel still clears effective and ambient; ``apply`` sets them afterwards).
    The flag is reset by execve, so there is nothing to undo after the exec."""
    syscalls.prctl(syscalls.Prctl.SET_KEEPCAPS, 1 if enable else 0)


def _host_bounding(top: int) -> int:
    """This process's bounding set: one read of /proc/self/status where a procfs is
    mounted, else one PR_CAPBSET_READ per capability."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapBnd:"):
                    return int(line.split()[1], 16) & ((1 << (top + 1)) - 1)
    except (OSError, ValueError):
        pass
    mask = 0
    for num in range(top + 1):
        if syscalls.prctl(syscalls.Prctl.CAPBSET_READ, num) == 1:
            mask |= 1 << num
    return mask


def _parse_kind(process_caps: Mapping[str, Iterable[str] | None], kind: str) -> set[int]:
    names = process_caps.get(kind) or []
    if isinstance(names, str):
        raise InvalidArgument(f"process.capabilities.{kind} must be a list of names")
    try:
        return parse(names)
    except InvalidArgument as err:
        raise InvalidArgument(f"process.capabilities.{kind}: {err}") from None


def apply(process_caps: Mapping[str, Iterable[str] | None] | None) -> list[str]:
    """Make this process's capability sets those of an OCI ``process.capabilities``.

    Call it in the container's init after the uid/gid switch (see the module docstring).
    Capabilities this host cannot grant (above cap_last_cap, or already missing from the
    host's bounding set, such as CAP_SYS_RESOURCE on a host that lacks it) are left out of
    every set and returned, so the caller can warn as runc does ("ignoring unknown or
    unavailable capabilities"). Unknown names raise InvalidArgument before anything changes
    (runc only warns about them; a typo in a bounding list is a config bug worth failing on).
    A missing section means no capabilities at all.
    """
    process_caps = process_caps or {}
    wanted = {kind: _parse_kind(process_caps, kind) for kind in KINDS}

    top = last_cap()
    available = _host_bounding(top)
    requested = _mask(set().union(*wanted.values()))
    ignored = requested & ~available
    masks = {kind: _mask(nums) & available for kind, nums in wanted.items()}

    # What the kernel would refuse, refused here first so no set is half-changed.
    if masks["effective"] & ~masks["permitted"]:
        raise InvalidArgument(
            "process.capabilities: effective capabilities not in permitted: "
            + ", ".join(names_of(masks["effective"] & ~masks["permitted"]))
        )
    amb_bad = masks["ambient"] & ~(masks["permitted"] & masks["inheritable"])
    if amb_bad:
        raise InvalidArgument(
            "process.capabilities: ambient capabilities must also be permitted and inheritable: "
            + ", ".join(names_of(amb_bad))
        )
    _eff, perm, inh = syscalls.capget()
    # capset(2) lets inheritable grow only within the (new) bounding set.
    inh_bad = masks["inheritable"] & ~masks["bounding"] & ~inh
    if inh_bad:
        raise InvalidArgument(
            "process.capabilities: inheritable capabilities not in bounding: "
            + ", ".join(names_of(inh_bad))
        )
    missing = masks["permitted"] & ~perm
    if missing:
        raise OSError(
            errno.EPERM,
            "cannot grant capabilities this process no longer has: "
            + ", ".join(names_of(missing))
            + " (was the uid switched without keep_caps_across_setuid()?)",
        )

    to_drop = available & ~masks["bounding"]
    if to_drop and not perm >> CAPS["CAP_SETPCAP"] & 1:
        raise OSError(errno.EPERM, "cannot drop " + ", ".join(names_of(to_drop))
                      + " from the bounding set without CAP_SETPCAP")

    # 1. Bounding set. PR_CAPBSET_DROP needs CAP_SETPCAP in the effective set, which a uid
    #    switch (even with keep-caps) has cleared: raise effective to permitted first.
    syscalls.capset(perm, perm, inh)
    for num in range(top + 1):
        if to_drop >> num & 1:
            try:
                syscalls.prctl(syscalls.Prctl.CAPBSET_DROP, num)
            except OSError as err:
                raise OSError(err.errno, f"dropping {names_of(1 << num)[0]} from the bounding set: "
                                         f"{os.strerror(err.errno)} (needs CAP_SETPCAP)") from None

    # 2. One capset for the three sets; CAP_SETPCAP is still effective for this call, so
    #    inheritable may gain caps outside the old inheritable set.
    syscalls.capset(masks["effective"], masks["permitted"], masks["inheritable"])

    # 3. Ambient: clear what a previous owner left, then raise each (the kernel needs them
    #    in permitted and inheritable, checked above).
    syscalls.prctl(syscalls.Prctl.CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    for num in range(top + 1):
        if masks["ambient"] >> num & 1:
            syscalls.prctl(syscalls.Prctl.CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, num)
    return names_of(ignored)


def current() -> dict[str, int]:
    """This process's masks as /proc/self/status shows them: CapInh, CapPrm, CapEff,
    CapBnd, CapAmb -> int."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.startswith("Cap"):
                out[key] = int(value.strip(), 16)
    return out
