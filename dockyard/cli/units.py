"""Human-readable sizes, durations and IDs, matching docker's go-units output.

The CLI's output is compared byte-for-byte with docker's by scripts and tests, so
these follow go-units' rules (thresholds, rounding, unit spellings) exactly rather
than "nicer" Python conventions. Stdlib only, nothing heavy: imported at CLI start.
"""

from __future__ import annotations

import time

from dockyard.errors import InvalidArgument
from dockyard.humanize import human_duration  # noqa: F401 - part of this module's API

__all__ = [
    "KB",
    "MB",
    "GB",
    "TB",
    "PB",
    "KiB",
    "MiB",
    "GiB",
    "TiB",
    "PiB",
    "human_size",
    "bytes_size",
    "human_duration",
    "time_ago",
    "parse_size",
    "ram_in_bytes",
    "from_human_size",
    "truncate_id",
]

KB, MB, GB, TB, PB = 1000, 1000**2, 1000**3, 1000**4, 1000**5
KiB, MiB, GiB, TiB, PiB = 1024, 1024**2, 1024**3, 1024**4, 1024**5

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _scale(size: float, base: float, names: tuple[str, ...]) -> tuple[float, str]:
    # Divide until below the base, but never past the largest unit: a huge value
    # stays in YB (e.g. "1e+04YB") instead of indexing off the end.
    i = 0
    while size >= base and i < len(names) - 1:
        size /= base
        i += 1
    return size, names[i]


def human_size(size: float, precision: int = 4) -> str:
    """Decimal size like go-units HumanSize: ``4.26MB``, ``1.024kB``, ``0B``.

    ``precision`` is the number of significant digits (``%.Ng``); docker's
    image/container tables use 3 (HumanSizeWithPrecision), progress bars use 4.
    """
    value, unit = _scale(float(size), 1000.0, _DECIMAL_UNITS)
    return f"{value:.{precision}g}{unit}"


def bytes_size(size: float) -> str:
    """Binary size like go-units BytesSize: ``1KiB``, ``3.42GiB``."""
    value, unit = _scale(float(size), 1024.0, _BINARY_UNITS)
    return f"{value:.4g}{unit}"


def time_ago(unix_ts: float, now: float | None = None) -> str:
    """``"3 minutes ago"`` for a Unix timestamp, as docker's CREATED columns."""
    if now is None:
        now = time.time()
    return human_duration(now - unix_ts) + " ago"


# A number (digits, optionally a fraction), one optional space, then an optional
# unit letter, an optional "i" (only meaningful after a unit: "Kib", "MiB") and an
# optional "b". Anchored both ends: go-units rejects " 32 ", "32m b", "-32", ".3k".
_SIZE_RE = r"(?i)(\d+(?:\.\d+)?) ?(?:([kmgtp])i?)?b?"  # compiled on use: no re at start-up
_DECIMAL_MULT = {"k": KB, "m": MB, "g": GB, "t": TB, "p": PB}
_BINARY_MULT = {"k": KiB, "m": MiB, "g": GiB, "t": TiB, "p": PiB}


def _parse_size(text: str, multipliers: dict[str, int]) -> int:
    import re

    m = re.fullmatch(_SIZE_RE, text)
    if m is None:
        raise InvalidArgument(f"invalid size: '{text}'")
    number, unit = m.group(1), m.group(2)
    mult = multipliers[unit.lower()] if unit else 1
    # Go converts float64(number) * mult to int64, truncating: "32.5 B" is 32.
    if "." in number:
        return int(float(number) * mult)
    return int(number) * mult  # exact for big integers, no float rounding


def ram_in_bytes(text: str) -> int:
    """Binary size as docker's ``--memory``/``--shm-size`` parse it: ``512m`` = 512 MiB."""
    return _parse_size(text, _BINARY_MULT)


def from_human_size(text: str) -> int:
    """Decimal (SI) size: ``44kB`` = 44000."""
    return _parse_size(text, _DECIMAL_MULT)


parse_size = ram_in_bytes  # the common case for CLI flags


def truncate_id(ident: str) -> str:
    """12-character short ID, dropping any ``algo:`` prefix (``sha256:``)."""
    _, sep, rest = ident.partition(":")
    if sep:
        ident = rest
    return ident[:12]
