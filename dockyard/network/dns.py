"""The embedded DNS server: one UDP socket for every user network (not one per container).

Queries a container sends to its network's gateway, port 53, are redirected here by the
firewall (prerouting ``redirect``). Names of the containers on the asker's networks — their
names, aliases and short IDs — are answered from ``lookup``; everything else is forwarded
to ``upstreams`` (the host's resolvers, or the container's ``--dns``) and the answer relayed.
Only known containers are answered: the socket listens on the host's addresses.

It runs its own asyncio loop in a thread of the daemon, so no request to the API waits for
a resolver and no resolver waits for the API.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dockyard.dns")
_FORWARD_TIMEOUT = 2.0  # seconds per upstream server
_TTL = 600

# (source address) -> the names' addresses the asker may see, or None for a stranger
Lookup = Callable[[str, str], "list[str] | None"]
Upstreams = Callable[[str], "list[str] | None"]  # None: not a container we know


class _Relay(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


class DnsServer(asyncio.DatagramProtocol):
    def __init__(self, lookup: Lookup, upstreams: Upstreams) -> None:
        self._lookup = lookup
        self._upstreams = upstreams
        self._loop = asyncio.new_event_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ------------------------------------------------------------------ life

    def start(self) -> int:
        """Bind a free UDP port on the host's addresses and serve; returns the port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)

            async def serve() -> None:
                self._transport, _ = await self._loop.create_datagram_endpoint(lambda: self, sock=sock)
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
            self._loop.stop()

        self._loop.call_soon_threadsafe(shut)
        self._thread.join()
        self._loop.close()
        self._thread = None

    # ------------------------------------------------------------------ queries

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._loop.create_task(self._answer(data, addr))

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        import dns.flags
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        source = addr[0]
        upstreams = self._upstreams(source)
        if upstreams is None:
            return  # not one of our containers
        try:
            query = dns.message.from_wire(data)
        except Exception:
            return
        if not query.question:
            return
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        found = self._lookup(source, name)
        if found:
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.RA
            if q.rdtype == dns.rdatatype.A:
                reply.answer.append(dns.rrset.from_text(q.name, _TTL, "IN", "A", *found))
            self._send(reply.to_wire(), addr)
            return
        for server in upstreams:
            try:
                answer = await self._forward(data, server)
            except (OSError, TimeoutError):
                continue
            self._send(answer, addr)
            return
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.SERVFAIL)
        self._send(reply.to_wire(), addr)

    async def _forward(self, data: bytes, server: str) -> bytes:
        transport, relay = await self._loop.create_datagram_endpoint(_Relay, remote_addr=(server, 53))
        try:
            transport.sendto(data)
            return await asyncio.wait_for(relay.answer, _FORWARD_TIMEOUT)
        finally:
            transport.close()

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(data, addr)
