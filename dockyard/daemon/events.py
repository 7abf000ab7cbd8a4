"""The daemon's event bus: what ``GET /events`` streams and ``docker events`` prints.

Services emit from any thread; subscribers are asyncio queues on the API's loop. A bounded
history answers ``since`` (docker keeps the last 256 events in memory; we keep more).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any

Event = dict[str, Any]

_HISTORY = 1024


class Subscription:
    """Events emitted after ``subscribe()``; ``backlog`` holds the history it asked for."""

    def __init__(self, bus: EventBus, loop: asyncio.AbstractEventLoop, backlog: list[Event]) -> None:
        self.bus, self.loop, self.backlog = bus, loop, backlog
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    async def get(self) -> Event:
        return await self.queue.get()

    def close(self) -> None:
        self.bus._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self, history: int = _HISTORY) -> None:
        self._lock = threading.Lock()
        self._history: deque[Event] = deque(maxlen=history)
        self._subs: list[Subscription] = []

    def emit(self, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> Event:
        """Record and deliver one event in docker's shape (API >= 1.22, with the legacy
        ``status``/``id``/``from`` fields docker still sends for containers and images)."""
        ns = time.time_ns()
        attrs = {k: str(v) for k, v in (attributes or {}).items()}
        ev: Event = {"Type": type_, "Action": action, "Actor": {"ID": actor_id, "Attributes": attrs},
                     "scope": "local", "time": ns // 1_000_000_000, "timeNano": ns}
        if type_ in ("container", "image"):
            ev = {"status": action, "id": actor_id, **ev}
            if type_ == "container" and "image" in attrs:
                ev["from"] = attrs["image"]
        with self._lock:
            self._history.append(ev)
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.queue.put_nowait, ev)
            except RuntimeError:  # that loop is closed: the subscriber is gone
                self._unsubscribe(sub)
        return ev

    def subscribe(self, since_ns: int | None = None) -> Subscription:
        """Must be called on the subscriber's event loop. With ``since_ns``, the history from
        then on is in ``backlog`` (delivered before anything the queue gets: no gap, no
        duplicate, as both are taken under one lock)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            backlog = [e for e in self._history if since_ns is not None and e["timeNano"] >= since_ns]
            sub = Subscription(self, loop, backlog)
            self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
