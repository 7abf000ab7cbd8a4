"""The embedded DNS server: one UDP and one TCP socket (same port) for every user network,
not one per container.

Queries a container sends to its network's gateway, port 53, are redirected here by the
firewall (prerouting ``redirect``, UDP and TCP). Names of the containers on the asker's
networks — their names, aliases and short IDs — are answered from ``lookup``; everything
else is forwarded to ``upstreams`` (the host's resolvers, or the container's ``--dns``) over
the transport the query came on (a truncated UDP answer makes the client ask again over
TCP), and the answer relayed. Only known containers are answered: the sockets listen on the
host's addresses.

It runs its own asyncio loop in a thread of the daemon, so no request to the API waits for
a resolver and no resolver waits for the API.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dockyard.dns")
_FORWARD_TIMEOUT = 2.0  # seconds per upstream server
_TTL = 600

# (source address, name) -> the addresses the asker may see, or None: not ours
Lookup = Callable[[str, str], "list[str] | None"]
Upstreams = Callable[[str], "list[str] | None"]  # None: not a container we know
Reverse = Callable[[str, str], "str | None"]  # (source, address) -> a container's name there


class _Relay(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


def _bind_pair() -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same free port of the host's addresses."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("0.0.0.0", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("0.0.0.0", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(64)
        return udp, tcp
    raise OSError("no port free for both UDP and TCP")


class DnsServer(asyncio.DatagramProtocol):
    def __init__(self, lookup: Lookup, upstreams: Upstreams, reverse: Reverse | None = None) -> None:
        self._lookup = lookup
        self._upstreams = upstreams
        self._reverse = reverse
        self._loop = asyncio.new_event_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ------------------------------------------------------------------ life

    def start(self) -> int:
        """Bind a free port (UDP and TCP) on the host's addresses and serve; returns it."""
        udp, tcp = _bind_pair()
        self.port = udp.getsockname()[1]
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)

            async def serve() -> None:
                self._transport, _ = await self._loop.create_datagram_endpoint(lambda: self, sock=udp)
                self._tcp = await asyncio.start_server(self._stream, sock=tcp)
                ready.set()

            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="dns", daemon=True)
        self._thread.start()
        ready.wait()
        return self.port

    def stop(self) -> None:
        if self._thread is None:
            return

        def shut() -> None:
            if self._transport is not None:
                self._transport.close()
            if self._tcp is not None:
                self._tcp.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shut)
        self._thread.join()
        self._loop.close()
        self._thread = None

    # ------------------------------------------------------------------ transports

    def datagram_received(self, data: bytes, addr: Any) -> None:
        async def answer() -> None:
            reply = await self._answer(data, addr[0], tcp=False)
            if reply is not None and self._transport is not None:
                self._transport.sendto(reply, addr)

        self._loop.create_task(answer())

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """DNS over TCP: each message behind its two-byte length."""
        source = writer.get_extra_info("peername")[0]
        try:
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                reply = await self._answer(await reader.readexactly(size), source, tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    # ------------------------------------------------------------------ queries

    async def _answer(self, data: bytes, source: str, tcp: bool) -> bytes | None:
        """The reply to a query (None: no reply, to a stranger or to garbage)."""
        import dns.flags
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        upstreams = self._upstreams(source)
        if upstreams is None:
            return None  # not one of our containers
        try:
            query = dns.message.from_wire(data)
        except Exception:
            return None
        if not query.question:
            return None
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        if q.rdtype == dns.rdatatype.PTR and name.endswith(".in-addr.arpa") and self._reverse is not None:
            octets = name[: -len(".in-addr.arpa")].split(".")
            target = self._reverse(source, ".".join(reversed(octets))) if len(octets) == 4 else None
            if target:
                reply = dns.message.make_response(query)
                reply.flags |= dns.flags.RA
                reply.answer.append(dns.rrset.from_text(q.name, _TTL, "IN", "PTR", target + "."))
                return reply.to_wire()
        found = self._lookup(source, name)
        if found:
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.RA
            if q.rdtype == dns.rdatatype.A:
                reply.answer.append(dns.rrset.from_text(q.name, _TTL, "IN", "A", *found))
            return reply.to_wire()
        for server in upstreams:
            try:
                return await (self._forward_tcp(data, server) if tcp else self._forward_udp(data, server))
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                continue
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.SERVFAIL)
        return reply.to_wire()

    async def _forward_udp(self, data: bytes, server: str) -> bytes:
        transport, relay = await self._loop.create_datagram_endpoint(_Relay, remote_addr=(server, 53))
        try:
            transport.sendto(data)
            return await asyncio.wait_for(relay.answer, _FORWARD_TIMEOUT)
        finally:
            transport.close()

    async def _forward_tcp(self, data: bytes, server: str) -> bytes:
        async def ask() -> bytes:
            reader, writer = await asyncio.open_connection(server, 53)
            try:
                writer.write(struct.pack("!H", len(data)) + data)
                await writer.drain()
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                return await reader.readexactly(size)
            finally:
                writer.close()

        return await asyncio.wait_for(ask(), _FORWARD_TIMEOUT)
