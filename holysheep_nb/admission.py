"""Admission: what a send waits for before it goes, as small parts behind one interface.

A send passes, in order, the concurrency gate (``adaptive.ConcurrencyGate`` over the run's
``ConcurrencyWindow``), the throttle (``ratelimit.Throttle``: the token buckets and the
429 cool-down) and, in a run that shares its limit with other processes (a Dask
cluster's), ``SharedPart``. Each part is an ``Admitter``: ``ready`` takes a turn at once
when one is free (the hot path: no coroutine), ``wait`` waits for one, ``release`` gives it
back when the send is over (only a part that ``holds`` a turn meanwhile has one to give).
``Admission`` runs a ``Ticket`` through the parts (``ready`` for those that admit at once,
then ``wait``) and, when a wait is interrupted, releases what was taken. A new limit (a
slow start, a dead-server breaker) is one more part in ``Admission.parts``.

A run that shares nothing has ``NullSharedLimit`` as its shared limit: what the engine and
the holds tell a shared limit (tokens settled, a hold, the stop) goes nowhere, and it is no
part of admission, so an unshared run's sends pass two parts, not three.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from holysheep_nb.clock import Clock
from holysheep_nb.errors import HolySheepError
from holysheep_nb.outcome import RunStats, RunStop
from holysheep_nb.ratelimit import SharedLimit

Headers = Mapping[str, str] | None


class Stopped(HolySheepError):
    """Raised inside a run's waits once the run has stopped: the send never goes. The
    engine catches it (a row not sent); it never reaches the caller, and sits in the one
    error tree only because it crosses modules (admission, pool, engine).

    ``reason`` is the stop a part found (every run sharing a limit has stopped), for the run
    to take on; None when the run itself had stopped.
    """

    def __init__(self, reason: RunStop | None = None) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Ticket:
    """One send on its way through admission: its token estimate, what the gate saw (the
    requests in flight with it, the window's generation) for its answer to report, and the
    seconds it was held for the pace or a spent budget (the throttle and shared parts; not
    the gate's wait for a slot)."""

    tokens: float
    sent_at: int = 0
    generation: int = 0
    held: float = 0.0


class Admitter(Protocol):
    """One part of admission (see the module docstring)."""

    #: True when the part holds a turn while the send is in flight (``release`` gives it
    #: back); False for one that only decides when a send may go.
    holds: bool

    def ready(self, ticket: Ticket) -> bool:
        """Take a turn at once if one is free; True when taken."""

    async def wait(self, ticket: Ticket) -> None:
        """Wait for a turn and take it; raises ``Stopped`` when the run stops meanwhile."""

    def release(self, headers: Headers) -> None:
        """The send is over (``headers``: its answer's, if one came back)."""


class NullSharedLimit:
    """The shared limit of a run that shares none: learns nothing, and is no admission part
    (the run's sends pass the gate and the throttle only)."""

    #: A run sharing nothing paces itself at a rate the provider states.
    paces_itself = True
    in_flight = 0

    def settle(self, estimated: float, actual: float) -> None:
        return None

    def hold(self, seconds: float, reason: str) -> None:
        return None

    def stop(self, stop: RunStop) -> None:
        return None


class SharedPart:
    """A ``SharedLimit`` (shared with runs in other processes) as an admission part.

    A run sharing its limit leaves pacing at a stated rate to the shared limit, which reads
    every process's answers: each pacing at the whole stated rate would send a multiple of
    it (``paces_itself`` is False).
    """

    paces_itself = False
    holds = True  # a turn of the shared limit, given back when the answer is in

    def __init__(
        self,
        shared: SharedLimit,
        stats: RunStats,
        sleep: Callable[[float], Awaitable[None]],
        clock: Clock,
    ) -> None:
        self.shared = shared
        self.sleep = sleep  # the run's (``pool.Halt.sleep``): no reference back to the run
        self.clock = clock
        shared.track(stats)

    @property
    def in_flight(self) -> int:
        """Sends in flight across every sharing run, as last heard."""
        return self.shared.in_flight

    def ready(self, ticket: Ticket) -> bool:
        return False  # asking the shared limit is always a round trip

    async def wait(self, ticket: Ticket) -> None:
        waited = self.clock.now()
        turn = await self.shared.admit(ticket.tokens)
        if isinstance(turn, RunStop):
            raise Stopped(turn)
        if turn > 0:
            try:
                await self.sleep(turn)
            except BaseException:
                self.shared.release()
                raise
        ticket.held += self.clock.now() - waited

    def release(self, headers: Headers) -> None:
        self.shared.release(headers)

    def settle(self, estimated: float, actual: float) -> None:
        self.shared.settle(estimated, actual)

    def hold(self, seconds: float, reason: str) -> None:
        self.shared.hold(seconds, reason)

    def stop(self, stop: RunStop) -> None:
        self.shared.stop(stop)


class Admission:
    """The parts a send passes, in order; ``enter`` before sending, ``leave`` after."""

    def __init__(self, *parts: Admitter) -> None:
        self.parts = parts
        self.holders = tuple(part for part in parts if part.holds)

    def ready(self, ticket: Ticket) -> int:
        """Pass the parts that admit at once, in order; how many passed (all of them: the
        send may go, no coroutine needed). Otherwise ``wait`` from the one that did not."""
        passed = 0
        for part in self.parts:
            if not part.ready(ticket):
                break
            passed += 1
        return passed

    async def wait(self, ticket: Ticket, passed: int) -> None:
        """Wait for part ``passed`` (which did not admit at once), then pass the rest; on
        ``Stopped`` (or a cancel) release what was taken."""
        taken = passed
        try:
            await self.parts[passed].wait(ticket)
            taken += 1
            for part in self.parts[taken:]:
                if not part.ready(ticket):
                    await part.wait(ticket)
                taken += 1
        except BaseException:
            for part in self.parts[:taken]:
                if part.holds:
                    part.release(None)
            raise

    async def enter(self, ticket: Ticket) -> None:
        """Pass every part in order (``ready``, then ``wait`` when one is not)."""
        passed = self.ready(ticket)
        if passed < len(self.parts):
            await self.wait(ticket, passed)

    def leave(self, headers: Headers) -> None:
        """The send is over: every part that holds a turn gets it back."""
        for part in self.holders:
            part.release(headers)
