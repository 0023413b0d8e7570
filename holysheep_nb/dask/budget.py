"""The provider's requests budget of one Dask run, as every answer states it, counted on the
scheduler (pure bookkeeping: no clock of its own, no Dask).

Each answer carries ``x-ratelimit-remaining-requests`` (what the provider had left when that
request arrived), ``x-ratelimit-reset-requests`` (when it frees the next) and
``x-ratelimit-limit-requests`` (what its window holds). Judged on a worker (left no more
than in flight: ``retry.budget_hold``), a spent budget reached the scheduler a message later,
and a burst faster than that kept sending past it. The scheduler gives every send its turn,
so it counts instead: a reading taken at the n-th send leaves ``remaining`` minus the sends
given a turn after the n-th, whatever the delays, and once that is 0 nothing more goes
before the reset.

A reading is credited to a send no later than the one it was taken at (a worker frees its
oldest lease first), so the count errs towards holding. The reading credited to the latest
send is kept and an older one that arrives late is ignored: it misses what others sharing
the account spent since (a stale ``remaining`` would let more through), and what the
provider's window freed. What the count cannot see: a send given its turn before a
reading's but reaching the provider after it, and the budget freed at the reset, where a
reading lapses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from holysheep_nb.adaptive import StatedLimit
from holysheep_nb.retry import budget_left

#: The answer headers a worker passes on to the scheduler, when an answer has them.
BUDGET_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)


@dataclass(frozen=True)
class _Reading:
    send: int  # the number of the send it is credited to
    left: float  # requests the provider had left when that send arrived
    until: float  # clock time of the reset it stated


@dataclass
class ProviderBudget:
    """The sends given a turn, and the newest reading of the provider's budget."""

    sends: int = 0  # sends given a turn so far; the n-th send is number n
    stated: StatedLimit = field(default_factory=StatedLimit)
    _reading: _Reading | None = None
    _limit: str | None = None  # the last x-ratelimit-limit-requests stated

    def count_send(self) -> int:
        """A send is given its turn: its number."""
        self.sends += 1
        return self.sends

    def read(self, send: int, headers: Mapping[str, str], now: float) -> None:
        """The answer to send number ``send`` (or a later one) came back with ``headers``."""
        self.stated.observe(headers)
        self._limit = headers.get("x-ratelimit-limit-requests", self._limit)
        budget = budget_left(headers, "requests")
        if budget is None:
            return
        current = self._reading
        if current is not None and current.send > send and current.until > now:
            return  # older news than the reading in use
        self._reading = _Reading(send, budget[0], now + budget[1])

    def spent_until(self, now: float) -> float | None:
        """When the budget frees again if the next send would find it spent, by the newest
        reading; None when it would not, or nothing says."""
        reading = self._reading
        if reading is None or reading.until <= now:
            return None
        if reading.left - (self.sends - reading.send) > 0:
            return None
        return reading.until

    def per_minute(self) -> float | None:
        """The request rate the provider states (``StatedLimit``), or None."""
        if self._limit is None:
            return None
        return self.stated.per_minute({"x-ratelimit-limit-requests": self._limit})
