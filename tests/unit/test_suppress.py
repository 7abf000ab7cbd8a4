"""dockyard.suppress stands in for contextlib.suppress in the supervisor's process."""

from __future__ import annotations

import pytest

from dockyard.suppress import suppress


def test_suppresses_the_listed_exceptions_and_their_subclasses() -> None:
    with suppress(OSError):
        raise FileNotFoundError("gone")
    with suppress(KeyError, ValueError):
        raise ValueError("bad")
    ran = []
    with suppress(OSError):
        ran.append(1)
    assert ran == [1]


def test_lets_other_exceptions_through() -> None:
    with pytest.raises(ValueError), suppress(OSError):
        raise ValueError("not suppressed")
    with pytest.raises(KeyboardInterrupt), suppress(Exception):
        raise KeyboardInterrupt
