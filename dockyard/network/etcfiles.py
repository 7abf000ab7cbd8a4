"""The /etc/hosts, /etc/resolv.conf and /etc/hostname a container gets, in docker's form."""

from __future__ import annotations

import ipaddress

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
                options: list[str] | None = None) -> str:
    """The host's resolv.conf without loopback nameservers (a container's 127.0.0.1 is not the
    host's), docker's defaults if none is left; ``dns``/``search``/``options`` (--dns,
    --dns-search, --dns-option) replace the host's lines of that kind."""
    servers, searches, opts, other = [], [], [], []
    for line in host_text.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            if not _loopback(words[1]):
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
