"""The async engine: sends chat-completion requests concurrently, within limits, with retries.

``CompletionEngine.run`` takes an iterable of ``(row_id, ChatRequest)`` and reports one
``RowOutcome`` per row through a callback as soon as the row is done. ``max_concurrent``
workers pull rows from the shared iterator (one more stands in while a row waits out its
backoff, up to twice as many), so tasks and memory are bounded by the concurrency, not the
number of rows, and no row waits for another row's chunk. The
iterable may also carry rows whose outcome is already known (an answer from the cache, a
missing prompt) as ``(row_id, RowOutcome)``: they pass through the same reader, tally and
callback, so every row is counted in one place. A request's ``followers`` (rows asking
exactly the same) are sent nothing: they get its outcome, marked ``shared``, when it comes
back. Knows nothing of pandas, tqdm or the cache.
"""

from __future__ import annotations

import asyncio
import random
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import aiohttp

from holysheep_nb.adaptive import ConcurrencyGate, ConcurrencyWindow, StatedLimit
from holysheep_nb.answers import Answer, answer_kind
from holysheep_nb.attempt import Attempt, ReuseTrackingConnector, Sender
from holysheep_nb.chat import ChatRequest
from holysheep_nb.clock import Clock, SystemClock
from holysheep_nb.endpoint import Endpoint, ssl_option
from holysheep_nb.errors import HolySheepWarning, redact
from holysheep_nb.form_watch import FormWatch
from holysheep_nb.outcome import (
    AnswerReader,
    OutcomeKind,
    RowOutcome,
    RunStats,
    RunStop,
    read_answer,
    read_text,
)
from holysheep_nb.policies import EngineSettings
from holysheep_nb.ratelimit import SHARED_LIMIT, Throttle
from holysheep_nb.retry import Verdict, budget_hold, next_delay, wait_too_long
from holysheep_nb.transport import proxy_for

ResultCallback = Callable[[RowOutcome], None]
#: What a run's iterable yields: a request to send, or a row whose outcome is already known.
RowWork = tuple[Hashable, ChatRequest | RowOutcome]


class CompletionEngine:
    """Runs chat completions for many rows against one endpoint with one set of policies.

    ``clock`` and ``jitter`` (a callable returning a uniform draw in [0, 1)) are injected so
    tests can assert exact waits. The engine holds no loop-bound state: every run creates its
    own session, semaphore-free worker pool and throttle inside the running coroutine.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        settings: EngineSettings | None = None,
        *,
        clock: Clock | None = None,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.settings = settings or EngineSettings()
        self.clock = clock or SystemClock()
        self.jitter = jitter or random.random

    async def run(
        self,
        requests: Iterable[RowWork],
        on_result: ResultCallback,
        *,
        stats: RunStats | None = None,
        reader: AnswerReader | None = None,
    ) -> RunStats:
        """Send every request; call ``on_result`` once per row as it finishes; return the stats.

        ``reader`` turns each answer (sent or passed in) into the row's value, or rejects it
        with ``AnswerRejected`` (an answer off the label set), before the row is counted.
        Cancellation (an interrupt) stops every worker, cancels requests in flight and closes
        the session before it propagates; rows already reported stay reported.
        """
        stats = stats if stats is not None else RunStats()
        stats.started = self.clock.now()
        try:
            await _Run(self, on_result, stats, reader).execute(iter(requests))
        finally:
            stats.finished = self.clock.now()
        return stats

    def __repr__(self) -> str:
        return f"CompletionEngine({self.endpoint!r}, {self.settings!r})"


#: Connection failures, with no answer ever received, after which the run stops: the server
#: is not there (wrong base_url, server down, no network), and every row would say so.
CONNECT_FAILURES_TO_STOP = 3
#: Times one row may be resent without spending an attempt when its request cannot have
#: been read (a pooled keep-alive connection the server had closed).
FREE_RESENDS = 2


class _Stopped(Exception):
    """Raised inside a run's sleeps once the run has stopped."""


class _RunSleep:
    """Sleeps on the run's clock, waking at once (with ``_Stopped``) if the run stops."""

    def __init__(self, clock: Clock, stopped: asyncio.Event) -> None:
        self.clock = clock
        self.stopped = stopped

    async def sleep(self, delay: float) -> None:
        if self.stopped.is_set():
            raise _Stopped
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        stopped = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait((sleeper, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopped.cancel()
        if self.stopped.is_set():
            raise _Stopped


class _Run:
    """The state of one run: session, throttle, counters, the stop and the fallback."""

    def __init__(
        self,
        engine: CompletionEngine,
        on_result: ResultCallback,
        stats: RunStats,
        reader: AnswerReader | None,
    ):
        self.engine = engine
        self.reader = reader
        self.clock = engine.clock
        self.policy = engine.settings.retry
        self.model = engine.endpoint.model
        self.on_result = on_result
        self.stats = stats
        self.stop: RunStop | None = None
        self.stopped = asyncio.Event()
        self.structured = True  # False once the server rejected response_format
        self.form = FormWatch()  # whether the server heeds response_format (form_watch)
        self.connect_failures = 0
        #: The run's sleep; a separate object, so that the throttle holding it does not tie
        #: the run into a reference cycle (a finished run's results would then stay alive
        #: until the next full collection).
        self.sleep = _RunSleep(self.clock, self.stopped).sleep
        self.throttle = Throttle(engine.settings.limits, self.clock, sleep=self.sleep)
        self.window = ConcurrencyWindow(engine.settings.max_concurrent)
        self.gate = ConcurrencyGate(self.window)
        self.stated = StatedLimit()
        stats.concurrency = self.window
        self.sender: Sender | None = None
        #: A limit shared with runs in other processes (a Dask cluster's), if any.
        self.shared = SHARED_LIMIT.get()
        if self.shared is not None:
            self.shared.track(stats)
        self.rows: Iterator[RowWork] = iter(())
        self.workers: set[asyncio.Future[None]] = set()
        self.resting = 0  # workers whose row is waiting out a backoff
        self.idle = asyncio.Event()  # set when the last worker ends, or one crashed
        self.crash: BaseException | None = None

    async def execute(self, rows: Iterator[RowWork]) -> None:
        settings = self.engine.settings
        endpoint = self.engine.endpoint
        connector = ReuseTrackingConnector(
            limit=settings.max_concurrent, ssl=ssl_option(endpoint.verify)
        )
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=settings.timeout),
            headers=endpoint.session_headers(),
        ) as session:
            self.sender = Sender(
                session,
                endpoint.chat_url,
                stats=self.stats,
                proxy=proxy_for(endpoint.chat_url),
                key=endpoint.api_key,
                headers=endpoint.request_headers
                if endpoint.fresh_headers
                else endpoint.request_headers(),
                wall=self.clock.wall,
            )
            self.rows = rows
            for _ in range(settings.max_concurrent):
                self.spawn()
            try:
                await self.idle.wait()
                if self.crash is not None:
                    raise self.crash
            finally:
                workers = list(self.workers)
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    def spawn(self) -> None:
        """Start one more worker on the shared rows."""
        worker = asyncio.ensure_future(self.work(self.rows))
        self.workers.add(worker)
        worker.add_done_callback(self.retire)

    def retire(self, worker: asyncio.Future[None]) -> None:
        """Forget a finished worker; the run is over when the last one ends or one crashes."""
        self.workers.discard(worker)
        if not worker.cancelled() and worker.exception() is not None and self.crash is None:
            self.crash = worker.exception()
            self.idle.set()
        if not self.workers:
            self.idle.set()

    async def work(self, rows: Iterator[RowWork]) -> None:
        max_concurrent = self.engine.settings.max_concurrent
        for row_id, item in rows:
            if isinstance(item, RowOutcome):
                self.report(item)
                continue
            if self.stop is not None:
                outcome = self.not_sent(row_id, None)
            else:
                outcome = await self.complete(row_id, item)  # read as it was built
            self.record(outcome)
            for follower in item.followers:
                # Sent once, answered for every row that asked exactly the same.
                # It keeps the attempts of the request that answered it ("after 6 attempts").
                shared = replace(outcome, row_id=follower, latency=None, held=0.0, shared=True)
                self.record(shared)
            if len(self.workers) - self.resting > max_concurrent:
                return  # one stood in for this worker while its row waited: retire

    async def rest(self, delay: float) -> None:
        """Wait out one row's backoff, with a worker standing in for this one meanwhile.

        A row that waits for its Retry-After (or its backoff) must not idle a slot of the
        run: another worker takes the next row, and whichever worker finishes a row while
        more than ``max_concurrent`` are awake retires. Requests in flight stay bounded by
        the gate; workers (and rows held) by twice ``max_concurrent``.
        """
        max_concurrent = self.engine.settings.max_concurrent
        self.resting += 1
        try:
            awake = len(self.workers) - self.resting
            if awake < max_concurrent and len(self.workers) < 2 * max_concurrent:
                self.spawn()
            await self.sleep(delay)
        finally:
            self.resting -= 1

    def report(self, outcome: RowOutcome) -> None:
        """Read the answer of an outcome known before (the cache), then record it."""
        self.record(read_answer(outcome, self.reader))

    def record(self, outcome: RowOutcome) -> None:
        """Count the row once and hand it to the caller."""
        self.stats.record(outcome)
        self.on_result(outcome)

    async def complete(self, row_id: Hashable, request: ChatRequest) -> RowOutcome:
        """One row through attempts and waits until it has its final outcome, with the part
        of its latency spent held for the budget (``RowOutcome.held``)."""
        held = [0.0]
        outcome = await self.attempts(row_id, request, held)
        return replace(outcome, held=held[0]) if held[0] else outcome

    async def attempts(
        self, row_id: Hashable, request: ChatRequest, held: list[float]
    ) -> RowOutcome:
        """``complete``'s loop; adds to ``held[0]`` the seconds a retry of the row waited
        for the pace or a spent budget (the first send's wait is before its latency)."""
        assert self.sender is not None
        clock = self.clock
        estimate = request.estimated_tokens
        started: float | None = None
        attempts = free_resends = 0
        in_words = False  # sent again with the schema in the system message (form_watch)
        while True:
            sent_at = self.gate.try_acquire() or await self.gate.acquire()
            generation = self.window.generation
            admitted = False
            answer_headers: Mapping[str, str] | None = None
            try:
                try:
                    waited = clock.now()
                    if not self.throttle.open():
                        await self.throttle.acquire(estimate)
                    if self.shared is not None:
                        admitted = await self.admit(estimate)
                    if started is not None:
                        held[0] += clock.now() - waited
                except _Stopped:
                    return self.not_sent(row_id, started, attempts)
                if self.stop is not None:
                    return self.not_sent(row_id, started, attempts)
                attempts += 1
                if started is None:
                    started = clock.now()
                structured = self.structured and request.structured and not in_words
                body = request.body(self.model, structured=structured)
                attempt = await self.sender.send(body, structured=structured)
                answer_headers = attempt.headers
            finally:
                self.gate.release()
                if admitted:
                    assert self.shared is not None
                    self.shared.release(answer_headers)
            budget_spent = self.hold_for_budget(attempt)
            verdict = attempt.verdict
            if attempt.status == 429:
                if verdict is Verdict.RETRY:  # a quota 429 says nothing of concurrency
                    self.window.rate_limited(sent_at, generation, budget_spent=budget_spent)
            elif attempt.status is not None:
                self.window.success(sent_at)
            if verdict is Verdict.OK:
                assert attempt.answer is not None
                outcome = self.answered(row_id, attempt.answer, attempts, started, estimate)
                resend = (
                    structured
                    and request.unstructured_system is not None
                    and self.form.resend(outcome.kind)
                )
                if resend:
                    self.schema_ignored(outcome)
                    if attempts < self.policy.max_attempts:
                        in_words = True
                        continue
                return outcome
            if attempt.unsent and free_resends < FREE_RESENDS:
                free_resends += 1
                attempts -= 1
                self.stats.resent += 1
                continue
            if verdict is Verdict.FALLBACK:
                # Only a request that carried response_format is refused this way: the
                # server refused the form of the request, not the row.
                self.fall_back(attempt)
                attempts -= 1
                continue
            if verdict is Verdict.STOP:
                assert attempt.judgement.stop is not None
                self.stop_run(attempt.judgement.stop)
                return self.failed(row_id, attempt, attempts, started)
            if attempt.connect_failed:
                self.count_connect_failure(attempt)
            if verdict is not Verdict.RETRY or attempts >= self.policy.max_attempts:
                return self.failed(row_id, attempt, attempts, started)
            wait = attempt.retry_after
            if wait is not None and wait > self.policy.max_retry_after:
                self.stop_run(wait_too_long(wait, attempt.status))
                return self.failed(row_id, attempt, attempts, started)
            delay = next_delay(attempts, self.policy, attempt.retry_after, self.engine.jitter())
            self.stats.retries += 1
            if attempt.status == 429 and (budget_spent or self.window.cluster):
                # The account's budget is spent: hold every new send, not just this row.
                self.pause(clock.now() + delay, "429s back to back")
                continue
            try:
                await self.rest(delay)
            except _Stopped:
                return self.not_sent(row_id, started, attempts)

    async def admit(self, tokens: float) -> bool:
        """Wait for the shared limit's turn (the run has one); True once it gave a slot."""
        assert self.shared is not None
        turn = await self.shared.admit(tokens)
        if isinstance(turn, RunStop):
            self.stop_run(turn)
            raise _Stopped
        if turn > 0:
            try:
                await self.sleep(turn)
            except BaseException:
                self.shared.release()
                raise
        return True

    def answered(
        self, row_id: Hashable, answer: Answer, attempts: int, started: float, estimate: int
    ) -> RowOutcome:
        """The outcome of a row whose answer came back: an answer, or why it is unusable."""
        used = (answer.prompt_tokens or 0) + (answer.completion_tokens or 0)
        if used:
            self.throttle.settle_tokens(estimate, used)
            if self.shared is not None:
                self.shared.settle(estimate, used)
        kind, detail = answer_kind(answer)
        value: Any = None
        fields: tuple[str, ...] = ()
        if kind is OutcomeKind.OK and self.reader is not None and answer.text is not None:
            kind, detail, value, fields = read_text(
                self.reader, answer.text, answer.finish_reason, answer.logprobs
            )
        return RowOutcome(
            row_id,
            kind,
            response=answer.text,
            value=value,
            fields=fields,
            detail=detail,
            latency=self.clock.now() - started,
            attempts=attempts,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            finish_reason=answer.finish_reason,
            reasoning=answer.reasoning,
            tool_calls=answer.tool_calls,
            logprobs=answer.logprobs,
        )

    def hold_for_budget(self, attempt: Attempt) -> bool:
        """Hold new sends while the provider's budget headers say it is spent; True if so."""
        if attempt.headers is None:
            return False
        in_flight = self.stats.in_flight
        if self.shared is not None:  # the provider's budget is spent by every sharing run
            in_flight = max(in_flight, self.shared.in_flight)
        hold = budget_hold(attempt.headers, in_flight)
        self.stated.observe(attempt.headers)
        if hold:
            rate = self.stated.per_minute(attempt.headers)
            if rate is not None and self.shared is None:
                # A run sharing its limit (Dask) leaves pacing to the shared limit, which reads
                # every process's answers: each pacing at the whole stated rate would send a
                # multiple of it.
                self.throttle.lower_request_rate(rate)
            wait = min(hold, self.policy.max_retry_after)
            self.pause(self.clock.now() + wait, "the provider's budget is spent")
        return bool(hold)

    def pause(self, until: float, reason: str) -> None:
        """Hold every new send until ``until``, and count the hold for the report and bar.

        A hold that ends before the requests pace would let the next send go anyway holds
        nothing and is not counted: told the rate, a run keeps the provider's window nearly
        full, and its headers say "spent" until the oldest send drops out of it.
        """
        if until <= self.throttle.next_send_at():
            return
        added = self.throttle.pause_until(until)
        if self.shared is not None:
            self.shared.hold(until - self.clock.now(), reason)
        if added > 0:
            stats = self.stats
            if stats.held_until is None or stats.held_until < self.clock.now():
                stats.paused += 1
            stats.paused_seconds += added
            stats.held_until = until
            stats.hold_reason = reason

    def fall_back(self, attempt: Attempt) -> None:
        """Stop asking for ``response_format`` for the rest of the run (once, with a notice).

        Rows whose structured requests were already in flight get the same refusal: each is
        sent again without it, at no attempt's cost, and the notice is given once.
        """
        if not self.structured:
            return
        self.structured = False
        warnings.warn(
            f"the server rejected response_format ({attempt.detail}); holysheep_nb asks without "
            "it for the rest of this run and reads the answers all the same. Pass "
            "structured=False to skip the first try.",
            HolySheepWarning,
            stacklevel=1,
        )

    def schema_ignored(self, outcome: RowOutcome) -> None:
        """Switch to the schema in the system message for the rest of the run (once, with a
        notice) when answers to ``response_format`` keep failing the schema (``form_watch``)."""
        if not self.form.switch or not self.structured:
            return
        self.structured = False
        warnings.warn(
            f"{self.form.misses} answers in a row did not fit the schema although the request "
            f"asked for it in response_format ({outcome.detail}): this server seems to ignore "
            "response_format. holysheep_nb writes the whole schema into the system message for "
            "the rest of this run, and sends rows whose answer did not fit again that way while "
            "they have attempts left. Pass structured=False to skip the first try.",
            HolySheepWarning,
            stacklevel=1,
        )

    def count_connect_failure(self, attempt: Attempt) -> None:
        assert self.sender is not None
        if self.sender.heard_back:
            return
        self.connect_failures += 1
        if self.connect_failures >= CONNECT_FAILURES_TO_STOP:
            url = self.engine.endpoint.chat_url
            self.stop_run(
                RunStop(
                    f"cannot connect to {url} ({attempt.detail})",
                    "check base_url, that the server is running, and the network",
                )
            )

    def failed(
        self, row_id: Hashable, attempt: Attempt, attempts: int, started: float
    ) -> RowOutcome:
        return RowOutcome(
            row_id,
            attempt.judgement.kind,
            status=attempt.status,
            detail=redact(attempt.detail, self.engine.endpoint.api_key),
            latency=self.clock.now() - started,
            attempts=attempts,
        )

    def not_sent(self, row_id: Hashable, started: float | None, attempts: int = 0) -> RowOutcome:
        latency = None if started is None else self.clock.now() - started
        return RowOutcome(
            row_id,
            OutcomeKind.NOT_SENT,
            detail=self.stop.cause if self.stop is not None else "",
            latency=latency,
            attempts=attempts,
        )

    def stop_run(self, stop: RunStop) -> None:
        """Stop the run (the first reason wins): nothing more is sent, waiters wake up."""
        if self.stop is not None:
            return
        stop = RunStop(redact(stop.cause, self.engine.endpoint.api_key), stop.advice)
        self.stop = self.stats.stop = stop
        self.stopped.set()
        if self.shared is not None:
            self.shared.stop(stop)
        warnings.warn(f"holysheep_nb stopped the run: {stop}", HolySheepWarning, stacklevel=1)
