"""Terminals: runc's ``--console-socket`` protocol.

The runtime connects to the caller's unix socket (so a bad path fails before anything is
created) and hands the connection to the container process. That process opens the pty
master from the *container's* devpts (/dev/ptmx after pivot_root or setns, so the pty
belongs to the container and its number means something inside), sends the master to the
caller with SCM_RIGHTS (the message payload is the slave's name, as runc sends it), and
makes the slave its controlling terminal and stdio. The caller (containerd-shim, the
engine, a test) receives the master with ``recv_master``.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios

from dockyard.errors import InvalidArgument
from dockyard.runtime import usock

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs start-up time
    from _socket import socket as Socket
    from typing import Any

# asm-generic ioctl numbers (x86_64 and aarch64)
_TIOCGPTN = 0x80045430  # pty number of a master
_TIOCSPTLCK = 0x40045431  # (un)lock the slave
_TIOCGPTPEER = 0x5441  # open the slave from the master fd, without a path lookup (4.13+)


def connect(path: str) -> Socket:
    """The runtime's side: connect to the caller's console socket."""
    sock = usock.unix()
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise InvalidArgument(f"cannot connect to console socket {path}: {e.strerror}") from None
    return sock


def open_pty(size: dict[str, Any] | None = None) -> tuple[int, int, str]:
    """(master, slave, slave path) from this mount namespace's /dev/ptmx."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        (number,) = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, b"\0" * 4))
        name = f"/dev/pts/{number}"
        try:
            slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:
            slave = os.open(name, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        if size and size.get("height") and size.get("width"):
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size["height"], size["width"], 0, 0))
    except BaseException:
        os.close(master)
        raise
    return master, slave, name


def send_master(sock: Socket, master: int, name: str) -> None:
    usock.send_fds(sock, name.encode(), [master])


def recv_master(conn: Socket) -> tuple[int, str]:
    """The caller's side: (master fd, slave name) from one accepted console connection."""
    msg, fds, _flags = usock.recv_fds(conn, 4096, 1)
    if not fds:
        raise OSError("no file descriptor received on the console socket")
    return fds[0], msg.decode(errors="replace")


def make_controlling(slave: int) -> None:
    """New session, the slave as controlling terminal and as fds 0, 1 and 2."""
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def setup_terminal(console_sock: Socket, size: dict[str, Any] | None = None) -> str:
    """Everything the container process does for ``terminal: true``; returns the slave's
    path (the init bind-mounts it over /dev/console)."""
    master, slave, name = open_pty(size)
    try:
        send_master(console_sock, master, name)
    finally:
        os.close(master)
        console_sock.close()
    make_controlling(slave)
    return name
