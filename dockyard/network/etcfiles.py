"""The /etc/hosts, /etc/resolv.conf and /etc/hostname a container gets, in docker's form."""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from dockyard.errors import InvalidArgument

# docker's fallback when the host has no resolver a container can reach
DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
_HOSTS_HEAD = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
               "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def resolv_conf(host_text: str, dns: list[str] | None = None, search: list[str] | None = None,
                options: list[str] | None = None, keep_loopback: bool = False) -> str:
    """The host's resolv.conf without loopback nameservers (a container's 127.0.0.1 is not the
    host's), docker's defaults if none is left; ``dns``/``search``/``options`` (--dns,
    --dns-search, --dns-option) replace the host's lines of that kind."""
    servers, searches, opts, other = [], [], [], []
    for line in host_text.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            if keep_loopback or not _loopback(words[1]):
                servers.append(words[1])
        elif words[0] in ("search", "domain"):
            searches = words[1:]
        elif words[0] == "options":
            opts += words[1:]
        else:
            other.append(line.strip())
    servers = list(dns) if dns else servers or list(DEFAULT_NAMESERVERS)
    searches = list(search) if search else searches
    opts = list(options) if options else opts
    out = [f"nameserver {s}" for s in servers]
    if searches and searches != ["."]:
        out.append("search " + " ".join(searches))
    if opts:
        out.append("options " + " ".join(opts))
    return "\n".join([*out, *other]) + "\n"


def host_nameservers(host_etc: str = "/etc") -> list[str]:
    """The host's resolvers (loopback ones too: the daemon asks them from the host's
    network), docker's defaults if it has none."""
    try:
        with open(os.path.join(host_etc, "resolv.conf")) as f:
            text = f.read()
    except OSError:
        text = ""
    found = [w[1] for w in (line.split() for line in text.splitlines()) if len(w) > 1 and w[0] == "nameserver"]
    return found or list(DEFAULT_NAMESERVERS)


def hosts(hostname: str, address: str | None = None, extra: list[tuple[str, str]] | None = None,
          aliases: list[str] | None = None) -> str:
    """docker's /etc/hosts: localhost lines, ``--add-host`` entries, then the container's
    own address with its hostname (none without a network address)."""
    text = _HOSTS_HEAD + "".join(f"{ip}\t{name}\n" for name, ip in extra or [])
    if address:
        text += f"{address}\t" + " ".join([hostname, *(aliases or [])]) + "\n"
    return text


def hostname_file(hostname: str) -> str:
    return hostname + "\n"


def extra_hosts(entries: list[str] | None, host_gateway: str | None = None) -> list[tuple[str, str]]:
    """``--add-host`` entries ("host:ip", or docker 25's "host=ip") as (host, ip); the
    special address ``host-gateway`` is the default bridge's gateway (``host_gateway``,
    left as it is when not given: validation)."""
    out = []
    for entry in entries or []:
        sep = "=" if "=" in entry else ":"
        name, _, ip = entry.partition(sep)
        if ip == "host-gateway":
            if not name:
                raise InvalidArgument(f"bad format for add-host: {entry!r}")
            out.append((name, host_gateway or ip))
            continue
        try:
            ipaddress.ip_address(ip.strip("[]"))
        except ValueError:
            raise InvalidArgument(f"invalid IP address in add-host: {ip!r}") from None
        if not name:
            raise InvalidArgument(f"bad format for add-host: {entry!r}")
        out.append((name, ip.strip("[]")))
    return out


def check_dns(servers: list[str] | None) -> None:
    for server in servers or []:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidArgument(f"{server} is not an ip address") from None


def write_files(directory: str, hostname: str, hc: dict[str, Any], address: str | None = None,
                host_etc: str = "/etc", nameserver: str | None = None,
                host_gateway: str | None = None) -> dict[str, str]:
    """Write a container's hosts, resolv.conf and hostname into ``directory`` (in place:
    the files may be bound into a created container already); returns container path ->
    file. In the host's network the host's own files are the base, its loopback resolvers
    kept (they are reachable there). ``nameserver``: the embedded DNS server's address
    (user networks), which then also forwards to --dns."""
    host_network = (hc.get("NetworkMode") or "default") == "host"
    try:
        with open(os.path.join(host_etc, "resolv.conf")) as f:
            host_resolv = f.read()
    except OSError:
        host_resolv = ""
    if host_network and not (hc.get("Dns") or hc.get("DnsSearch") or hc.get("DnsOptions")):
        resolv = host_resolv  # as it is: its loopback resolvers answer in the host's network
    else:
        resolv = resolv_conf(host_resolv, [nameserver] if nameserver else hc.get("Dns"), hc.get("DnsSearch"),
                             hc.get("DnsOptions"), keep_loopback=host_network)
    if host_network:
        try:
            with open(os.path.join(host_etc, "hosts")) as f:
                host_hosts = f.read()
        except OSError:
            host_hosts = _HOSTS_HEAD
        hosts_text = host_hosts + "".join(f"{ip}\t{name}\n" for name, ip in extra_hosts(hc.get("ExtraHosts"), host_gateway))
    else:
        hosts_text = hosts(hostname, address, extra_hosts(hc.get("ExtraHosts"), host_gateway))
    files = {"/etc/hosts": hosts_text, "/etc/resolv.conf": resolv, "/etc/hostname": hostname_file(hostname)}
    out = {}
    for dest, text in files.items():
        path = os.path.join(directory, os.path.basename(dest))
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        out[dest] = path
    return out
