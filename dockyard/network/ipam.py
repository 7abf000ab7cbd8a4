"""IPv4 address management: a subnet for a network, and its addresses for endpoints."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

from dockyard.errors import Conflict, InvalidArgument, Unavailable

DOCKER0 = IPv4Network("172.17.0.0/16")  # docker's default bridge: never ours, docker may run too
# where dockyard looks for a default bridge subnet, first free wins (docker's later pools)
DEFAULT_CANDIDATES = tuple(IPv4Network(f"172.{n}.0.0/16") for n in range(18, 32)) + tuple(
    IPv4Network(f"192.168.{n}.0/20") for n in range(0, 256, 16))


def choose_subnet(used: Iterable[IPv4Network], candidates: Iterable[IPv4Network] = DEFAULT_CANDIDATES) -> IPv4Network:
    """The first candidate that overlaps nothing in ``used`` (the host's routes, other
    networks) nor docker0's subnet."""
    taken = [*used, DOCKER0]
    for net in candidates:
        if not any(net.overlaps(other) for other in taken):
            return net
    raise Unavailable("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")


def parse_subnet(text: str) -> IPv4Network:
    try:
        return IPv4Network(text, strict=True)
    except ValueError as e:
        raise InvalidArgument(f"invalid subnet {text}: {e}") from None


class Pool:
    """The addresses of one subnet: the network and broadcast addresses and the gateway are
    never handed out; ``ip_range`` (a part of the subnet) limits dynamic allocation."""

    def __init__(self, subnet: IPv4Network, gateway: IPv4Address | None = None,
                 ip_range: IPv4Network | None = None) -> None:
        if subnet.prefixlen > 30:
            raise InvalidArgument(f"subnet {subnet} is too small for a network (at most /30)")
        self.subnet = subnet
        self.gateway = gateway or subnet.network_address + 1
        if self.gateway not in subnet:
            raise InvalidArgument(f"no matching subnet for gateway {self.gateway}")
        if ip_range is not None and not ip_range.subnet_of(subnet):
            raise InvalidArgument(f"no matching subnet for range {ip_range}")
        self.range = ip_range or subnet
        self._used: set[IPv4Address] = {subnet.network_address, subnet.broadcast_address, self.gateway}
        self._next = int(self.range.network_address)

    def allocate(self, wanted: str | IPv4Address | None = None) -> IPv4Address:
        """``wanted`` (--ip, anywhere in the subnet), or the next free address of the range,
        round-robin so a released address is not reused at once (as docker's IPAM)."""
        if wanted is not None:
            addr = ipaddress.ip_address(wanted)
            if addr not in self.subnet:
                raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {addr}")
            if addr in self._used:
                raise Conflict(f"Address already in use: {addr}")
            self._used.add(addr)
            return addr
        first, last = int(self.range.network_address), int(self.range.broadcast_address)
        size = last - first + 1
        for step in range(size):
            candidate = IPv4Address(first + (self._next - first + step) % size)
            if candidate not in self._used:
                self._used.add(candidate)
                self._next = int(candidate) + 1
                return candidate
        raise Unavailable(f"no available IPv4 addresses on this network's address pools: {self.subnet}")

    def reserve(self, addr: IPv4Address) -> None:
        """Mark an address as taken (an endpoint that existed before a daemon restart)."""
        self._used.add(addr)

    def release(self, addr: IPv4Address) -> None:
        if addr not in (self.subnet.network_address, self.subnet.broadcast_address, self.gateway):
            self._used.discard(addr)

    @property
    def in_use(self) -> int:
        return len(self._used) - 3
