"""The adaptive concurrency window and its gate: stray 429s, a cap, a spent budget."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from holysheep_nb.adaptive import (
    CLUSTER,
    INITIAL_WINDOW,
    PROBE_WINDOWS,
    ConcurrencyGate,
    ConcurrencyWindow,
    StatedLimit,
    learned_width,
    remember_width,
)
from holysheep_nb.chat import ChatRequest, build_messages
from holysheep_nb.endpoint import Endpoint
from holysheep_nb.engine import CompletionEngine
from holysheep_nb.outcome import RowOutcome
from holysheep_nb.policies import EngineSettings, RateLimits
from holysheep_nb.ratelimit import Throttle
from tests.fakes import FakeClock, ScriptedJitter
from tests.scripted import BASE_URL, Reply, error_body, ok_body, scripted


def test_a_stray_429_gives_up_one_slot_and_successes_win_it_back() -> None:
    window = ConcurrencyWindow(16)
    for _ in range(16):
        window.success(16)
    window.rate_limited(12, 0)  # this wide has succeeded: not a cap
    assert (window.limit, window.cap, window.generation) == (15, None, 1)
    window.rate_limited(16, 0)  # sent before the cut: not counted twice
    assert window.limit == 15
    for _ in range(14):
        window.success(15)
    assert window.limit == 15
    window.success(15)  # a window's worth (15) of successes
    assert window.limit == 16
    assert window.lowest == 15


def test_stray_429s_at_five_percent_keep_the_window_near_the_ceiling() -> None:
    window = ConcurrencyWindow(16)
    limits = []
    for answer in range(2_000):
        if answer % 20 == 19:
            window.rate_limited(window.limit, window.generation)
        else:
            window.success(window.limit)
        limits.append(window.limit)
    assert window.cap is None
    assert sum(limits) / len(limits) >= 13


def test_a_cap_without_headers_is_found_from_the_concurrency_429s_come_at() -> None:
    window = ConcurrencyWindow(32)
    for sent_at in range(1, 9):
        window.success(sent_at)  # the provider accepts 8 in flight...
    window.rate_limited(9, 0)  # ...and refuses the 9th
    assert (window.limit, window.cap) == (8, None)  # suspected: it could be a stray
    for _ in range(8):
        window.success(8)
    assert window.limit == 9  # probed at once while the cap is only suspected
    window.rate_limited(9, window.generation)  # refused again at the same width: a cap
    assert (window.limit, window.cap) == (8, 8)
    # Probing above a found cap is slow: one slot after PROBE_WINDOWS windows of successes.
    for _ in range(PROBE_WINDOWS * 8 - 1):
        window.success(8)
    assert window.limit == 8
    window.success(8)
    assert window.limit == 9
    window.rate_limited(9, window.generation)
    assert (window.limit, window.cap) == (8, 8)


def test_a_cap_found_before_anything_succeeded_is_read_off_the_429() -> None:
    window = ConcurrencyWindow(32)
    window.rate_limited(20, 0)  # a cap server refuses at once, before any answer is back
    assert (window.limit, window.cap) == (19, None)
    for sent_at in range(1, 20):
        window.success(sent_at)
    assert window.limit == 20
    window.rate_limited(20, window.generation)
    assert (window.limit, window.cap) == (19, 19)


def test_a_stray_429_at_a_new_width_is_not_taken_for_a_cap() -> None:
    window = ConcurrencyWindow(16)
    for _ in range(16):
        window.success(16)
    window.rate_limited(16, 0)  # a stray: 16 has succeeded
    for _ in range(15):
        window.success(15)
    assert window.limit == 16
    window.rate_limited(16, window.generation)  # a stray again, before 16 succeeded anew
    assert (window.limit, window.cap) == (15, None)
    for _ in range(15):
        window.success(15)
    window.success(16)  # 16 works: the suspicion is dropped
    window.rate_limited(16, window.generation)
    assert (window.limit, window.cap) == (15, None)


def test_random_stray_429s_find_no_cap_and_keep_the_window_near_the_ceiling() -> None:
    rng = random.Random(7)
    window = ConcurrencyWindow(16)
    limits = []
    for _ in range(5_000):
        if rng.random() < 0.05:
            window.rate_limited(window.limit, window.generation)
        else:
            window.success(window.limit)
        limits.append(window.limit)
    assert window.cap is None
    assert sum(limits) / len(limits) >= 12


def test_a_simulated_cap_converges_with_few_429s() -> None:
    cap, window, answers, refused = 8, ConcurrencyWindow(32), 0, 0
    while answers < 2_000:
        generation = window.generation
        for sent_at in range(1, window.limit + 1):  # a round of requests, all in flight
            answers += 1
            if sent_at > cap:
                refused += 1
                window.rate_limited(sent_at, generation)
            else:
                window.success(sent_at)
    assert window.limit in (cap, cap + 1)
    assert refused / answers <= 0.05


def test_429s_back_to_back_are_a_spent_budget_not_a_cap() -> None:
    window = ConcurrencyWindow(16)
    for _ in range(16):
        window.success(16)
    for _ in range(CLUSTER + 3):
        window.rate_limited(16, 0)  # all sent together, before any cut
    assert window.cluster
    assert (window.limit, window.cap) == (15, None)  # one cut, then a spent budget
    window.success(16)
    assert not window.cluster
    window.rate_limited(1, window.generation, budget_spent=True)  # the headers said so
    assert window.cap is None


async def test_the_gate_admits_at_most_the_limit_in_order() -> None:
    window = ConcurrencyWindow(4, limit=2)
    gate = ConcurrencyGate(window)
    order: list[int] = []

    async def request(i: int) -> None:
        await gate.acquire()
        order.append(i)
        assert gate.in_flight <= window.limit
        await asyncio.sleep(0)
        gate.release()

    await asyncio.gather(*(request(i) for i in range(8)))
    assert order == list(range(8))
    assert gate.in_flight == 0


async def test_a_cancelled_waiter_gives_its_slot_on() -> None:
    gate = ConcurrencyGate(ConcurrencyWindow(1))
    assert await gate.acquire() == 1
    waiting = asyncio.ensure_future(gate.acquire())
    behind = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    gate.release()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await asyncio.wait_for(behind, 1) == 1
    assert gate.in_flight == 1


async def test_a_run_against_a_cap_without_headers_settles_on_it() -> None:
    """A provider that accepts 4 requests in flight and answers 429 (no headers, no
    Retry-After) beyond: the run learns the cap, says so in the report, loses no row."""
    import pandas as pd
    from aiohttp import web

    from tests.helpers_reliability import chat_completion, serve_app

    in_flight = 0
    refused = 0

    async def capped(request: web.Request) -> web.Response:
        nonlocal in_flight, refused
        body = await request.json()
        if in_flight >= 4:
            refused += 1
            return web.json_response({"error": {"message": "too many requests"}}, status=429)
        in_flight += 1
        try:
            await asyncio.sleep(0.01)
            return web.json_response(chat_completion(body["messages"][-1]["content"]))
        finally:
            in_flight -= 1

    app = web.Application()
    app.router.add_post("/v1/chat/completions", capped)
    async with serve_app(app) as url:
        frame = pd.DataFrame({"text": [f"r{i}" for i in range(300)]})
        out = await frame.holysheep.acomplete(
            "text", base_url=f"{url}/v1", max_concurrent=16, max_retries=20, cache=False,
            progress=False,
        )  # fmt: skip
    assert out["response"].tolist() == [f"r{i}" for i in range(300)]
    report = out.holysheep.report()
    assert report.concurrency_cap in (4, 5)
    assert report.concurrency in (4, 5)
    assert refused == report.rate_limited
    assert refused / (300 + refused) <= 0.15  # the first burst, then a probe now and then
    assert "the provider accepts about" in str(report)


# --- a limit the provider states, and what a hold for it releases ---------------------------


async def test_what_a_hold_kept_back_goes_out_paced_not_as_a_burst(clock: FakeClock) -> None:
    throttle = Throttle(RateLimits(requests_per_minute=120, request_burst=4.0), clock)
    for _ in range(4):
        await throttle.acquire()  # the bucket is empty
    throttle.pause_until(clock.now() + 10.0)  # the provider's budget: it refills meanwhile
    sent = []
    for _ in range(3):
        await throttle.acquire()
        sent.append(clock.now() - clock.start)
    assert sent == pytest.approx([10.0, 10.5, 11.0])  # not three at once at 10.0


async def test_a_row_waiting_out_its_retry_after_does_not_idle_its_worker(
    clock: FakeClock,
) -> None:
    with scripted(clock) as server:
        server.script(
            "a", Reply(429, error_body("slow down"), {"Retry-After": "5"}), Reply(body=ok_body("A"))
        )
        eng = CompletionEngine(
            Endpoint(base_url=BASE_URL, model="m"),
            EngineSettings(max_concurrent=1),
            clock=clock,
            jitter=ScriptedJitter([1.0]),
        )
        results: list[RowOutcome] = []
        rows = ((i, ChatRequest(build_messages(p, None), {})) for i, p in enumerate("abc"))
        await eng.run(rows, results.append)
    assert sorted(r.response or "" for r in results) == ["A", "answer:b", "answer:c"]
    assert [t - clock.start for t in server.send_times] == pytest.approx([0.0, 0.0, 0.0, 5.0])
    assert server.max_in_flight == 1


def test_a_stated_limit_is_read_over_the_window_it_counts_in() -> None:
    """OpenAI states a per-minute limit; a shorter sliding window (a gateway's, the local
    server's) states what the window holds, and its first request is told the whole window."""
    stated = StatedLimit()
    assert stated.per_minute({"x-ratelimit-limit-requests": "100"}) is None  # no window seen
    stated.observe({"x-ratelimit-reset-requests": "0.5s"})
    stated.observe({"x-ratelimit-reset-requests": "2s"})  # a fresh window's first request
    stated.observe({"x-ratelimit-reset-requests": "1s"})
    assert stated.window == 2.0
    assert stated.per_minute({"x-ratelimit-limit-requests": "100"}) == 3_000.0
    openai = StatedLimit()
    openai.observe({"x-ratelimit-reset-requests": "6m0s"})  # OpenAI's per-minute budget
    assert openai.per_minute({"x-ratelimit-limit-requests": "500"}) == 500.0
    for bad in ("0", "inf", "many"):
        assert stated.per_minute({"x-ratelimit-limit-requests": bad}) is None


async def test_a_stated_limit_only_ever_lowers_the_pace(clock: FakeClock) -> None:
    unlimited = Throttle(RateLimits(), clock)
    assert unlimited.lower_request_rate(120)  # 2/s where nothing paced before
    told = Throttle(RateLimits(requests_per_minute=60), clock)
    assert not told.lower_request_rate(120)  # never above what the user set
    assert told.lower_request_rate(30)
    sent = []
    for _ in range(3):
        await unlimited.acquire()
        sent.append(clock.now() - clock.start)
    # The bucket a told 120 rpm would get (1.04 deep): the first at once, then 2/s.
    assert sent == pytest.approx([0.0, 0.48, 0.98])


def test_a_run_starts_small_and_doubles_each_round_trip_until_a_429() -> None:
    """Slow start (RFC 5681, section 3.1; initial window of RFC 6928): INITIAL_WINDOW wide,
    one more per success."""
    window = ConcurrencyWindow.slow_starting(8 * INITIAL_WINDOW)
    widths = []
    for _ in range(2):
        widths.append(window.limit)
        for sent_at in range(1, window.limit + 1):  # a round trip of the whole window
            window.success(sent_at)
    widths.append(window.limit)
    assert widths == [INITIAL_WINDOW, 2 * INITIAL_WINDOW, 4 * INITIAL_WINDOW]
    assert (window.settled, window.lowest) == (8 * INITIAL_WINDOW,) * 2  # nothing learned yet


def test_the_first_429_over_a_cap_ends_the_slow_start_at_the_cap() -> None:
    window = ConcurrencyWindow.slow_starting(64)
    # A cap of 8 below the first burst: the first 8 succeed (the window grows meanwhile)...
    for sent_at in range(1, 9):
        window.success(sent_at)
    assert window.slow_start
    assert window.limit == INITIAL_WINDOW + 8
    # ... and the 9th, sent in generation 0, is refused.
    assert window.rate_limited(9, 0) is True  # a refusal for concurrency: resend at once
    assert (window.limit, window.slow_start, window.cluster) == (8, False, False)
    assert (window.settled, window.lowest) == (8, 8)
    # The others of that burst are the same refusal: no second cut, no spent budget.
    assert [window.rate_limited(n, 0) for n in (10, 11, 12)] == [True, True, True]
    assert (window.limit, window.cluster) == (8, False)
    # A 429 that gives a time to wait is not a cap's refusal.
    assert window.rate_limited(9, window.generation, hinted=True) is False


def test_a_small_ceiling_starts_at_the_ceiling() -> None:
    window = ConcurrencyWindow.slow_starting(3)
    assert (window.limit, window.slow_start) == (3, False)


def test_a_run_to_an_endpoint_starts_at_the_width_earlier_runs_took_there() -> None:
    url = "http://127.0.0.1:1/v1/chat/completions"
    assert learned_width(url) == INITIAL_WINDOW
    grown = ConcurrencyWindow.slow_starting(64)
    for sent_at in range(1, 31):
        grown.success(sent_at)
    remember_width(url, grown)
    assert learned_width(url) == INITIAL_WINDOW + 30
    later = ConcurrencyWindow.slow_starting(64, start=learned_width(url))
    assert (later.limit, later.slow_start) == (INITIAL_WINDOW + 30, True)
    assert ConcurrencyWindow.slow_starting(16, start=learned_width(url)).limit == 16
    # A short run that had no time to grow teaches nothing smaller ...
    remember_width(url, ConcurrencyWindow.slow_starting(64))
    assert learned_width(url) == INITIAL_WINDOW + 30
    # ... but a width 429s cut it to is the newest lesson, and wins.
    cut = ConcurrencyWindow.slow_starting(64, start=learned_width(url))
    for sent_at in range(1, 9):
        cut.success(sent_at)
    assert cut.rate_limited(9, 0) is True  # a cap of 8
    remember_width(url, cut)
    assert learned_width(url) == 8
    assert ConcurrencyWindow.slow_starting(64, start=learned_width(url)).limit == INITIAL_WINDOW
    assert learned_width("http://127.0.0.1:2/v1/chat/completions") == INITIAL_WINDOW


async def test_a_second_run_to_the_same_server_goes_out_at_the_width_the_first_reached(
    serve: Callable[..., Any],
) -> None:
    """64 rows, 64 wide, 0.3 s a request: the first run slow-starts (10 in flight, then one
    more per answer: never all 64 at once), the second sends all 64 at once (the 0.3 s leave
    a busy machine time to send them all before the first answer comes back)."""
    import pandas as pd

    import holysheep_nb  # noqa: F401 - registers df.holysheep
    from holysheep_nb.server import Latency

    server = await serve(latency=Latency.fixed(0.3))
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(64)]})
    widest = []
    for _ in range(2):
        server.reset()
        out = await frame.holysheep.acomplete(
            "text", base_url=server.base_url, max_concurrent=64, cache=False, progress=False
        )
        assert out["response"].notna().all()
        widest.append(server.stats()["max_in_flight"])
    assert widest[0] <= 37  # in flight <= 10 + answered, and <= 64 - answered
    assert widest[1] == 64
