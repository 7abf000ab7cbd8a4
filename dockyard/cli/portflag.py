"""``-p/--publish`` and ``--expose`` as docker's CLI reads them (nat.ParsePortSpecs):
``[ip:][hostPort:]containerPort[/proto]``, ranges on either side, into the API's
ExposedPorts and PortBindings; and ``ps``'s PORTS column."""

from __future__ import annotations

from dockyard.cli.context import CLIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _range(text: str, what: str, spec: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    try:
        lo, hi = int(first), int(last) if sep else int(first)
    except ValueError:
        raise CLIError(f"invalid {what}: {text}", 125) from None
    if not (0 <= lo <= hi < 65536) or (what == "containerPort" and lo == 0):
        raise CLIError(f"invalid {what}: {text}", 125)
    return lo, hi


def parse_publish(spec: str) -> list[tuple[str, dict[str, str]]]:
    """One -p value -> [(\"80/tcp\", {\"HostIp\": ..., \"HostPort\": ...}), ...]."""
    rest, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise CLIError(f"invalid proto: {proto}", 125)
    host_ip = ""
    if rest.startswith("["):  # [ipv6]:host:container
        end = rest.find("]")
        host_ip, rest = rest[1:end], rest[end + 2:]
        parts = rest.split(":")
    else:
        parts = rest.split(":")
        if len(parts) == 3:
            host_ip, parts = parts[0], parts[1:]
        elif len(parts) > 3:
            raise CLIError(f"invalid port format: {spec}", 125)
    if len(parts) == 1:
        host, container = "", parts[0]
    else:
        host, container = parts
    if not container:
        raise CLIError(f"no port specified: {spec}<empty>", 125)
    if host_ip:
        import ipaddress

        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise CLIError(f"invalid IP address: {host_ip}", 125) from None
    c_lo, c_hi = _range(container, "containerPort", spec)
    out = []
    if host:
        h_lo, h_hi = _range(host, "hostPort", spec)
        if c_hi - c_lo != h_hi - h_lo and c_lo != c_hi:
            raise CLIError(f"invalid ranges specified for container and host Ports: {container} and {host}", 125)
    for i, port in enumerate(range(c_lo, c_hi + 1)):
        if not host:
            host_port = ""
        elif c_lo == c_hi:
            host_port = host  # a single port on one of a range of host ports
        else:
            host_port = str(h_lo + i)
        out.append((f"{port}/{proto}", {"HostIp": host_ip, "HostPort": host_port}))
    return out


def add_ports(publish: list[str], expose: list[str], config: dict[str, Any], host: dict[str, Any]) -> None:
    exposed = config.setdefault("ExposedPorts", {})
    for spec in expose:
        port, _, proto = spec.partition("/")
        lo, hi = _range(port, "containerPort", spec)
        for n in range(lo, hi + 1):
            exposed[f"{n}/{(proto or 'tcp').lower()}"] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in publish:
        for key, binding in parse_publish(spec):
            exposed[key] = {}
            bindings.setdefault(key, []).append(binding)
    if bindings:
        host["PortBindings"] = bindings
    if not exposed:
        del config["ExposedPorts"]


def ports_column(ports: list[dict[str, Any]]) -> str:
    """docker ps's PORTS: "0.0.0.0:8080->80/tcp, 443/tcp", consecutive ports collapsed
    into ranges."""
    groups: dict[tuple[str, str, int], list[tuple[int, int]]] = {}
    for p in ports:
        public = p.get("PublicPort")
        key = (p.get("IP", "") if public else "", p.get("Type", "tcp"), 1 if public else 0)
        groups.setdefault(key, []).append((p["PrivatePort"], public or 0))
    out = []
    for (ip, proto, public), pairs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        pairs.sort()
        runs: list[list[tuple[int, int]]] = []
        for pair in pairs:
            if runs and pair[0] == runs[-1][-1][0] + 1 and (not public or pair[1] == runs[-1][-1][1] + 1):
                runs[-1].append(pair)
            else:
                runs.append([pair])
        for run in runs:
            private = str(run[0][0]) if len(run) == 1 else f"{run[0][0]}-{run[-1][0]}"
            if public:
                hostports = str(run[0][1]) if len(run) == 1 else f"{run[0][1]}-{run[-1][1]}"
                out.append(f"{ip}:{hostports}->{private}/{proto}")
            else:
                out.append(f"{private}/{proto}")
    return ", ".join(out)
