"""The runtime <-> container-process channel: one SOCK_SEQPACKET socketpair.

Each message is one datagram of JSON (``{"t": kind, ...}``), so no framing is needed and
a message is never split. The child's end is O_CLOEXEC: when the container's process
execs, its copy closes, and once every child copy is gone the runtime reads EOF — that is
how the runtime learns "exec happened" or "every child died" without polling or timers.
"""

from __future__ import annotations

from dockyard import jsonc
from dockyard.runtime import usock

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs start-up time
    from _socket import socket as Socket
    from typing import Any

_MAX = 1 << 16


def pair() -> tuple[Socket, Socket]:
    """(runtime end, child end), both close-on-exec (Python's default)."""
    return usock.socketpair(usock.SOCK_SEQPACKET)


def send(sock: Socket, msg: dict[str, Any]) -> bool:
    """False if nobody listens any more (the runtime that created us has exited)."""
    try:
        # MSG_NOSIGNAL: the sender may already have SIGPIPE back at its default action
        sock.send(jsonc.dumps(msg).encode(), usock.MSG_NOSIGNAL)
        return True
    except OSError:
        return False


def recv(sock: Socket) -> dict[str, Any] | None:
    """The next message, or None at EOF (every child copy of the other end closed)."""
    data = sock.recv(_MAX)
    if not data:
        return None
    return jsonc.loads(data)
