"""Container logs: the json-file driver (docker's on-disk format), bounded by default."""

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
from dockyard.logs.reader import FollowStop, LogFollower, LogRecord, aread_logs, read_logs

__all__ = [
    "DEFAULT_MAX_FILE", "DEFAULT_MAX_SIZE", "FollowStop", "JSONFileOptions", "JSONFileWriter",
    "LogFollower", "LogRecord", "aread_logs", "format_time", "format_time_fixed",
    "parse_log_opts", "parse_time", "read_logs",
]
