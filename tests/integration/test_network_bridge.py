"""A bridge network's kernel side (dockyard/network/bridge.py) on the real kernel: the
bridge made on first use, endpoints into namespaces the test makes, addresses released
and reused, a second instance (a restarted daemon) taking the running endpoints over, and
everything given back."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from dockyard.errors import Conflict
from dockyard.network import links
from dockyard.network.bridge import BridgeNetwork

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netlink, namespaces)"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed"),
]
FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    names = {"bridge": f"dyb{tag}", "ns1": f"dyn1{tag}", "ns2": f"dyn2{tag}"}
    for ns in ("ns1", "ns2"):
        subprocess.run(["ip", "netns", "add", names[ns]], check=True)
    forward = FORWARD.read_text()
    try:
        yield names
    finally:
        FORWARD.write_text(forward)  # the bridge turns forwarding on (as dockerd): the host gets it back
        links.delete_link(names["bridge"])
        for ns in ("ns1", "ns2"):
            subprocess.run(["ip", "netns", "del", names[ns]], check=False)
        assert names["bridge"] not in _links()


def _ping(ns: str, address: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "2", address],
                          capture_output=True).returncode == 0


def test_bridge_network_lifecycle(env: dict[str, str]) -> None:
    br = BridgeNetwork(env["bridge"], IPv4Network("10.234.0.0/24"))
    assert not br.is_up and env["bridge"] not in _links()  # nothing until the first endpoint
    ep1 = br.connect("c1", f"/run/netns/{env['ns1']}")
    assert (ep1.address, ep1.gateway, ep1.mac, ep1.inside) == ("10.234.0.2/24", "10.234.0.1", "02:42:0a:ea:00:02",
                                                               "eth0")
    assert ep1.veth.startswith("veth") and len(ep1.veth) == 11 and ep1.veth in _links()
    assert br.is_up and FORWARD.read_text().strip() == "1"
    assert Path(f"/proc/sys/net/ipv4/conf/{env['bridge']}/route_localnet").read_text().strip() == "1"
    ep2 = br.connect("c2", f"/run/netns/{env['ns2']}", ip="10.234.0.50", mac="02:00:00:00:00:50")
    assert (ep2.address, ep2.mac) == ("10.234.0.50/24", "02:00:00:00:00:50")
    assert _ping(env["ns1"], "10.234.0.50") and _ping(env["ns2"], "10.234.0.1")
    with pytest.raises(Conflict, match="Address already in use: 10.234.0.50"):
        br.connect("c3", f"/run/netns/{env['ns1']}", ip="10.234.0.50")
    # a second network on the same namespace: eth1, no second default route
    other = BridgeNetwork(env["bridge"] + "x", IPv4Network("10.235.0.0/24"), IPv4Address("10.235.0.254"))
    try:
        ep3 = other.connect("c1", f"/run/netns/{env['ns1']}", inside=links.free_name(f"/run/netns/{env['ns1']}"),
                            default_route=False)
        assert ep3.inside == "eth1" and ep3.gateway == "10.235.0.254"
        assert links.interfaces_in(f"/run/netns/{env['ns1']}")["eth1"] == ["10.235.0.1/24"]  # .254 is the gateway
        other.disconnect("c1")
    finally:
        other.delete()

    # a restarted daemon: the running endpoints kept, their addresses taken
    again = BridgeNetwork(env["bridge"], IPv4Network("10.234.0.0/24"))
    again.restore(ep1)
    again.restore(ep2)
    assert again.is_up and again.pool.allocate() == IPv4Address("10.234.0.3")
    again.disconnect(ep2.id)
    assert ep2.veth not in _links()
    assert not _ping(env["ns1"], "10.234.0.50")
    again.disconnect(ep1.id)
    again.delete()
    assert not again.is_up and env["bridge"] not in _links()
