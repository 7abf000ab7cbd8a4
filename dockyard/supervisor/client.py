"""A small blocking client for the supervisor, safe to use from the daemon's threads:
every call opens its own connection (a unix connect costs microseconds), so a ``wait``
blocking one thread never holds up another thread's call."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from dockyard import errors
from dockyard.supervisor import SOCKET_NAME


def error_from(kind: str | None, message: str) -> errors.DockyardError:
    """The dockyard error class named ``kind`` (the base class for an unknown name)."""
    cls = getattr(errors, kind or "", None)
    if not (isinstance(cls, type) and issubclass(cls, errors.DockyardError)):
        cls = errors.DockyardError
    return cls(message)


class SupervisorClient:
    def __init__(self, path: str, timeout: float | None = None) -> None:
        """``path``: the socket, or the supervisor's root directory."""
        self.path = os.path.join(path, SOCKET_NAME) if os.path.isdir(path) else path
        self.timeout = timeout

    def _send(self, op: str, kw: dict[str, Any]) -> socket.socket:
        """A new connection with one request sent on it."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except (FileNotFoundError, ConnectionRefusedError) as e:
                raise errors.Unavailable(f"supervisor not running at {self.path}: {e.strerror}") from None
            sock.sendall(json.dumps({"op": op, **kw}).encode() + b"\n")
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    def _answer(line: bytes) -> dict[str, Any]:
        if not line:
            raise errors.Unavailable("supervisor closed the connection without an answer")
        resp: dict[str, Any] = json.loads(line)
        if not resp.pop("ok", False):
            raise error_from(resp.get("kind"), resp.get("error", "supervisor error"))
        return resp

    def call(self, op: str, **kw: Any) -> dict[str, Any]:
        """Send one request; return the response (without ``ok``) or raise its error."""
        with self._send(op, kw) as sock, sock.makefile("rb") as f:
            line = f.readline()
        return self._answer(line)

    def stream(self, op: str, **kw: Any) -> tuple[socket.socket, Any]:
        """Send one request whose answer a byte stream follows (``attach``): the connection
        and a buffered reader positioned after the answer; the caller closes both."""
        sock = self._send(op, kw)
        try:
            reader = sock.makefile("rb")
            self._answer(reader.readline())
        except BaseException:
            sock.close()
            raise
        return sock, reader

    def call_fds(self, op: str, max_fds: int = 4, **kw: Any) -> tuple[dict[str, Any], list[int]]:
        """``call`` for a response that carries file descriptors (SCM_RIGHTS): the response
        and the fds received with it (close-on-exec; the caller owns them)."""
        fds: list[int] = []
        buf = b""
        try:
            with self._send(op, kw) as sock:
                while not buf.endswith(b"\n"):
                    data, got, _flags, _addr = socket.recv_fds(sock, 65536, max_fds, socket.MSG_CMSG_CLOEXEC)
                    fds += got
                    if not data:
                        break
                    buf += data
            return self._answer(buf), fds
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
