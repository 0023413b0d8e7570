"""One ``complete()`` call: DataFrame rows -> cache lookups -> engine -> a new DataFrame.

Rows are prepared ``chunk_size`` at a time (prompt built, cache looked up) as the engine's
workers ask for more, so memory stays flat on a million rows and there is no barrier
between chunks. Each answer is written to the cache as it arrives; the cache is flushed on
completion, error, interrupt and cancel alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from holysheep_nb.cache import CachedAnswer, Fingerprinter, ResponseCache
from holysheep_nb.chat import ChatRequest, build_messages, estimate_tokens
from holysheep_nb.clock import Clock
from holysheep_nb.engine import CompletionEngine
from holysheep_nb.labels import LabelSet
from holysheep_nb.options import JobOptions
from holysheep_nb.progress import RunProgress
from holysheep_nb.prompts import PromptSource
from holysheep_nb.report import RunReport
from holysheep_nb.results import RowResult, RunStats

REPORT_ATTR = "holysheep_report"
#: How often the progress bar is redrawn and pending answers are flushed to the cache. It
#: also keeps the kernel's loop awake so that an interrupt is delivered promptly.
TICK_SECONDS = 0.1
_STR_DTYPE: Any = "str" if int(pd.__version__.split(".")[0]) >= 3 else object


class ResultColumns:
    """The result columns of a run, filled by row position as outcomes arrive."""

    def __init__(self, rows: int) -> None:
        self.response: list[str | None] = [None] * rows
        self.error: list[str | None] = [None] * rows
        self.latency = np.full(rows, np.nan)
        self.cached = np.zeros(rows, dtype=bool)
        self.attempts = np.zeros(rows, dtype=np.int64)
        self.prompt_tokens = np.full(rows, -1, dtype=np.int64)
        self.completion_tokens = np.full(rows, -1, dtype=np.int64)

    def record(self, position: int, result: RowResult) -> None:
        """Store an outcome from the engine."""
        self.response[position] = result.response
        self.error[position] = result.error
        if result.latency is not None:
            self.latency[position] = result.latency
        self.attempts[position] = result.attempts
        if result.prompt_tokens is not None:
            self.prompt_tokens[position] = result.prompt_tokens
        if result.completion_tokens is not None:
            self.completion_tokens[position] = result.completion_tokens

    def record_cached(self, position: int, answer: CachedAnswer) -> None:
        """Store an answer served from the cache (nothing sent: latency stays NaN)."""
        self.response[position] = answer.response
        self.cached[position] = True
        if answer.prompt_tokens is not None:
            self.prompt_tokens[position] = answer.prompt_tokens
        if answer.completion_tokens is not None:
            self.completion_tokens[position] = answer.completion_tokens

    def record_unsent(self, position: int, error: str) -> None:
        """Store the error of a row that was never sent (missing prompt or value)."""
        self.error[position] = error

    def to_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A new frame: ``frame``'s columns and index plus the result columns."""
        out: pd.DataFrame = frame.copy(deep=False)
        out["response"] = pd.array(self.response, dtype=_STR_DTYPE)
        out["error"] = pd.array(self.error, dtype=_STR_DTYPE)
        out["latency"] = self.latency
        out["cached"] = self.cached
        out["attempts"] = self.attempts
        out["prompt_tokens"] = _nullable(self.prompt_tokens)
        out["completion_tokens"] = _nullable(self.completion_tokens)
        return out


def _nullable(values: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(values, values < 0)


class Timeline:
    """Requests, retries and 429s per second of the run, sampled from the periodic tick.

    Sampling the engine's counters once a second costs nothing per request, and is enough
    to show 429 cool-downs and retry bursts in ``report.plot()``.
    """

    def __init__(self, stats: RunStats, clock: Callable[[], float] = time.monotonic) -> None:
        self._stats = stats
        self._clock = clock
        self._start = clock()
        self._marks: list[tuple[int, int, int]] = [(0, 0, 0)]

    def sample(self) -> None:
        """Record the counters once for each whole second that has passed."""
        stats = self._stats
        while self._clock() - self._start >= len(self._marks):
            self._marks.append((stats.requests_sent, stats.retries, stats.rate_limited))

    def per_second(self) -> tuple[tuple[float, int, int, int], ...]:
        """``(second, requests sent, retries, 429s)`` for each whole second, then the rest."""
        stats = self._stats
        marks = [*self._marks, (stats.requests_sent, stats.retries, stats.rate_limited)]
        return tuple(
            (float(second), sent - sent_before, retries - retries_before, limited - limited_before)
            for second, (
                (sent_before, retries_before, limited_before),
                (sent, retries, limited),
            ) in enumerate(itertools.pairwise(marks))
        )


@dataclass(frozen=True)
class RunPlan:
    """What a run would do before it starts: the input of the dry-run estimate."""

    rows: int
    to_send: int
    cached: int
    missing: int  # no prompt (missing value, template error): never sent
    input_tokens: int  # estimated, of the rows to send


class CompletionJob:
    """Runs every row of ``source`` through the engine and returns the result frame."""

    def __init__(
        self,
        source: PromptSource,
        options: JobOptions,
        *,
        clock: Clock | None = None,
        jitter: Callable[[], float] | None = None,
        labels: LabelSet | None = None,
    ) -> None:
        self.source = source
        self.options = options
        self.labels = labels
        self.engine = CompletionEngine(
            options.endpoint, options.settings, clock=clock, jitter=jitter
        )
        self.stats = RunStats()
        self.columns = ResultColumns(len(source))
        self.timeline = Timeline(self.stats)

    async def run(self) -> pd.DataFrame:
        """Send what is not cached, store answers as they come, and build the new frame."""
        options = self.options
        cache = ResponseCache.open(options.cache) if options.cache is not False else None
        progress = RunProgress(len(self.source), enabled=options.progress)
        ticker = asyncio.ensure_future(self._tick(progress, cache))
        waiting_for_answer: dict[int, str] = {}

        def on_result(result: RowResult) -> None:
            position: int = result.row_id  # type: ignore[assignment]
            self.columns.record(position, result)
            key = waiting_for_answer.pop(position, None)
            if key is not None and result.response is not None and cache is not None:
                cache.put(
                    key,
                    CachedAnswer(result.response, result.prompt_tokens, result.completion_tokens),
                )
            progress.row_done(result.error is None)

        try:
            await self.engine.run(
                self._requests(cache, progress, waiting_for_answer), on_result, stats=self.stats
            )
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            if cache is not None:
                cache.close()
            progress.close(self.stats)
        return self._result()

    def plan(self) -> RunPlan:
        """What ``run()`` would send, sending nothing: rows to send, cache hits, input tokens.

        It walks the very path ``run()`` takes (prompts, fingerprints, cache lookups), so the
        dry run cannot drift from the real one.
        """
        options = self.options
        cache = ResponseCache.open(options.cache) if options.cache is not False else None
        to_send = input_tokens = 0
        try:
            for _, request in self._requests(cache, RunProgress(0, enabled=False), {}):
                to_send += 1
                input_tokens += request.estimated_tokens - (options.max_tokens or 0)
        finally:
            if cache is not None:
                cache.close()
        rows = len(self.source)
        cached = int(self.columns.cached.sum())
        return RunPlan(rows, to_send, cached, rows - to_send - cached, input_tokens)

    def _requests(
        self, cache: ResponseCache | None, progress: RunProgress, waiting: dict[int, str]
    ) -> Iterator[tuple[int, ChatRequest]]:
        """Rows to send, one chunk prepared at a time; cached and missing rows are filled here."""
        options = self.options
        endpoint = options.endpoint
        key_of = (
            Fingerprinter(base_url=endpoint.base_url, model=endpoint.model, params=options.params)
            if cache is not None
            else None
        )
        columns = self.columns
        rows = len(self.source)
        max_tokens = options.max_tokens
        for start in range(0, rows, options.chunk_size):
            stop = min(rows, start + options.chunk_size)
            batch: list[tuple[int, tuple[dict[str, str], ...]]] = []
            for position, prompt in enumerate(self.source.chunk(start, stop), start):
                if prompt.text is None:
                    columns.record_unsent(position, prompt.error or "missing prompt")
                    progress.row_done(False)
                else:
                    batch.append((position, build_messages(prompt.text, options.system)))
            keys = [key_of(messages) for _, messages in batch] if key_of is not None else []
            hits = cache.get_many(keys) if cache is not None and keys else {}
            for index, (position, messages) in enumerate(batch):
                if key_of is not None:
                    key = keys[index]
                    hit = hits.get(key)
                    if hit is not None:
                        columns.record_cached(position, hit)
                        progress.row_done(True, cached=True)
                        continue
                    waiting[position] = key
                estimate = estimate_tokens(messages, max_tokens)
                yield position, ChatRequest(messages, options.params, estimate)

    async def _tick(self, progress: RunProgress, cache: ResponseCache | None) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            progress.refresh(self.stats)
            self.timeline.sample()
            if cache is not None:
                cache.maybe_flush()

    def _result(self) -> pd.DataFrame:
        out = self.columns.to_frame(self.source.frame)
        label_column = None
        if self.labels is not None:
            out, label_column = self.labels.apply(out)
        stats = self.stats
        elapsed = (stats.finished or stats.started) - stats.started
        out.attrs[REPORT_ATTR] = RunReport.from_frame(
            out,
            stats=stats,
            elapsed=elapsed,
            prices=self.options.prices,
            label_column=label_column,
            timeline=self.timeline.per_second(),
        )
        return out
