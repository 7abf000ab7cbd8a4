"""The embedded DNS server (dockyard/network/dns.py) on real sockets, from this process as
the "container": names answered over UDP and TCP, strangers ignored, names not ours
forwarded (and SERVFAIL when no upstream answers). The firewall's redirection from a
network's gateway is covered end to end in test_networking.py."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

dns_message = pytest.importorskip("dns.message")

from dockyard.network.dns import DnsServer  # noqa: E402

NAMES = {"db": ["10.1.2.3"], "web": ["10.1.2.4", "10.1.2.5"]}


@pytest.fixture
def server() -> Iterator[DnsServer]:
    def lookup(source: str, name: str) -> list[str] | None:
        return NAMES.get(name) if source == "127.0.0.1" else None

    def upstreams(source: str) -> list[str] | None:
        return ["127.0.0.9"] if source == "127.0.0.1" else None  # nothing listens there

    s = DnsServer(lookup, upstreams)
    s.start()
    yield s
    s.stop()


def _udp(port: int, name: str, source: str = "127.0.0.1", timeout: float = 3) -> dns_message.Message | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(dns_message.make_query(name, "A").to_wire(), ("127.0.0.1", port))
        try:
            return dns_message.from_wire(s.recvfrom(4096)[0])
        except TimeoutError:
            return None


def _tcp(port: int, name: str) -> dns_message.Message:
    wire = dns_message.make_query(name, "A").to_wire()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        (size,) = struct.unpack("!H", s.recv(2))
        data = b""
        while len(data) < size:
            data += s.recv(size - len(data))
    return dns_message.from_wire(data)


def _addresses(msg: dns_message.Message) -> list[str]:
    return sorted(r.address for rrset in msg.answer for r in rrset)


def test_answers_over_udp_and_tcp(server: DnsServer) -> None:
    import dns.rcode

    assert _addresses(_udp(server.port, "db")) == ["10.1.2.3"]
    assert _addresses(_tcp(server.port, "web")) == ["10.1.2.4", "10.1.2.5"]
    assert _tcp(server.port, "elsewhere.example").rcode() == dns.rcode.SERVFAIL  # the upstream refused
    assert _udp(server.port, "db", source="127.0.0.2", timeout=0.5) is None  # a stranger gets no answer


def test_other_names_are_forwarded(tmp_path: object) -> None:
    """A name that is not a container's goes to the asker's upstream resolver (here one
    this test runs on 127.0.0.9:53), whose answer is relayed as it is."""
    import threading

    import dns.rrset

    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.bind(("127.0.0.9", 53))
    upstream.settimeout(10)

    def serve_one() -> None:
        data, peer = upstream.recvfrom(4096)
        query = dns_message.from_wire(data)
        reply = dns_message.make_response(query)
        reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.77"))
        upstream.sendto(reply.to_wire(), peer)

    s = DnsServer(lambda source, name: None, lambda source: ["127.0.0.9"])
    s.start()
    t = threading.Thread(target=serve_one)
    t.start()
    try:
        assert _addresses(_udp(s.port, "example.org")) == ["192.0.2.77"]
    finally:
        t.join()
        upstream.close()
        s.stop()
