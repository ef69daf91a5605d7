"""Small value records for the redirect's import path, without ``@dataclass``.

``@dataclass`` generates and compiles its methods when a module is imported, about 0.4 ms per class:
on the redirect function that is cold-start time a recipient waits for. A record here is a plain class
with ``__slots__`` and its own ``__init__``; this base gives it equality, hashing and a repr by field.
"""

from __future__ import annotations

from typing import Any


class Record:
    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"
