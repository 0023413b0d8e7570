"""One timer bounds every request of a run (``deadlines.py``), in place of aiohttp's per-request
timer: late requests are cancelled in sending order, finished ones cost nothing, and a
request cancelled by its deadline is a timeout while an interrupt is still an interrupt."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

import pytest

from holysheep_nb.attempt import open_sender
from holysheep_nb.clock import SystemClock
from holysheep_nb.deadlines import Deadlines, deadlines_for
from holysheep_nb.endpoint import Endpoint
from holysheep_nb.outcome import OutcomeKind, RunStats
from holysheep_nb.policies import EngineSettings
from holysheep_nb.sending import Sending
from tests.helpers_reliability import bounded


class FakeTimer:
    def __init__(self, when: float) -> None:
        self.when = when
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """A loop's clock and timers, moved by hand: ``call_at`` only records."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(when)
        self.timers.append(timer)
        return timer

    def armed(self) -> list[float]:
        return [timer.when for timer in self.timers if not timer.cancelled]


class FakeTask:
    def __init__(self) -> None:
        self.cancels = 0

    def cancel(self) -> bool:
        self.cancels += 1
        return True


def fake_deadlines(timeout: float) -> tuple[Deadlines, FakeLoop]:
    loop = FakeLoop()
    return Deadlines(timeout, loop), loop  # type: ignore[arg-type]


def sending() -> Sending:
    return Sending(FakeTask())  # type: ignore[arg-type]


def cancels(*watched: Sending) -> list[int]:
    return [s.task.cancels for s in watched]  # type: ignore[union-attr]


def test_late_requests_are_cancelled_in_sending_order_under_one_timer() -> None:
    deadlines, loop = fake_deadlines(10.0)
    a, b, c = sending(), sending(), sending()
    for at, request in enumerate((a, b, c)):
        loop.now = float(at)
        deadlines.watch(request)
    assert loop.armed() == [10.0]  # one timer, for the oldest request
    a.serial += 1  # a is answered
    loop.now = 10.0
    deadlines._expire()
    assert cancels(a, b, c) == [0, 0, 0]
    assert loop.armed()[-1] == 11.0  # re-armed for b
    loop.now = 11.0
    deadlines._expire()
    assert cancels(a, b, c) == [0, 1, 0]
    assert (b.expired, c.expired) == (True, False)
    assert loop.timers[-1].when == 12.0  # re-armed for c
    c.serial += 1  # c is answered before its deadline
    loop.now = 12.0
    deadlines._expire()
    assert cancels(a, b, c) == [0, 1, 0]
    assert len(loop.timers) == 3  # nothing left to watch: no timer re-armed
    loop.now = 20.0
    deadlines.watch(a)  # a's next request
    assert loop.timers[-1].when == 30.0


def test_a_task_s_next_request_is_not_cancelled_for_its_last_one() -> None:
    deadlines, loop = fake_deadlines(5.0)
    request = sending()
    deadlines.watch(request)
    request.serial += 1  # answered at once
    loop.now = 4.0
    deadlines.watch(request)  # the same task's next request, due at 9
    loop.now = 5.0
    deadlines._expire()  # the first request's deadline passes
    assert cancels(request) == [0]
    loop.now = 9.0
    deadlines._expire()
    assert cancels(request) == [1]


def test_the_queue_stays_as_long_as_the_flight_and_one_timer_serves_a_long_run() -> None:
    deadlines, loop = fake_deadlines(60.0)
    tasks = [sending() for _ in range(64)]
    for i in range(20_000):
        request = tasks[i % 64]
        request.serial += 1  # its last request is over
        loop.now = i / 1000
        deadlines.watch(request)
        assert len(deadlines._watched) <= 64 + 1
    assert len(loop.timers) == 1
    deadlines.close()
    assert loop.armed() == []
    assert len(deadlines._watched) == 0


def test_an_infinite_timeout_watches_nothing() -> None:
    assert deadlines_for(float("inf")) is None


#: Seconds per attempt in the runs below: the hanging row takes that long, and an answered
#: row must never, also on a busy machine (a loaded suite has taken 0.5 s for an answer).
TIMEOUT = 2.0


def hanging_body() -> bytes:
    messages = [{"role": "user", "content": "wait {{fault:hang}}"}]
    return json.dumps({"model": "gpt-4o", "messages": messages}).encode()


async def until_hanging(server: Any) -> None:
    """Until the server holds the request (a bounded poll: the request goes out at once)."""
    for _ in range(2_000):
        if server.stats()["faults"].get("hang"):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the request never reached the server")


@pytest.mark.parametrize("interrupted", [False, True])
async def test_a_request_past_its_deadline_is_a_timeout_and_an_interrupt_still_interrupts(
    serve: Callable[..., Any], interrupted: bool
) -> None:
    if interrupted and sys.version_info < (3, 11):
        pytest.skip("Python 3.10 has no Task.uncancel: an interrupt there is taken for a timeout")
    server = await serve(hang_seconds=600)
    endpoint = Endpoint(base_url=server.base_url, model="gpt-4o")
    stats = RunStats()
    async with open_sender(endpoint, EngineSettings(), stats, SystemClock()) as sender:
        assert sender.deadlines is not None
        assert sender.session.timeout.total is None  # no per-request timer of aiohttp's
        deadlines, loop = fake_deadlines(60.0)
        sender.deadlines = deadlines
        task = asyncio.ensure_future(sender.send(hanging_body(), structured=False))
        await until_hanging(server)
        loop.now = 60.0
        deadlines._expire()
        if interrupted:
            task.cancel()  # Ctrl-C in the same moment
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            attempt = await task
            assert attempt.judgement.kind is OutcomeKind.TIMEOUT
            if sys.version_info >= (3, 11):
                assert task.cancelling() == 0  # the deadline's cancellation taken back
    assert stats.in_flight == 0
    assert stats.requests_sent == 1


async def test_a_hanging_row_times_out_and_the_others_are_answered(
    serve: Callable[..., Any],
) -> None:
    """End to end: the run's real timer, a short timeout, one row the server never answers."""
    import pandas as pd

    import holysheep_nb  # noqa: F401 - registers df.holysheep

    server = await serve(hang_seconds=600)
    frame = pd.DataFrame({"text": ["row 0 {{fault:hang}}", *(f"row {i}" for i in range(1, 20))]})
    out = await frame.holysheep.acomplete(
        "text", base_url=server.base_url, timeout=TIMEOUT, max_retries=0, cache=False,
        progress=False, max_concurrent=4,
    )  # fmt: skip
    assert out["error"].iat[0] == "timeout after 1 attempt"
    assert out["response"].iloc[1:].notna().all()


async def test_a_worker_started_while_another_rests_times_out_on_its_own(
    serve: Callable[..., Any],
) -> None:
    """Row 0 is told to wait (a 429): a second worker is started from the first one's
    context to take row 1, which the server never answers. Its deadline must cancel its own
    request, not the first worker's wait (the second worker has a ``Sending`` of its own)."""
    import pandas as pd

    import holysheep_nb  # noqa: F401 - registers df.holysheep

    server = await serve(hang_seconds=600, retry_after=1.5 * TIMEOUT)  # rests past the deadline
    frame = pd.DataFrame({"text": ["row 0 {{fault:429*1}}", "row 1 {{fault:hang}}"]})
    run = frame.holysheep.acomplete(
        "text", base_url=server.base_url, timeout=TIMEOUT, max_retries=0, cache=False,
        progress=False, max_concurrent=1,
    )  # fmt: skip
    out = await bounded(run, 60.0, "the run")  # a hang guard: it takes about TIMEOUT
    assert out["response"].iat[0] is not None
    assert out["error"].isna().iat[0]
    assert out["error"].iat[1] == "timeout after 1 attempt"
