"""Published ports: the API's ``PortBindings``/``ExposedPorts``/``PublishAllPorts`` as
mappings, and host ports held by a socket bound in the daemon — bound, never listening or
read: traffic is DNATed to the container before it could reach it. The socket only keeps
the port from anyone else (another container, a host service), as docker's port allocator
does; there is no proxy process per port."""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass
from typing import Any

from dockyard.errors import Conflict, InvalidArgument


@dataclass(frozen=True)
class PortSpec:
    """What a container asks for: ``host_ip:first-last -> container_port/proto`` (host
    ports 0: any free one)."""

    proto: str
    container_port: int
    host_ip: str = ""
    first: int = 0
    last: int = 0


@dataclass(frozen=True)
class Binding:
    """A host port held for a container."""

    proto: str
    container_port: int
    host_ip: str
    host_port: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_port(key: str) -> tuple[int, str]:
    """``"80/tcp"`` (or ``"80"``) -> (80, "tcp")."""
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    try:
        n = int(port)
    except ValueError:
        raise InvalidArgument(f"invalid containerPort: {port}") from None
    if not 0 < n < 65536:
        raise InvalidArgument(f"invalid containerPort: {port}")
    return n, proto


def _host_range(text: str) -> tuple[int, int]:
    if not text:
        return 0, 0
    first, _, last = text.partition("-")
    try:
        lo, hi = int(first), int(last or first)
    except ValueError:
        raise InvalidArgument(f"invalid hostPort: {text}") from None
    if not (0 <= lo <= hi < 65536):
        raise InvalidArgument(f"invalid hostPort: {text}")
    return lo, hi


def specs(exposed: dict[str, Any] | None, bindings: dict[str, Any] | None, publish_all: bool) -> list[PortSpec]:
    """Every port to publish: the bindings given, and with ``-P`` (publish_all) each
    exposed port without one, on a free host port."""
    out: list[PortSpec] = []
    for key, entries in (bindings or {}).items():
        port, proto = split_port(key)
        for entry in entries or [{}]:
            entry = entry or {}
            host_ip = entry.get("HostIp") or ""
            if host_ip and ":" in host_ip:
                continue  # IPv6 host addresses: dockyard's networks are IPv4 only
            if host_ip:
                try:
                    socket.inet_aton(host_ip)
                except OSError:
                    raise InvalidArgument(f"invalid host IP address: {host_ip}") from None
            lo, hi = _host_range(str(entry.get("HostPort") or ""))
            out.append(PortSpec(proto, port, host_ip, lo, hi))
    if publish_all:
        bound = {(s.container_port, s.proto) for s in out}
        for key in exposed or {}:
            port, proto = split_port(key)
            if (port, proto) not in bound:
                out.append(PortSpec(proto, port))
    return [s for s in out if s.proto != "sctp"]


class PortHolder:
    """The sockets holding published host ports, per container."""

    def __init__(self) -> None:
        self._held: dict[str, list[tuple[Binding, socket.socket]]] = {}

    def _owner(self, proto: str, host_ip: str, port: int) -> str | None:
        for cid, held in self._held.items():
            for b, _sock in held:
                if b.proto == proto and b.host_port == port and (
                        b.host_ip in ("", "0.0.0.0") or host_ip in ("", "0.0.0.0") or b.host_ip == host_ip):
                    return cid
        return None

    def hold(self, cid: str, spec: PortSpec, describe: str) -> Binding:
        """Bind the host port (the first free one of the range; any free one for 0), or
        raise docker's errors (``describe``: "<ip>:<container port>", for its message)."""
        ip = spec.host_ip or "0.0.0.0"
        candidates = [0] if spec.first == 0 else list(range(spec.first, spec.last + 1))
        last_error: OSError | None = None
        for port in candidates:
            if port and self._owner(spec.proto, spec.host_ip, port):
                last_error = None
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if spec.proto == "tcp" else socket.SOCK_DGRAM)
            try:
                sock.bind((ip, port))
            except OSError as e:
                sock.close()
                last_error = e
                continue
            binding = Binding(spec.proto, spec.container_port, spec.host_ip, sock.getsockname()[1])
            self._held.setdefault(cid, []).append((binding, sock))
            return binding
        shown = f"{spec.first}" if spec.first == spec.last else f"{spec.first}-{spec.last}"
        if last_error is None:
            raise Conflict(f"Bind for {ip}:{shown} failed: port is already allocated")
        reason = (last_error.strerror or str(last_error)).lower()
        raise Conflict(f"failed to bind host port for {ip}:{shown}:{describe}/{spec.proto}: {reason}")

    def bindings(self, cid: str) -> list[Binding]:
        return [b for b, _ in self._held.get(cid, [])]

    def release(self, cid: str) -> None:
        for _b, sock in self._held.pop(cid, []):
            sock.close()

    def all(self) -> dict[str, list[Binding]]:
        return {cid: [b for b, _ in held] for cid, held in self._held.items()}
