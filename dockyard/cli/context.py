"""What every command gets: the API client (created on first use) and output streams,
plus the one place where errors become docker's messages and exit codes."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (~3 ms)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any


class Context:
    def __init__(self, host: str | None, debug: bool = False) -> None:
        self.host = host
        self.debug = debug
        self._client: Any = None
        self.out: IO[str] = sys.stdout
        self.err: IO[str] = sys.stderr

    @property
    def client(self) -> Any:
        if self._client is None:
            from dockyard.cli.client import APIClient

            self._client = APIClient(self.host)
        return self._client

    def error(self, message: str) -> None:
        self.err.write(message.rstrip("\n") + "\n")

    def run(self, func: Callable[[Context, list[str]], int | None], args: list[str]) -> int:
        from dockyard.cli.client import APIError, DaemonUnreachable
        from dockyard.cli.progress import StreamError
        from dockyard.errors import DockyardError

        try:
            return func(self, args) or 0
        except DaemonUnreachable as e:
            self.error(str(e))
            return 1
        except (APIError, StreamError) as e:
            self.error(f"Error response from daemon: {e.message}" if isinstance(e, APIError) else str(e))
            return 1
        except BrokenPipeError:
            return 0
        except KeyboardInterrupt:
            return 130
        except CLIError as e:
            self.error(str(e))
            return e.code
        except DockyardError as e:  # e.g. a --format template that does not parse
            self.error(str(e))
            return 1


class CLIError(Exception):
    """A failure detected by the CLI itself (bad flag value, unusable output...)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
