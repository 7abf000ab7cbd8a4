"""A bridge network's kernel side: its bridge device (with the gateway address), its
address pool, and its endpoints — veth pairs into containers' network namespaces."""

from __future__ import annotations

import secrets
import threading
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from dockyard.network import ipam, links

_FORWARD = "/proc/sys/net/ipv4/ip_forward"


@dataclass(frozen=True)
class Endpoint:
    id: str
    veth: str  # the host end
    inside: str  # the container's end: eth0, eth1, ...
    address: str  # "172.18.0.2/16"
    gateway: str
    mac: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Endpoint:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__})

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


def veth_name() -> str:
    """docker's form: "veth" and 7 hex digits (15 bytes at most for a link name)."""
    return "veth" + secrets.token_hex(4)[:7]


def mac_for(address: IPv4Address) -> str:
    """docker's locally administered MAC: 02:42 then the four bytes of the address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in address.packed)


class BridgeNetwork:
    def __init__(self, device: str, subnet: IPv4Network, gateway: IPv4Address | None = None,
                 ip_range: IPv4Network | None = None) -> None:
        self.device = device
        self.pool = ipam.Pool(subnet, gateway, ip_range)
        self.endpoints: dict[str, Endpoint] = {}
        self._lock = threading.Lock()
        self._up = False

    @property
    def subnet(self) -> IPv4Network:
        return self.pool.subnet

    @property
    def gateway(self) -> IPv4Address:
        return self.pool.gateway

    def ensure(self) -> bool:
        """The bridge device up with the gateway address; True if it was made now."""
        if self._up:
            return False
        created = links.ensure_bridge(self.device, IPv4Interface(f"{self.gateway}/{self.subnet.prefixlen}"))
        links.allow_route_localnet(self.device)
        _enable_forwarding()
        self._up = True
        return created

    @property
    def is_up(self) -> bool:
        return self._up

    def connect(self, endpoint_id: str, netns_path: str, ip: str | None = None, mac: str | None = None,
                inside: str = "eth0", default_route: bool = True, inside_index: int | None = None) -> Endpoint:
        """A veth from the bridge into the namespace, with an address (``ip``: --ip) and,
        if ``default_route`` (the container's first network, not an internal one), the
        default route through the gateway."""
        with self._lock:
            addr = self.pool.allocate(ip)
            try:
                self.ensure()
                ep = Endpoint(endpoint_id, veth_name(), inside, f"{addr}/{self.subnet.prefixlen}",
                              str(self.gateway), mac or mac_for(addr))
                links.attach_veth(ep.veth, self.device, netns_path, IPv4Interface(ep.address),
                                  self.gateway if default_route else None, mac=ep.mac, inside_name=inside,
                                  inside_index=inside_index)
            except BaseException:
                self.pool.release(addr)
                raise
            self.endpoints[endpoint_id] = ep
            return ep

    def disconnect(self, endpoint_id: str) -> None:
        ep = self.take(endpoint_id)
        if ep is not None:
            links.delete_link(ep.veth)  # gone already when the namespace died: nothing to do
            self.free(ep)

    def take(self, endpoint_id: str) -> Endpoint | None:
        """Forget an endpoint, its address still reserved: the caller deletes its veth
        (which costs the kernel ~15-20 ms, better not spent under a lock) and then
        ``free``s the address."""
        with self._lock:
            return self.endpoints.pop(endpoint_id, None)

    def free(self, ep: Endpoint) -> None:
        with self._lock:
            self.pool.release(IPv4Interface(ep.address).ip)

    def restore(self, ep: Endpoint) -> None:
        """An endpoint of a container still running after a daemon restart."""
        with self._lock:
            self.pool.reserve(IPv4Interface(ep.address).ip)
            self.endpoints[ep.id] = ep
            self._up = True  # its bridge is there: the endpoint is on it

    def delete(self) -> None:
        """Remove the bridge device (its endpoints must be gone)."""
        with self._lock:
            links.delete_link(self.device)
            self._up = False


def _enable_forwarding() -> None:
    """Routing between the bridges and the host's other interfaces, as dockerd turns on."""
    with open(_FORWARD) as f:
        if f.read().strip() == "1":
            return
    with open(_FORWARD, "w") as f:
        f.write("1")
