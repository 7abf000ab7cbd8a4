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

    def call(self, op: str, **kw: Any) -> dict[str, Any]:
        """Send one request; return the response (without ``ok``) or raise its error."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except (FileNotFoundError, ConnectionRefusedError) as e:
                raise errors.Unavailable(f"supervisor not running at {self.path}: {e.strerror}") from None
            sock.sendall(json.dumps({"op": op, **kw}).encode() + b"\n")
            with sock.makefile("rb") as f:
                line = f.readline()
        if not line:
            raise errors.Unavailable("supervisor closed the connection without an answer")
        resp: dict[str, Any] = json.loads(line)
        if not resp.pop("ok", False):
            raise error_from(resp.get("kind"), resp.get("error", "supervisor error"))
        return resp

    def call_fds(self, op: str, max_fds: int = 4, **kw: Any) -> tuple[dict[str, Any], list[int]]:
        """``call`` for a response that carries file descriptors (SCM_RIGHTS): the response
        and the fds received with it (close-on-exec; the caller owns them)."""
        fds: list[int] = []
        buf = b""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                try:
                    sock.connect(self.path)
                except (FileNotFoundError, ConnectionRefusedError) as e:
                    raise errors.Unavailable(f"supervisor not running at {self.path}: {e.strerror}") from None
                sock.sendall(json.dumps({"op": op, **kw}).encode() + b"\n")
                while not buf.endswith(b"\n"):
                    data, got, _flags, _addr = socket.recv_fds(sock, 65536, max_fds, socket.MSG_CMSG_CLOEXEC)
                    fds += got
                    if not data:
                        break
                    buf += data
            if not buf:
                raise errors.Unavailable("supervisor closed the connection without an answer")
            resp: dict[str, Any] = json.loads(buf)
            if not resp.pop("ok", False):
                raise error_from(resp.get("kind"), resp.get("error", "supervisor error"))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return resp, fds
