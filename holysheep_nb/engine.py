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

Length: the run's row loop reads as one match on each answer's verdict, and the handling of
every verdict (resend, the schema in words, fallback, stop, a rate limit's wait, retry,
connection failures) stays beside it; the parts it uses are modules of their own
(``admission``, ``holds``, ``pool``, ``rows``, ``patience``, ``form_watch``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace

from holysheep_nb.adaptive import (
    ConcurrencyGate,
    ConcurrencyWindow,
    learned_width,
    remember_width,
)
from holysheep_nb.admission import Admission, NullSharedLimit, SharedPart, Stopped, Ticket
from holysheep_nb.answers import Answer
from holysheep_nb.attempt import Attempt, Sender, open_sender
from holysheep_nb.clock import Clock, SystemClock
from holysheep_nb.endpoint import Endpoint
from holysheep_nb.errors import redact, warn
from holysheep_nb.form_watch import FormWatch
from holysheep_nb.holds import BudgetHolds
from holysheep_nb.model_list import LIST_TIMEOUT, listed_ids
from holysheep_nb.model_list import advice as model_advice
from holysheep_nb.outcome import (
    AnswerReader,
    RowOutcome,
    RunStats,
    RunStop,
    read_answer,
)
from holysheep_nb.patience import DeadServer, Patience
from holysheep_nb.policies import EngineSettings
from holysheep_nb.pool import Halt, RowWork, WorkerPool
from holysheep_nb.ratelimit import SHARED_LIMIT, Throttle, counts_tokens
from holysheep_nb.retry import Verdict, next_delay, wait_too_long
from holysheep_nb.rows import RowState, answered, failed, not_sent
from holysheep_nb.sending import enlist

ResultCallback = Callable[[RowOutcome], None]


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


class _Run:
    """One run: the session's sender, admission, holds, the stop, the workers, the tally."""

    def __init__(
        self,
        engine: CompletionEngine,
        on_result: ResultCallback,
        stats: RunStats,
        reader: AnswerReader | None,
    ):
        self.engine = engine
        self.reader = reader
        self.on_result = on_result
        self.stats = stats
        settings = engine.settings
        self.now = engine.clock.now
        #: A separate object, so that the throttle holding its sleep does not tie the run
        #: into a reference cycle (a finished run's results would then stay alive until the
        #: next full collection).
        self.halt = Halt(engine.clock)
        self.throttle = Throttle(settings.limits, engine.clock, sleep=self.halt.sleep)
        self.window = stats.concurrency = ConcurrencyWindow.slow_starting(
            settings.max_concurrent, start=learned_width(engine.endpoint.chat_url)
        )
        gate = ConcurrencyGate(self.window)
        shared = SHARED_LIMIT.get()  # a limit shared with runs in other processes (Dask)
        self.shared: SharedPart | NullSharedLimit
        if shared is None:
            self.shared = NullSharedLimit()
            self.admission = Admission(gate, self.throttle)
        else:
            self.shared = SharedPart(shared, stats, self.halt.sleep, engine.clock)
            self.admission = Admission(gate, self.throttle, self.shared)
        #: Whether an answer's usage corrects the send's token estimate.
        self.settles = counts_tokens(settings.limits)
        self.holds = BudgetHolds(
            self.throttle,
            self.shared,
            stats,
            engine.clock,
            settings.retry.max_retry_after,
            engine.endpoint.chat_url,
        )
        self.sender: Sender | None = None
        self.pool = WorkerPool(settings.max_concurrent)
        self.structured = True  # False once the server rejected response_format
        self.form = FormWatch()  # whether the server heeds response_format (form_watch)
        self.connect_failures = 0
        self.patience = Patience(settings.retry.max_retry_after)
        self.dead = DeadServer()
        self.listening = True  # whether an answer may change patience or the dead watch
        self.model = engine.endpoint.model

    async def execute(self, rows: Iterator[RowWork]) -> None:
        engine = self.engine
        async with open_sender(
            engine.endpoint, engine.settings, self.stats, engine.clock
        ) as sender:
            self.sender = sender
            self.pool.rows = rows
            for _ in range(engine.settings.max_concurrent):
                self.spawn()
            try:
                await self.pool.finish()
            finally:
                remember_width(engine.endpoint.chat_url, self.window)
            if self.halt.reason is not None:
                await self.tell_stop(self.halt.reason, sender)

    def spawn(self) -> None:
        """Start one more worker on the shared rows."""
        worker = asyncio.ensure_future(self.work(self.pool.rows))
        self.pool.workers.add(worker)
        worker.add_done_callback(self.pool.retire)

    async def work(self, rows: Iterator[RowWork]) -> None:
        pool = self.pool
        enlist()  # its own Sending, not that of the worker whose context it was started in
        for row_id, item in rows:
            if isinstance(item, RowOutcome):
                self.record(read_answer(item, self.reader))  # known before: the cache
                continue
            row = RowState(row_id, item, Ticket(item.estimated_tokens))
            outcome = self.not_sent(row) if self.halt.reason else await self.complete(row)
            self.record(outcome)
            for follower in item.followers:
                # Sent once, answered for every row that asked exactly the same. It keeps
                # the attempts of the request that answered it ("after 6 attempts").
                self.record(replace(outcome, row_id=follower, latency=None, held=0.0, shared=True))
            if pool.surplus:
                return  # one stood in for this worker while its row waited: retire

    async def rest(self, delay: float) -> None:
        """Wait out one row's backoff, with a worker standing in for this one meanwhile.

        A row that waits for its Retry-After (or its backoff) must not idle a slot of the
        run: another worker takes the next row, and whichever worker finishes a row while
        more than ``max_concurrent`` are awake retires. Requests in flight stay bounded by
        the gate; workers (and rows held) by twice ``max_concurrent``.
        """
        pool = self.pool
        pool.resting += 1
        try:
            if pool.short:
                self.spawn()
            await self.halt.sleep(delay)
        finally:
            pool.resting -= 1

    def record(self, outcome: RowOutcome) -> None:
        """Count the row once and hand it to the caller."""
        self.stats.record(outcome)
        self.on_result(outcome)

    async def complete(self, row: RowState) -> RowOutcome:
        """One row through attempts and waits until it has its final outcome: one case per
        verdict of its last attempt. The outcome says how much of its latency was spent held
        for the pace or the budget (``RowOutcome.held``)."""
        while True:
            attempt = await self.attempt(row)
            if attempt is None:
                return self.not_sent(row)
            match attempt.judgement.verdict:
                case Verdict.OK:
                    assert attempt.answer is not None
                    outcome = self.answered(row, attempt.answer)
                    if not self.in_words(row, outcome):
                        return outcome
                case Verdict.RETRY if attempt.unsent and row.free_resends < FREE_RESENDS:
                    # The server cannot have read it: send it again at no attempt's cost.
                    row.free_resends += 1
                    row.attempts -= 1
                    self.stats.resent += 1
                case Verdict.FALLBACK:
                    # Only a request that carried response_format is refused this way: the
                    # server refused the form of the request, not the row.
                    self.fall_back(attempt)
                    row.attempts -= 1
                case Verdict.STOP:
                    assert attempt.judgement.stop is not None
                    self.stop_run(attempt.judgement.stop)
                    return self.failed(row, attempt)
                case Verdict.RETRY if attempt.status == 429:
                    # A rate limit: the provider takes the row later, at no attempt's cost.
                    last = await self.later(row, attempt)
                    if last is not None:
                        return last
                case Verdict.RETRY:
                    last = await self.retry(row, attempt)
                    if last is not None:
                        return last
                case _:
                    return self.failed(row, attempt)

    async def attempt(self, row: RowState) -> Attempt | None:
        """Admit and send the row once; None when the run stopped before it could go.

        What the answer says of the provider's concurrency and budget is learned here, for
        every answer, before its verdict is read.
        """
        assert self.sender is not None
        ticket = row.ticket
        admission = self.admission
        passed = admission.ready(ticket)  # the hot path: every part admits at once
        if passed < len(admission.parts):
            ticket.held = 0.0
            try:
                await admission.wait(ticket, passed)
            except Stopped as stopped:
                if stopped.reason is not None:  # every run sharing the limit has stopped
                    self.stop_run(stopped.reason)
                return None
            if row.started is not None:  # the first send's wait is before its latency
                row.held += ticket.held
        headers: Mapping[str, str] | None = None
        try:
            if self.halt.reason is not None:
                return None
            row.attempts += 1
            if row.started is None:
                row.started = self.now()
            request = row.request
            structured = row.structured = (
                self.structured and "response_format" in request.params and not row.in_words
            )
            attempt = await self.sender.send(
                request.body(self.model, structured=structured), structured=structured
            )
            headers = attempt.headers
        finally:
            self.admission.leave(headers)
        budget_spent = self.holds.observe(headers)
        row.heard = self.now()
        if self.listening or attempt.answer is None:
            self.listen(row, attempt)
        row.crowded = False
        if attempt.status == 429:
            if attempt.verdict is Verdict.RETRY:  # a quota 429 says nothing of concurrency
                row.crowded = self.window.rate_limited(
                    ticket.sent_at,
                    ticket.generation,
                    budget_spent=budget_spent,
                    hinted=attempt.retry_after is not None,
                )
        elif attempt.status is not None:
            self.window.success(ticket.sent_at)
        row.budget_spent = budget_spent
        return attempt

    def listen(self, row: RowState, attempt: Attempt) -> None:
        """Tell the run's patience with 429s and its dead-server watch what came back.

        Once both have nothing to watch (an answer came back, and no 429 since), a usual
        answer changes neither, so ``attempt`` skips telling them (``listening``).
        """
        self.patience.heard(attempt.status, row.heard)
        dead = self.dead.heard(row.row_id, attempt.status, attempt.detail)
        if dead is not None:
            self.stop_run(dead)
        self.listening = self.patience.since is not None or self.dead.rows is not None

    async def retry(self, row: RowState, attempt: Attempt) -> RowOutcome | None:
        """Wait before the row's next attempt; its final outcome instead when there is none."""
        if attempt.connect_failed:
            self.count_connect_failure(attempt)
        policy = self.engine.settings.retry
        if row.attempts >= policy.max_attempts:
            return self.failed(row, attempt)
        wait = attempt.retry_after
        if wait is not None and wait > policy.max_retry_after:
            self.stop_run(wait_too_long(wait, attempt.status))
            return self.failed(row, attempt)
        delay = next_delay(row.attempts, policy, wait, self.engine.jitter())
        self.stats.retries += 1
        try:
            await self.rest(delay)
        except Stopped:
            return self.not_sent(row)
        return None

    async def later(self, row: RowState, attempt: Attempt) -> RowOutcome | None:
        """Wait out a rate-limit 429 without spending an attempt, within the run's and the
        row's bounds (``patience``); the row's final outcome when it goes no further."""
        policy = self.engine.settings.retry
        stop = self.patience.stop(self.now(), attempt.detail)
        if stop is not None:
            self.stop_run(stop)
            return self.not_sent(row)
        wait = attempt.retry_after
        if wait is not None and wait > policy.max_retry_after:
            self.stop_run(wait_too_long(wait, attempt.status))
            return self.failed(row, attempt)
        row.rate_limited += 1
        if row.crowded:
            # Refused for the requests in flight, which the window now allows for: the row
            # goes again when the gate has room (a cap's 429 gives no time to wait).
            row.attempts -= 1
            self.stats.retries += 1
            return None
        delay = next_delay(row.rate_limited, policy, wait, self.engine.jitter())
        if row.limited_for + delay > policy.max_retry_after:
            return self.refused(row, attempt)  # only this row is refused, for that long
        row.limited_for += delay
        row.attempts -= 1
        self.stats.retries += 1
        if row.budget_spent or self.window.cluster:
            # The account's budget is spent: hold every new send, not just this row.
            self.holds.pause(self.now() + delay, "429s back to back")
            return None
        try:
            await self.rest(delay)
        except Stopped:
            return self.not_sent(row)
        return None

    def fall_back(self, attempt: Attempt) -> None:
        """Stop asking for ``response_format`` for the rest of the run (once, with a notice).

        Rows whose structured requests were already in flight get the same refusal: each is
        sent again without it, at no attempt's cost, and the notice is given once.
        """
        if not self.structured:
            return
        self.structured = False
        warn(
            f"the server rejected response_format ({attempt.detail}); holysheep_nb asks without "
            "it for the rest of this run and reads the answers all the same. Pass "
            "structured=False to skip the first try."
        )

    def in_words(self, row: RowState, outcome: RowOutcome) -> bool:
        """True when the row goes again with the schema in the system message: its answer to
        ``response_format`` did not fit, and the server may ignore it (``form_watch``)."""
        resend = (
            row.structured
            and row.request.unstructured_system is not None
            and self.form.resend(outcome)
        )
        if not resend:
            return False
        self.schema_ignored(outcome)
        if row.attempts >= self.engine.settings.retry.max_attempts:
            return False
        row.in_words = True
        return True

    def schema_ignored(self, outcome: RowOutcome) -> None:
        """Switch to the schema in the system message for the rest of the run (once, with a
        notice) when answers to ``response_format`` keep failing the schema (``form_watch``)."""
        if not self.form.switch or not self.structured:
            return
        self.structured = False
        warn(
            f"{self.form.misses} answers in a row did not fit the schema although the request "
            f"asked for it in response_format ({outcome.detail}): this server seems to ignore "
            "response_format. holysheep_nb writes the whole schema into the system message for "
            "the rest of this run, and sends rows whose answer did not fit again that way while "
            "they have attempts left. Pass structured=False to skip the first try."
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

    def answered(self, row: RowState, answer: Answer) -> RowOutcome:
        """The row's answer came back: settle its token estimate, then read it."""
        if self.settles:
            used = (answer.prompt_tokens or 0) + (answer.completion_tokens or 0)
            if used:
                self.throttle.settle_tokens(row.ticket.tokens, used)
                self.shared.settle(row.ticket.tokens, used)
        return answered(
            row.row_id, answer, self.reader, row.latency(row.heard), row.attempts, row.held
        )

    def failed(self, row: RowState, attempt: Attempt) -> RowOutcome:
        return failed(row, attempt, self.engine.endpoint.api_key, self.now())

    def refused(self, row: RowState, attempt: Attempt) -> RowOutcome:
        """A row the provider refused with 429s for ``max_retry_after`` in all."""
        outcome = self.failed(row, attempt)
        times = f"{row.rate_limited} times over {row.limited_for:,.0f} s"
        return replace(outcome, detail=f"{outcome.detail} (refused {times})")

    def not_sent(self, row: RowState) -> RowOutcome:
        return not_sent(row, self.halt.reason, self.now())

    def stop_run(self, stop: RunStop) -> None:
        """Stop the run (the first reason wins): nothing more is sent, waiters wake up. The
        user is told when the run's workers are done (``tell_stop``)."""
        if self.halt.reason is not None:
            return
        stop = replace(stop, cause=redact(stop.cause, self.engine.endpoint.api_key))
        self.halt.reason = self.stats.stop = stop
        self.halt.event.set()
        self.shared.stop(stop)

    async def tell_stop(self, stop: RunStop, sender: Sender) -> None:
        """Tell the user why the run stopped, once. For a model the server does not know,
        the advice first names the closest of the server's models (``model_list``: one
        ``GET /models`` on the run's session)."""
        if stop.missing_model:
            url = self.engine.endpoint.models_url
            raw = None if url is None else await sender.read(url, LIST_TIMEOUT)
            listed = None if raw is None else listed_ids(raw)
            stop = replace(stop, advice=model_advice(self.model, url, listed))
            self.halt.reason = self.stats.stop = stop
        warn(f"holysheep_nb stopped the run: {stop}")
