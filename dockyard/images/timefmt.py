"""RFC 3339 timestamps as docker writes them (UTC, nanosecond precision allowed)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace("000Z", "Z")


def to_rfc3339(ts: float) -> str:
    if not ts:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(value: str | None) -> float:
    """Seconds since the epoch, 0 for a missing or unreadable value (docker shows those as N/A)."""
    if not value:
        return 0.0
    try:
        cleaned = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00")
        dt = datetime.fromisoformat(cleaned)
        return dt.timestamp() if dt.tzinfo else dt.replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0
