"""The ``holysheep`` accessor on DataFrame and Series: what the user types in a cell.

It validates input, builds a ``CompletionJob`` and runs it, natively (``acomplete``) or from
synchronous code (``complete``). It keeps no state: pandas builds a new accessor object on
every attribute access.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pandas as pd

from holysheep_nb.errors import HolySheepError
from holysheep_nb.job import REPORT_ATTR, CompletionJob
from holysheep_nb.options import JobOptions
from holysheep_nb.prompts import PromptSource
from holysheep_nb.report import RunReport
from holysheep_nb.runner import run_sync

_SERIES_COLUMN = "prompt"


def _job(
    frame: pd.DataFrame, column: Hashable | None, template: str | None, options: dict[str, Any]
) -> CompletionJob:
    source = PromptSource(frame, column, template)
    return CompletionJob(source, JobOptions.from_kwargs(**options))


def _report(frame: pd.DataFrame) -> RunReport:
    report = frame.attrs.get(REPORT_ATTR)
    if not isinstance(report, RunReport):
        raise HolySheepError(
            "this DataFrame has no run report: call report() on the frame that complete() returned"
        )
    return report


@pd.api.extensions.register_dataframe_accessor("holysheep")
class HolySheepFrameAccessor:
    """``df.holysheep``: send every row to a chat-completions API and collect the answers."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def complete(
        self, column: Hashable | None = None, *, template: str | None = None, **options: Any
    ) -> pd.DataFrame:
        """Answer every row; return a new frame with ``response``, ``error``, ``latency``.

        ``column`` holds the prompts, or ``template="... {col} ..."`` builds them from
        columns. Options (SPEC §2): model, system, base_url, api_key, max_concurrent,
        requests_per_minute, tokens_per_minute, max_retries, timeout, chunk_size, progress,
        cache, prices, verify, and any chat-completions parameter (temperature, ...).
        Works in a script and in a Jupyter cell alike.
        """
        job = _job(self._frame, column, template, options)
        return run_sync(job.run)

    async def acomplete(
        self, column: Hashable | None = None, *, template: str | None = None, **options: Any
    ) -> pd.DataFrame:
        """``complete`` for ``await`` in a notebook cell or async code, without patching."""
        return await _job(self._frame, column, template, options).run()

    def report(self) -> RunReport:
        """The report of the run that produced this frame (counts, failures, latency)."""
        return _report(self._frame)


@pd.api.extensions.register_series_accessor("holysheep")
class HolySheepSeriesAccessor:
    """``series.holysheep``: the same for a Series of prompts (or a Series named in a template)."""

    def __init__(self, series: pd.Series) -> None:
        self._series = series

    def _frame(self) -> tuple[pd.DataFrame, Hashable]:
        name = self._series.name if self._series.name is not None else _SERIES_COLUMN
        return self._series.to_frame(name=name), name

    def complete(self, *, template: str | None = None, **options: Any) -> pd.DataFrame:
        """Answer every prompt of the Series; return a frame with the prompts and answers."""
        frame, name = self._frame()
        job = _job(frame, None if template else name, template, options)
        return run_sync(job.run)

    async def acomplete(self, *, template: str | None = None, **options: Any) -> pd.DataFrame:
        """``complete`` for ``await``."""
        frame, name = self._frame()
        return await _job(frame, None if template else name, template, options).run()
