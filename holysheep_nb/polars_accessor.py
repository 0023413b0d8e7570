"""The ``holysheep`` namespace on polars: ``df.holysheep`` and ``series.holysheep``.

Registered through polars' own ``pl.api.register_dataframe_namespace`` /
``register_series_namespace`` the moment polars is imported (or at once if it already is:
``holysheep_nb/__init__.py``). The calls are the pandas accessor's (``accessor.FrameCalls``:
``complete``, ``label``, ``extract``, ``estimate`` and the ``await``-able twins) run on the
polars frame itself: the same planner, engine, cache and sink, with the polars
``FrameAdapter`` (``polars_frame``) reading the rows and building a ``pl.DataFrame``.

The steps after a run that exist only for pandas (``escalate``'s merge, ``evaluate``,
``compare``'s statistics) take the result as a pandas frame (``PolarsFrames.to_pandas``,
column by column, with its report) and give a polars frame back where they return one.

A ``LazyFrame`` has a namespace that refuses every call with a clear message: collecting
is the user's choice (it may read a whole dataset), and the rows must be known to send them.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, NoReturn

import pandas as pd
import polars as pl

from holysheep_nb.accessor import FrameCalls, ResultCalls
from holysheep_nb.errors import ConfigError, HolySheepError
from holysheep_nb.polars_frame import POLARS, report_attrs

if TYPE_CHECKING:
    from holysheep_nb.report import RunReport

_SERIES_COLUMN = "prompt"


@pl.api.register_dataframe_namespace("holysheep")
class HolySheepPolarsFrame(ResultCalls[pl.DataFrame]):
    """``df.holysheep`` on a polars DataFrame: every call returns a ``pl.DataFrame`` (the
    input's columns, in order, then the run's), with the label an ``pl.Enum`` and a schema's
    fields typed; see ``docs/polars.md``."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self._frame = frame

    def _source(self, column: Hashable | None, template: str | None) -> tuple[Any, Hashable | None]:
        return self._frame, column

    def report(self) -> RunReport:
        """The report of the run that returned this very frame (counts, failures, latency).

        polars frames have no ``attrs``: the report is kept beside the frame object a call
        returned, as long as it lives. Raises ``HolySheepError`` for any other frame (one
        derived from it by ``filter``, ``with_columns``, ``join``, ... is a new frame)."""
        from holysheep_nb.report import attached

        report = attached(report_attrs(self._frame))
        if report is None:
            raise HolySheepError(
                "this polars DataFrame has no run report: call report() on the very frame "
                "that complete(), label() or extract() returned (polars frames have no attrs, "
                "so a frame derived from it by filter, with_columns or join has none); combine "
                "reports with holysheep_nb.RunReport.combine([...])"
            )
        return report.for_frame(self._frame.height)

    def review(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not on polars: ``review()`` edits a pandas frame in a notebook widget. Raises
        ``ConfigError`` saying how to get there."""
        raise ConfigError(
            "review() is pandas only (it writes each answer into a pandas frame's gold "
            "column): pdf = out.holysheep.to_pandas(), then pdf.holysheep.review(...); the "
            "answers are in pdf['gold'] and in the gold store (holysheep_nb.gold())"
        )

    def to_pandas(self) -> pd.DataFrame:
        """This frame as a pandas DataFrame (column by column, no pyarrow needed) with the
        run's report in its ``attrs``: the way to the pandas-only steps (``review()``)."""
        return self._as_pandas()

    def _as_pandas(self) -> pd.DataFrame:
        return POLARS.to_pandas(self._frame)

    def _from_pandas(self, frame: pd.DataFrame) -> pl.DataFrame:
        return POLARS.from_pandas(frame)

    def _pandas_value(self, value: Any) -> Any:
        """``value`` with polars Series and frames as pandas ones (``gold`` may be a
        ``pl.Series`` of the frame's length, ``project_to`` a polars frame)."""
        if isinstance(value, pl.Series):
            return pd.Series(value.to_list(), name=value.name or None)
        if isinstance(value, pl.DataFrame):
            return POLARS.to_pandas(value)
        if isinstance(value, dict):
            return {key: self._pandas_value(item) for key, item in value.items()}
        return value


@pl.api.register_series_namespace("holysheep")
class HolySheepPolarsSeries(FrameCalls[pl.DataFrame]):
    """``series.holysheep`` on a polars Series of prompts (or a Series named in a
    template); the result is a ``pl.DataFrame`` with the Series as its first column."""

    def __init__(self, series: pl.Series) -> None:
        self._series = series

    def _source(self, column: Hashable | None, template: str | None) -> tuple[Any, Hashable | None]:
        if column is not None:
            raise ConfigError(
                f"a Series has no columns to choose from (got column={column!r}): its values "
                "are the prompts; call s.holysheep.complete(), or template='... {name} ...'"
            )
        name = self._series.name or _SERIES_COLUMN
        return self._series.to_frame(name), None if template else name


@pl.api.register_lazyframe_namespace("holysheep")
class HolySheepLazyFrame:
    """``lf.holysheep`` on a polars LazyFrame: every call says to ``collect()`` first (and
    ``report()`` that a LazyFrame never ran a call)."""

    def __init__(self, frame: pl.LazyFrame) -> None:
        self._frame = frame

    def report(self) -> NoReturn:
        """Raises ``HolySheepError``: no call runs on a LazyFrame, so none has a report."""
        raise HolySheepError(
            "a LazyFrame never ran a call, so it has no run report: the report is on the "
            "DataFrame that complete(), label() or extract() returned (out.holysheep.report())"
        )

    def __getattr__(self, name: str) -> NoReturn:
        raise ConfigError(
            f"holysheep.{name}() needs the rows, and a LazyFrame has none until it is "
            f"collected: call lf.collect().holysheep.{name}(...). holysheep_nb does not "
            "collect for you, since collecting may read a whole dataset into memory "
            "(docs/polars.md)"
        )
