"""The default bridge network (``dockyard0``, docker's ``bridge``): made on first use, its
subnet the one given (``--bip``), the one the bridge already has (a daemon restarted with
containers running), or the first free candidate (ipam.choose_subnet); outbound NAT in
dockyard's own nftables table named after the bridge; given back — bridge and table — when
the daemon stops with no endpoint left. Endpoints are veth pairs into containers' network
namespaces (links.attach_veth). Not yet used by the container service (see the package)."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from dockyard.network import ipam, links
from dockyard.network.nat import NatTable

_FORWARD = "/proc/sys/net/ipv4/ip_forward"


@dataclass(frozen=True)
class Endpoint:
    id: str  # the container's
    veth: str  # the host end
    address: str  # "172.18.0.2/16"
    gateway: str
    mac: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Endpoint:
        return cls(**{k: doc[k] for k in ("id", "veth", "address", "gateway", "mac")})


def veth_name(endpoint_id: str) -> str:
    """docker's form: "veth" and 7 hex digits (the peer gets a "p"; 15 bytes at most)."""
    return "veth" + hashlib.sha256(endpoint_id.encode()).hexdigest()[:7]


def mac_for(address: IPv4Address) -> str:
    """docker's locally administered MAC: 02:42 then the four bytes of the address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in address.packed)


class DefaultBridge:
    def __init__(self, name: str = "dockyard0", bip: str | None = None) -> None:
        self.name = name
        self._bip = IPv4Interface(bip) if bip else None
        self._pool: ipam.Pool | None = None
        self._endpoints: dict[str, Endpoint] = {}
        self._lock = threading.Lock()
        self.nat = NatTable(name)

    # ------------------------------------------------------------------ the bridge

    def _ensure(self) -> ipam.Pool:
        if self._pool is not None:
            return self._pool
        gateway = self._bip or links.bridge_address(self.name)
        if gateway is None:
            subnet = ipam.choose_subnet(links.host_routes())
            gateway = IPv4Interface(f"{subnet.network_address + 1}/{subnet.prefixlen}")
        links.ensure_bridge(self.name, gateway)
        self.nat.masquerade(gateway.network, self.name)
        _enable_forwarding()
        self._pool = ipam.Pool(gateway.network, gateway.ip)
        return self._pool

    @property
    def subnet(self) -> str | None:
        return str(self._pool.subnet) if self._pool else None

    # ------------------------------------------------------------------ endpoints

    def connect(self, endpoint_id: str, netns_path: str, ip: str | None = None) -> Endpoint:
        """A veth from the bridge into the namespace, with an address (``ip``: --ip)."""
        with self._lock:
            pool = self._ensure()
            addr = pool.allocate(ip)
            try:
                ep = Endpoint(endpoint_id, veth_name(endpoint_id), f"{addr}/{pool.subnet.prefixlen}",
                              str(pool.gateway), mac_for(addr))
                links.attach_veth(ep.veth, self.name, netns_path, IPv4Interface(ep.address), pool.gateway,
                                  mac=ep.mac)
            except BaseException:
                pool.release(addr)
                raise
            self._endpoints[endpoint_id] = ep
            return ep

    def disconnect(self, endpoint_id: str) -> None:
        with self._lock:
            ep = self._endpoints.pop(endpoint_id, None)
            if ep is None:
                return
            links.delete_link(ep.veth)  # gone already when the namespace died: nothing to do
            if self._pool is not None:
                self._pool.release(IPv4Interface(ep.address).ip)

    def restore(self, endpoints: list[Endpoint]) -> None:
        """Endpoints of containers still running after a daemon restart: their addresses
        stay taken."""
        with self._lock:
            pool = self._ensure()
            for ep in endpoints:
                pool.reserve(IPv4Interface(ep.address).ip)
                self._endpoints[ep.id] = ep

    def close(self) -> bool:
        """Give the bridge and the NAT table back if no endpoint is left; whether it did."""
        with self._lock:
            if self._endpoints:
                return False
            links.delete_link(self.name)
            self.nat.remove()
            self._pool = None
            return True


def _enable_forwarding() -> None:
    """Routing between the bridge and the host's other interfaces, as dockerd turns on."""
    with open(_FORWARD) as f:
        if f.read().strip() == "1":
            return
    with open(_FORWARD, "w") as f:
        f.write("1")
