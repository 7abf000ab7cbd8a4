"""A small value-object base for the runtime's start-up path.

Plain classes rather than dataclasses: importing dataclasses pulls in inspect (~12 ms),
and every container start imports the modules that use this."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the supervisor keeps what it imports for life
    from typing import Any



class Value:
    """Equality, hashing and repr over ``__slots__``, as a frozen dataclass has."""

    __slots__ = ()

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{self.__class__.__name__}({fields})"
