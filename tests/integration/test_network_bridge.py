"""The default bridge network (dockyard/network/bridge.py) on the real kernel: made on first
use, endpoints into namespaces the test makes, addresses released and reused, a second
instance (a restarted daemon) taking the bridge's subnet and the running endpoints over,
and bridge and NAT table given back once no endpoint is left."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from dockyard.errors import Conflict
from dockyard.network import links
from dockyard.network.bridge import DefaultBridge, veth_name
from dockyard.network.nat import tables

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netlink, namespaces, nftables)"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nftables is not installed (apt install nftables)"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed"),
]
FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


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
        for ep in ("c1", "c2", "c3"):
            links.delete_link(veth_name(ep + names["bridge"]))
        links.delete_link(names["bridge"])
        subprocess.run(["nft", "delete", "table", "ip", names["bridge"]], capture_output=True)
        for ns in ("ns1", "ns2"):
            subprocess.run(["ip", "netns", "del", names[ns]], check=False)
        assert names["bridge"] not in tables()
        assert names["bridge"] not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def _ping(ns: str, address: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "2", address],
                          capture_output=True).returncode == 0


def test_default_bridge_lifecycle(env: dict[str, str]) -> None:
    br = DefaultBridge(env["bridge"], bip="10.234.0.1/24")
    assert br.subnet is None and env["bridge"] not in tables()  # nothing until the first endpoint
    ep1 = br.connect("c1" + env["bridge"], f"/run/netns/{env['ns1']}")
    assert (ep1.address, ep1.gateway, ep1.mac) == ("10.234.0.2/24", "10.234.0.1", "02:42:0a:ea:00:02")
    assert ep1.veth == veth_name("c1" + env["bridge"]) and len(ep1.veth) == 11
    assert env["bridge"] in tables() and FORWARD.read_text().strip() == "1"
    ep2 = br.connect("c2" + env["bridge"], f"/run/netns/{env['ns2']}", ip="10.234.0.50")
    assert ep2.address == "10.234.0.50/24"
    assert _ping(env["ns1"], "10.234.0.50") and _ping(env["ns2"], "10.234.0.1")
    with pytest.raises(Conflict, match="Address already in use: 10.234.0.50"):
        br.connect("c3" + env["bridge"], f"/run/netns/{env['ns1']}", ip="10.234.0.50")

    # a restarted daemon: no --bip, the bridge's own subnet; the running endpoints kept
    again = DefaultBridge(env["bridge"])
    again.restore([ep1, ep2])
    assert again.subnet == "10.234.0.0/24"
    assert again.close() is False  # endpoints left: the bridge stays
    again.disconnect(ep2.id)
    assert ep2.veth not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not _ping(env["ns1"], "10.234.0.50")
    again.disconnect(ep1.id)
    assert again.close() is True
    assert env["bridge"] not in tables()
    assert links.bridge_address(env["bridge"]) is None


def test_default_subnet_is_chosen_clear_of_the_hosts_routes(env: dict[str, str]) -> None:
    br = DefaultBridge(env["bridge"])
    ep = br.connect("c1" + env["bridge"], f"/run/netns/{env['ns1']}")
    subnet = IPv4Network(br.subnet)
    assert subnet.prefixlen in (16, 20) and not subnet.overlaps(IPv4Network("172.17.0.0/16"))
    others = [r for r in links.host_routes() if r != subnet]
    assert not any(subnet.overlaps(r) for r in others)
    assert _ping(env["ns1"], str(subnet.network_address + 1))
    br.disconnect(ep.id)
    assert br.close() is True
