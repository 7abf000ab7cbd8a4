"""``suppress``: contextlib.suppress for the supervisor's process. Importing contextlib
brings collections, functools, operator and more — about half a megabyte the one
long-lived host-side process of every container would keep for good."""

from __future__ import annotations


class suppress:  # noqa: N801 - named as the contextlib function it stands in for
    """``with suppress(OSError): ...`` ignores those exceptions, as contextlib.suppress."""

    def __init__(self, *exceptions: type[BaseException]) -> None:
        self._exceptions = exceptions

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        return exc_type is not None and issubclass(exc_type, self._exceptions)
