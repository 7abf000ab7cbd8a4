"""The network service: docker's networks (the default ``bridge``, ``host``, ``none`` and
user-defined bridge networks), containers' endpoints on them, published ports, the
firewall table and the embedded DNS server.

Who owns what:
- a user network's definition is a JSON file under ``<data-root>/network``; the default
  bridge's comes from the daemon's flags (``-b``, ``--bip``);
- a container's network settings live in its record (``extra["Networks"]``: per network
  the configuration asked for and, while it runs, its endpoint; ``extra["Ports"]``);
- the kernel side (bridges, veths, the nftables table, port-holding sockets, the DNS
  socket) is made on first need and given back when nothing uses it.

The container service calls ``attach`` between the supervisor's create and start (the
namespace exists, nothing runs yet) and ``detach`` once the container has exited.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from dockyard.errors import (
    Conflict,
    DockyardError,
    Forbidden,
    InvalidArgument,
    NotFound,
)
from dockyard.labels import label_matches
from dockyard.logs import format_time

log = logging.getLogger("dockyard.networks")

PREDEFINED = ("bridge", "host", "none")
# docker's bridge driver options dockyard applies
_BRIDGE_NAME = "com.docker.network.bridge.name"
_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
_LIST_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")
# a container's network settings hold what was asked for (kept while it is stopped) and,
# while it runs, its endpoint:
_LIVE_KEYS = ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "Veth", "Inside", "Mac")


def mode_network(mode: str) -> str | None:
    """The network a NetworkMode connects to ("default" is the bridge); None for the modes
    without one (host, none, container:<id>)."""
    if mode in ("", "default"):
        return "bridge"
    if mode in ("host", "none") or mode.startswith("container:"):
        return None
    return mode


def _now() -> str:
    return format_time(time.time_ns())


class NetworkService:
    def __init__(self, engine: Any) -> None:
        self.engine = engine
        config = engine.config
        self.dir = os.path.join(config.data_root, "network")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.default_device = config.bridge or "dockyard0"
        self._bip = IPv4Interface(config.bip) if config.bip else None
        self._marker = os.path.join(config.exec_root, "network-state")
        self._lock = threading.RLock()
        self._records: dict[str, dict[str, Any]] = self._load()
        self._bridges: dict[str, Any] = {}  # network id -> BridgeNetwork, made on first need
        self._ports: Any = None  # PortHolder
        self._firewall: Any = None
        self._dns: Any = None
        self._dns_port = 0
        # container id -> {network id: Endpoint}; and what DNS answers from
        self._attached: dict[str, dict[str, Any]] = {}
        self._dns_names: dict[str, dict[str, list[str]]] = {}  # network id -> name -> addresses
        self._by_ip: dict[str, tuple[str, list[str], list[str]]] = {}  # ip -> (cid, network ids, --dns)
        self._bridge_record: dict[str, Any] | None = None

    # ------------------------------------------------------------------ records

    def _load(self) -> dict[str, dict[str, Any]]:
        out = {}
        for entry in os.listdir(self.dir):
            if entry.endswith(".json"):
                with open(os.path.join(self.dir, entry)) as f:
                    doc = json.load(f)
                out[doc["Id"]] = doc
        return out

    def _store(self, doc: dict[str, Any]) -> None:
        path = os.path.join(self.dir, doc["Id"] + ".json")
        with open(path + ".tmp", "w") as f:
            json.dump(doc, f)
        os.replace(path + ".tmp", path)

    def _predefined_id(self, name: str) -> str:
        return hashlib.sha256(f"{self.engine.id}/{name}".encode()).hexdigest()

    def _default_bridge(self) -> dict[str, Any]:
        """The default bridge's definition; its subnet is --bip, the one its device already
        has (a daemon restarted with containers running), or the first free one."""
        if self._bridge_record is not None:
            return self._bridge_record
        from dockyard.network import ipam, links

        gateway = self._bip or links.bridge_address(self.default_device)
        if gateway is None:
            used = links.host_routes() + [IPv4Network(c["Subnet"]) for r in self._records.values()
                                          for c in r["IPAM"]["Config"]]
            subnet = ipam.choose_subnet(used)
            gateway = IPv4Interface(f"{subnet.network_address + 1}/{subnet.prefixlen}")
        self._bridge_record = {
            "Name": "bridge", "Id": self._predefined_id("bridge"), "Created": format_time(int(self.engine.started * 1e9)),
            "Scope": "local", "Driver": "bridge", "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None,
                     "Config": [{"Subnet": str(gateway.network), "Gateway": str(gateway.ip)}]},
            "Internal": False, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Options": {"com.docker.network.bridge.default_bridge": "true",
                        "com.docker.network.bridge.enable_icc": "true",
                        "com.docker.network.bridge.enable_ip_masquerade": "true",
                        "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                        "com.docker.network.bridge.name": self.default_device,
                        "com.docker.network.driver.mtu": "1500"},
            "Labels": {},
        }
        return self._bridge_record

    def _simple(self, name: str) -> dict[str, Any]:
        return {"Name": name, "Id": self._predefined_id(name), "Created": format_time(int(self.engine.started * 1e9)),
                "Scope": "local", "Driver": "host" if name == "host" else "null", "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": None, "Config": []}, "Internal": False,
                "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                "Options": {}, "Labels": {}}

    def _all(self) -> list[dict[str, Any]]:
        return [self._default_bridge(), self._simple("host"), self._simple("none"), *self._records.values()]

    def lookup(self, ref: str) -> dict[str, Any]:
        """docker's order: exact ID, exact name, then a unique ID prefix."""
        if not isinstance(ref, str) or not ref:
            raise NotFound(f"network {ref} not found")
        with self._lock:
            if ref in PREDEFINED:
                return self._default_bridge() if ref == "bridge" else self._simple(ref)
            nets = self._all()
            for pick in (lambda n: n["Id"] == ref, lambda n: n["Name"] == ref, lambda n: n["Id"].startswith(ref)):
                found = [n for n in nets if pick(n)]
                if len(found) > 1:
                    raise InvalidArgument(f"network {ref} is ambiguous ({len(found)} matches found on name)")
                if found:
                    return found[0]
        raise NotFound(f"network {ref} not found")

    def _device(self, net: dict[str, Any]) -> str:
        if net["Name"] == "bridge":
            return self.default_device
        return (net.get("Options") or {}).get(_BRIDGE_NAME) or "br-" + net["Id"][:12]

    # ------------------------------------------------------------------ the API

    def create(self, body: Any) -> dict[str, Any]:
        from dockyard.network import ipam, links

        if not isinstance(body, dict):
            raise InvalidArgument("invalid JSON: the body must be an object")
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("network name is required")
        if name in PREDEFINED:
            raise Forbidden(f"operation is not permitted on predefined {name} network ")
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            raise NotFound(f'plugin "{driver}" not found')
        if body.get("EnableIPv6"):
            raise InvalidArgument("dockyard's networks are IPv4 only: EnableIPv6 is not supported")
        ipam_doc = body.get("IPAM") or {}
        configs = [c for c in ipam_doc.get("Config") or [] if c]
        if len(configs) > 1:
            raise InvalidArgument("dockyard's bridge networks take one IPAM pool (one --subnet)")
        conf = configs[0] if configs else {}
        labels = body.get("Labels") or {}
        if not isinstance(labels, dict):
            raise InvalidArgument("Labels must be an object of strings")
        options = body.get("Options") or {}
        if not isinstance(options, dict) or not all(isinstance(v, str) for v in options.values()):
            raise InvalidArgument("Options must be an object of strings")
        device = options.get(_BRIDGE_NAME)
        if device is not None and (not device or len(device) > 15 or "/" in device or " " in device):
            raise InvalidArgument(f"invalid bridge name {device!r}: at most 15 characters, no '/' or spaces")
        if options.get(_MASQUERADE, "true") not in ("true", "false"):
            raise InvalidArgument(f"invalid value for {_MASQUERADE}: {options[_MASQUERADE]!r} (true or false)")
        with self._lock:
            if any(n["Name"] == name for n in self._records.values()):
                raise Conflict(f"network with name {name} already exists")
            if device is not None and device in {self.default_device, *map(self._device, self._records.values())}:
                raise Conflict(f"bridge name {device} is already used by another network")
            others = [IPv4Network(c["Subnet"]) for n in self._all() if n["Driver"] == "bridge"
                      for c in n["IPAM"]["Config"]]
            if conf.get("Subnet"):
                subnet = ipam.parse_subnet(conf["Subnet"])
                if any(subnet.overlaps(o) for o in others):
                    raise Forbidden("invalid pool request: Pool overlaps with other one on this address space")
            elif conf.get("Gateway") or conf.get("IPRange"):
                raise InvalidArgument("a gateway or an ip-range needs a subnet (--subnet)")
            else:
                subnet = ipam.choose_subnet(links.host_routes() + others)
            try:
                gateway = IPv4Address(conf["Gateway"]) if conf.get("Gateway") else None
                ip_range = IPv4Network(conf["IPRange"]) if conf.get("IPRange") else None
            except ValueError as e:
                raise InvalidArgument(f"invalid IPAM configuration: {e}") from None
            pool = ipam.Pool(subnet, gateway, ip_range)  # validates gateway and range
            entry = {"Subnet": str(subnet), "Gateway": str(pool.gateway)}
            if ip_range is not None:
                entry["IPRange"] = str(ip_range)
            nid = secrets.token_hex(32)
            doc = {
                "Name": name, "Id": nid, "Created": _now(), "Scope": "local", "Driver": "bridge",
                "EnableIPv6": False,
                "IPAM": {"Driver": ipam_doc.get("Driver") or "default", "Options": ipam_doc.get("Options") or {},
                         "Config": [entry]},
                "Internal": bool(body.get("Internal")), "Attachable": bool(body.get("Attachable")),
                "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                "Options": options, "Labels": labels,
            }
            self._store(doc)
            self._records[nid] = doc
        self.engine.events.emit("network", "create", nid, {"name": name, "type": "bridge"})
        return {"Id": nid, "Warning": ""}

    def _users(self, nid: str) -> list[str]:
        """The names of the running containers with an endpoint on the network."""
        names = []
        for cid, eps in self._attached.items():
            if nid in eps:
                with contextlib.suppress(NotFound):
                    names.append(self.engine.containers.lookup(cid).name.lstrip("/"))
        return names

    def inspect(self, ref: str, verbose: bool = False) -> dict[str, Any]:
        with self._lock:
            net = dict(self.lookup(ref))
            containers = {}
            for cid, eps in self._attached.items():
                ep = eps.get(net["Id"])
                if ep is None:
                    continue
                with contextlib.suppress(NotFound):
                    rec = self.engine.containers.lookup(cid)
                    containers[cid] = {"Name": rec.name.lstrip("/"), "EndpointID": ep.id, "MacAddress": ep.mac,
                                       "IPv4Address": ep.address, "IPv6Address": ""}
            net["Containers"] = containers
            return net

    def list(self, flt: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        flt = flt or {}
        for key in flt:
            if key not in _LIST_FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        out = []
        with self._lock:
            for net in self._all():
                if self._matches(net, flt):
                    out.append({**net, "Containers": {}})
        return out

    def _matches(self, net: dict[str, Any], flt: dict[str, list[str]]) -> bool:
        for key, values in flt.items():
            if key == "name" and not any(v in net["Name"] for v in values):
                return False
            if key == "id" and not any(net["Id"].startswith(v) for v in values):
                return False
            if key == "driver" and net["Driver"] not in values:
                return False
            if key == "scope" and net["Scope"] not in values:
                return False
            if key == "label" and not all(label_matches(net["Labels"], v) for v in values):
                return False
            if key == "type":
                kind = "builtin" if net["Name"] in PREDEFINED else "custom"
                for v in values:
                    if v not in ("builtin", "custom"):
                        raise InvalidArgument(f"invalid filter: 'type'='{v}'")
                if kind not in values:
                    return False
            if key == "dangling":
                dangling = values[-1].lower() in ("true", "1")
                if values[-1].lower() not in ("true", "1", "false", "0"):
                    raise InvalidArgument(f"invalid filter 'dangling={values[-1]}'")
                if net["Name"] in PREDEFINED or dangling == bool(self._users(net["Id"])):
                    return False
        return True

    def remove(self, ref: str) -> None:
        with self._lock:
            net = self.lookup(ref)
            if net["Name"] in PREDEFINED:
                raise Forbidden(f"{net['Name']} is a pre-defined network and cannot be removed")
            users = self._users(net["Id"])
            if users:
                plural = "s" if len(users) > 1 else ""
                raise Conflict(f"error while removing network: network {net['Name']} has {len(users)} active "
                               f"endpoint{plural} ({', '.join(users)})")
            bridge = self._bridges.pop(net["Id"], None)
            if bridge is not None and bridge.is_up:
                bridge.delete()
                self._sync_firewall()
            self._dns_names.pop(net["Id"], None)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.dir, net["Id"] + ".json"))
            del self._records[net["Id"]]
        self.engine.events.emit("network", "destroy", net["Id"], {"name": net["Name"], "type": "bridge"})

    def prune(self, flt: dict[str, list[str]] | None = None) -> dict[str, Any]:
        from dockyard.logs import parse_time

        flt = flt or {}
        for key in flt:
            if key not in ("until", "label", "label!"):
                raise InvalidArgument(f"invalid filter '{key}'")
        deleted = []
        for net in list(self._records.values()):
            if flt.get("until"):
                from dockyard.daemon.api.events import parse_event_time

                if parse_time(net["Created"]) >= parse_event_time(flt["until"][-1]):
                    continue
            if not all(label_matches(net["Labels"], v) for v in flt.get("label", [])):
                continue
            if any(label_matches(net["Labels"], v) for v in flt.get("label!", [])):
                continue
            try:
                self.remove(net["Id"])
            except (Conflict, NotFound):
                continue
            deleted.append(net["Name"])
        return {"NetworksDeleted": deleted or None}

    # ------------------------------------------------------------------ containers' settings

    def settings_for_create(self, host_config: dict[str, Any], networking: Any) -> dict[str, dict[str, Any]]:
        """A new container's ``extra["Networks"]``: its NetworkMode's network first, with
        the EndpointsConfig given for it (--ip, --network-alias, --mac-address), then the
        other networks EndpointsConfig names (API 1.44+: several at create), validated."""
        mode = host_config.get("NetworkMode") or "default"
        name = mode_network(mode)
        endpoints = (networking or {}).get("EndpointsConfig") or {} if isinstance(networking, dict) else {}
        if not isinstance(endpoints, dict):
            raise InvalidArgument("invalid JSON: NetworkingConfig.EndpointsConfig must be an object")
        if name is None:
            return {}

        def find(ref: str) -> dict[str, Any]:
            try:
                return self.lookup(ref)
            except NotFound as e:  # not a 404 at create: docker's CLI would take it for a missing image
                raise InvalidArgument(str(e)) from None

        net = find(name)
        first_keys = {name, mode, net["Id"]}
        out = {net["Name"]: self._endpoint_config(net, next((endpoints[k] for k in first_keys if endpoints.get(k)), {}))}
        for key, cfg in endpoints.items():
            if key in first_keys or key == "default":
                continue
            other = find(key)
            if other["Name"] in out:
                continue
            if other["Driver"] != "bridge":
                raise InvalidArgument(f"container cannot be connected to network {other['Name']} and to "
                                      f"{net['Name']} at once")
            out[other["Name"]] = self._endpoint_config(other, cfg)
        return out

    def _endpoint_config(self, net: dict[str, Any], cfg: Any) -> dict[str, Any]:
        if not isinstance(cfg, dict):
            raise InvalidArgument("invalid JSON: an EndpointsConfig entry must be an object")
        ipam_cfg = cfg.get("IPAMConfig") or {}
        ip = ipam_cfg.get("IPv4Address") or ""
        aliases = [a for a in cfg.get("Aliases") or [] if a]
        user = net["Name"] not in PREDEFINED
        if ip and not user:
            raise InvalidArgument("user specified IP address is supported on user defined networks only")
        if aliases and not user:
            raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
        if ip:
            try:
                addr = IPv4Address(ip)
            except ValueError:
                raise InvalidArgument(f"invalid IPv4 address: {ip}") from None
            subnet = IPv4Network(net["IPAM"]["Config"][0]["Subnet"])
            if addr not in subnet:
                raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {ip}")
        mac = cfg.get("MacAddress") or ""
        if mac:
            parts = mac.split(":")
            if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
                raise InvalidArgument(f"invalid MAC address: {mac}")
        return {"NetworkID": net["Id"], "Aliases": aliases or None,
                "IPAMConfig": {"IPv4Address": ip} if ip else None, "MacAddress": mac, "DriverOpts": None,
                "Links": None}

    # ------------------------------------------------------------------ kernel side

    def _bridge(self, net: dict[str, Any]) -> Any:
        from dockyard.network.bridge import BridgeNetwork

        bridge = self._bridges.get(net["Id"])
        if bridge is None:
            conf = net["IPAM"]["Config"][0]
            bridge = BridgeNetwork(self._device(net), IPv4Network(conf["Subnet"]), IPv4Address(conf["Gateway"]),
                                   IPv4Network(conf["IPRange"]) if conf.get("IPRange") else None)
            self._bridges[net["Id"]] = bridge
        return bridge

    def _holder(self) -> Any:
        if self._ports is None:
            from dockyard.network.ports import PortHolder

            self._ports = PortHolder()
        return self._ports

    def _ensure_dns(self) -> None:
        if self._dns is None:
            from dockyard.network.dns import DnsServer

            self._dns = DnsServer(self._dns_lookup, self._dns_upstreams, self._dns_reverse)
            self._dns_port = self._dns.start()

    def _sync_firewall(self) -> None:
        """The firewall table as the networks that are up and the published ports are."""
        from dockyard.network.firewall import BridgeRules, Firewall, PortRule

        if self._firewall is None:
            self._firewall = Firewall(self.default_device)
        nets = {n["Id"]: n for n in self._all()}
        bridges = [BridgeRules(b.device, b.subnet, b.gateway, internal=bool(nets.get(nid, {}).get("Internal")),
                               dns=nets.get(nid, {}).get("Name") not in PREDEFINED,
                               masquerade=(nets.get(nid, {}).get("Options") or {}).get(_MASQUERADE) != "false")
                   for nid, b in self._bridges.items() if b.is_up]
        ports = []
        for cid, bindings in (self._ports.all() if self._ports else {}).items():
            target = self._port_target(cid)
            if target is None:
                continue
            ports += [PortRule(b.proto, b.host_ip, b.host_port, target, b.container_port) for b in bindings]
        if not bridges:
            self._firewall.remove()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._marker)
            return
        with open(self._marker, "w") as f:
            f.write(self.default_device)
        if any(b.dns for b in bridges):
            self._ensure_dns()
        self._firewall.apply(bridges, ports, self._dns_port or None)

    def _port_target(self, cid: str) -> str | None:
        """Published ports go to the container's address on its first network."""
        eps = self._attached.get(cid) or {}
        for ep in eps.values():
            return ep.ip
        return None

    # ------------------------------------------------------------------ endpoints

    def attach(self, rec: Any, pid: int) -> None:
        """Connect the container (created, not started: its init is ``pid``) to its
        networks and publish its ports; ``rec.extra`` gets the endpoints. On failure
        nothing of it is left (no veth, address, port or rule)."""
        from dockyard.network import ports

        settings = rec.extra.get("Networks") or {}
        if not settings:
            return
        netns = f"/proc/{pid}/ns/net"
        with self._lock:
            self._detach_locked(rec)  # a previous run's, should its release not have come yet
            try:
                changed = False
                for index, (name, cfg) in enumerate(settings.items()):
                    net = self.lookup(cfg.get("NetworkID") or name)
                    # a new namespace has lo (1) only: eth0 gets 2, eth1 3, ...
                    changed |= self._connect_locked(rec, net, cfg, netns, f"eth{index}", first=index == 0,
                                                    inside_index=2 + index)
                wanted = ports.specs(rec.config.get("ExposedPorts"), rec.host_config.get("PortBindings"),
                                     bool(rec.host_config.get("PublishAllPorts")))
                if wanted:
                    holder = self._holder()
                    target = self._port_target(rec.id)
                    for spec in wanted:
                        holder.hold(rec.id, spec, f"{target}:{spec.container_port}")
                    rec.extra["Ports"] = [b.to_dict() for b in holder.bindings(rec.id)]
                    changed = True
                if changed:
                    self._sync_firewall()
            except BaseException:
                with contextlib.suppress(Exception):
                    self._detach_locked(rec)
                raise

    def _connect_locked(self, rec: Any, net: dict[str, Any], cfg: dict[str, Any], netns: str, inside: str,
                        first: bool, inside_index: int | None = None) -> bool:
        """One endpoint (``first``: the container's first network, which gives it its
        default route unless internal); True if its bridge came up now (the firewall
        must follow)."""
        if net["Driver"] != "bridge":
            return False
        bridge = self._bridge(net)
        came_up = not bridge.is_up
        ip = (cfg.get("IPAMConfig") or {}).get("IPv4Address") or None
        ep = bridge.connect(secrets.token_hex(32), netns, ip=ip, mac=cfg.get("MacAddress") or None, inside=inside,
                            default_route=first and not net["Internal"], inside_index=inside_index)
        self._attached.setdefault(rec.id, {})[net["Id"]] = ep
        cfg.update(EndpointID=ep.id, Gateway=ep.gateway, IPAddress=ep.ip,
                   IPPrefixLen=int(ep.address.split("/")[1]), Veth=ep.veth, Inside=ep.inside, Mac=ep.mac)
        self._name(rec, net, cfg, ep.ip)
        self._index(rec)
        return came_up

    def _index(self, rec: Any) -> None:
        """Who asks the DNS server from each of the container's addresses: the container,
        its networks (whose names it sees) and its --dns servers."""
        eps = self._attached.get(rec.id) or {}
        for ep in eps.values():
            self._by_ip[ep.ip] = (rec.id, list(eps), list(rec.host_config.get("Dns") or []))

    def _name(self, rec: Any, net: dict[str, Any], cfg: dict[str, Any], ip: str) -> None:
        """What the embedded DNS answers with ``ip`` on a user network: the container's
        name, short ID and aliases."""
        if net["Name"] in PREDEFINED:
            return
        names = self._dns_names.setdefault(net["Id"], {})
        for n in dict.fromkeys(n.lower() for n in [rec.name.lstrip("/"), rec.id[:12], *(cfg.get("Aliases") or [])]):
            names.setdefault(n, []).append(ip)

    def _unname(self, nid: str, ip: str) -> None:
        self._by_ip.pop(ip, None)
        names = self._dns_names.get(nid) or {}
        for n in list(names):
            names[n] = [a for a in names[n] if a != ip]
            if not names[n]:
                del names[n]

    @staticmethod
    def _clear_live(rec: Any) -> None:
        """The record forgets its run's endpoints and ports (what was asked for stays)."""
        for cfg in (rec.extra.get("Networks") or {}).values():
            for key in _LIVE_KEYS:
                cfg.pop(key, None)
        rec.extra.pop("Ports", None)

    def detach(self, rec: Any) -> None:
        """Release what the container's last run had (veths, addresses, ports, rules);
        ``rec.extra`` forgets the endpoints. The veths are deleted after the service's
        lock is released: other containers' attaches do not wait for the kernel."""
        from dockyard.network import links

        with self._lock:
            gone = self._detach_locked(rec, defer=True)
        for bridge, ep in gone:
            try:
                links.delete_link(ep.veth, shared=False)
            finally:
                bridge.free(ep)

    def _detach_locked(self, rec: Any, defer: bool = False) -> list[tuple[Any, Any]]:
        """Forget the container's endpoints and ports; returns (bridge, endpoint) pairs
        whose veth is to be deleted and address freed, or does both now unless ``defer``."""
        gone = []
        eps = self._attached.pop(rec.id, {})
        had_ports = self._ports is not None and bool(self._ports.bindings(rec.id))
        if self._ports is not None:
            self._ports.release(rec.id)
        for nid, ep in eps.items():
            self._unname(nid, ep.ip)
            bridge = self._bridges.get(nid)
            if bridge is None:
                continue
            if defer:
                if bridge.take(ep.id) is not None:
                    gone.append((bridge, ep))
            else:
                bridge.disconnect(ep.id)
        self._clear_live(rec)
        if had_ports:
            self._sync_firewall()
        return gone

    def endpoint_of(self, rec: Any) -> dict[str, Any] | None:
        """The settings of the container's first network while it runs (its address)."""
        for cfg in (rec.extra.get("Networks") or {}).values():
            if cfg.get("IPAddress"):
                return cfg
        return None

    def host_gateway(self) -> str:
        """``--add-host name:host-gateway``: the default bridge's gateway address."""
        with self._lock:
            return str(self._default_bridge()["IPAM"]["Config"][0]["Gateway"])

    def embedded_dns(self, rec: Any) -> str | None:
        """The nameserver a container's resolv.conf names: its first user network's
        gateway (the embedded server answers there), or None (the host's resolvers)."""
        for name, cfg in (rec.extra.get("Networks") or {}).items():
            if name not in PREDEFINED and cfg.get("Gateway"):
                return str(cfg["Gateway"])
        return None

    # ------------------------------------------------------------------ connect / disconnect

    def connect(self, ref: str, body: Any, update: Callable[[str, Callable[[Any], None]], Any]) -> None:
        """``network connect``: a running container gets an endpoint now; any other keeps the
        setting for its next start. ``update(container, fn)`` applies ``fn`` to the record
        under the container's lock and saves it."""
        if not isinstance(body, dict) or not body.get("Container"):
            raise InvalidArgument("a container is required")
        net = self.lookup(ref)
        if net["Name"] in ("host", "none"):
            raise Forbidden(f"container cannot be disconnected from host network or connected to {net['Name']} network")

        def apply(rec: Any) -> None:
            mode = rec.host_config.get("NetworkMode") or "default"
            if mode in ("host", "none") or mode.startswith("container:"):
                raise Forbidden("container sharing network namespace with another container or host cannot be "
                                "connected to any other network" if mode != "none" else
                                "container cannot be connected to multiple networks with one of the networks in "
                                "private (none) mode")
            settings = rec.extra.setdefault("Networks", {})
            if net["Name"] in settings:
                raise Forbidden(f"endpoint with name {rec.name.lstrip('/')} already exists in network {net['Name']}")
            cfg = self._endpoint_config(net, body.get("EndpointConfig") or {})
            if rec.running:
                from dockyard.network import links

                with self._lock:
                    netns = f"/proc/{rec.pid}/ns/net"
                    came_up = self._connect_locked(rec, net, cfg, netns, links.free_name(netns),
                                                   first=not self._attached.get(rec.id))
                    if came_up:
                        self._sync_firewall()
            settings[net["Name"]] = cfg

        rec = update(body["Container"], apply)
        self.engine.events.emit("network", "connect", net["Id"], {"container": rec.id, "name": net["Name"],
                                                                  "type": net["Driver"]})

    def disconnect(self, ref: str, body: Any, update: Callable[[str, Callable[[Any], None]], Any]) -> None:
        if not isinstance(body, dict) or not body.get("Container"):
            raise InvalidArgument("a container is required")
        net = self.lookup(ref)

        def apply(rec: Any) -> None:
            settings = rec.extra.get("Networks") or {}
            cfg = settings.get(net["Name"])
            if cfg is None:
                raise Forbidden(f"container {rec.id} is not connected to network {net['Name']}")
            with self._lock:
                ep = (self._attached.get(rec.id) or {}).pop(net["Id"], None)
                if ep is not None:
                    self._unname(net["Id"], ep.ip)
                    self._bridges[net["Id"]].disconnect(ep.id)
                    self._index(rec)
            del settings[net["Name"]]

        rec = update(body["Container"], apply)
        self.engine.events.emit("network", "disconnect", net["Id"], {"container": rec.id, "name": net["Name"],
                                                                     "type": net["Driver"]})

    # ------------------------------------------------------------------ DNS

    def _dns_upstreams(self, source: str) -> list[str] | None:
        owner = self._by_ip.get(source)
        if owner is None:
            return None
        if owner[2]:
            return owner[2]
        from dockyard.network.etcfiles import host_nameservers

        return host_nameservers()

    def _dns_reverse(self, source: str, address: str) -> str | None:
        """A PTR answer: ``<container>.<network>`` for an address on one of the asker's
        user networks, as docker answers."""
        owner, target = self._by_ip.get(source), self._by_ip.get(address)
        if owner is None or target is None:
            return None
        for nid, ep in (self._attached.get(target[0]) or {}).items():
            if ep.ip == address and nid in owner[1]:
                net = self._records.get(nid)
                if net is None:
                    return None
                with contextlib.suppress(NotFound):
                    return f"{self.engine.containers.lookup(target[0]).name.lstrip('/')}.{net['Name']}"
        return None

    def _dns_lookup(self, source: str, name: str) -> list[str] | None:
        owner = self._by_ip.get(source)
        if owner is None:
            return None
        found: list[str] = []
        for nid in owner[1]:
            found += self._dns_names.get(nid, {}).get(name, [])
        return found or None

    # ------------------------------------------------------------------ daemon life

    def restore(self, records: list[Any]) -> list[Any]:
        """At daemon start: the endpoints and ports of containers still running are taken
        over (addresses reserved, ports held again, the table rewritten); those of
        containers that are gone are released. Returns the records it changed."""
        from dockyard.network.bridge import Endpoint
        from dockyard.network.ports import PortSpec

        changed = []
        live = [r for r in records if any(c.get("EndpointID") for c in (r.extra.get("Networks") or {}).values())]
        if not os.path.exists(self._marker):
            return changed  # nothing of ours on the host: no netlink, no nft at start-up
        with self._lock:
            if not any(r.running for r in live):
                self._give_back()  # the previous daemon's bridges and table (it died, or its containers did)
        with self._lock:
            for rec in live:
                if not rec.running:  # its namespace, and with it its veths, went with it
                    self._clear_live(rec)
                    changed.append(rec)
                    continue
                for name, cfg in rec.extra["Networks"].items():
                    if not cfg.get("EndpointID"):
                        continue
                    try:
                        net = self.lookup(cfg.get("NetworkID") or name)
                    except NotFound:
                        continue
                    ep = Endpoint(cfg["EndpointID"], cfg["Veth"], cfg.get("Inside") or "eth0",
                                  f"{cfg['IPAddress']}/{cfg['IPPrefixLen']}", cfg["Gateway"], cfg.get("Mac") or "")
                    self._bridge(net).restore(ep)
                    self._attached.setdefault(rec.id, {})[net["Id"]] = ep
                    self._name(rec, net, cfg, ep.ip)
                self._index(rec)
                for b in rec.extra.get("Ports") or []:
                    try:
                        self._holder().hold(rec.id, PortSpec(b["proto"], b["container_port"], b["host_ip"],
                                                             b["host_port"], b["host_port"]), "")
                    except DockyardError as e:
                        log.warning("container %s: port %s/%s could not be held again: %s", rec.id,
                                    b["host_port"], b["proto"], e)
            self._sync_firewall()
        return changed

    def close(self) -> None:
        """On daemon shutdown: with no endpoint left, the bridges and the table go; with
        running containers (live restore) everything stays for the next daemon."""
        with self._lock:
            if self._dns is not None:
                self._dns.stop()
                self._dns = None
            if any(self._attached.values()):
                return
            if self._bridges or os.path.exists(self._marker):
                self._give_back()

    def _give_back(self) -> None:
        """Remove every bridge and the table of this daemon's networks (no endpoint left)."""
        from dockyard.network import links
        from dockyard.network.firewall import Firewall

        devices = {b.device for b in self._bridges.values()} | {self.default_device}
        devices |= {self._device(n) for n in self._records.values()}
        for device in devices:
            with contextlib.suppress(OSError):
                links.delete_link(device)
        self._bridges.clear()
        with contextlib.suppress(OSError, DockyardError):
            (self._firewall or Firewall(self.default_device)).remove()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._marker)
