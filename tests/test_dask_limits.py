"""The shared limit's bookkeeping (``holysheep_nb.dask.limits.RunLimits``) on a fake clock.

No cluster here: these are the decisions the scheduler plugin makes for every worker's ask
(docs/contract.md, "Rate limits and 429s": the same bound as one run's own throttle). The
clock is a ``SteppedClock``: an ask waiting for a slot gives up (``ASK_POLL``) only when the
test moves the clock on, never because the machine was slow.
"""

from __future__ import annotations

import asyncio

import pytest

from holysheep_nb.dask.limits import (
    ASK_POLL,
    JITTER_MARGIN,
    LEASE_MARGIN,
    TALLY,
    LimitConfig,
    RunLimits,
)
from holysheep_nb.dask.plugin import KEPT_RUNS, LimitsPlugin
from holysheep_nb.policies import RateLimits
from tests.fakes import SteppedClock


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


async def _settle() -> None:
    """Let every ready task run until it waits (no time passes on any clock)."""
    for _ in range(10):
        await asyncio.sleep(0)


def _limits(clock: SteppedClock, **config: float) -> RunLimits:
    values = {"max_concurrent": 4, **config}
    return RunLimits(LimitConfig(**values), clock)


async def _send_times(
    limits: RunLimits, clock: SteppedClock, count: int, tokens: float = 0
) -> list[float]:
    """Ask ``count`` times, releasing each slot at once; the clock time each send goes."""
    times = []
    for index in range(count):
        reply = await limits.admit(f"lease-{index}", "w1", tokens)
        assert reply["at"] == clock.now() + reply["wait"]
        times.append(reply["at"])
        limits.release(f"lease-{index}")
    return times


async def test_requests_are_paced_within_rate_times_t_plus_burst(clock: SteppedClock) -> None:
    limits = _limits(clock, requests_per_minute=1200)
    times = await _send_times(limits, clock, 200)
    burst = RateLimits(requests_per_minute=1200).request_capacity
    assert burst is not None
    rate = 20.0
    for first in range(len(times)):
        for last in range(first, len(times)):
            span = times[last] - times[first]
            assert last - first + 1 <= rate * span + burst + 1e-9
    assert times[-1] - times[0] == pytest.approx(199 / (rate * (1 - JITTER_MARGIN)))


async def test_tokens_budget_paces_by_estimate_and_corrections(clock: SteppedClock) -> None:
    limits = _limits(clock, tokens_per_minute=6000)  # 100 tokens a second
    times = await _send_times(limits, clock, 3, tokens=100)
    assert times[2] - times[0] == pytest.approx(2.0, rel=0.05)
    limits.release("", tokens=200)  # two answers used 100 more tokens each than estimated
    reply = await limits.admit("late", "w1", 100)
    assert clock.now() + reply["wait"] - times[2] == pytest.approx(3.0, rel=0.05)


def _budget(left: int, reset: str, limit: int = 5) -> dict[str, str]:
    """An answer's request budget headers, as a worker passes them on."""
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(left),
        "x-ratelimit-reset-requests": reset,
    }


async def test_the_scheduler_counts_its_sends_against_the_providers_budget(
    clock: SteppedClock,
) -> None:
    """Not told a limit: a reading of the budget, less the sends given a turn since, says
    when it is spent, however late the answer arrives; then every send waits for the reset
    and goes paced at the stated rate (5 a second: 5 over the 1 s window its reset shows)."""
    limits = _limits(clock, max_concurrent=8)
    for lease in ("a", "b", "c", "d"):
        assert (await limits.admit(lease, "w1", 0))["wait"] == 0.0
    limits.release("a", headers=_budget(left=3, reset="1s"))  # read as "a" arrived
    # b, c and d were given their turn after a: the provider has nothing left for a fifth.
    turns = [(await limits.admit(lease, "w2", 0))["wait"] for lease in ("e", "f", "g")]
    step = 1 / (5 * (1 - JITTER_MARGIN))
    assert turns == pytest.approx([1.0, 1.0 + step, 1.0 + 2 * step])
    assert limits.status()["hold_reason"] == "the provider's budget is spent"


async def test_told_and_paced_a_full_window_is_no_hold(clock: SteppedClock) -> None:
    """Told the rate and paced at 99% of it, the provider's sliding window is nearly full at
    every send: its headers say nothing is left until the oldest send leaves the window, a
    few milliseconds on. The count (and a worker judging the same headers) then says
    "spent" until about when the pace lets the next send go anyway. Such a hold would change
    no send time; recorded, it showed on the bar as ``held=0s, the provider's budget is
    spent`` all through a run without a single 429."""
    limits = _limits(clock, max_concurrent=8, requests_per_minute=1200)  # 20 a second
    step = 1 / (20 * (1 - JITTER_MARGIN))
    for index in range(3):
        assert (await limits.admit(f"a{index}", "w1", 0))["wait"] == pytest.approx(index * step)
    # The first answer: the window (40 over 2 s) is full until its oldest send leaves,
    # sooner than the pace's next turn.
    limits.release("a0", headers=_budget(left=0, reset="0.1s", limit=40))
    limits.hold(0.1, "the provider's budget is spent")  # the worker judged it spent too
    reply = await limits.admit("b", "w2", 0)
    assert reply["wait"] == pytest.approx(3 * step)  # the pace alone: no send time changed
    status = limits.status()
    assert (status["held_for"], status["hold_reason"]) == (0.0, "")
    assert (status["paused"], status["paused_seconds"]) == (0, 0.0)  # nor in the report
    # A hold past the pace's next turn holds for real, and is said.
    limits.release("a1", headers=_budget(left=0, reset="1s", limit=40))
    assert (await limits.admit("c", "w2", 0))["wait"] == pytest.approx(1.0)
    status = limits.status()
    assert status["hold_reason"] == "the provider's budget is spent"
    # Counted once, though both the scheduler's count and a worker say so.
    limits.hold(1.0, "the provider's budget is spent")
    assert limits.status()["paused"] == 1
    assert limits.status()["paused_seconds"] == pytest.approx(1.0)


async def test_a_stale_reading_never_lets_more_through(clock: SteppedClock) -> None:
    limits = _limits(clock, max_concurrent=8)
    for lease in ("a", "b", "c"):
        await limits.admit(lease, "w1", 0)
    limits.release("c", headers=_budget(left=0, reset="2s", limit=100))
    # b's answer was overtaken by c's: its count is older news (someone else sharing the
    # account spent the rest meanwhile), not budget freed.
    limits.release("b", headers=_budget(left=5, reset="2s", limit=100))
    assert (await limits.admit("d", "w2", 0))["wait"] == pytest.approx(2.0)
    clock.advance(2.0)  # the reset: the provider frees what the count cannot see
    limits.release("a")
    assert (await limits.admit("e", "w2", 0))["wait"] > 0.0  # paced: 100 over 2 s
    assert limits.budget.spent_until(clock.now()) is None


async def test_a_hold_a_worker_judged_sends_what_it_held_back_paced(clock: SteppedClock) -> None:
    """A worker may judge the budget spent before the count does (it holds when no more is
    left than in flight): the sends held back then go paced, not in one burst at the reset
    that the provider's window would make the next ones pay for."""
    limits = _limits(clock, max_concurrent=8)
    await limits.admit("a", "w1", 0)
    limits.release("a", headers=_budget(left=9, reset="1s", limit=10))  # 10 a second
    limits.hold(1.0, "the provider's budget is spent")
    turns = [(await limits.admit(lease, "w2", 0))["wait"] for lease in ("b", "c", "d")]
    step = 1 / (10 * (1 - JITTER_MARGIN))
    assert turns == pytest.approx([1.0, 1.0 + step, 1.0 + 2 * step])


async def test_a_stated_rate_only_ever_slows_the_clusters_pace(clock: SteppedClock) -> None:
    limits = _limits(clock)
    assert await _send_times(limits, clock, 3) == [clock.now()] * 3  # not told: no pace
    assert limits.pace is None
    assert limits.lower_request_rate(1200)  # 20 a second
    assert not limits.lower_request_rate(2400)  # a faster reading changes nothing
    assert not limits.lower_request_rate(float("inf"))
    assert limits.pace == pytest.approx(1200)
    told = _limits(clock, requests_per_minute=600)  # 10 a second
    assert not told.lower_request_rate(1200)  # never above what the user set
    assert told.pace == pytest.approx(600)
    first = await _send_times(told, clock, 2)
    assert told.lower_request_rate(300)  # 5 a second from the next send on
    assert told.pace == pytest.approx(300)
    later = await _send_times(told, clock, 2)
    tenth, fifth = 1 / (10 * (1 - JITTER_MARGIN)), 1 / (5 * (1 - JITTER_MARGIN))
    start = first[0]
    assert [t - start for t in first + later] == pytest.approx(
        [0.0, tenth, 2 * tenth, 2 * tenth + fifth]
    )


async def test_slots_in_flight_are_shared_and_handed_on_in_order(clock: SteppedClock) -> None:
    limits = _limits(clock, max_concurrent=2)
    for lease in ("a", "b"):
        assert (await limits.admit(lease, "w1", 0))["wait"] == 0.0
    third = asyncio.ensure_future(limits.admit("c", "w2", 0))
    fourth = asyncio.ensure_future(limits.admit("d", "w2", 0))
    await _settle()
    assert not third.done()
    limits.release("a")
    assert (await third)["wait"] == 0.0
    assert not fourth.done()
    limits.release("b")
    assert (await fourth)["wait"] == 0.0
    assert len(limits.leases) == 2


async def test_an_ask_no_slot_frees_for_is_told_to_ask_again_after_the_poll(
    clock: SteppedClock,
) -> None:
    """A worker that went away mid-ask costs its slot for ``ASK_POLL`` seconds of the
    scheduler's clock at most; the next ask in the queue keeps its place."""
    limits = _limits(clock, max_concurrent=1)
    await limits.admit("a", "w1", 0)
    first = asyncio.ensure_future(limits.admit("b", "w2", 0))
    await _settle()
    clock.advance(ASK_POLL / 2)
    second = asyncio.ensure_future(limits.admit("c", "w2", 0))
    await _settle()
    assert not first.done()
    clock.advance(ASK_POLL / 2)
    assert (await first) == {"again": True}
    assert not second.done()
    limits.release("a")
    assert (await second)["wait"] == 0.0
    assert set(limits.leases) == {"c"}


async def test_a_lost_worker_frees_its_slots_and_leases_lapse(clock: SteppedClock) -> None:
    limits = _limits(clock, max_concurrent=2, timeout=5.0)
    await limits.admit("a", "lost", 0)
    await limits.admit("b", "alive", 0)
    waiting = asyncio.ensure_future(limits.admit("c", "alive", 0))
    await _settle()
    limits.worker_lost("lost")
    assert (await waiting)["wait"] == 0.0
    clock.advance(5.0 + LEASE_MARGIN)
    assert (await limits.admit("d", "alive", 0))["wait"] == 0.0
    assert set(limits.leases) == {"d"}  # b and c lapsed: no send lasts past its timeout


async def test_an_ask_abandoned_before_its_grant_takes_no_slot(clock: SteppedClock) -> None:
    limits = _limits(clock, max_concurrent=1)
    limits.release("gone")  # the asker gave up before the scheduler saw its ask
    assert (await limits.admit("gone", "w1", 0)) == {"again": True}
    assert limits.leases == {}


async def test_hold_delays_every_send_and_stop_refuses_every_ask(clock: SteppedClock) -> None:
    limits = _limits(clock, max_concurrent=1)
    limits.hold(3.0, "429s back to back")
    assert (await limits.admit("a", "w1", 0)) == {"wait": 3.0, "at": 1003.0, "in_flight": 1}
    waiting = asyncio.ensure_future(limits.admit("b", "w2", 0))
    await _settle()
    limits.stop_run("authentication failed (HTTP 401)", "check the key")
    stop = ["authentication failed (HTTP 401)", "check the key"]
    assert (await waiting) == {"stop": stop}
    limits.stop_run("out of credits (HTTP 402)", "top up")  # the first cause wins
    assert (await limits.admit("c", "w1", 0)) == {"stop": stop}


async def test_progress_never_goes_back_and_a_retry_restarts_the_partition(
    clock: SteppedClock,
) -> None:
    limits = _limits(clock)
    limits.begin(0, "w1", rows=10)
    limits.progress(0, [5, 1, 2, 0])
    limits.begin(0, "w2", rows=10)  # the worker was lost; Dask runs the partition again
    limits.progress(0, [1, 0, 0, 1])
    status = limits.status()["partitions"][0]
    assert (status["worker"], status["tally"], status["report"]) == ("w2", [5, 1, 2, 0], None)
    limits.progress(0, [6, 0, 0, 5])  # caught up, mostly with the lost worker's answers
    assert limits.status()["partitions"][0]["tally"] == [6, 0, 0, 5]
    report = {"rows": 10, "succeeded": 9, "failed": 1, "retries": 0, "cached": 6}
    limits.finish(0, report)
    assert limits.status()["partitions"][0]["tally"] == [9, 1, 0, 6]


def test_the_scheduler_forgets_old_idle_runs_only() -> None:
    plugin = LimitsPlugin()
    config = LimitConfig(max_concurrent=1).to_dict()
    plugin.begin("busy", config, partition=0, worker="w1", rows=1)  # never finishes
    for number in range(KEPT_RUNS + 5):
        plugin.begin(f"run-{number}", config, partition=0, worker="w1", rows=1)
        plugin.finish(f"run-{number}", partition=0, report={name: 0 for name in TALLY})
    assert len(plugin.runs) == KEPT_RUNS
    assert "busy" in plugin.runs
    assert f"run-{KEPT_RUNS + 4}" in plugin.runs
    assert plugin.status("run-0") is None  # the oldest finished run is gone
