"""The engine through aioresponses: statuses, Retry-After, 429 cool-down, auth abort,
malformed bodies, the concurrency bound and row integrity."""

from __future__ import annotations

import asyncio
import gc
import json
import random
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from email.utils import formatdate

import aiohttp
import pytest

from holysheep_nb.chat import ChatRequest, build_messages
from holysheep_nb.endpoint import Endpoint
from holysheep_nb.engine import CompletionEngine
from holysheep_nb.errors import HolySheepWarning
from holysheep_nb.outcome import OutcomeKind, RowOutcome, RunStats
from holysheep_nb.policies import EngineSettings, RateLimits, RetryPolicy
from holysheep_nb.ratelimit import SHARED_LIMIT
from tests.fakes import FakeClock, ScriptedJitter
from tests.scripted import BASE_URL, Reply, error_body, ok_body, scripted

KEY = "sk-live-9f8e7d6c5b4a39281706"


def request(prompt: str, **params: object) -> ChatRequest:
    return ChatRequest(build_messages(prompt, "Be brief."), params)


def engine(
    clock: FakeClock,
    *,
    jitter: Callable[[], float] | None = None,
    api_key: str | None = None,
    **settings: object,
) -> CompletionEngine:
    retry = settings.pop("retry", RetryPolicy(initial_wait=0.5, max_wait=8.0))
    limits = settings.pop("limits", RateLimits())
    return CompletionEngine(
        Endpoint(base_url=BASE_URL, model="test-model", api_key=api_key),
        EngineSettings(retry=retry, limits=limits, **settings),  # type: ignore[arg-type]
        clock=clock,
        jitter=jitter or ScriptedJitter([1.0]),
    )


async def run_all(
    eng: CompletionEngine, prompts: Iterable[str], **params: object
) -> tuple[dict[int, RowOutcome], RunStats]:
    results: dict[int, RowOutcome] = {}

    def keep(result: RowOutcome) -> None:
        assert result.row_id not in results, "a row was reported twice"
        results[result.row_id] = result  # type: ignore[index]

    rows = ((i, request(p, **params)) for i, p in enumerate(prompts))
    stats = await eng.run(rows, keep)
    return results, stats


async def test_success_reports_text_usage_latency_and_sends_the_body(clock: FakeClock) -> None:
    with scripted(clock) as server:
        server.script("hello", Reply(body=ok_body("hi there", 11, 2), advance=0.75))
        results, stats = await run_all(engine(clock), ["hello"], temperature=0, max_tokens=5)
    result = results[0]
    assert (result.response, result.error, result.attempts) == ("hi there", None, 1)
    assert (result.prompt_tokens, result.completion_tokens) == (11, 2)
    assert result.latency == pytest.approx(0.75)
    assert server.bodies == [
        {
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hello"},
            ],
            "temperature": 0,
            "max_tokens": 5,
        }
    ]
    assert (stats.succeeded, stats.failed, stats.requests_sent) == (1, 0, 1)
    assert (stats.prompt_tokens, stats.completion_tokens) == (11, 2)


@pytest.mark.parametrize("status", [408, 409, 425, 500, 502, 503, 504, 520])
async def test_retryable_status_is_retried_after_backoff(clock: FakeClock, status: int) -> None:
    with scripted(clock) as server:
        server.script("p", Reply(status, error_body("busy")))
        results, stats = await run_all(engine(clock, jitter=ScriptedJitter([0.5])), ["p"])
    assert results[0].response == "answer:p"
    assert results[0].attempts == 2
    assert clock.sleeps == [0.25]  # half of the first window (0.5 s)
    assert results[0].latency == pytest.approx(0.25)  # backoff counts in the latency
    assert stats.retries == 1


@pytest.mark.parametrize("status", [400, 413, 422, 501, 505])
async def test_other_statuses_fail_the_row_at_once(clock: FakeClock, status: int) -> None:
    with scripted(clock) as server:
        server.script("p", Reply(status, error_body("you sent something odd")))
        results, _ = await run_all(engine(clock), ["p", "q"])
    assert results[0].error == f"HTTP {status}: you sent something odd"
    assert results[0].response is None
    assert results[0].attempts == 1
    assert results[1].response == "answer:q"  # one row's failure never touches another
    assert server.count("p") == 1


async def test_exhausted_retries_wait_exact_backoff_then_fail(clock: FakeClock) -> None:
    with scripted(clock) as server:
        server.script("p", *[Reply(503, "<html><title>Service Unavailable</title></html>")] * 6)
        results, stats = await run_all(engine(clock), ["p"])
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]  # doubling, capped at max_wait=8
    assert results[0].error == "HTTP 503 after 6 attempts: HTML page: Service Unavailable"
    assert results[0].kind is OutcomeKind.SERVER
    assert results[0].attempts == 6
    assert server.count("p") == 6
    assert stats.retries == 5


async def test_max_retries_zero_means_one_attempt(clock: FakeClock) -> None:
    with scripted(clock) as server:
        server.script("p", Reply(500, error_body("boom")))
        results, _ = await run_all(engine(clock, retry=RetryPolicy(max_retries=0)), ["p"])
    assert results[0].error == "HTTP 500 after 1 attempt: boom"


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"Retry-After": "0.5"}, 0.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After": formatdate(1_700_000_000 + 7, usegmt=True)}, 7.0),
        ({}, 0.5),  # no hint: the computed backoff (jitter 1.0 x 0.5 s)
    ],
)
async def test_429_waits_what_the_server_asks(
    clock: FakeClock, headers: dict[str, str], wait: float
) -> None:
    with scripted(clock) as server:
        server.script("p", Reply(429, error_body("slow down"), headers))
        results, stats = await run_all(engine(clock), ["p"])
    assert results[0].response == "answer:p"
    assert clock.sleeps == pytest.approx([wait])
    assert server.send_times[1] - server.send_times[0] == pytest.approx(wait)
    assert stats.rate_limited == 1


async def test_a_wait_beyond_max_retry_after_stops_the_run(clock: FakeClock) -> None:
    """Waiting a day inside a notebook cell is worse than stopping and saying so."""
    with scripted(clock) as server:
        server.script("p", Reply(503, error_body("maintenance"), {"Retry-After": "86400"}))
        with pytest.warns(HolySheepWarning, match="asked to wait 86,400 s"):
            results, stats = await run_all(
                engine(clock, max_concurrent=1, retry=RetryPolicy(max_retry_after=30.0)),
                ["p", "q"],
            )
    assert clock.sleeps == []
    assert results[0].error == "HTTP 503 after 1 attempt: maintenance"
    assert (
        results[1].error
        == "not sent: the provider asked to wait 86,400 s (HTTP 503 with Retry-After)"
    )
    assert stats.stop is not None
    assert "max_retry_after=86400" in stats.stop.advice


async def test_a_wait_within_max_retry_after_is_waited(clock: FakeClock) -> None:
    with scripted(clock) as server:
        server.script("p", Reply(503, error_body("maintenance"), {"Retry-After": "30"}))
        results, _ = await run_all(engine(clock, retry=RetryPolicy(max_retry_after=30.0)), ["p"])
    assert clock.sleeps == [30.0]
    assert results[0].response == "answer:p"


async def test_a_stray_429_backs_off_its_own_row_only(clock: FakeClock) -> None:
    prompts = [f"row{i}" for i in range(12)]
    with scripted(clock) as server:
        server.script("row0", Reply(429, error_body("overloaded"), {"Retry-After": "5"}))
        results, stats = await run_all(engine(clock, max_concurrent=4), prompts)
    assert all(r.response == f"answer:row{i}" for i, r in results.items())
    assert clock.sleeps == [5.0]  # row0's own wait
    first_429 = server.send_times[0]
    others = [
        t
        for (prompt, _, _), t in zip(server.replied, server.send_times, strict=True)
        if prompt != "row0"
    ]
    assert others
    assert all(t == first_429 for t in others)  # nobody else waited
    assert stats.paused == 0
    assert stats.rate_limited == 1


async def test_429s_back_to_back_pause_every_new_send_of_the_run(clock: FakeClock) -> None:
    """Three 429s in a row with no success between: the account's budget is spent."""
    prompts = [f"row{i}" for i in range(12)]
    limited = Reply(429, error_body("rate limited"), {"Retry-After": "5"})
    with scripted(clock) as server:
        for prompt in ("row0", "row1", "row2"):
            server.script(prompt, limited)
        results, stats = await run_all(engine(clock, max_concurrent=3), prompts)
    assert all(r.response == f"answer:row{i}" for i, r in results.items())
    third_429 = server.send_times[2]
    later = server.send_times[3:]
    assert later
    assert all(t >= third_429 + 5.0 for t in later), server.send_times
    assert stats.paused == 1
    assert stats.paused_seconds == pytest.approx(5.0)


async def test_a_spent_provider_budget_holds_new_sends_until_its_reset(clock: FakeClock) -> None:
    """x-ratelimit-remaining-requests: 0 means the next send would be a 429: wait instead."""
    spent = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "4s"}
    with scripted(clock) as server:
        server.script("row0", Reply(200, ok_body("answer:row0"), spent))
        results, stats = await run_all(
            engine(clock, max_concurrent=1), [f"row{i}" for i in range(3)]
        )
    assert [results[i].response for i in range(3)] == ["answer:row0", "answer:row1", "answer:row2"]
    assert server.send_times[1] - server.send_times[0] == pytest.approx(4.0)
    assert server.send_times[2] == server.send_times[1]  # the budget says nothing more
    assert stats.rate_limited == 0
    assert stats.retries == 0


class RecordingSharedLimit:
    """A ``SharedLimit`` that lets every send through at once and records what it is told."""

    in_flight = 1

    def __init__(self) -> None:
        self.released: list[Mapping[str, str] | None] = []
        self.holds: list[float] = []

    def track(self, stats: RunStats) -> None:
        pass

    async def admit(self, tokens: float) -> float:
        return 0.0

    def release(self, headers: Mapping[str, str] | None = None) -> None:
        self.released.append(headers)

    def settle(self, estimated: float, actual: float) -> None:
        pass

    def hold(self, seconds: float, reason: str) -> None:
        self.holds.append(seconds)

    def stop(self, stop: object) -> None:
        pass


async def test_a_run_sharing_its_limit_passes_on_the_budget_and_leaves_it_the_pacing(
    clock: FakeClock,
) -> None:
    """Each Dask worker pacing at the whole stated rate would send a multiple of it: every
    answer's headers go to the shared limit, which paces, and the run's own throttle stays
    open (it still holds for the reset it read)."""
    spent = {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2s",  # 10 over a 2 s window: 300 rpm
    }
    shared = RecordingSharedLimit()
    token = SHARED_LIMIT.set(shared)
    try:
        with scripted(clock) as server:
            server.script("row0", Reply(200, ok_body("answer:row0"), spent))
            results, _ = await run_all(
                engine(clock, max_concurrent=1), [f"row{i}" for i in range(3)]
            )
    finally:
        SHARED_LIMIT.reset(token)
    assert all(results[i].response == f"answer:row{i}" for i in range(3))
    first = shared.released[0]
    assert first is not None
    assert first["x-ratelimit-remaining-requests"] == "0"
    assert len(shared.released) == 3
    assert shared.holds == [2.0]
    assert server.send_times[1] - server.send_times[0] == pytest.approx(2.0)
    assert server.send_times[2] == server.send_times[1]  # not paced here: the shared limit paces


async def test_401_aborts_the_run_and_keeps_answered_rows(clock: FakeClock) -> None:
    prompts = [f"row{i}" for i in range(10)]
    with scripted(clock) as server:
        server.script("row3", Reply(401, error_body(f"Incorrect API key provided: {KEY}")))
        with pytest.warns(HolySheepWarning, match=r"authentication failed \(HTTP 401\)") as notices:
            results, stats = await run_all(engine(clock, api_key=KEY, max_concurrent=1), prompts)
    assert all(KEY not in str(notice.message) for notice in notices)
    assert [results[i].response for i in range(3)] == ["answer:row0", "answer:row1", "answer:row2"]
    assert results[3].error == "authentication failed (HTTP 401): Incorrect API key provided: ***"
    for i in range(4, 10):
        assert results[i].error == "not sent: authentication failed (HTTP 401)"
        assert results[i].latency is None
        assert results[i].attempts == 0
    assert len(server.bodies) == 4  # nothing more was sent
    assert (stats.succeeded, stats.failed) == (3, 7)
    assert all(KEY not in (r.error or "") for r in results.values())
    assert server.headers[0]["Authorization"] == f"Bearer {KEY}"


async def test_403_mid_run_with_concurrency_stops_new_sends(clock: FakeClock) -> None:
    prompts = [f"row{i}" for i in range(200)]
    with scripted(clock, shuffle_seed=3) as server:
        server.script("row20", Reply(403, error_body("forbidden")))
        with pytest.warns(HolySheepWarning, match=r"authentication failed \(HTTP 403\)"):
            results, _ = await run_all(engine(clock, max_concurrent=8), prompts)
    assert len(results) == 200
    assert results[20].error == "authentication failed (HTTP 403): forbidden"
    not_sent = [r for r in results.values() if (r.error or "").startswith("not sent")]
    answered = [r for r in results.values() if r.response is not None]
    assert len(not_sent) + len(answered) + 1 == 200
    sends_when_403_returned = next(n for p, status, n in server.replied if status == 403)
    assert len(server.bodies) == sends_when_403_returned  # nothing new was sent after it
    assert len(not_sent) > 100


async def test_abort_wakes_rows_waiting_in_backoff(clock: FakeClock) -> None:
    with scripted(clock) as server:
        server.script("slow", Reply(500, error_body("x")), Reply(500, error_body("x")))
        server.script("bad", Reply(401, error_body("no")))
        with pytest.warns(HolySheepWarning, match="stopped the run"):
            results, _ = await run_all(engine(clock, max_concurrent=2), ["slow", "bad"])
    assert results[1].error.startswith("authentication failed (HTTP 401)")  # type: ignore[union-attr]
    assert results[0].error == "not sent: authentication failed (HTTP 401)"
    assert server.count("slow") == 1


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            "<html><head><title>502 Bad Gateway</title></head></html>",
            "not JSON: HTML page: 502 Bad Gateway",
        ),
        ('{"choices": [', 'not JSON: {"choices": ['),
        ('{"id": "x", "object": "chat.completion"}', "no choices in answer"),
        ('{"error": {"message": "upstream died"}}', "no choices in answer: upstream died"),
        (
            '{"choices": [{"message": {"role": "assistant", "content": null}, "finish_reason": "stop"}]}',
            "no message content (finish_reason='stop')",
        ),
        ("[1, 2]", "expected a JSON object, got list"),
    ],
)
async def test_malformed_200_is_retried_then_a_row_error(
    clock: FakeClock, body: str, detail: str
) -> None:
    with scripted(clock) as server:
        server.script("p", *[Reply(200, body)] * 3)
        results, _ = await run_all(engine(clock, retry=RetryPolicy(max_retries=2)), ["p", "q"])
    assert results[0].error == f"malformed response after 3 attempts: {detail}"
    assert results[0].kind is OutcomeKind.MALFORMED
    assert results[1].response == "answer:q"


async def test_malformed_then_good_answer_succeeds(clock: FakeClock) -> None:
    with scripted(clock) as server:
        server.script("p", Reply(200, "<html>oops</html>"))
        results, _ = await run_all(engine(clock), ["p"])
    assert results[0].response == "answer:p"
    assert results[0].attempts == 2


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (asyncio.TimeoutError(), "timeout after 3 attempts"),
        (aiohttp.ServerTimeoutError("read timed out"), "timeout after 3 attempts"),
        (
            aiohttp.ServerDisconnectedError(),
            "connection error after 3 attempts: ServerDisconnectedError: Server disconnected",
        ),
        (
            aiohttp.ClientOSError(111, "Connection refused"),
            "connection error after 3 attempts: ClientOSError: [Errno 111] Connection refused",
        ),
        (
            aiohttp.ClientPayloadError("truncated"),
            "connection error after 3 attempts: ClientPayloadError: truncated",
        ),
    ],
)
async def test_transport_errors_are_retried_then_reported(
    clock: FakeClock, exc: BaseException, error: str
) -> None:
    with scripted(clock) as server:
        server.script("p", *[Reply(raises=exc)] * 3)
        results, stats = await run_all(engine(clock, retry=RetryPolicy(max_retries=2)), ["p"])
    assert results[0].error == error
    assert stats.retries == 2
    assert stats.in_flight == 0


async def test_concurrency_bound_is_reached_and_never_exceeded(clock: FakeClock) -> None:
    with scripted(clock, shuffle_seed=1) as server:
        results, stats = await run_all(
            engine(clock, max_concurrent=7), [f"r{i}" for i in range(300)]
        )
    assert len(results) == 300
    assert server.max_in_flight == 7
    assert stats.max_in_flight == 7


async def test_rows_keep_their_own_answers_under_random_latency_and_faults(
    clock: FakeClock,
) -> None:
    rng = random.Random(42)
    prompts = [f"prompt {i} {rng.random():.6f}" for i in range(600)]
    faults = [
        Reply(500, error_body("x")),
        Reply(429, error_body("y"), {"Retry-After": "0.1"}),
        Reply(raises=aiohttp.ServerDisconnectedError()),
        Reply(raises=asyncio.TimeoutError()),
        Reply(200, "<html>bad gateway</html>"),
    ]
    persistent = set()
    with scripted(clock, shuffle_seed=7) as server:
        for prompt in prompts:
            draw = rng.random()
            if draw < 0.15:
                server.script(prompt, *rng.choices(faults, k=rng.randrange(1, 3)))
            elif draw < 0.18:
                server.script(prompt, *[Reply(502, error_body("down"))] * 6)
                persistent.add(prompt)
        results, stats = await run_all(engine(clock, max_concurrent=16), prompts)
    assert sorted(results) == list(range(600))
    for i, prompt in enumerate(prompts):
        result = results[i]
        if prompt in persistent:
            assert result.error == "HTTP 502 after 6 attempts: down"
        else:
            assert result.response == f"answer:{prompt}", (i, result)
            assert result.error is None
    assert stats.requests_sent == len(server.bodies) == 600 + stats.retries
    assert stats.succeeded + stats.failed == 600


async def test_rows_are_pulled_lazily_and_tasks_stay_bounded(clock: FakeClock) -> None:
    pulled = 0
    reported = 0
    widest_gap = 0

    def rows() -> Iterator[tuple[int, ChatRequest]]:
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield i, request(f"r{i}")

    def keep(result: RowOutcome) -> None:
        nonlocal reported, widest_gap
        reported += 1
        widest_gap = max(widest_gap, pulled - reported)

    with scripted(clock, shuffle_seed=5) as server:
        await engine(clock, max_concurrent=10).run(rows(), keep)
    assert reported == 1000
    assert widest_gap <= 10  # only rows in the workers' hands are out of the iterator
    assert server.max_tasks <= 10 + 2  # the workers, the test's task, and nothing per row


async def test_cancel_stops_workers_closes_session_and_keeps_reported_rows(
    clock: FakeClock,
) -> None:
    reported: list[RowOutcome] = []
    hang = asyncio.Event()

    async def handle(url: object, **kwargs: object) -> None:
        if len(reported) >= 5:
            await hang.wait()  # never set: requests stay in flight until cancelled

    closed: list[aiohttp.ClientSession] = []
    original_close = aiohttp.ClientSession.close

    async def spy_close(self: aiohttp.ClientSession) -> None:
        closed.append(self)
        await original_close(self)

    from aioresponses import aioresponses

    rows = ((i, request(f"r{i}")) for i in range(100))
    with aioresponses() as mocked, pytest.MonkeyPatch.context() as patch:
        patch.setattr(aiohttp.ClientSession, "close", spy_close)
        mocked.post(f"{BASE_URL}/chat/completions", callback=handle, repeat=True, body=ok_body("x"))
        task = asyncio.ensure_future(engine(clock, max_concurrent=4).run(rows, reported.append))
        for _ in range(200):
            await asyncio.sleep(0)
            if len(reported) >= 5 and len(asyncio.all_tasks()) > 2:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(reported) >= 5
    assert len(closed) == 1
    assert closed[0].closed
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_exception_in_callback_propagates_and_cleans_up(clock: FakeClock) -> None:
    def explode(result: RowOutcome) -> None:
        raise RuntimeError("callback bug")

    with scripted(clock), pytest.raises(RuntimeError, match="callback bug"):
        await engine(clock, max_concurrent=3).run(((i, request("p")) for i in range(10)), explode)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_requests_per_minute_limit_spaces_the_sends(clock: FakeClock) -> None:
    with scripted(clock) as server:
        await run_all(
            engine(clock, max_concurrent=8, limits=RateLimits(requests_per_minute=600)),
            [f"r{i}" for i in range(40)],
        )
    times = sorted(server.send_times)
    assert len(times) == 40
    for i, start in enumerate(times):
        in_one_second = sum(1 for t in times[i:] if t - start <= 1.0 + 1e-9)
        assert in_one_second <= 10 * 1.0 + 1
    capacity = RateLimits(requests_per_minute=600).request_capacity
    assert capacity is not None
    assert times[-1] - times[0] == pytest.approx((40 - capacity) / 10.0)  # paced from the start


async def test_no_key_on_loopback_sends_no_authorization(clock: FakeClock) -> None:
    with scripted(clock) as server:
        await run_all(engine(clock), ["p"])
    assert "Authorization" not in server.headers[0]
    assert json.loads(json.dumps(server.bodies[0]))["model"] == "test-model"


async def test_a_finished_run_is_freed_without_the_cycle_collector(clock: FakeClock) -> None:
    # A run's state must not sit in a reference cycle: the callback holds every result of a
    # job, and a cycle would keep them alive (and make the collector walk them) long after.
    gc.disable()
    try:
        with scripted(clock) as server:
            server.script("hello", Reply(body=ok_body("hi")))
            seen = _Collected()
            alive = weakref.ref(seen)
            stats = await engine(clock, limits=RateLimits(requests_per_minute=600)).run(
                iter([(0, request("hello"))]), seen.keep
            )
            del seen
        assert stats.succeeded == 1
        assert alive() is None, "the finished run still holds its callback"
    finally:
        gc.enable()


class _Collected:
    """Outcomes as a run reports them (an object, so a weak reference can watch it)."""

    def __init__(self) -> None:
        self.outcomes: list[RowOutcome] = []

    def keep(self, outcome: RowOutcome) -> None:
        self.outcomes.append(outcome)


async def test_a_spent_budget_the_requests_pace_already_covers_is_no_hold(
    clock: FakeClock,
) -> None:
    # Told 60 rpm, the next send is a second away; a budget that frees in 0.2 s holds nothing.
    soon = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "200ms"}
    with scripted(clock) as server:
        for i in range(4):
            server.script(f"row{i}", Reply(200, ok_body(f"answer:row{i}"), soon))
        limits = RateLimits(requests_per_minute=60, request_burst=1)
        _, stats = await run_all(
            engine(clock, max_concurrent=1, limits=limits), [f"row{i}" for i in range(4)]
        )
    gaps = [b - a for a, b in zip(server.send_times, server.send_times[1:], strict=False)]
    assert gaps == pytest.approx([1.0, 1.0, 1.0])  # the pace, not the holds, spaces them
    assert (stats.paused, stats.paused_seconds) == (0, 0.0)


async def test_a_row_refused_alone_for_max_retry_after_fails_with_how_long(
    clock: FakeClock,
) -> None:
    """Rate-limit 429s spend no attempt, but a row the provider keeps refusing while other
    rows are answered (a request it never takes) fails once it waited max_retry_after."""
    prompts = ["p", *[f"row{i}" for i in range(40)]]
    with scripted(clock) as server:
        server.script("p", *[Reply(429, error_body("too large"), {"Retry-After": "1"})] * 50)
        results, stats = await run_all(
            engine(clock, max_concurrent=2, retry=RetryPolicy(max_retry_after=5.0)), prompts
        )
    assert stats.stop is None
    assert results[0].error == "HTTP 429 after 1 attempt: too large (refused 6 times over 5 s)"
    assert server.count("p") == 6
    assert all(results[i].error is None for i in range(1, 41))


@pytest.mark.parametrize("tokens_per_minute", [None, 600.0])
async def test_a_run_paces_by_each_requests_token_estimate_only_when_a_limit_reads_it(
    clock: FakeClock, tokens_per_minute: float | None
) -> None:
    """A request's token estimate is made only for a run whose tokens-per-minute limit (or
    shared limit) reads it; with the limit, each send still waits for its estimate."""
    import pandas as pd

    from holysheep_nb.job import CompletionJob
    from holysheep_nb.job_options import JobOptions
    from holysheep_nb.prompts import PromptSource

    prompts = [f"row {i} " + "x" * 200 for i in range(4)]  # about 60 tokens each
    options = JobOptions.from_kwargs(
        base_url=BASE_URL, api_key="sk-test", cache=False, progress=False, max_concurrent=1,
        tokens_per_minute=tokens_per_minute, token_burst=1.0,
    )  # fmt: skip
    source = PromptSource(pd.DataFrame({"text": prompts}), "text", None)
    job = CompletionJob(source, options, clock=clock)
    with scripted(clock) as server:
        out = await job.run()
    assert out["error"].isna().all()
    assert len(server.bodies) == 4
    if tokens_per_minute is None:
        assert clock.sleeps == []
    else:
        # 10 tokens a second, a bucket of 10: a send's estimate (~60) puts the bucket in
        # debt, the answer's usage (10 tokens) gives back the rest, and the next send waits
        # a second for a full bucket. Without its estimate a send would wait for nothing.
        assert clock.sleeps == [pytest.approx(1.0)] * 3
