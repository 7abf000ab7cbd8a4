"""One-shot console sockets for ``terminal`` processes (containers and execs).

The runtime connects to the socket during ``create`` / ``exec`` and the container's side
sends the pty master before that call returns: the message waits in the socket's buffer, so
nobody needs to accept while the runtime runs, and ``receive`` afterwards never blocks the
supervisor's loop."""

from __future__ import annotations

import os

from dockyard.runtime import usock
from dockyard.suppress import suppress

_SUN_PATH_MAX = 100  # sun_path is 108 bytes


class ConsoleSocket:
    def __init__(self, root: str, name: str) -> None:
        self.tmpdir: str | None = None
        self.path = os.path.join(root, name)
        if len(self.path.encode()) > _SUN_PATH_MAX:  # a deep root gets a private /tmp dir
            import tempfile

            self.tmpdir = tempfile.mkdtemp(prefix="dockyard-console-")
            self.path = os.path.join(self.tmpdir, "c.sock")
        with suppress(FileNotFoundError):
            os.unlink(self.path)
        self.listener = usock.unix()
        try:
            self.listener.bind(self.path)
            os.chmod(self.path, 0o600)
            self.listener.listen(1)
        except BaseException:
            self.close()
            raise

    def receive(self) -> int:
        """The pty master the runtime's call sent (close-on-exec; the caller owns it)."""
        from dockyard.runtime import console

        self.listener.setblocking(False)
        conn = usock.accept(self.listener)
        try:
            conn.settimeout(5)  # sent before the runtime's call returned: never waits in practice
            master, _name = console.recv_master(conn)
        finally:
            conn.close()
        os.set_inheritable(master, False)
        return master

    def close(self) -> None:
        self.listener.close()
        with suppress(FileNotFoundError):
            os.unlink(self.path)
        if self.tmpdir is not None:
            with suppress(OSError):
                os.rmdir(self.tmpdir)

    def __enter__(self) -> ConsoleSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
