"""Admission parts behind one interface, the null shared limit, and the verdict match.

The parts are tried in order; a part that cannot admit at once is waited for; a wait that
ends with the run's stop (or a cancel) gives back what earlier parts had taken; only a part
that holds a turn while the send is in flight is given one back.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from holysheep_nb.adaptive import ConcurrencyGate, ConcurrencyWindow
from holysheep_nb.admission import Admission, Headers, NullSharedLimit, Stopped, Ticket
from holysheep_nb.chat import ChatRequest, build_messages
from holysheep_nb.endpoint import Endpoint
from holysheep_nb.engine import CompletionEngine, _Run
from holysheep_nb.errors import HolySheepWarning
from holysheep_nb.outcome import OutcomeKind, RowOutcome, RunStats, RunStop
from holysheep_nb.policies import RateLimits
from holysheep_nb.ratelimit import SHARED_LIMIT, Throttle
from tests.fakes import FakeClock
from tests.scripted import BASE_URL


class Recording:
    """A part that records its calls; ``ready`` as told, ``wait`` raising when told."""

    def __init__(
        self, name: str, log: list[str], *, ready: bool, stops: bool = False, holds: bool = True
    ) -> None:
        self.name, self.log, self.is_ready, self.stops = name, log, ready, stops
        self.holds = holds

    def ready(self, ticket: Ticket) -> bool:
        self.log.append(f"{self.name}.ready")
        return self.is_ready

    async def wait(self, ticket: Ticket) -> None:
        self.log.append(f"{self.name}.wait")
        if self.stops:
            raise Stopped

    def release(self, headers: Headers) -> None:
        self.log.append(f"{self.name}.release")


async def test_parts_are_passed_in_order_and_waited_only_when_not_ready() -> None:
    log: list[str] = []
    admission = Admission(Recording("a", log, ready=True), Recording("b", log, ready=False))
    await admission.enter(Ticket(10))
    admission.leave(None)
    assert log == ["a.ready", "b.ready", "b.wait", "a.release", "b.release"]


async def test_a_stop_while_waiting_releases_only_what_was_taken() -> None:
    log: list[str] = []
    parts = (
        Recording("gate", log, ready=True),
        Recording("pace", log, ready=True, holds=False),
        Recording("shared", log, ready=False, stops=True),
        Recording("never", log, ready=True),
    )
    with pytest.raises(Stopped):
        await Admission(*parts).enter(Ticket(1))
    assert log == [
        "gate.ready",
        "pace.ready",
        "shared.ready",
        "shared.wait",
        "gate.release",
    ]


async def test_a_part_that_holds_nothing_is_not_given_anything_back() -> None:
    log: list[str] = []
    admission = Admission(
        Recording("gate", log, ready=True), Recording("pace", log, ready=True, holds=False)
    )
    await admission.enter(Ticket(1))
    admission.leave({"x-request-id": "1"})
    assert log == ["gate.ready", "pace.ready", "gate.release"]


async def test_the_gate_part_tells_the_ticket_its_concurrency_and_generation() -> None:
    window = ConcurrencyWindow(2)
    gate = ConcurrencyGate(window)
    admission = Admission(gate)
    first, second, third = Ticket(1), Ticket(1), Ticket(1)
    await admission.enter(first)
    await admission.enter(second)
    assert (first.sent_at, second.sent_at) == (1, 2)
    assert not gate.ready(third)  # the window is full: the third waits for a slot
    waiting = asyncio.ensure_future(admission.enter(third))
    await asyncio.sleep(0)
    assert not waiting.done()
    window.rate_limited(2, window.generation)  # a stray 429: the window gives up a slot
    admission.leave(None)
    admission.leave(None)
    await waiting
    assert (third.sent_at, third.generation) == (1, window.generation)


async def test_the_throttle_part_waits_for_its_bucket(clock: FakeClock) -> None:
    throttle = Throttle(RateLimits(requests_per_minute=60, request_burst=1), clock)
    admission = Admission(throttle)
    first, second = Ticket(0), Ticket(0)
    await admission.enter(first)
    await admission.enter(second)
    assert clock.sleeps == [pytest.approx(1.0)]
    # The wait for the pace is the ticket's time held (a retry's shows in RowOutcome.held).
    assert (first.held, second.held) == (0.0, pytest.approx(1.0))


def test_the_null_shared_limit_learns_nothing_and_is_no_admission_part(clock: FakeClock) -> None:
    null = NullSharedLimit()
    assert (null.in_flight, null.paces_itself) == (0, True)
    null.settle(5, 9)
    null.hold(3.0, "spent")
    null.stop(RunStop("stopped", ""))
    assert not hasattr(null, "ready")
    engine = CompletionEngine(Endpoint(base_url=BASE_URL), clock=clock)
    parts = _Run(engine, lambda outcome: None, RunStats(), None).admission.parts
    assert [type(part) for part in parts] == [ConcurrencyGate, Throttle]


class Outcomes:
    """Outcomes as a run reports them (an object, so a weak reference can watch it)."""

    def __init__(self) -> None:
        self.outcomes: list[RowOutcome] = []

    def keep(self, outcome: RowOutcome) -> None:
        self.outcomes.append(outcome)


class StoppedSharedLimit:
    """A shared limit whose every run has stopped (another process's 401, say)."""

    in_flight = 0

    def __init__(self) -> None:
        self.stops: list[RunStop] = []

    def track(self, stats: RunStats) -> None:
        return None

    async def admit(self, tokens: float) -> float | RunStop:
        return RunStop("authentication failed (HTTP 401)", "check the API key")

    def release(self, headers: Headers = None) -> None:
        raise AssertionError("no slot was taken, so none is released")

    def settle(self, estimated: float, actual: float) -> None:
        return None

    def hold(self, seconds: float, reason: str) -> None:
        return None

    def stop(self, stop: RunStop) -> None:
        self.stops.append(stop)


async def test_a_stop_from_the_shared_limit_stops_the_run_which_holds_no_cycle(
    clock: FakeClock,
) -> None:
    """The shared part hands its stop to the run by ``Stopped(reason)``, not by holding the
    run: a finished run (with a shared limit too) is freed without the cycle collector."""
    shared = StoppedSharedLimit()
    seen = Outcomes()
    alive = weakref.ref(seen)
    token = SHARED_LIMIT.set(shared)
    gc.disable()
    try:
        engine = CompletionEngine(Endpoint(base_url=BASE_URL), clock=clock)
        rows = [(i, ChatRequest(build_messages(f"row {i}", None))) for i in range(3)]
        with pytest.warns(HolySheepWarning, match="authentication failed"):
            stats = await engine.run(iter(rows), seen.keep)
        assert stats.stop is not None
        assert stats.stop.cause == "authentication failed (HTTP 401)"
        assert [o.kind for o in seen.outcomes] == [OutcomeKind.NOT_SENT] * 3
        assert [s.cause for s in shared.stops] == ["authentication failed (HTTP 401)"]
        del seen
        assert alive() is None, "the finished run is held in a reference cycle"
    finally:
        gc.enable()
        SHARED_LIMIT.reset(token)
