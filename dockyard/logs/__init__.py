"""Container logs: the json-file driver (docker's on-disk format), bounded by default.

The reader (``reader.py``: follow, tail, asyncio) is imported on first use of one of its
names: the supervisor writes logs through ``jsonfile`` and must not pay for asyncio."""

from dockyard.logs.jsonfile import (
    DEFAULT_MAX_FILE,
    DEFAULT_MAX_SIZE,
    JSONFileOptions,
    JSONFileWriter,
    format_time,
    format_time_fixed,
    parse_log_opts,
    parse_time,
)

_READER_NAMES = frozenset({"FollowStop", "LogFollower", "LogRecord", "aread_logs", "read_logs"})

__all__ = [
    "DEFAULT_MAX_FILE", "DEFAULT_MAX_SIZE", "FollowStop", "JSONFileOptions", "JSONFileWriter",
    "LogFollower", "LogRecord", "aread_logs", "format_time", "format_time_fixed",
    "parse_log_opts", "parse_time", "read_logs",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.logs.reader import FollowStop, LogFollower, LogRecord, aread_logs, read_logs


def __getattr__(name: str) -> object:
    if name in _READER_NAMES:
        from dockyard.logs import reader

        value = getattr(reader, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
