"""Subnet choice and address allocation (dockyard/network/ipam.py)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from dockyard.errors import Conflict, InvalidArgument, Unavailable
from dockyard.network.ipam import DOCKER0, Pool, choose_subnet, parse_subnet


def test_choose_subnet_avoids_host_routes_and_docker0() -> None:
    assert choose_subnet([]) == IPv4Network("172.18.0.0/16")
    used = [IPv4Network("172.16.0.0/12")]  # a host route covering every 172.16-31 candidate
    assert choose_subnet(used) == IPv4Network("192.168.0.0/20")
    assert choose_subnet([], [DOCKER0, IPv4Network("10.1.0.0/24")]) == IPv4Network("10.1.0.0/24")
    with pytest.raises(Unavailable, match="non-overlapping IPv4 address pool"):
        choose_subnet([IPv4Network("0.0.0.0/0")])


def test_pool_hands_out_addresses_round_robin_and_refuses_when_full() -> None:
    pool = Pool(IPv4Network("10.9.0.0/29"))  # .1 gateway, .2-.6 usable
    assert pool.gateway == IPv4Address("10.9.0.1")
    got = [pool.allocate() for _ in range(5)]
    assert got == [IPv4Address(f"10.9.0.{n}") for n in range(2, 7)]
    with pytest.raises(Unavailable, match="no available IPv4 addresses on this network's address pools"):
        pool.allocate()
    pool.release(IPv4Address("10.9.0.3"))
    assert pool.allocate() == IPv4Address("10.9.0.3")
    pool.release(IPv4Address("10.9.0.1"))  # the gateway is never released
    assert pool.in_use == 5


def test_pool_fixed_addresses_ranges_and_bad_input() -> None:
    pool = Pool(IPv4Network("10.9.0.0/24"), IPv4Address("10.9.0.254"), IPv4Network("10.9.0.128/25"))
    assert pool.allocate() == IPv4Address("10.9.0.128")
    assert pool.allocate("10.9.0.7") == IPv4Address("10.9.0.7")  # --ip: anywhere in the subnet
    with pytest.raises(Conflict, match="Address already in use: 10.9.0.7"):
        pool.allocate("10.9.0.7")
    with pytest.raises(InvalidArgument, match="no configured subnet or ip-range contain the IP address 10.8.0.1"):
        pool.allocate("10.8.0.1")
    with pytest.raises(Conflict):
        pool.allocate("10.9.0.254")  # the gateway
    with pytest.raises(InvalidArgument, match="no matching subnet for gateway 10.10.0.1"):
        Pool(IPv4Network("10.9.0.0/24"), IPv4Address("10.10.0.1"))
    with pytest.raises(InvalidArgument, match="no matching subnet for range 10.10.0.0/25"):
        Pool(IPv4Network("10.9.0.0/24"), ip_range=IPv4Network("10.10.0.0/25"))
    with pytest.raises(InvalidArgument, match="invalid subnet 10.9.0.1/24"):
        parse_subnet("10.9.0.1/24")
    restored = Pool(IPv4Network("10.9.0.0/29"))
    restored.reserve(IPv4Address("10.9.0.2"))  # an endpoint from before a restart
    assert restored.allocate() == IPv4Address("10.9.0.3")
