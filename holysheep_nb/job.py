"""One ``complete()`` call: DataFrame rows -> cache lookups -> engine -> a new DataFrame.

Rows are prepared ``chunk_size`` at a time (prompt built, cache looked up) as the engine's
workers ask for more, so memory stays flat on a million rows and there is no barrier
between chunks. Each answer is written to the cache as it arrives; the cache is flushed on
completion, error, interrupt and cancel alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from holysheep_nb import interrupt
from holysheep_nb.cache import ResponseCache
from holysheep_nb.chat import ChatRequest, EncodedParams, estimate_tokens
from holysheep_nb.clock import Clock, SystemClock
from holysheep_nb.engine import CompletionEngine
from holysheep_nb.formats import AnswerFormat
from holysheep_nb.job_options import JobOptions
from holysheep_nb.outcome import OutcomeKind, RowOutcome, RunStats
from holysheep_nb.planning import Ask, Known, RowPlanner
from holysheep_nb.pool import RowWork
from holysheep_nb.progress import Progress, RunProgress
from holysheep_nb.prompts import PromptSource
from holysheep_nb.ratelimit import counts_tokens
from holysheep_nb.report import REPORT_ATTR, attach, attached
from holysheep_nb.results import ResultColumns
from holysheep_nb.sink import ResultSink
from holysheep_nb.timeline import Timeline

__all__ = ["REPORT_ATTR", "CompletionJob", "RunPlan"]

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
    images: int = 0  # images in the rows to send (their tokens are in input_tokens)
    unsized_images: int = 0  # of those, images by URL: size unknown, counted at 85 tokens
    #: Rows never sent because of an image, by problem ("image file not found", rows).
    bad_images: tuple[tuple[str, int], ...] = ()


class CompletionJob:
    """Runs every row of ``source`` through the engine and returns the result frame.

    With an ``answer_format`` (a label set, a schema), every answer is read as it arrives
    (an answer that does not fit is that row's failure from the moment it is recorded) and
    the format's columns are added to the frame.
    """

    #: A bar shared with other runs, handed in before ``run()`` (``compare()``'s variants
    #: share one: ``progress.SharedProgress``); None: the run draws its own.
    progress: Progress | None = None

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
        self.sink = ResultSink(source, answer_format, self.stats)
        self.timeline = Timeline(self.stats, self.clock.now)

    @property
    def columns(self) -> ResultColumns:
        """The result columns, filled as outcomes arrive."""
        return self.sink.columns

    async def run(self) -> Any:
        """Send what is not cached, store answers as they come, and build the new frame (a
        pandas or polars DataFrame, as the input: ``frames``).

        Interrupted (cancelled), it keeps the frame of the rows answered so far for
        ``holysheep_nb.last_result()`` before the interrupt propagates.
        """
        interrupt.forget()
        options = self.options
        cache = self.sink.cache = self.open_cache()
        progress = self.progress or RunProgress(
            len(self.source), enabled=options.progress, now=self.clock.now
        )
        ticker = asyncio.ensure_future(self._tick(progress, cache))
        sending = _Sending(RowPlanner(self.source, options, cache), self.sink)
        reader = self.answer_format.read if self.answer_format is not None else None
        # A row's token estimate is made only when the run counts tokens.
        request_for = (
            self._request
            if counts_tokens(options.settings.limits)
            else functools.partial(self._request, estimated=False)
        )
        interrupted = False
        try:
            await self.engine.run(
                sending.work(request_for), sending.on_result, stats=self.stats, reader=reader
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
        attrs = self.source.adapter.attrs(frame)
        report = attached(attrs)
        assert report is not None, "the sink's frame has its report"
        attach(
            attrs,
            replace(
                report,
                stop_cause="interrupted",
                stop_advice="run the same cell again: only the rows not answered are sent",
            ),
        )
        interrupt.keep(frame, answered)

    def plan(self) -> RunPlan:
        """What ``run()`` would send, sending nothing: rows to send, cache hits, input tokens.

        It walks the very planner ``run()`` walks (prompts, fingerprints, cache lookups,
        repeats), so the dry run cannot drift from the real one.
        """
        cache = self.open_cache()
        to_send = cached = missing = shared = input_tokens = images = unsized = 0
        bad_images: Counter[str] = Counter()
        try:
            for item in RowPlanner(self.source, self.options, cache).walk():
                if isinstance(item, Known):
                    outcome = item.outcome
                    if outcome.kind is OutcomeKind.BAD_IMAGE:
                        bad_images[outcome.cause or ""] += 1
                    else:
                        cached += outcome.cached
                        missing += not outcome.cached
                elif item.leader is not None:
                    shared += 1
                else:
                    to_send += 1
                    input_tokens += self._request(item).estimated_tokens
                    if item.images is not None:
                        images += len(item.images.parts)
                        unsized += item.images.unsized
        finally:
            if cache is not None:
                cache.close()
        input_tokens -= to_send * (self.options.max_tokens or 0)
        return RunPlan(
            len(self.source),
            to_send,
            cached,
            missing,
            input_tokens,
            shared,
            images,
            unsized,
            tuple(bad_images.most_common()),
        )

    def _request(self, ask: Ask, *, estimated: bool = True) -> ChatRequest:
        """The request the engine sends for a row, with its token estimate (0 when not
        ``estimated``: a run that counts no tokens reads none)."""
        estimate = 0
        if estimated:
            estimate = estimate_tokens(ask.messages, self._max_tokens)
            if ask.images is not None:
                estimate += ask.images.tokens
        return ChatRequest(ask.messages, self._params, estimate, self.unstructured_system)

    @functools.cached_property
    def _params(self) -> EncodedParams:
        return EncodedParams(self.options.params)

    @functools.cached_property
    def _max_tokens(self) -> int | None:
        return self.options.max_tokens

    def open_cache(self) -> ResponseCache | None:
        option = self.options.cache
        return None if option is False else ResponseCache.open(option, clock=self.clock)

    async def _tick(self, progress: Progress, cache: ResponseCache | None) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            progress.refresh(self.stats)
            self.timeline.sample()
            if cache is not None:
                cache.maybe_flush()

    def _result(self) -> Any:
        return self.sink.frame(self.options.prices, timeline=self.timeline.per_second())


class _Sending:
    """The online run's sending over the planner's rows: a leader's request goes to the
    engine; a repeat joins its leader's request while that is in flight, or takes its kept
    answer. A leader whose answer was not worth keeping is forgotten by the planner, so the
    next row asking the same is sent (as the new leader)."""

    def __init__(self, planner: RowPlanner, sink: ResultSink) -> None:
        self.planner = planner
        self.sink = sink
        self.in_flight: dict[int, tuple[ChatRequest, Ask]] = {}  # by the leader's position

    def work(self, request_for: Callable[[Ask], ChatRequest]) -> Iterator[RowWork]:
        """What the engine runs: a request to send, or a row's known outcome."""
        for item in self.planner.walk():
            if isinstance(item, Known):
                yield item.position, item.outcome
            elif item.leader is None:
                request = request_for(item)
                self.in_flight[item.position] = (request, item)
                yield item.position, request
            elif (flying := self.in_flight.get(item.leader)) is not None:
                flying[0].followers.append(item.position)
            else:
                yield item.position, self.sink.columns.repeat_of(item.leader, item.position)

    def on_result(self, outcome: RowOutcome) -> None:
        position: int = outcome.row_id  # type: ignore[assignment]
        self.sink.record(position, outcome)
        flying = self.in_flight.pop(position, None)
        if flying is not None and not self.sink.keep(outcome, flying[1].key):
            self.planner.forget(flying[1])
