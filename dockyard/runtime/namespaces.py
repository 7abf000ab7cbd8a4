"""Namespaces: opening the ones to join, joining them, unsharing new ones, id maps.

Everything here runs in a single-threaded process (setns into a user or mount namespace
refuses a multi-threaded caller). Namespace files are opened by the runtime *before* it
forks — that validates the paths early and means the child never resolves a host path
after it has started changing namespaces.
"""

from __future__ import annotations

import errno
import fcntl
import os

from dockyard import syscalls
from dockyard.errors import InvalidArgument
from dockyard.syscalls import NAMESPACE_FILES, NAMESPACE_FLAGS, CloneFlag

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs start-up time
    from typing import Any

_NS_GET_NSTYPE = 0xB703  # ioctl on an nsfs fd: which CLONE_NEW* it is
# setns into a pid or time namespace affects only children; user first so the others
# are joined with the privileges the container's user namespace grants.
JOIN_ORDER = ("user", "ipc", "uts", "network", "cgroup", "pid", "time", "mount")


def spec_namespaces(spec: dict[str, Any]) -> dict[str, str | None]:
    """{type: path, or None for a new namespace} from the spec's linux.namespaces."""
    return {ns["type"]: ns.get("path") or None for ns in spec.get("linux", {}).get("namespaces", [])}


def new_flags(namespaces: dict[str, str | None], *, include_user: bool = False) -> int:
    flags = 0
    for kind, path in namespaces.items():
        if path is None and (include_user or kind != "user"):
            flags |= NAMESPACE_FLAGS[kind]
    return flags


def open_paths(namespaces: dict[str, str | None]) -> dict[str, int]:
    """Open the namespaces the spec joins by path; check each is of the type it claims."""
    fds: dict[str, int] = {}
    try:
        for kind, path in namespaces.items():
            if path is None:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise InvalidArgument(f"namespace {kind}: cannot open {path}: {e.strerror}") from None
            fds[kind] = fd
            try:
                nstype = fcntl.ioctl(fd, _NS_GET_NSTYPE)
            except OSError:
                raise InvalidArgument(f"namespace {kind}: {path} is not a namespace file") from None
            if nstype != NAMESPACE_FLAGS[kind]:
                raise InvalidArgument(f"namespace {kind}: {path} is a {syscalls.flag_names(CloneFlag, nstype)} namespace, not {kind}")
    except BaseException:
        close_all(fds)
        raise
    return fds


def open_process_namespaces(pid: int) -> dict[str, int]:
    """The namespaces of ``pid`` that differ from ours (what exec joins)."""
    fds: dict[str, int] = {}
    try:
        for kind, name in NAMESPACE_FILES.items():
            try:
                fd = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                if not os.path.exists(f"/proc/{pid}"):
                    raise
                continue  # a namespace type this kernel does not have
            if _same_as_ours(fd, name):
                os.close(fd)
            else:
                fds[kind] = fd
    except BaseException:
        close_all(fds)
        raise
    return fds


def _same_as_ours(fd: int, name: str) -> bool:
    try:
        ours = os.stat(f"/proc/self/ns/{name}")
    except FileNotFoundError:
        return False
    theirs = os.fstat(fd)
    return (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)


def close_all(fds: dict[str, int]) -> None:
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()


def join(fds: dict[str, int]) -> None:
    """setns into every namespace in ``fds`` (closing them).

    Two passes, as nsenter(1) does: a namespace owned by the host's user namespace has to
    be joined *before* we enter a child user namespace (we lose host privileges there),
    one owned by the container's user namespace only *after*. So each non-user namespace
    is tried first; those refused with EPERM are retried once we are in the user ns.
    """
    pending = [k for k in JOIN_ORDER if k in fds and k != "user"]
    later: list[str] = []
    if "user" in fds:
        for kind in pending:
            try:
                syscalls.setns(fds[kind], NAMESPACE_FLAGS[kind])
            except OSError as e:
                if e.errno != errno.EPERM:
                    raise
                later.append(kind)
        syscalls.setns(fds["user"], CloneFlag.NEWUSER)
        become_ns_root()
        pending = later
    for kind in pending:
        syscalls.setns(fds[kind], NAMESPACE_FLAGS[kind])
    close_all(fds)


def become_ns_root() -> None:
    """In a fresh user namespace the process's ids are unmapped (shown as 65534): become
    the namespace's root so files it creates belong to the mapped root."""
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def format_map(entries: list[dict[str, int]]) -> bytes:
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in entries).encode()


def write_id_maps(pid: int, uid_maps: list[dict[str, int]], gid_maps: list[dict[str, int]]) -> None:
    """Called by the runtime (host root) once the child has unshared its user namespace;
    the kernel accepts each map file once, with all ranges in one write."""
    for name, entries in (("uid_map", uid_maps), ("gid_map", gid_maps)):
        data = format_map(entries)
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data)
        except OSError as e:
            raise InvalidArgument(f"bad {name} {data.decode().strip()!r}: {e.strerror}") from None
        finally:
            os.close(fd)


_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def loopback_up() -> None:
    """Bring ``lo`` up in this (new) network namespace, as runc and docker do: a container
    with no other network still has a working 127.0.0.1."""
    import _socket  # not socket: this runs in every container's stage 1, see usock
    import struct

    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
    finally:
        s.close()
