"""dockyard's own nftables table, driven with ``nft -j`` (JSON in and out): created and
removed whole, so nothing of ours is mixed into other tables and nothing stays behind."""

from __future__ import annotations

import json
import shutil
import subprocess
from ipaddress import IPv4Network
from typing import Any

from dockyard.errors import Unavailable


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


class NatTable:
    """``table ip <name>``: a postrouting NAT chain masquerading what each bridge subnet
    sends out through any other interface."""

    def __init__(self, name: str) -> None:
        self.name = name

    def ensure(self) -> None:
        table = {"family": "ip", "name": self.name}
        _nft([
            {"add": {"table": table}},
            {"add": {"chain": {**table, "table": self.name, "name": "postrouting", "type": "nat",
                               "hook": "postrouting", "prio": 100, "policy": "accept"}}},
        ])

    def masquerade(self, subnet: IPv4Network, bridge: str) -> None:
        self.ensure()
        _nft([{"add": {"rule": {"family": "ip", "table": self.name, "chain": "postrouting", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                       "right": {"prefix": {"addr": str(subnet.network_address), "len": subnet.prefixlen}}}},
            {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": bridge}},
            {"masquerade": None},
        ]}}}])

    def rules(self) -> list[dict[str, Any]]:
        doc = _nft(None, "list", "table", "ip", self.name) or {}
        return [item["rule"] for item in doc.get("nftables", []) if "rule" in item]

    def remove(self) -> bool:
        """Delete the table and everything in it; False if there was none."""
        if self.name not in tables():
            return False
        _nft([{"delete": {"table": {"family": "ip", "name": self.name}}}])
        return True
