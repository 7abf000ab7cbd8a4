"""Which endpoints a registry host name means, and how to reach them — docker's rules:

* plain HTTP is allowed only for insecure registries: 127.0.0.0/8 and ::1 always, plus the
  daemon's ``insecure-registries`` (host names, ``host:port`` or CIDRs matched against the
  host's addresses). An insecure registry is tried over HTTPS without verification first,
  then over HTTP.
* a secure registry is HTTPS only, verified against the system's CAs plus the per-registry
  directory ``<certs_dir>/<host[:port]>/``: ``*.crt`` are CAs, ``*.cert`` + ``*.key`` a
  client certificate (the ``/etc/docker/certs.d`` convention).
* docker.io is reached through the daemon's ``registry-mirrors`` first (pulls only), then
  registry-1.docker.io.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass

from dockyard.errors import InvalidArgument
from dockyard.reference import HUB_HOSTS

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
HUB_ALIASES = HUB_HOSTS
DEFAULT_CERTS_DIR = "/etc/docker/certs.d"
_ALWAYS_INSECURE = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


@dataclass(frozen=True)
class Endpoint:
    """One way to reach a registry: scheme + host[:port]; TLS settings when https."""

    scheme: str
    host: str
    tls: ssl.SSLContext | None = None
    mirror: bool = False

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"


def split_host(host: str) -> tuple[str, int | None]:
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") else None
    if host.count(":") == 1:
        name, port = host.split(":")
        return name, int(port) if port.isdigit() else None
    return host, None


def normalize_server(server: str) -> str:
    """A login server address (``https://index.docker.io/v1/``, ``http://h:5000``, ``h:5000``)
    -> the registry host name as references spell it (``docker.io``, ``h:5000``)."""
    server = server.strip()
    if "://" in server:
        server = urllib.parse.urlsplit(server).netloc
    server = server.split("/", 1)[0]
    if not server:
        raise InvalidArgument("invalid registry address: empty")
    return DOCKER_HUB if server in HUB_ALIASES else server


class RegistryHosts:
    def __init__(self, insecure: list[str] | tuple[str, ...] = (), mirrors: list[str] | tuple[str, ...] = (),
                 certs_dir: str = DEFAULT_CERTS_DIR) -> None:
        self.certs_dir = certs_dir
        self._insecure_names: set[str] = set()
        self._insecure_nets = list(_ALWAYS_INSECURE)
        for entry in insecure:
            try:
                self._insecure_nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._insecure_names.add(normalize_server(entry))
        self._lock = threading.Lock()
        self._contexts: dict[tuple[str, bool], ssl.SSLContext] = {}
        self.mirrors: list[Endpoint] = []
        for url in mirrors:
            parts = urllib.parse.urlsplit(url if "://" in url else f"https://{url}")
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
                raise InvalidArgument(f"invalid mirror: {url!r}: a mirror is http(s)://host[:port]")
            tls = self.tls(parts.netloc, verify=not self.insecure(parts.netloc)) if parts.scheme == "https" else None
            self.mirrors.append(Endpoint(parts.scheme, parts.netloc, tls, mirror=True))

    def insecure(self, host: str) -> bool:
        if host in self._insecure_names or split_host(host)[0] in self._insecure_names:
            return True
        name = split_host(host)[0]
        if name == "localhost":
            return True
        try:
            addresses = [ipaddress.ip_address(name)]
        except ValueError:
            if len(self._insecure_nets) == len(_ALWAYS_INSECURE):
                return False  # no CIDR configured: a name is looked up only to match one
            try:
                infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
            except (OSError, UnicodeError):
                return False
            addresses = [ipaddress.ip_address(i[4][0].split("%")[0]) for i in infos]
        return any(a in net for a in addresses for net in self._insecure_nets if a.version == net.version)

    def endpoints(self, host: str, pull: bool = True) -> list[Endpoint]:
        """Where to try, in order. docker.io: the mirrors (pulls only), then Docker Hub."""
        if host in HUB_ALIASES:
            hub = Endpoint("https", DOCKER_HUB_API, self.tls(DOCKER_HUB_API, verify=True))
            return [*(self.mirrors if pull else []), hub]
        if self.insecure(host):
            return [Endpoint("https", host, self.tls(host, verify=False)), Endpoint("http", host)]
        return [Endpoint("https", host, self.tls(host, verify=True))]

    def has_certs(self, host: str) -> bool:
        return os.path.isdir(os.path.join(self.certs_dir, host))

    def tls(self, host: str, verify: bool) -> ssl.SSLContext:
        with self._lock:
            ctx = self._contexts.get((host, verify))
            if ctx is None:
                ctx = self._contexts[(host, verify)] = self._make_tls(host, verify)
            return ctx

    def _make_tls(self, host: str, verify: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        directory = os.path.join(self.certs_dir, host)
        if os.path.isdir(directory):
            for ca in sorted(glob.glob(os.path.join(directory, "*.crt"))):
                ctx.load_verify_locations(cafile=ca)
            for cert in sorted(glob.glob(os.path.join(directory, "*.cert"))):
                key = cert[: -len(".cert")] + ".key"
                if not os.path.exists(key):
                    raise InvalidArgument(f"missing key {os.path.basename(key)} for client certificate {os.path.basename(cert)}")
                ctx.load_cert_chain(cert, key)
        return ctx


__all__ = ["DOCKER_HUB", "HUB_ALIASES", "Endpoint", "RegistryHosts", "normalize_server", "split_host"]
