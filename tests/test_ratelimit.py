"""Token buckets and the throttle on a virtual clock: exact waits, no real sleeping (docs/contract.md, "Rate limits and 429s")."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest

from holysheep_nb.policies import RateLimits
from holysheep_nb.ratelimit import SHARED_LIMIT, Throttle, TokenBucket, counts_tokens
from tests.fakes import FakeClock


def test_bucket_starts_full_and_refills_at_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=2.0, capacity=4.0, clock=clock)
    assert bucket.delay_for(4) == 0
    bucket.take(4)
    assert bucket.delay_for(1) == pytest.approx(0.5)
    clock.advance(1.0)
    assert bucket.level == pytest.approx(2.0)
    clock.advance(100.0)
    assert bucket.level == 4.0  # never above capacity


def test_oversized_take_waits_for_a_full_bucket_then_leaves_debt(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=10.0, capacity=10.0, clock=clock)
    bucket.take(5)
    assert bucket.delay_for(500) == pytest.approx(0.5)  # waits for a full bucket, not 50 s
    clock.advance(0.5)
    bucket.take(500)
    assert bucket.level == pytest.approx(-490.0)
    assert bucket.delay_for(1) == pytest.approx(49.1)


def test_give_back_never_exceeds_capacity(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=1.0, capacity=3.0, clock=clock)
    bucket.take(1)
    bucket.give_back(10)
    assert bucket.level == 3.0


@pytest.mark.parametrize(
    ("burst", "expected"),
    [
        # The default burst, 1.04 at 2/s: paced from the start, 0.04 of a send to spare.
        (None, [0.0, 0.48, 0.98, 1.48, 1.98, 2.48]),
        (2.0, [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]),
    ],
)
async def test_requests_per_minute_spaces_sends_exactly(
    clock: FakeClock, burst: float | None, expected: list[float]
) -> None:
    throttle = Throttle(RateLimits(requests_per_minute=120, request_burst=burst), clock)  # 2/s
    sent = []
    for _ in range(6):
        await throttle.acquire()
        sent.append(clock.now() - clock.start)
    assert sent == pytest.approx(expected)
    gaps = [later - earlier for earlier, later in itertools.pairwise(expected) if later > earlier]
    assert clock.sleeps == pytest.approx(gaps)


@pytest.mark.parametrize("burst", [None, 10.0])
async def test_no_window_exceeds_rate_times_t_plus_burst(
    clock: FakeClock, burst: float | None
) -> None:
    rpm = 600.0  # 10/s
    limits = RateLimits(requests_per_minute=rpm, request_burst=burst)
    throttle = Throttle(limits, clock)
    times: list[float] = []

    async def sender(n: int) -> None:
        for _ in range(n):
            await throttle.acquire()
            times.append(clock.now())

    await asyncio.gather(*(sender(25) for _ in range(8)))
    assert len(times) == 200
    rate, capacity = rpm / 60.0, limits.request_capacity
    assert capacity is not None
    for i, start in enumerate(times):
        for window in (0.1, 0.5, 1.0, 3.0, 10.0):
            count = sum(1 for t in times[i:] if t - start < window - 1e-9)
            assert count <= rate * window + capacity + 1e-6, (start, window, count)
            if burst is None:  # the default: at most one send more than the rate allows
                assert count <= rate * window + 1 + 1e-6, (start, window, count)
    # and the limit is used, not just respected: 200 sends take (200 - burst) / rate seconds
    assert times[-1] - times[0] == pytest.approx((200 - capacity) / rate)


async def test_waiters_are_served_in_arrival_order(clock: FakeClock) -> None:
    throttle = Throttle(RateLimits(requests_per_minute=60), clock)  # 1/s
    order: list[int] = []

    async def sender(i: int) -> None:
        await throttle.acquire()
        order.append(i)

    tasks = []
    for i in range(10):
        tasks.append(asyncio.ensure_future(sender(i)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == list(range(10))
    assert clock.now() - clock.start == pytest.approx(9.0 - 0.02)  # burst 1.02 at 1/s


async def test_tokens_per_minute_charges_estimate_and_settles_from_usage(clock: FakeClock) -> None:
    limits = RateLimits(tokens_per_minute=6000, token_burst=100)  # 100 tokens/s, bucket 100
    throttle = Throttle(limits, clock)
    await throttle.acquire(100)
    throttle.settle_tokens(estimated=100, actual=40)  # 60 come back
    await throttle.acquire(60)
    assert clock.sleeps == []
    await throttle.acquire(50)  # empty bucket: 50 tokens at 100/s
    assert clock.sleeps == pytest.approx([0.5])
    throttle.settle_tokens(estimated=50, actual=250)  # under-estimated by 200: a debt of 200
    await throttle.acquire(100)
    assert clock.sleeps[-1] == pytest.approx(3.0)


async def test_cooldown_holds_every_send_until_it_ends(clock: FakeClock) -> None:
    throttle = Throttle(RateLimits(), clock)
    await throttle.acquire()
    assert clock.sleeps == []
    throttle.pause_until(clock.now() + 2.0)
    throttle.pause_until(clock.now() + 1.0)  # never shortens
    released: list[float] = []

    async def sender() -> None:
        await throttle.acquire()
        released.append(clock.now() - clock.start)

    await asyncio.gather(*(sender() for _ in range(5)))
    assert released == pytest.approx([2.0] * 5)
    assert clock.sleeps == pytest.approx([2.0])


async def test_cooldown_extended_while_waiting_is_honoured(clock: FakeClock) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await clock.sleep(seconds)
        if len(waits) == 1:
            throttle.pause_until(clock.now() + 3.0)  # another row's 429 arrives meanwhile

    throttle = Throttle(RateLimits(), clock, sleep=sleep)
    throttle.pause_until(clock.now() + 1.0)
    await throttle.acquire()
    assert waits == pytest.approx([1.0, 3.0])


async def test_unlimited_throttle_never_sleeps(clock: FakeClock) -> None:
    throttle = Throttle(RateLimits(), clock)
    for _ in range(1000):
        await throttle.acquire(10_000)
    assert clock.sleeps == []
    assert math.isinf(throttle.resume_at)


async def test_a_send_never_passes_one_queued_before_it(clock: FakeClock) -> None:
    """``ready`` (admission's hot path) is False while another send waits in ``acquire``,
    even once the hold it waits out is over: the queue is first come, first served."""
    throttle = Throttle(RateLimits(), clock)
    assert throttle.ready()
    throttle.pause_until(clock.now() + 2.0)
    assert not throttle.ready()
    waiting = asyncio.ensure_future(throttle.acquire())
    await asyncio.sleep(0)  # it sleeps out the hold (the fake clock jumps) and is still queued
    assert clock.now() >= throttle.resume_at
    assert not throttle.ready()
    await waiting
    assert throttle.ready()


def test_a_run_counts_tokens_with_a_tokens_limit_or_a_shared_limit() -> None:
    """The one rule both the job (make an estimate) and the engine (settle it) follow."""
    assert not counts_tokens(RateLimits())
    assert not counts_tokens(RateLimits(requests_per_minute=60))
    assert counts_tokens(RateLimits(tokens_per_minute=1_000))
    token = SHARED_LIMIT.set(object())  # type: ignore[arg-type]
    try:
        assert counts_tokens(RateLimits())
    finally:
        SHARED_LIMIT.reset(token)
