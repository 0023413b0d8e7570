"""The provider limit of one Dask run, kept in one place: the scheduler's event loop.

``RunLimits`` is pure bookkeeping on an injected clock (``holysheep_nb.clock.Clock``: its
``now`` for send times, leases and holds, its ``sleep`` for how long an ask waits for a slot;
no Dask in here, so it is tested on a fake clock). The scheduler plugin
(``holysheep_nb.dask.plugin``) holds one per run and every worker asks it, one round trip
per send, for:

- a slot in flight: at most ``max_concurrent`` sends across the cluster. A slot is a lease
  named by the worker, freed when the send is over, when its worker leaves the cluster
  (the scheduler's ``remove_worker``), or at the latest ``timeout + LEASE_MARGIN`` seconds
  after its send time (no attempt lasts longer than its ``timeout``), so a lost worker never
  holds one for long;
- a send time: the requests and tokens budgets are shared token buckets in their virtual
  scheduling form (GCRA): each send is given the earliest time both allow, no earlier than
  a hold. Over any window of T seconds the cluster's sends stay below ``rate * T + 1``,
  within the bound of one run's own throttle (docs/contract.md, "Rate limits and 429s");
- the provider's own budget: a release carries its answer's ``x-ratelimit-*-requests``
  headers (a few bytes more in a message already sent) and the scheduler counts its sends
  against them (``holysheep_nb.dask.budget``). Once they are spent, every send waits for
  the reset, and from then on the requests budget above paces the cluster at the rate the
  provider states (never faster than told), as one run paces its own. Paced per worker,
  each at the whole rate, the cluster sent a multiple of it; not paced, it sent each
  window's budget in one burst racing the last one out of the provider's sliding window,
  while the holds the workers judged from their own answers reached the scheduler after
  sends they should have stopped (429s at every window's turnover);
- the run-wide hold (a spent budget seen by any worker) and the run-wide stop (the first
  authentication or quota failure wins; every later ask is refused with it).

It also keeps what the client's progress bar and merged report read: rows done per
partition, and each partition's final report.

Length: slots, budgets, hold, stop and progress are one run's state, changed by the same
handlers on the scheduler's loop; split, each part would need the others' locks.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from holysheep_nb.clock import Clock
from holysheep_nb.dask.budget import ProviderBudget
from holysheep_nb.policies import EngineSettings

#: Seconds past a lease's send time and the attempt timeout after which it lapses anyway.
LEASE_MARGIN = 10.0
#: A report's counts that make a partition's tally, in order.
TALLY = ("succeeded", "failed", "retries", "cached")
#: The share of a budget left unused so that sends reaching the provider a few milliseconds
#: off their given times stay under a sliding window of 2 s or more (20 ms of room there).
JITTER_MARGIN = 0.01
#: Longest time one ask waits on the scheduler for a slot before it is answered "ask
#: again": a worker that went away mid-ask costs a slot for at most this long.
ASK_POLL = 2.0


@dataclass(frozen=True)
class LimitConfig:
    """The limits every worker of one run shares, as the call's options gave them."""

    max_concurrent: int
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout: float = EngineSettings.timeout

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for the scheduler's messages."""
        return {
            "max_concurrent": self.max_concurrent,
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "timeout": self.timeout,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LimitConfig:
        """The inverse of ``to_dict``."""
        return cls(**values)


class _Schedule:
    """One budget in GCRA form: sends paced at ``JITTER_MARGIN`` under ``rate`` units a
    second, no burst.

    Unlike one run's token bucket, this needs no lateness allowance: a send time is given
    ahead on the scheduler's clock, so a worker that wakes late does not push later sends
    back. What it needs instead is room for jitter: sends given exact times reach the
    provider a few milliseconds early or late (each worker hears back at its own pace), and
    a provider counting a sliding window of capacity ``rate * W`` would refuse the one that
    arrives early at the window's end.
    """

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0 * (1.0 - JITTER_MARGIN)
        self.theoretical = -math.inf  # when the next unit is due

    def earliest(self, now: float) -> float:
        """The earliest time a send may go by this budget."""
        return max(now, self.theoretical)

    def charge(self, at: float, units: float) -> None:
        """Charge ``units`` to a send at ``at`` (a debt pushes later sends back)."""
        self.theoretical = max(self.theoretical, at) + units / self.rate

    def correct(self, units: float) -> None:
        """Charge (or give back, negative) ``units`` after the fact."""
        if self.theoretical > -math.inf:
            self.theoretical += units / self.rate


@dataclass
class _Lease:
    worker: str
    expires: float
    send: int = 0  # its number among the sends given a turn (``ProviderBudget``)


@dataclass
class PartitionState:
    """What the scheduler knows of one partition: where it runs, rows done, its report."""

    worker: str = ""
    rows: int = 0
    tally: tuple[int, int, int, int] = (0, 0, 0, 0)  # succeeded, failed, retries, cached
    started: float = 0.0
    report: dict[str, Any] | None = None

    @property
    def done(self) -> int:
        """Rows with their final outcome."""
        return self.tally[0] + self.tally[1]


@dataclass
class RunLimits:
    """The shared limit and progress of one run (see the module docstring)."""

    config: LimitConfig
    clock: Clock
    leases: dict[str, _Lease] = field(default_factory=dict)
    hold_until: float = -math.inf
    hold_reason: str = ""
    paused: int = 0  # holds of the run (the merged report's; workers' overlapping ones once)
    paused_seconds: float = 0.0  # their time, overlaps counted once
    stop: tuple[str, str] | None = None  # (cause, advice)
    partitions: dict[int, PartitionState] = field(default_factory=dict)
    started: float | None = None
    finished: float | None = None
    budget: ProviderBudget = field(default_factory=ProviderBudget)
    _revoked: set[str] = field(default_factory=set)
    _waiters: deque[asyncio.Future[None]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        config = self.config
        self._requests = (
            _Schedule(config.requests_per_minute) if config.requests_per_minute else None
        )
        self._tokens = _Schedule(config.tokens_per_minute) if config.tokens_per_minute else None

    async def admit(self, lease: str, worker: str, tokens: float) -> dict[str, Any]:
        """One send's turn: ``{"wait": seconds, "at": send time, "in_flight": sends in
        flight now}`` with lease ``lease`` taken, ``{"stop": [cause, advice]}``, or
        ``{"again": True}`` when no slot freed within ``ASK_POLL`` seconds of the clock.

        ``at`` is the send time on this scheduler's clock (``now + wait``): the budgets are
        kept on these times, so counting them over any window of the clock checks the limit
        whatever the delays between the scheduler, the workers and the provider.
        """
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        self._expire()
        if (len(self.leases) >= self.config.max_concurrent or self._waiters) and not (
            await self._wait_for_slot()
        ):
            return {"again": True}
        refusal = self._refusal()
        if refusal is not None:  # stopped while this ask waited
            self._wake()
            return refusal
        if lease in self._revoked:  # the asker gave up while it waited
            self._revoked.discard(lease)
            self._wake()
            return {"again": True}
        now = self.clock.now()
        spent_until = self.budget.spent_until(now)
        if spent_until is not None:
            self.hold(spent_until - now, "the provider's budget is spent")
        if spent_until is not None or self.hold_until > now:
            # Spent, by this count or a worker's judgement: pace at the stated rate from
            # here, or the sends held back would all go at the reset, as a burst that the
            # provider's window then has to pay for.
            per_minute = self.budget.per_minute()
            if per_minute is not None:
                self.lower_request_rate(per_minute)
        at = max(now, self.hold_until)
        if self._requests is not None:
            at = max(at, self._requests.earliest(now))
        if self._tokens is not None:
            at = max(at, self._tokens.earliest(now))
        if self._requests is not None:
            self._requests.charge(at, 1.0)
        if self._tokens is not None:
            self._tokens.charge(at, tokens)
        expires = at + self.config.timeout + LEASE_MARGIN
        self.leases[lease] = _Lease(worker, expires, self.budget.count_send())
        return {"wait": at - now, "at": at, "in_flight": len(self.leases)}

    def release(
        self, lease: str, tokens: float = 0.0, headers: Mapping[str, str] | None = None
    ) -> None:
        """The send on ``lease`` is over (or its asker gave up); ``tokens`` corrects the
        token budget (actual minus estimated, of sends answered since the last call);
        ``headers`` are the provider's budget headers of its answer, if any."""
        if tokens and self._tokens is not None:
            self._tokens.correct(tokens)
        held = self.leases.pop(lease, None)
        if held is None and lease:
            self._revoked.add(lease)
        if held is not None and headers:
            self.budget.read(held.send, headers, self.clock.now())
        self._wake()

    def lower_request_rate(self, per_minute: float) -> bool:
        """Pace the cluster's sends at ``per_minute`` from now on, if slower than so far.

        For the rate the provider states (see the module docstring): the pace only ever
        goes down, so it never goes above ``requests_per_minute``. Sends already given a
        time keep it; the next is due no earlier than the old pace said. Returns True when
        the pace changed.
        """
        if not (math.isfinite(per_minute) and per_minute > 0):
            return False
        schedule = _Schedule(per_minute)
        old = self._requests
        if old is not None:
            if old.rate <= schedule.rate:
                return False
            schedule.theoretical = old.theoretical
        self._requests = schedule
        return True

    @property
    def pace(self) -> float | None:
        """The requests per minute the cluster's sends are paced at now (the rate told, or
        the provider's stated rate once lower), or None when they are not paced."""
        if self._requests is None:
            return None
        return self._requests.rate * 60.0 / (1.0 - JITTER_MARGIN)

    def hold(self, seconds: float, reason: str) -> None:
        """Hold every new send of the run for ``seconds`` from now (extends, never shortens).

        A hold that ends no later than the requests pace's next turn changes no send time,
        and is not recorded: told the rate and paced under it, the provider's sliding window
        is nearly full at every send, and its headers say "spent" until a slot frees a few
        milliseconds on, about when the pace lets the next send go anyway. Recorded, those
        holds were the bar's ``held=0s, the provider's budget is spent`` in runs without a
        429; a hold past the pace still holds, and is shown.
        """
        now = self.clock.now()
        until = now + seconds
        if self._requests is not None and until <= self._requests.theoretical:
            return  # the pace's next turn only moves later: it covers this hold
        if until > self.hold_until:
            if self.hold_until <= now:
                self.paused += 1
            self.paused_seconds += until - max(now, self.hold_until)
            self.hold_until = until
            self.hold_reason = reason

    def stop_run(self, cause: str, advice: str) -> None:
        """Stop the run: the first cause wins; every waiting and later ask is refused."""
        if self.stop is None:
            self.stop = (cause, advice)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def worker_lost(self, worker: str) -> None:
        """Free every lease of a worker that left the cluster."""
        for lease in [name for name, held in self.leases.items() if held.worker == worker]:
            del self.leases[lease]
        self._wake()

    def begin(self, partition: int, worker: str, rows: int) -> None:
        """A partition starts (again, on another worker, after a loss: its count restarts)."""
        now = self.clock.now()
        if self.started is None:
            self.started = now
        state = self.partitions.setdefault(partition, PartitionState())
        state.worker, state.rows, state.started, state.report = worker, rows, now, None

    def progress(self, partition: int, tally: list[int]) -> None:
        """A partition's rows succeeded, failed, retries and cached so far. A retried
        partition counts again from nothing: its count shows once it has caught up."""
        state = self.partitions.setdefault(partition, PartitionState())
        succeeded, failed, retries, cached = (int(n) for n in tally)
        if succeeded + failed >= state.done:
            state.tally = (succeeded, failed, retries, cached)

    def finish(self, partition: int, report: dict[str, Any]) -> None:
        """A partition is done: its final tally and its report are kept."""
        state = self.partitions.setdefault(partition, PartitionState())
        succeeded, failed, retries, cached = (int(report[name]) for name in TALLY)
        state.tally = (succeeded, failed, retries, cached)
        state.report = report
        self.finished = self.clock.now()

    @property
    def idle(self) -> bool:
        """True when nothing is in flight or waiting and some partition has finished."""
        self._expire()
        return self.finished is not None and not self.leases and not self._waiters

    def status(self) -> dict[str, Any]:
        """Everything the client reads: partitions, rows done, hold, stop, reports."""
        now = self.clock.now()
        return {
            "partitions": {
                number: {
                    "worker": state.worker,
                    "rows": state.rows,
                    "tally": list(state.tally),
                    "offset": state.started - (self.started or state.started),
                    "report": state.report,
                }
                for number, state in self.partitions.items()
            },
            "in_flight": len(self.leases),
            "held_for": max(0.0, self.hold_until - now),
            "hold_reason": self.hold_reason,
            "paused": self.paused,
            "paused_seconds": self.paused_seconds,
            "stop": list(self.stop) if self.stop else None,
            "elapsed": (self.finished or now) - self.started if self.started is not None else 0.0,
        }

    def _refusal(self) -> dict[str, Any] | None:
        return {"stop": list(self.stop)} if self.stop is not None else None

    async def _wait_for_slot(self) -> bool:
        """Queue for a slot, first come first served; False after ``ASK_POLL`` seconds of
        the clock (its ``sleep``).

        A woken ask checks again (a later release may have woken it too early) and keeps its
        place at the head of the queue.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        poll = asyncio.ensure_future(self.clock.sleep(ASK_POLL))
        granted = False
        try:
            while True:
                await asyncio.wait((waiter, poll), return_when=asyncio.FIRST_COMPLETED)
                if not waiter.done():
                    return False  # the poll ran out first
                if self.stop is not None or len(self.leases) < self.config.max_concurrent:
                    granted = True
                    return True
                self._waiters.remove(waiter)
                waiter = loop.create_future()
                self._waiters.appendleft(waiter)
        finally:
            poll.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if not granted:
                self._wake()  # a slot this ask was woken for goes to the next one

    def _expire(self) -> None:
        now = self.clock.now()
        for lease in [name for name, held in self.leases.items() if held.expires <= now]:
            del self.leases[lease]

    def _wake(self) -> None:
        """Hand free slots to waiting asks, first come first served."""
        self._expire()
        free = self.config.max_concurrent - len(self.leases)
        for waiter in list(self._waiters):
            if free <= 0:
                break
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
