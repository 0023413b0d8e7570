"""One ``complete()`` call: DataFrame rows -> cache lookups -> engine -> a new DataFrame.

Rows are prepared ``chunk_size`` at a time (prompt built, cache looked up) as the engine's
workers ask for more, so memory stays flat on a million rows and there is no barrier
between chunks. Each answer is written to the cache as it arrives; the cache is flushed on
completion, error, interrupt and cancel alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import pandas as pd

from holysheep_nb import interrupt
from holysheep_nb.cache import CachedAnswer, Fingerprinter, ResponseCache
from holysheep_nb.chat import ChatRequest, EncodedParams, Messages, estimate_tokens
from holysheep_nb.clock import Clock, SystemClock
from holysheep_nb.engine import CompletionEngine, RowWork
from holysheep_nb.formats import AnswerFormat
from holysheep_nb.job_options import JobOptions
from holysheep_nb.outcome import OutcomeKind, RowOutcome, RunStats
from holysheep_nb.progress import RunProgress
from holysheep_nb.prompts import MISSING_PROMPT, PromptSource
from holysheep_nb.report import RunReport
from holysheep_nb.results import ResultColumns
from holysheep_nb.stored import known_outcome, to_cached, worth_keeping
from holysheep_nb.timeline import Timeline

REPORT_ATTR = "holysheep_report"
#: How often the progress bar is redrawn and pending answers are flushed to the cache. It
#: also keeps the kernel's loop awake so that an interrupt is delivered promptly.
TICK_SECONDS = 0.1


@dataclass(frozen=True)
class RunPlan:
    """What a run would do before it starts: the input of the dry-run estimate."""

    rows: int
    to_send: int
    cached: int
    missing: int  # no prompt (missing value, template error): never sent
    input_tokens: int  # estimated, of the rows to send
    deduplicated: int = 0  # rows asking exactly what another row asks: answered by its request


class CompletionJob:
    """Runs every row of ``source`` through the engine and returns the result frame.

    With an ``answer_format`` (a label set, a schema), every answer is read as it arrives
    (an answer that does not fit is that row's failure from the moment it is recorded) and
    the format's columns are added to the frame.
    """

    def __init__(
        self,
        source: PromptSource,
        options: JobOptions,
        *,
        clock: Clock | None = None,
        jitter: Callable[[], float] | None = None,
        answer_format: AnswerFormat | None = None,
        unstructured_system: str | None = None,
    ) -> None:
        self.source = source
        self.options = options
        self.answer_format = answer_format
        #: The system message once the server refuses response_format (None: the same one).
        self.unstructured_system = unstructured_system
        self.clock = clock or SystemClock()
        self.engine = CompletionEngine(
            options.endpoint, options.settings, clock=self.clock, jitter=jitter
        )
        self.stats = RunStats()
        self.columns = ResultColumns(len(source), keep_values=answer_format is not None)
        self.timeline = Timeline(self.stats, self.clock.now)

    async def run(self) -> pd.DataFrame:
        """Send what is not cached, store answers as they come, and build the new frame.

        Interrupted (cancelled), it keeps the frame of the rows answered so far for
        ``holysheep_nb.last_result()`` before the interrupt propagates.
        """
        interrupt.forget()
        options = self.options
        cache = self.open_cache()
        progress = RunProgress(len(self.source), enabled=options.progress, now=self.clock.now)
        ticker = asyncio.ensure_future(self._tick(progress, cache))
        waiting_for_answer: dict[int, tuple[str, str | None]] = {}
        columns = self.columns
        sharing = _Sharing()

        def on_result(outcome: RowOutcome) -> None:
            position: int = outcome.row_id  # type: ignore[assignment]
            columns.record(position, outcome)
            waiting = waiting_for_answer.pop(position, None)
            if waiting is None:
                return
            prompt, key = waiting
            sharing.in_flight.pop(prompt, None)
            if worth_keeping(outcome):
                # Paid for, so kept: also an answer the reader rejected (off the label set).
                sharing.answered[hash(prompt)] = position
                if cache is not None and key is not None:
                    cache.put(key, to_cached(outcome))

        reader = self.answer_format.read if self.answer_format is not None else None
        interrupted = False
        try:
            await self.engine.run(
                self._work(cache, waiting_for_answer, sharing),
                on_result,
                stats=self.stats,
                reader=reader,
            )
        except (asyncio.CancelledError, KeyboardInterrupt):
            interrupted = True
            raise
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            if cache is not None:
                cache.close()
            progress.close(self.stats)
            if interrupted:
                self._keep_interrupted()
        return self._result()

    def _keep_interrupted(self) -> None:
        """The frame so far, for ``holysheep_nb.last_result()``: rows without an outcome say
        so, and the report says the run was interrupted."""
        answered = self.stats.done
        self.columns.mark_unanswered(interrupt.NOT_ANSWERED)
        frame = self._result()
        report = frame.attrs[REPORT_ATTR]
        frame.attrs[REPORT_ATTR] = replace(
            report,
            stop_cause="interrupted",
            stop_advice="run the same cell again: only the rows not answered are sent",
        )
        interrupt.keep(frame, answered)

    def plan(self) -> RunPlan:
        """What ``run()`` would send, sending nothing: rows to send, cache hits, input tokens.

        It walks the very path ``run()`` takes (prompts, fingerprints, cache lookups), so the
        dry run cannot drift from the real one.
        """
        options = self.options
        cache = self.open_cache()
        to_send = cached = input_tokens = 0
        sharing = _Sharing()
        try:
            for _, item in self._work(cache, {}, sharing):
                if isinstance(item, RowOutcome):
                    cached += item.cached
                    continue
                to_send += 1
                input_tokens += item.estimated_tokens - (options.max_tokens or 0)
        finally:
            if cache is not None:
                cache.close()
        rows = len(self.source)
        shared = sum(len(request.followers) for request in sharing.in_flight.values())
        missing = rows - to_send - cached - shared
        return RunPlan(rows, to_send, cached, missing, input_tokens, shared)

    def open_cache(self) -> ResponseCache | None:
        option = self.options.cache
        return None if option is False else ResponseCache.open(option, clock=self.clock)

    def _work(
        self,
        cache: ResponseCache | None,
        waiting: dict[int, tuple[str, str | None]],
        sharing: _Sharing,
    ) -> Iterator[RowWork]:
        """Every row in order, one chunk prepared at a time: a request to send, or the row's
        outcome when it is already known (answered from the cache or by an identical request
        earlier in the run, or no prompt to send). A row asking exactly what a request in
        flight asks becomes one of its followers and is not sent.

        Within a run only the prompt differs between requests (model, system and parameters
        are the run's), so the prompt tells identical requests apart; the cache, shared
        between runs, needs the whole fingerprint, computed only when there is a cache.
        """
        options = self.options
        endpoint = options.endpoint
        key_of = (
            Fingerprinter(base_url=endpoint.base_url, model=endpoint.model, params=options.params)
            if cache is not None
            else None
        )
        rows = len(self.source)
        max_tokens = options.max_tokens
        params = EncodedParams(options.params)
        for start in range(0, rows, options.chunk_size):
            stop = min(rows, start + options.chunk_size)
            batch: list[tuple[int, str, Messages]] = []
            missing: dict[int, str] = {}
            for position, prompt in enumerate(self.source.chunk(start, stop), start):
                if prompt.text is None:
                    missing[position] = prompt.error or MISSING_PROMPT
                else:
                    messages = options.messages(prompt.text)
                    batch.append((position, prompt.text, messages))
            keys: Sequence[str | None] = [None] * len(batch)
            hits: dict[str, CachedAnswer] = {}
            if key_of is not None and cache is not None and batch:
                fingerprints = [key_of(messages) for _, _, messages in batch]
                hits = cache.get_many(fingerprints)
                keys = fingerprints
            for position, reason in missing.items():
                yield position, RowOutcome(position, OutcomeKind.MISSING_PROMPT, detail=reason)
            for key, (position, text, messages) in zip(keys, batch, strict=True):
                # A repeat of this run first (shared), then an answer of an earlier run (cached).
                leader = sharing.in_flight.get(text)
                if leader is not None:
                    leader.followers.append(position)
                    continue
                earlier = sharing.answered.get(hash(text))
                if earlier is not None and self._prompt_at(earlier) == text:
                    yield position, self.columns.repeat_of(earlier, position)
                    continue
                hit = hits.get(key) if key is not None else None
                if hit is not None:
                    yield position, known_outcome(position, hit, cached=True)
                    continue
                estimate = estimate_tokens(messages, max_tokens)
                request = ChatRequest(messages, params, estimate, self.unstructured_system)
                sharing.in_flight[text] = request
                waiting[position] = (text, key)
                yield position, request

    def _prompt_at(self, position: int) -> str | None:
        """The prompt of one row, built again (to confirm a match found by its hash)."""
        return next(self.source.chunk(position, position + 1)).text

    async def _tick(self, progress: RunProgress, cache: ResponseCache | None) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            progress.refresh(self.stats)
            self.timeline.sample()
            if cache is not None:
                cache.maybe_flush()

    def _result(self) -> pd.DataFrame:
        out, response = self.columns.to_frame(self.source.frame)
        label_counts = None
        if self.answer_format is not None:
            assert self.columns.values is not None
            out = self.answer_format.add_columns(out, self.columns.values, before=response)
            label_counts = self.answer_format.counts(self.columns.values)
        stats = self.stats
        elapsed = (stats.finished or stats.started) - stats.started
        out.attrs[REPORT_ATTR] = RunReport.from_run(
            stats,
            latency=self.columns.latency,
            held=self.columns.held,
            frame_rows=len(self.source),
            elapsed=elapsed,
            prices=self.options.prices,
            labels=label_counts,
            timeline=self.timeline.per_second(),
        )
        return out


class _Sharing:
    """Identical requests of one run, sent once: those in flight (by prompt), and the rows
    already answered (by the prompt's hash, each match confirmed against the earlier row's
    prompt: about 70 bytes a distinct answered row)."""

    def __init__(self) -> None:
        self.in_flight: dict[str, ChatRequest] = {}
        self.answered: dict[int, int] = {}
