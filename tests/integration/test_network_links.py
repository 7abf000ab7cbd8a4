"""The default bridge's pieces on the real kernel (dockyard/network): a bridge, veth pairs
into network namespaces the test makes, addresses and routes set inside them from a thread
that setns()es, and dockyard's own nftables table masquerading a bridge subnet — proved by
an "outside" namespace that has no route back to that subnet. Everything is removed and
checked gone."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from dockyard.network import links
from dockyard.network.firewall import BridgeRules, Firewall, tables
from dockyard.network.ipam import Pool

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netlink, namespaces, nftables)"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nftables is not installed (apt install nftables)"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed"),
]


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    """Unique names for this test's bridge, links, namespaces and table; all of them are
    removed afterwards, and checked gone."""
    tag = uuid.uuid4().hex[:6]
    n = {"bridge": f"dyb{tag}", "table": f"dyt{tag}", "outside": f"dyo{tag}", "veth1": f"dyv1{tag}",
         "veth2": f"dyv2{tag}", "ns1": f"dyn1{tag}", "ns2": f"dyn2{tag}", "nsout": f"dyno{tag}"}
    for ns in ("ns1", "ns2", "nsout"):
        _ip("netns", "add", n[ns])
    try:
        yield n
    finally:
        Firewall(n["table"]).remove()
        for link in ("bridge", "outside", "veth1", "veth2"):  # not left to the namespaces' (lazy) end
            links.delete_link(n[link])
        for ns in ("ns1", "ns2", "nsout"):
            subprocess.run(["ip", "netns", "del", n[ns]], check=False)
        left_links = _ip("-o", "link").split("\n")
        assert not [line for line in left_links if f"{n['bridge']}" in line or tag in line], left_links
        assert n["table"] not in tables()
        assert not any(tag in line for line in _ip("netns", "list").splitlines())


def _netns(name: str) -> str:
    return f"/run/netns/{name}"


def _ping(ns: str | None, address: object) -> bool:
    prefix = ["ip", "netns", "exec", ns] if ns else []
    return subprocess.run([*prefix, "busybox", "ping", "-c", "1", "-W", "2", str(address)],
                          capture_output=True).returncode == 0


def test_bridge_veth_and_masquerade(names: dict[str, str]) -> None:
    pool = Pool(IPv4Network("10.231.0.0/24"))
    gateway = IPv4Interface(f"{pool.gateway}/24")
    assert links.ensure_bridge(names["bridge"], gateway) is True
    assert links.ensure_bridge(names["bridge"], gateway) is False  # there already: kept as it is
    assert pool.subnet in links.host_routes()  # what the next subnet choice steers clear of

    addresses = {}
    for ns in ("ns1", "ns2"):
        addr = pool.allocate()
        addresses[ns] = addr
        links.attach_veth(names["veth" + ns[-1]], names["bridge"], _netns(names[ns]),
                          IPv4Interface(f"{addr}/24"), pool.gateway, mac="02:42:0a:e7:00:0" + ns[-1])
    inside = links.interfaces_in(_netns(names["ns1"]))
    assert inside["eth0"] == [f"{addresses['ns1']}/24"]  # (lo is the runtime's to bring up)
    assert "link/ether 02:42:0a:e7:00:01" in _ip("-n", names["ns1"], "link", "show", "eth0")
    assert f"default via {pool.gateway}" in _ip("-n", names["ns1"], "route")
    assert _ping(names["ns1"], pool.gateway)  # container -> its gateway
    assert _ping(names["ns1"], addresses["ns2"])  # container -> container on the same bridge
    assert _ping(None, addresses["ns2"])  # host -> container

    # an "outside" network the bridge subnet has no route from: only masquerading answers
    _ip("link", "add", names["outside"], "type", "veth", "peer", "name", names["outside"] + "p")
    _ip("link", "set", names["outside"] + "p", "netns", names["nsout"])
    _ip("addr", "add", "10.232.0.1/30", "dev", names["outside"])
    _ip("link", "set", names["outside"], "up")
    _ip("-n", names["nsout"], "addr", "add", "10.232.0.2/30", "dev", names["outside"] + "p")
    _ip("-n", names["nsout"], "link", "set", names["outside"] + "p", "up")
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    before = forward.read_text()
    forward.write_text("1")
    try:
        assert not _ping(names["ns1"], "10.232.0.2")  # no NAT yet: the reply has no way back
        table = Firewall(names["table"])
        table.apply([BridgeRules(names["bridge"], pool.subnet, pool.gateway)], [])
        assert _ping(names["ns1"], "10.232.0.2")
        assert any({"masquerade": None} in rule["expr"] for rule in table.rules())
        table.apply([BridgeRules(names["bridge"], pool.subnet, pool.gateway, internal=True)], [])
        assert not _ping(names["ns1"], "10.232.0.2")  # internal: nothing forwarded out of the bridge
        assert _ping(names["ns1"], addresses["ns2"])  # ... but inside it, as before
    finally:
        forward.write_text(before)

    links.delete_link(names["veth1"])  # the host end takes the peer with it
    assert "eth0" not in links.interfaces_in(_netns(names["ns1"]))


def test_attach_failures_leave_nothing(names: dict[str, str]) -> None:
    with pytest.raises(FileNotFoundError, match=f"bridge {names['bridge']} does not exist"):
        links.attach_veth(names["veth1"], names["bridge"], _netns(names["ns1"]), IPv4Interface("10.231.0.2/24"), None)
    links.ensure_bridge(names["bridge"], IPv4Interface("10.231.0.1/24"))
    with pytest.raises(OSError):  # the namespace is not there: the pair made first is removed
        links.attach_veth(names["veth1"], names["bridge"], "/run/netns/no-such-ns", IPv4Interface("10.231.0.2/24"),
                          None)
    with pytest.raises(OSError):  # an address the kernel refuses inside: the same
        links.attach_veth(names["veth2"], names["bridge"], _netns(names["ns2"]), IPv4Interface("10.231.0.2/24"),
                          IPv4Address("10.99.99.99"))  # a gateway off the subnet: no route to it
    assert not any(names["veth1"] in line or names["veth2"] in line for line in _ip("-o", "link").splitlines())
    assert "eth0" not in links.interfaces_in(_netns(names["ns2"]))
