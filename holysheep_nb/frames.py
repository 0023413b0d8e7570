"""The frame adapter: the one seam between a run and the kind of frame it runs on.

A run reads prompts from rows and writes result columns; everything between (planner,
engine, cache, sink, report) does not care what kind of frame holds them. A
``FrameAdapter`` says, for one kind of frame, how to:

- read rows in: the column names, and one column's values for rows ``start:stop`` as a
  Python list (called once a chunk, never once a row, so the hot path stays as it was);
- write columns out: the input's columns, the run's result columns (``ResultColumns``) and
  the answer format's columns (a label, a schema's fields), in one new frame;
- keep what a result frame carries beside its data (``attrs``: the run report, the call
  that made it), and give a pandas frame for the steps that exist only for pandas
  (``to_pandas`` / ``from_pandas``: the votes fallback, ``escalate``'s merge, ``evaluate``).

``PANDAS`` is the adapter of a pandas DataFrame; a polars DataFrame has its own in
``polars_frame`` (loaded only when polars is). ``adapter_for`` picks one by the frame's type.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Protocol, cast

import pandas as pd

from holysheep_nb.errors import ConfigError

if TYPE_CHECKING:
    from holysheep_nb.formats import AnswerFormat
    from holysheep_nb.results import ResultColumns


class FrameAdapter(Protocol):
    """Rows in, columns out, for one kind of frame (see the module docstring)."""

    def columns(self, frame: Any) -> list[Hashable]:
        """The frame's column names, in order."""
        ...

    def values(self, frame: Any, column: Hashable, start: int, stop: int) -> list[Any]:
        """The values of ``column`` for rows ``start:stop`` (positions), missing ones as
        None or NaN. Raises ``ConfigError`` for a column that is not one column."""
        ...

    def result(self, frame: Any, columns: ResultColumns, answer_format: AnswerFormat | None) -> Any:
        """A new frame: ``frame``'s columns, the result columns, and the format's columns
        (before ``response``), named by ``columns.free_name``; ``frame`` is not changed."""
        ...

    def attrs(self, frame: Any) -> dict[str, Any]:
        """The frame's own dict for what it carries beside its data (the run report)."""
        ...

    def to_pandas(self, frame: Any) -> pd.DataFrame:
        """A pandas frame of the same rows and columns, with the same ``attrs``."""
        ...

    def from_pandas(self, frame: pd.DataFrame) -> Any:
        """A frame of this kind from a pandas result frame, with the same ``attrs``."""
        ...


class PandasFrames:
    """The adapter of a pandas DataFrame: what the run always did."""

    def columns(self, frame: pd.DataFrame) -> list[Hashable]:
        return list(frame.columns)

    def values(self, frame: pd.DataFrame, column: Hashable, start: int, stop: int) -> list[Any]:
        selected: Any = frame[column]
        if isinstance(selected, pd.DataFrame):
            raise ConfigError(f"column {column!r} is not unique in the DataFrame")
        return selected.iloc[start:stop].tolist()  # type: ignore[no-any-return]

    def result(
        self, frame: pd.DataFrame, columns: ResultColumns, answer_format: AnswerFormat | None
    ) -> pd.DataFrame:
        out, response = columns.to_frame(frame)
        if answer_format is not None:
            assert columns.values is not None
            out = answer_format.add_columns(out, columns.values, before=response)
        return out

    def attrs(self, frame: pd.DataFrame) -> dict[str, Any]:
        return cast("dict[str, Any]", frame.attrs)

    def to_pandas(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame

    def from_pandas(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame


PANDAS = PandasFrames()


def adapter_for(frame: object) -> FrameAdapter:
    """The adapter of ``frame``'s kind. Raises ``ConfigError`` for a kind it has none for."""
    if isinstance(frame, pd.DataFrame):
        return PANDAS
    polars = sys.modules.get("polars")
    if polars is not None and isinstance(frame, polars.DataFrame):
        from holysheep_nb.polars_frame import POLARS

        return POLARS
    raise ConfigError(
        f"expected a pandas or polars DataFrame, got {type(frame).__module__}."
        f"{type(frame).__qualname__}"
    )


def attrs_of(frame: object) -> dict[str, Any]:
    """What ``frame`` carries beside its data (pandas: ``frame.attrs``)."""
    if isinstance(frame, pd.DataFrame):
        return cast("dict[str, Any]", frame.attrs)
    return adapter_for(frame).attrs(frame)
