"""The result sink, shared by the online run and the batch: where a call's outcomes go.

Every row's one outcome is written to the result columns (``results.ResultColumns``); an
answer paid for in this call is written back to the cache under its fingerprint, whatever
sent it; at the end the columns become the result frame, with the format's columns (a
label, a schema's fields) and the run's report (``report.attach``), built from
the one tally (``RunStats``). Only the sending differs between the two paths; the kind of
frame (pandas, polars) is the source's ``FrameAdapter`` (``frames``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from holysheep_nb.cache import ResponseCache
from holysheep_nb.formats import AnswerFormat
from holysheep_nb.outcome import RowOutcome, RunStats
from holysheep_nb.prices import Prices
from holysheep_nb.prompts import PromptSource
from holysheep_nb.report import RunReport, attach
from holysheep_nb.results import ResultColumns
from holysheep_nb.stored import to_cached, worth_keeping


class ResultSink:
    """The outcomes of one call over ``source`` (see the module docstring)."""

    def __init__(
        self,
        source: PromptSource,
        answer_format: AnswerFormat | None,
        stats: RunStats,
        cache: ResponseCache | None = None,
    ) -> None:
        self.source = source
        self.answer_format = answer_format
        self.stats = stats
        self.cache = cache
        self.columns = ResultColumns(len(source), keep_values=answer_format is not None)

    def record(self, position: int, outcome: RowOutcome) -> None:
        """Store a row's final outcome in the columns."""
        self.columns.record(position, outcome)

    def keep(self, outcome: RowOutcome, key: str | None) -> bool:
        """Write an answer this call paid for back to the cache (under ``key``, when there
        is a cache); True when it is worth keeping (also an answer the reader rejected)."""
        if not worth_keeping(outcome):
            return False
        if self.cache is not None and key is not None:
            self.cache.put(key, to_cached(outcome))
        return True

    def frame(
        self,
        prices: Prices | None,
        *,
        timeline: Iterable[tuple[float, int, int, int]] = (),
        batch_ids: tuple[str, ...] = (),
    ) -> Any:
        """The result frame (of the input's kind): the input's columns, the result columns,
        the format's columns, and the report (priced at the batch price when ``batch_ids``
        ran the requests)."""
        columns = self.columns
        adapter = self.source.adapter
        out = adapter.result(self.source.frame, columns, self.answer_format)
        labels = None
        if self.answer_format is not None:
            assert columns.values is not None
            labels = self.answer_format.counts(columns.values)
        stats = self.stats
        report = RunReport.from_run(
            stats,
            latency=columns.latency,
            held=columns.held,
            frame_rows=len(self.source),
            elapsed=(stats.finished or stats.started) - stats.started,
            prices=prices.for_batch() if prices is not None and batch_ids else prices,
            labels=labels,
            timeline=timeline,
        )
        attach(adapter.attrs(out), replace(report, batch_ids=batch_ids) if batch_ids else report)
        return out
