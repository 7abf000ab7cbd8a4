"""Unix sockets on ``_socket``: the few things ``socket.py`` adds that the runtime and the
supervisor use (accept, socketpair, SCM_RIGHTS), without importing it.

``import socket`` builds enums of every AF_/SOCK_/MSG_/AI_ constant (and imports selectors
and array): ~0.4 MB that the supervisor, a long-lived process whose memory is every
container's host-side cost, would keep for good, and ~3 ms of start-up for the runtime
CLI. The objects here are ``_socket.socket`` (the C type ``socket.socket`` derives from),
so they have ``send``/``recv``/``sendmsg``/``recvmsg``/``settimeout``/``close`` but no
context manager; the helpers also accept ``socket.socket`` objects.
"""

from __future__ import annotations

import _socket
import os
import struct

AF_UNIX = _socket.AF_UNIX
SOCK_STREAM = _socket.SOCK_STREAM
SOCK_SEQPACKET = _socket.SOCK_SEQPACKET
SOCK_CLOEXEC = _socket.SOCK_CLOEXEC
SOCK_NONBLOCK = _socket.SOCK_NONBLOCK
MSG_NOSIGNAL = _socket.MSG_NOSIGNAL
MSG_CMSG_CLOEXEC = _socket.MSG_CMSG_CLOEXEC

Socket = _socket.socket
_INT = struct.calcsize("i")


def unix(kind: int = SOCK_STREAM) -> _socket.socket:
    """A new AF_UNIX socket (close-on-exec, as every socket Python makes)."""
    return _socket.socket(AF_UNIX, kind)


def socketpair(kind: int = SOCK_STREAM) -> tuple[_socket.socket, _socket.socket]:
    """A connected AF_UNIX pair, both ends close-on-exec."""
    return _socket.socketpair(AF_UNIX, kind)


def accept(listener: _socket.socket) -> _socket.socket:
    """The next connection on ``listener`` (close-on-exec: accept4 with SOCK_CLOEXEC),
    blocking or not as the listener is."""
    fd, _addr = listener._accept()
    return _socket.socket(fileno=fd)


def send_fds(sock: _socket.socket, data: bytes | memoryview, fds: list[int], flags: int = 0) -> int:
    """Send ``data`` with ``fds`` (SCM_RIGHTS); the bytes sent, as ``send``."""
    rights = struct.pack(f"{len(fds)}i", *fds)
    return sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)], flags)


def recv_fds(sock: _socket.socket, bufsize: int, maxfds: int, flags: int = 0) -> tuple[bytes, list[int], int]:
    """(data, fds, msg_flags): up to ``bufsize`` bytes and the fds that came with them.
    Fds beyond ``maxfds`` (a truncated control message) are not returned."""
    data, ancdata, msg_flags, _addr = sock.recvmsg(bufsize, _socket.CMSG_SPACE(maxfds * _INT), flags)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % _INT
            fds += struct.unpack(f"{usable // _INT}i", payload[:usable])
    if len(fds) > maxfds:  # the kernel never sends more than the buffer holds; be safe
        for fd in fds[maxfds:]:
            os.close(fd)
        del fds[maxfds:]
    return data, fds, msg_flags
