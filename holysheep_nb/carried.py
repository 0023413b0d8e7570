"""What a result frame carries in ``DataFrame.attrs``, in a form JSON can write.

A result frame keeps its run report and the call that made it (for ``escalate``) in
``attrs``. pandas writes a frame's ``attrs`` into Parquet metadata with ``json.dumps`` and
raises ``TypeError`` for a value JSON cannot write (pandas 3, ``DataFrame.to_parquet``;
pandas-dev/pandas#63708), and pyarrow drops them all with a warning (apache/arrow#47966).
So each object is kept as a ``Carried``: a ``dict`` whose items are the object's plain form
(what JSON writes) and whose ``value`` is the object itself (what this package reads).

A frame read back from a file has the plain dict only: its object is gone, and the calls that
need it say so. pandas deep-copies ``attrs`` on most operations: a ``Carried`` is immutable and
its copies are itself; two are equal when their objects are (as before: a run report by its
fields, the record of a call only to itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class Carried(dict[str, Any]):
    """``value`` as kept in ``DataFrame.attrs``, its plain JSON form as the dict's items."""

    __slots__ = ("value",)

    def __init__(self, value: object, plain: Mapping[str, Any]) -> None:
        super().__init__(plain)
        self.value = value

    def __deepcopy__(self, memo: dict[int, Any]) -> Carried:
        return self

    def __copy__(self) -> Carried:
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Carried) and bool(self.value == other.value)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (Carried, (self.value, dict(self)))

    def __repr__(self) -> str:
        return f"Carried({self.value!r})"


def carried(attrs: Mapping[Any, Any], key: str, kind: type[T]) -> T | None:
    """The ``kind`` object kept under ``key`` (carried, or put there as it is), or None (none
    kept, or only its plain form: read back from a file)."""
    found = attrs.get(key)
    if isinstance(found, Carried):
        found = found.value
    return found if isinstance(found, kind) else None


def from_file(attrs: Mapping[Any, Any], key: str) -> bool:
    """True when ``key`` holds only a plain form: the frame was read back from a file."""
    found = attrs.get(key)
    return isinstance(found, dict) and not isinstance(found, Carried)
