"""Crash points for tests: ``DOCKYARD_CRASH_AT=<name>`` in the daemon's environment makes it
kill itself with SIGKILL when it reaches ``crash_point(<name>)`` — how the tests prove that a
daemon dying in the middle of a create or a start leaves nothing behind that a restart does
not clean up. Unset (always, outside tests), a crash point is one dict lookup."""

from __future__ import annotations

import os
import signal

_AT = os.environ.get("DOCKYARD_CRASH_AT", "")


def crash_point(name: str) -> None:
    if _AT and name == _AT:
        os.kill(os.getpid(), signal.SIGKILL)
