"""Admission control for sends: token buckets for requests and tokens, and the 429 cool-down.

One ``Throttle`` per run decides when the next request may go. Waiters queue on one FIFO
lock, so they are served in order and only the head of the queue sleeps: no busy-waiting,
and with a fake clock every wait is exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

from holysheep_nb.clock import Clock
from holysheep_nb.policies import RateLimits

if TYPE_CHECKING:
    from holysheep_nb.admission import Headers, Ticket
    from holysheep_nb.outcome import RunStats, RunStop

#: Waits shorter than this count as none: float rounding must not leave a waiter sleeping
#: for 1e-17 s forever (at t=1000 such a sleep does not even move the clock).
_TOLERANCE = 1e-9


class TokenBucket:
    """A bucket of ``capacity`` that refills at ``rate`` per second, starting full.

    A take larger than the bucket waits for a full bucket and then leaves it in debt, so a
    request bigger than one second's worth of tokens still goes, and the long-run rate holds.
    """

    def __init__(self, rate: float, capacity: float, clock: Clock) -> None:
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._level = capacity
        self._updated = clock.now()

    @property
    def level(self) -> float:
        """The tokens available now (negative while in debt)."""
        self._refill()
        return self._level

    def delay_for(self, amount: float) -> float:
        """Seconds until ``amount`` (at most a full bucket) is available; 0 when it is."""
        self._refill()
        missing = min(amount, self.capacity) - self._level
        return missing / self.rate if missing > _TOLERANCE else 0.0

    def take(self, amount: float) -> None:
        """Remove ``amount``; the level may go negative (a debt later takes wait for)."""
        self._refill()
        self._level -= amount

    def spend_burst(self) -> None:
        """Keep at most one unit: what a hold kept back must not go out as a burst after it.

        As TCP restarts from a small window after an idle period (RFC 5681, section 4.1):
        the budget banked while sends were held is no evidence that the provider can take it.
        """
        self._refill()
        self._level = min(self._level, 1.0)

    def give_back(self, amount: float) -> None:
        """Return ``amount`` (an over-estimate), never above the capacity."""
        self._refill()
        self._level = min(self.capacity, self._level + amount)

    def _refill(self) -> None:
        now = self._clock.now()
        self._level = min(self.capacity, self._level + (now - self._updated) * self.rate)
        self._updated = now


class Throttle:
    """Lets sends through in order once the cool-down is over and both buckets allow.

    ``sleep`` is the run's sleep (it raises when the run is aborted, so waiters leave at once).
    """

    def __init__(
        self,
        limits: RateLimits,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep or clock.sleep
        self._requests = _bucket(limits.requests_per_minute, limits.request_capacity, clock)
        self._tokens = _bucket(limits.tokens_per_minute, limits.token_capacity, clock)
        self._limited = self._requests is not None or self._tokens is not None
        self._resume_at = float("-inf")
        self._lock = asyncio.Lock()
        self._queued = 0  # sends in ``acquire`` (waiting for the lock, or holding it)

    @property
    def resume_at(self) -> float:
        """Clock time before which nothing is sent (the 429 cool-down)."""
        return self._resume_at

    def pause_until(self, when: float) -> float:
        """Hold every new send until ``when`` (extends, never shortens, a cool-down).

        Returns the seconds this adds to the holds so far (overlaps counted once).
        """
        start = max(self._resume_at, self._clock.now())
        added = max(0.0, when - start)
        self._resume_at = max(self._resume_at, when)
        return added

    def next_send_at(self) -> float:
        """Clock time of the next request's turn by the requests pace alone (now when no
        pace is set, or it has room)."""
        now = self._clock.now()
        return now if self._requests is None else now + self._requests.delay_for(1.0)

    # The throttle is an admission part (``admission.Admitter``): it decides when a send
    # may go, and holds nothing while the send is in flight.
    holds = False

    def ready(self, ticket: Ticket | None = None) -> bool:
        """True when a send may go at once: no limits, no queue, no hold (then ``acquire``
        would return at once; admission skips it on this hot path)."""
        return not self._limited and not self._queued and self._clock.now() >= self._resume_at

    async def wait(self, ticket: Ticket) -> None:
        """``acquire`` the ticket's tokens; the seconds it took are the ticket's ``held``."""
        waited = self._clock.now()
        await self.acquire(ticket.tokens)
        ticket.held += self._clock.now() - waited

    def release(self, headers: Headers) -> None:
        """Nothing to give back (``holds`` is False: admission never calls it)."""

    def lower_request_rate(self, per_minute: float) -> bool:
        """Pace requests at ``per_minute`` from now on, if that is slower than the pace so far.

        For a limit the provider states (``x-ratelimit-limit-requests``) that the user did not
        set: the pace only ever goes down, so it never exceeds ``requests_per_minute``. The
        new bucket is the one ``requests_per_minute`` would get, and starts with no more than
        the old one had. Returns True when the pace changed.
        """
        rate = per_minute / 60.0
        old = self._requests
        if not rate > 0.0 or (old is not None and old.rate <= rate):
            return False
        capacity = RateLimits(requests_per_minute=per_minute).request_capacity
        assert capacity is not None
        bucket = TokenBucket(rate, capacity, self._clock)
        if old is not None:
            bucket.take(max(0.0, capacity - old.level))
        self._requests = bucket
        self._limited = True
        return True

    async def acquire(self, tokens: float = 0.0) -> None:
        """Wait for this send's turn, then take one request and ``tokens`` from the buckets."""
        if self.ready():
            return
        self._queued += 1
        try:
            await self._locked_acquire(tokens)
        finally:
            self._queued -= 1

    async def _locked_acquire(self, tokens: float) -> None:
        async with self._lock:
            while True:
                held = self._resume_at - self._clock.now()
                delay = held
                if self._requests is not None:
                    delay = max(delay, self._requests.delay_for(1.0))
                if self._tokens is not None:
                    delay = max(delay, self._tokens.delay_for(tokens))
                if delay <= _TOLERANCE:
                    break
                # Re-check after waking: a 429 may have extended the cool-down meanwhile.
                await self._sleep(delay)
                if held > _TOLERANCE and self._requests is not None:
                    # The provider held us: it frees its budget a request at a time (a
                    # sliding window), so the requests banked meanwhile go out paced.
                    self._requests.spend_burst()
            if self._requests is not None:
                self._requests.take(1.0)
            if self._tokens is not None:
                self._tokens.take(tokens)

    def settle_tokens(self, estimated: float, actual: float) -> None:
        """Correct the token bucket once ``usage`` tells the real count."""
        if self._tokens is None or actual == estimated:
            return
        if actual > estimated:
            self._tokens.take(actual - estimated)
        else:
            self._tokens.give_back(estimated - actual)


class SharedLimit(Protocol):
    """A limit this run shares with runs in other processes (``holysheep_nb.dask``).

    The engine of a run started while ``SHARED_LIMIT`` holds one asks it before every send,
    after its own throttle, and tells it what it learns; it never waits on it otherwise.
    """

    @property
    def in_flight(self) -> int:
        """Sends in flight across every run sharing the limit (this one's too), as last heard."""

    def track(self, stats: RunStats) -> None:
        """The run's tally, read (never written) to report progress."""

    async def admit(self, tokens: float) -> float | RunStop:
        """Take a slot for one send of about ``tokens``: the seconds to wait before sending,
        or why every run sharing the limit has stopped (then no slot was taken)."""

    def release(self, headers: Mapping[str, str] | None = None) -> None:
        """The send that ``admit`` let through is over: its slot is free. ``headers`` are its
        answer's, when one came back (what they say of the provider's budget is shared)."""

    def settle(self, estimated: float, actual: float) -> None:
        """Correct a send's token estimate once ``usage`` tells the real count."""

    def hold(self, seconds: float, reason: str) -> None:
        """Hold every new send of every run for ``seconds`` (the provider's budget is spent)."""

    def stop(self, stop: RunStop) -> None:
        """Stop every run sharing the limit (authentication, quota: see docs/contract.md)."""


#: The shared limit for runs started in this context, if any (set by a Dask worker's runner).
SHARED_LIMIT: ContextVar[SharedLimit | None] = ContextVar("holysheep_shared_limit", default=None)


def _bucket(per_minute: float | None, capacity: float | None, clock: Clock) -> TokenBucket | None:
    if per_minute is None or capacity is None:
        return None
    return TokenBucket(per_minute / 60.0, capacity, clock)


def counts_tokens(limits: RateLimits) -> bool:
    """Whether a run started now counts tokens: a tokens-per-minute limit, or a limit shared
    with other processes (``SHARED_LIMIT``), takes each send's token estimate and settles it
    from the answer's usage. Otherwise nothing reads an estimate."""
    return limits.tokens_per_minute is not None or SHARED_LIMIT.get() is not None
