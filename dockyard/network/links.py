"""Links through netlink (pyroute2): bridges, veth pairs, and an interface's configuration
inside a container's network namespace.

A netlink socket belongs to the network namespace of the thread that opened it, and
``setns(CLONE_NEWNET)`` moves only the calling thread: ``in_netns`` runs a function in a
short-lived thread that enters the namespace and ends there (nothing to switch back, no
fork of the threaded daemon).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, TypeVar

from dockyard import syscalls
from dockyard.syscalls import CloneFlag

T = TypeVar("T")


def _oserrors(fn: Callable[..., T]) -> Callable[..., T]:
    """pyroute2's NetlinkError as the OSError (with the operation named) every other
    system call here raises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            return fn(*args, **kwargs)
        except NetlinkError as e:
            raise OSError(e.code, f"{fn.__name__}: {os.strerror(e.code)}") from None

    return wrapper


def _iproute() -> Any:
    from pyroute2 import IPRoute  # lazily: ~40 ms of imports the CLI never needs

    return IPRoute()


_host_lock = threading.Lock()
_host_socket: Any = None


@contextlib.contextmanager
def _host() -> Iterator[Any]:
    """The daemon's one netlink socket in the host's namespace (opened on first use,
    ~1 ms saved per call), one caller at a time."""
    global _host_socket
    with _host_lock:
        if _host_socket is None:
            _host_socket = _iproute()
        try:
            yield _host_socket
        except BaseException:
            _host_socket.close()  # a failed request may leave answers unread: start afresh
            _host_socket = None
            raise


def in_netns(netns_path: str, fn: Callable[[], T]) -> T:
    """``fn()`` run in the network namespace at ``netns_path`` (/proc/<pid>/ns/net or a
    bind-mounted one), in a thread of its own; its result or its exception."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                syscalls.setns(fd, CloneFlag.NEWNET)
            finally:
                os.close(fd)
            box["result"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, name="in-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def link_index(ipr: Any, name: str) -> int | None:
    """One RTM_GETLINK by name (not a dump of every link, as ``link_lookup`` does)."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return int(ipr.link("get", ifname=name)[0]["index"])
    except NetlinkError as e:
        if e.code == 19:  # ENODEV
            return None
        raise


@_oserrors
def ensure_bridge(name: str, gateway: IPv4Interface) -> bool:
    """The bridge ``name`` with ``gateway`` as its address, up; True if it was created."""
    with _host() as ipr:
        created = False
        idx = link_index(ipr, name)
        if idx is None:
            ipr.link("add", ifname=name, kind="bridge")
            idx = link_index(ipr, name)
            created = True
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=2)}
        if (str(gateway.ip), gateway.network.prefixlen) not in have:
            ipr.addr("add", index=idx, address=str(gateway.ip), prefixlen=gateway.network.prefixlen)
        ipr.link("set", index=idx, state="up")
        return created


@_oserrors
def bridge_address(name: str) -> IPv4Interface | None:
    """The first IPv4 address of link ``name`` (None: no such link, or no address)."""
    with _host() as ipr:
        idx = link_index(ipr, name)
        if idx is None:
            return None
        for a in ipr.get_addr(index=idx, family=2):
            return IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
        return None


@_oserrors
def delete_link(name: str, shared: bool = True) -> bool:
    """Remove link ``name`` (a bridge, or a veth with its peer); False if there was none.
    ``shared=False``: on a netlink socket of its own, so a slow deletion does not hold up
    others' requests on the daemon's shared socket."""
    with _host() if shared else _iproute() as ipr:
        idx = link_index(ipr, name)
        if idx is None:
            return False
        ipr.link("del", index=idx)
        return True


@_oserrors
def host_routes() -> list[IPv4Network]:
    """The destinations of the host's IPv4 routes in its main table (the default route
    aside; the local table's own addresses are inside those)."""
    out = []
    with _host() as ipr:
        for r in ipr.get_routes(family=2, table=254):
            dst = r.get_attr("RTA_DST")
            if dst and r["dst_len"]:
                out.append(IPv4Network(f"{dst}/{r['dst_len']}", strict=False))
    return out


@_oserrors
def attach_veth(host_name: str, bridge: str, netns_path: str, address: IPv4Interface,
                gateway: IPv4Address | None, mac: str | None = None, inside_name: str = "eth0",
                inside_index: int | None = None) -> None:
    """A veth pair: ``host_name`` on ``bridge`` (up), its peer made directly inside the
    namespace at ``netns_path`` as ``inside_name`` (moving a link between namespaces costs
    the kernel an RCU grace period, ~15 ms) with ``mac`` and ``address``, up, and a
    default route via ``gateway``. ``inside_index``: the index to give it there (a new
    namespace has only lo, index 1), which saves a lookup; lo is the runtime's to bring
    up. Nothing is left behind on failure (deleting the host end takes the peer)."""
    with _host() as ipr:
        br = link_index(ipr, bridge)
        if br is None:
            raise FileNotFoundError(f"bridge {bridge} does not exist")
        from pyroute2.netlink.exceptions import NetlinkError

        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            peer: dict[str, Any] = {"ifname": inside_name, "net_ns_fd": fd}
            if mac:
                peer["address"] = mac
            if inside_index is not None:
                peer["index"] = inside_index  # saves looking it up inside
            try:
                ipr.link("add", ifname=host_name, kind="veth", master=br, state="up", peer=peer)
            except NetlinkError as e:
                if e.code != 17 or inside_index is None:  # EEXIST: the index is taken there
                    raise
                del peer["index"]
                inside_index = None
                ipr.link("add", ifname=host_name, kind="veth", master=br, state="up", peer=peer)
        finally:
            os.close(fd)
    try:
        def inside() -> None:
            with _iproute() as nipr:
                idx = inside_index if inside_index is not None else link_index(nipr, inside_name)
                nipr.addr("add", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
                nipr.link("set", index=idx, state="up")
                if gateway is not None:
                    nipr.route("add", dst="0.0.0.0/0", gateway=str(gateway))

        in_netns(netns_path, inside)
    except BaseException:
        delete_link(host_name)
        raise


@_oserrors
def free_name(netns_path: str, prefix: str = "eth") -> str:
    """The first ``<prefix>N`` no link inside the namespace has (a container joining one
    more network)."""
    def read() -> set[str]:
        with _iproute() as ipr:
            return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}

    names = in_netns(netns_path, read)
    n = 0
    while f"{prefix}{n}" in names:
        n += 1
    return f"{prefix}{n}"


def allow_route_localnet(device: str) -> None:
    """Let 127.0.0.1 be routed out of ``device``: a port published on the host's loopback
    is DNATed to a container behind it (docker sets the same without its proxy)."""
    with open(f"/proc/sys/net/ipv4/conf/{device}/route_localnet", "w") as f:
        f.write("1")


@_oserrors
def interfaces_in(netns_path: str) -> dict[str, list[str]]:
    """Interface name -> its IPv4 addresses (CIDR), inside a namespace (for tests, inspect)."""
    def read() -> dict[str, list[str]]:
        with _iproute() as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            out: dict[str, list[str]] = {name: [] for name in names.values()}
            for a in ipr.get_addr(family=2):
                out[names[a["index"]]].append(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
            return out

    return in_netns(netns_path, read)
