"""Holding every new send of a run while the provider's budget is spent.

The provider says so in its ``x-ratelimit-*`` headers (``retry.budget_hold``) or by 429s
back to back (``ConcurrencyWindow.cluster``): the run then holds all its sends, not just the
row that was refused, and where the provider states its rate (``StatedLimit``), paces its
sends at it from then on. A run sharing its limit (Dask) tells the shared limit instead of
pacing itself (``SharedPart.paces_itself``).
"""

from __future__ import annotations

from collections.abc import Mapping

from holysheep_nb.adaptive import StatedLimit
from holysheep_nb.admission import NullSharedLimit, SharedPart
from holysheep_nb.clock import Clock
from holysheep_nb.outcome import RunStats
from holysheep_nb.ratelimit import Throttle
from holysheep_nb.retry import budget_hold, states_budget

#: The longest budget window each endpoint's headers stated, by chat URL, for the runs of this
#: process: a run that starts on a window an earlier run filled sees only short resets (the
#: oldest send is about to leave it), and would take the stated limit for a far higher rate.
_WINDOWS: dict[str, float] = {}


class BudgetHolds:
    """Decides and counts a run's holds (for the report and the bar)."""

    def __init__(
        self,
        throttle: Throttle,
        shared: SharedPart | NullSharedLimit,
        stats: RunStats,
        clock: Clock,
        max_hold: float,
        endpoint: str = "",
    ) -> None:
        self.throttle = throttle
        self.shared = shared
        self.stats = stats
        self.clock = clock
        self.max_hold = max_hold  # the policy's max_retry_after
        self.endpoint = endpoint  # the chat URL: whose window earlier runs learned
        self.stated = StatedLimit(_WINDOWS.get(endpoint, 0.0))

    def observe(self, headers: Mapping[str, str] | None) -> bool:
        """Hold new sends while an answer's budget headers say the budget is spent; True if
        they say so (the provider's budget is spent by every sharing run's sends)."""
        if headers is None or not states_budget(headers):
            return False
        in_flight = max(self.stats.in_flight, self.shared.in_flight)
        hold = budget_hold(headers, in_flight)
        self.stated.observe(headers)
        if self.stated.window > _WINDOWS.get(self.endpoint, 0.0):
            _WINDOWS[self.endpoint] = self.stated.window
        if hold:
            rate = self.stated.per_minute(headers)
            if rate is not None and self.shared.paces_itself:
                self.throttle.lower_request_rate(rate)
            self.pause(
                self.clock.now() + min(hold, self.max_hold), "the provider's budget is spent"
            )
        return bool(hold)

    def pause(self, until: float, reason: str) -> None:
        """Hold every new send until ``until``, and count the hold for the report and bar.

        A hold that ends before the requests pace would let the next send go anyway holds
        nothing and is not counted: told the rate, a run keeps the provider's window nearly
        full, and its headers say "spent" until the oldest send drops out of it.
        """
        if until <= self.throttle.next_send_at():
            return
        added = self.throttle.pause_until(until)
        self.shared.hold(until - self.clock.now(), reason)
        if added > 0:
            stats = self.stats
            if stats.held_until is None or stats.held_until < self.clock.now():
                stats.paused += 1
            stats.paused_seconds += added
            stats.held_until = until
            stats.hold_reason = reason
