"""dockyard's own nftables table (``table ip <name>``), written whole from a description of
the networks and published ports with ``nft -j`` (JSON in, JSON out) in one transaction:
nothing of ours is mixed into other tables, a daemon restart rewrites it from its state,
and removing the table removes every rule.

    prerouting   (nat)     a published port's DNAT, for traffic to any host address;
                           DNS queries to a network's gateway redirected to the embedded server
    output       (nat)     the same DNAT for the host's own connections (127.0.0.1 included)
    postrouting  (nat)     masquerade what a (non-internal) network sends out; connections
                           DNATed back into the bridge they came from, or from 127.0.0.1
    forward      (filter)  networks isolated from each other; internal ones from the world
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from dockyard.errors import Unavailable


@dataclass(frozen=True)
class BridgeRules:
    device: str
    subnet: IPv4Network
    gateway: IPv4Address
    internal: bool = False
    dns: bool = False  # its containers ask the embedded DNS server (user networks)
    masquerade: bool = True  # what it sends out leaves with the host's address


@dataclass(frozen=True)
class PortRule:
    proto: str  # "tcp" | "udp"
    host_ip: str  # "" or "0.0.0.0": every address of the host
    host_port: int
    container_ip: str
    container_port: int


def _nft(commands: list[dict[str, Any]] | None = None, *args: str) -> Any:
    nft = shutil.which("nft")
    if nft is None:
        raise Unavailable("nftables is needed for container networking: the nft command is not installed "
                          "(apt install nftables)")
    if commands is not None:
        res = subprocess.run([nft, "-j", "-f", "-"], input=json.dumps({"nftables": commands}),
                             capture_output=True, text=True)
    else:
        res = subprocess.run([nft, "-j", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise OSError(f"nft: {res.stderr.strip() or res.stdout.strip()}")
    return json.loads(res.stdout) if res.stdout.strip() else None


def tables() -> list[str]:
    """The names of the host's ``ip`` tables."""
    doc = _nft(None, "list", "tables", "ip") or {}
    return [item["table"]["name"] for item in doc.get("nftables", []) if "table" in item]


def _eq(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _field(protocol: str, name: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": name}}


def _prefix(net: IPv4Network) -> dict[str, Any]:
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


_LOCAL_DADDR = _eq({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
_DNATED = _eq({"ct": {"key": "status"}}, "dnat", op="in")
_CHAINS = (  # name, type, hook, priority (dstnat -100, srcnat 100, filter 0)
    ("prerouting", "nat", "prerouting", -100),
    ("output", "nat", "output", -100),
    ("postrouting", "nat", "postrouting", 100),
    ("forward", "filter", "forward", 0),
)


class Firewall:
    def __init__(self, table: str) -> None:
        self.table = table

    def _rule(self, chain: str, *expr: dict[str, Any]) -> dict[str, Any]:
        return {"add": {"rule": {"family": "ip", "table": self.table, "chain": chain, "expr": list(expr)}}}

    def ruleset(self, bridges: list[BridgeRules], ports: list[PortRule],
                dns_port: int | None = None) -> list[dict[str, Any]]:
        """The commands that replace the table with these rules (as one transaction)."""
        table = {"family": "ip", "name": self.table}
        cmds: list[dict[str, Any]] = [{"add": {"table": table}}, {"delete": {"table": table}},
                                      {"add": {"table": table}}]
        for name, kind, hook, prio in _CHAINS:
            cmds.append({"add": {"chain": {"family": "ip", "table": self.table, "name": name, "type": kind,
                                           "hook": hook, "prio": prio, "policy": "accept"}}})
        cmds.append({"add": {"chain": {"family": "ip", "table": self.table, "name": "ports"}}})
        rule = self._rule
        devices = [b.device for b in bridges]
        for b in bridges:
            dev_in, dev_out = _eq(_meta("iifname"), b.device), _eq(_meta("oifname"), b.device)
            if b.dns and dns_port:
                for proto in ("udp", "tcp"):
                    cmds.append(rule("prerouting", dev_in, _eq(_field("ip", "daddr"), str(b.gateway)),
                                     _eq(_field(proto, "dport"), 53), {"redirect": {"port": dns_port}}))
            if b.masquerade and not b.internal:
                cmds.append(rule("postrouting", _eq(_field("ip", "saddr"), _prefix(b.subnet)),
                                 _eq(_meta("oifname"), b.device, op="!="), {"masquerade": None}))
            # a published port asked for through the bridge's own gateway side, or from the
            # host's loopback: the container must answer through the host (conntrack undoes it)
            cmds.append(rule("postrouting", dev_in, dev_out, _DNATED, {"masquerade": None}))
            cmds.append(rule("postrouting", dev_out, _eq(_field("ip", "saddr"), _prefix(IPv4Network("127.0.0.0/8"))),
                             {"masquerade": None}))
            if b.internal:
                cmds.append(rule("forward", dev_in, _eq(_meta("oifname"), b.device, op="!="), {"drop": None}))
                cmds.append(rule("forward", dev_out, _eq(_meta("iifname"), b.device, op="!="), {"drop": None}))
        if len(devices) > 1:
            cmds.append(rule("forward", _DNATED, {"accept": None}))  # a published port: reachable from any network
            for b in bridges:
                others = [d for d in devices if d != b.device]
                cmds.append(rule("forward", _eq(_meta("iifname"), b.device),
                                 _eq(_meta("oifname"), {"set": others}), {"drop": None}))
        if ports:
            cmds.append(rule("prerouting", _LOCAL_DADDR, {"jump": {"target": "ports"}}))
            cmds.append(rule("output", _LOCAL_DADDR, {"jump": {"target": "ports"}}))
        for p in ports:
            match = [_eq(_field(p.proto, "dport"), p.host_port)]
            if p.host_ip not in ("", "0.0.0.0"):
                match.insert(0, _eq(_field("ip", "daddr"), p.host_ip))
            cmds.append(rule("ports", *match, {"dnat": {"addr": p.container_ip, "port": p.container_port}}))
        return cmds

    def apply(self, bridges: list[BridgeRules], ports: list[PortRule], dns_port: int | None = None) -> None:
        _nft(self.ruleset(bridges, ports, dns_port))

    def rules(self) -> list[dict[str, Any]]:
        doc = _nft(None, "list", "table", "ip", self.table) or {}
        return [item["rule"] for item in doc.get("nftables", []) if "rule" in item]

    def remove(self) -> bool:
        """Delete the table and everything in it; False if there was none."""
        if self.table not in tables():
            return False
        _nft([{"delete": {"table": {"family": "ip", "name": self.table}}}])
        return True
