"""The async engine: sends chat-completion requests concurrently, within limits, with retries.

``CompletionEngine.run`` takes an iterable of ``(row_id, ChatRequest)`` and reports one
``RowOutcome`` per row through a callback as soon as the row is done. ``max_concurrent``
workers pull rows from the shared iterator, so tasks and memory are bounded by the
concurrency, not the number of rows, and no row waits for another row's chunk. The
iterable may also carry rows whose outcome is already known (an answer from the cache, a
missing prompt) as ``(row_id, RowOutcome)``: they pass through the same reader, tally and
callback, so every row is counted in one place. Knows nothing of pandas, tqdm or the cache.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass

import aiohttp

from holysheep_nb.chat import Answer, ChatRequest, MalformedAnswer, error_detail, parse_answer
from holysheep_nb.clock import Clock, SystemClock
from holysheep_nb.endpoint import Endpoint, ssl_option
from holysheep_nb.errors import redact
from holysheep_nb.outcome import AnswerReader, OutcomeKind, RowOutcome, RunStats, read_answer
from holysheep_nb.policies import EngineSettings
from holysheep_nb.ratelimit import Throttle
from holysheep_nb.retry import (
    Verdict,
    budget_hold,
    classify_status,
    next_delay,
    parse_retry_after,
)
from holysheep_nb.transport import describe_exception, payload, proxy_for

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


class _Aborted(Exception):
    """Raised inside a run's sleeps once the provider refused the key."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one attempt came back with."""

    verdict: Verdict
    answer: Answer | None = None
    status: int | None = None
    kind: OutcomeKind = OutcomeKind.OK
    detail: str = ""
    retry_after: float | None = None


_TIMEOUT = _Outcome(Verdict.RETRY, kind=OutcomeKind.TIMEOUT)
_KIND_OF_VERDICT = {Verdict.RETRY: OutcomeKind.SERVER, Verdict.AUTH: OutcomeKind.AUTH}


class _Run:
    """The state of one run: session, throttle, counters and the auth-abort flag."""

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
        self.on_result = on_result
        self.stats = stats
        self.url = engine.endpoint.chat_url
        self.key = engine.endpoint.api_key
        self.key_bytes = self.key.encode() if self.key else b""
        self.proxy = proxy_for(self.url)
        self.auth_error: str | None = None
        self.abort = asyncio.Event()
        self.throttle = Throttle(engine.settings.limits, self.clock, sleep=self.sleep)
        self.session: aiohttp.ClientSession | None = None

    async def execute(self, rows: Iterator[RowWork]) -> None:
        settings = self.engine.settings
        connector = aiohttp.TCPConnector(
            limit=settings.max_concurrent, ssl=ssl_option(self.engine.endpoint.verify)
        )
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=settings.timeout),
            headers=self.engine.endpoint.headers(),
        ) as session:
            self.session = session
            workers = [
                asyncio.ensure_future(self.work(rows)) for _ in range(settings.max_concurrent)
            ]
            try:
                await asyncio.gather(*workers)
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    async def work(self, rows: Iterator[RowWork]) -> None:
        for row_id, item in rows:
            if isinstance(item, RowOutcome):
                self.report(item)
            elif self.auth_error is not None:
                self.report(self.not_sent(row_id, None))
            else:
                self.report(await self.complete(row_id, item))

    def report(self, outcome: RowOutcome) -> None:
        """Read the answer, count the row once, and hand it to the caller."""
        outcome = read_answer(outcome, self.reader)
        self.stats.record(outcome)
        self.on_result(outcome)

    async def complete(self, row_id: Hashable, request: ChatRequest) -> RowOutcome:
        """One row through attempts and waits until it has its final outcome."""
        clock = self.clock
        body = request.body(self.engine.endpoint.model)
        estimate = request.estimated_tokens
        started: float | None = None
        attempts = 0
        while True:
            try:
                await self.throttle.acquire(estimate)
            except _Aborted:
                return self.not_sent(row_id, started, attempts)
            if self.auth_error is not None:
                return self.not_sent(row_id, started, attempts)
            attempts += 1
            if started is None:
                started = clock.now()
            outcome = await self.attempt(body)
            answer = outcome.answer
            if answer is not None:
                used = (answer.prompt_tokens or 0) + (answer.completion_tokens or 0)
                if used:
                    self.throttle.settle_tokens(estimate, used)
                return RowOutcome(
                    row_id,
                    OutcomeKind.OK,
                    response=answer.text,
                    latency=clock.now() - started,
                    attempts=attempts,
                    prompt_tokens=answer.prompt_tokens,
                    completion_tokens=answer.completion_tokens,
                )
            if outcome.verdict is Verdict.AUTH:
                self.abort_run(outcome.status)
            if outcome.verdict is not Verdict.RETRY or attempts >= self.policy.max_attempts:
                return self.failed(row_id, outcome, attempts, clock.now() - started)
            delay = next_delay(attempts, self.policy, outcome.retry_after, self.engine.jitter())
            self.stats.retries += 1
            if outcome.status == 429:
                # A 429 speaks for the whole account: hold every new send, not just this row.
                self.throttle.pause_until(clock.now() + delay)
                continue
            try:
                await self.sleep(delay)
            except _Aborted:
                return self.not_sent(row_id, started, attempts)

    async def attempt(self, body: bytes) -> _Outcome:
        """Send once; turn whatever happens (but cancellation) into an ``_Outcome``."""
        assert self.session is not None
        stats = self.stats
        stats.requests_sent += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            post = self.session.post(self.url, data=payload(body), proxy=self.proxy)
            async with post as response:
                raw = self.scrub(await response.read())
                status = response.status
                headers = response.headers
        except (asyncio.TimeoutError, TimeoutError):
            return _TIMEOUT
        except aiohttp.ClientError as exc:
            return _Outcome(
                Verdict.RETRY, kind=OutcomeKind.CONNECTION, detail=describe_exception(exc)
            )
        finally:
            stats.in_flight -= 1
        if status == 429:
            stats.rate_limited += 1
        hold = budget_hold(headers, stats.in_flight)
        if hold:
            self.throttle.pause_until(self.clock.now() + min(hold, self.policy.max_retry_after))
        verdict = classify_status(status)
        if verdict is Verdict.OK:
            try:
                return _Outcome(verdict, answer=parse_answer(raw), status=status)
            except MalformedAnswer as exc:
                return _Outcome(
                    Verdict.RETRY, status=status, kind=OutcomeKind.MALFORMED, detail=str(exc)
                )
        retry_after = (
            parse_retry_after(headers, self.clock.wall()) if verdict is Verdict.RETRY else None
        )
        kind = _KIND_OF_VERDICT.get(verdict, OutcomeKind.HTTP)
        return _Outcome(
            verdict, status=status, kind=kind, detail=error_detail(raw), retry_after=retry_after
        )

    def scrub(self, raw: bytes) -> bytes:
        """``raw`` with the API key blanked, before any of it is cut short into an error line."""
        if self.key_bytes and self.key_bytes in raw:
            return raw.replace(self.key_bytes, b"***")
        return raw

    def failed(
        self, row_id: Hashable, outcome: _Outcome, attempts: int, latency: float
    ) -> RowOutcome:
        return RowOutcome(
            row_id,
            outcome.kind,
            status=outcome.status,
            detail=redact(outcome.detail, self.key),
            latency=latency,
            attempts=attempts,
        )

    def not_sent(self, row_id: Hashable, started: float | None, attempts: int = 0) -> RowOutcome:
        latency = None if started is None else self.clock.now() - started
        return RowOutcome(
            row_id,
            OutcomeKind.NOT_SENT,
            detail=self.auth_error or "",
            latency=latency,
            attempts=attempts,
        )

    def abort_run(self, status: int | None) -> None:
        if self.auth_error is None:
            self.auth_error = f"authentication failed (HTTP {status})"
            self.abort.set()

    async def sleep(self, delay: float) -> None:
        """Sleep on the run's clock, waking at once (with ``_Aborted``) if the run aborts."""
        if self.abort.is_set():
            raise _Aborted
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        aborted = asyncio.ensure_future(self.abort.wait())
        try:
            await asyncio.wait((sleeper, aborted), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            aborted.cancel()
        if self.abort.is_set():
            raise _Aborted
