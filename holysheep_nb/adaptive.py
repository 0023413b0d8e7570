"""How many requests a run keeps in flight, learned from the provider's 429s.

Providers answer 429 for different reasons, and each calls for its own response:

- the account's budget is spent: the ``x-ratelimit-remaining-*`` headers say 0, or 429s
  come back to back. Every new send waits for the reset (``Throttle.pause_until``, decided
  by the engine from ``budget_hold`` and ``ConcurrencyWindow.cluster``). Where the provider
  states its limit (``StatedLimit``), the run paces its sends at it from then on, and what
  a hold kept back goes out paced: a sliding window frees its budget a request at a time,
  so a burst at each reset would be answered with 429s.
- a cap on requests in flight, with no headers at all: a 429 comes back for a request sent
  while more were in flight than ever succeeded since the last change. The window drops to
  the most that succeeded (or just below that count, before anything succeeded). One such
  429 could be a stray that happened to hit a new width, so the cap is only taken as found
  when the next try above the same width is refused too (a stray does that at its own small
  rate, a cap every time); from then on the window probes upwards slowly and settles on it.
- a stray 429 (one replica overloaded for a moment): a 429 at a concurrency that has
  succeeded recently. Only that row backs off; the window gives up one slot, and wins it
  back after a window's worth of successes.

A run starts small (``ConcurrencyWindow.slow_starting``): ``INITIAL_WINDOW`` requests in
flight (RFC 6928's initial window), one more for every answer that succeeds, so the window
doubles each round trip up to ``max_concurrent``: TCP's slow start (RFC 5681, section 3.1).
Against a provider that caps requests in flight, the first burst then meets the cap with a
few requests over it instead of all of ``max_concurrent``; the first 429 ends the slow
start, as a loss ends TCP's, and the window settles as below. A later run to the same URL
in the process starts at the width the earlier ones took (``learned_width``, RFC 2140).

Increase by one slot per window of successes and decrease on loss is TCP's congestion
avoidance (RFC 5681, additive increase / multiplicative decrease); reading the cap off the
concurrency a 429 was sent at follows the gradient idea of Netflix's concurrency-limits
library. The window never goes above what the user set (``max_concurrent``) nor below 1.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from holysheep_nb.retry import parse_duration

if TYPE_CHECKING:
    from holysheep_nb.admission import Headers, Ticket

#: Requests in flight a slow-starting run begins with: TCP's initial window of RFC 6928 (10
#: segments). Against a 0.1 s server at 64 wide it reaches the ceiling a round trip sooner
#: than RFC 5681's 4 (0.88 of the ideal wall time instead of 0.84, benchmarks case 3), and
#: a cap below it costs its first burst a few 429s more (``benchmarks/first_burst.py``).
INITIAL_WINDOW = 10
#: Consecutive 429s (across rows, no success between) that say the budget is spent.
CLUSTER = 3
#: Above a cap the run has found, successes per probe: one slot more is tried after this
#: many windows of successes, so probing costs about 1/(PROBE_WINDOWS * cap) of answers.
PROBE_WINDOWS = 8


@dataclass(slots=True)
class ConcurrencyWindow:
    """The adaptive concurrency limit: pure bookkeeping, no time and no I/O.

    ``ceiling`` is the user's ``max_concurrent``. Each answer is reported with ``sent_at``,
    the number of requests in flight when it was sent (itself included), and the window's
    ``generation`` then: like TCP, which cuts its window once per round trip, a 429 for a
    request sent before the last change is not counted again.
    """

    ceiling: int
    limit: int = 0
    lowest: int = 0  # the smallest limit the run used (for the report)
    cap: int | None = None  # a cap on requests in flight found from 429s, if any
    generation: int = 0  # bumped at every change of the limit
    slow_start: bool = False  # growing by one per success, until the first 429 or the ceiling
    _peak_ok: int = 0  # the highest concurrency (up to the limit) that has succeeded
    _suspect: int | None = None  # a cap one 429 pointed at, not yet confirmed by a second
    _successes: int = 0  # since the last change
    _consecutive_429: int = 0

    def __post_init__(self) -> None:
        self.limit = self.limit or self.ceiling
        self.lowest = self.limit

    @classmethod
    def slow_starting(cls, ceiling: int, *, start: int = INITIAL_WINDOW) -> ConcurrencyWindow:
        """A run's window: ``start`` wide (``INITIAL_WINDOW`` unless an earlier run to the
        endpoint went wider: ``learned_width``; at most ``ceiling``), growing by one per
        success until a 429 or ``ceiling``. Its ``lowest`` and ``settled`` stay at the ceiling
        until a 429 teaches something (a growing window is not a limit the run learned)."""
        start = min(ceiling, max(start, INITIAL_WINDOW))
        window = cls(ceiling, limit=start, slow_start=start < ceiling)
        window.lowest = ceiling
        return window

    @property
    def settled(self) -> int:
        """The width the run settled on: the limit, or the ceiling while still slow-starting
        (for the report)."""
        return self.ceiling if self.slow_start else self.limit

    def success(self, sent_at: int) -> None:
        """An answer that was not a 429 came back."""
        self._consecutive_429 = 0
        if sent_at > self._peak_ok:  # (the peak is never above the limit nor the suspect)
            self._peak_ok = min(sent_at, self.limit)
            if self._suspect is not None and sent_at > self._suspect:
                self._suspect = None  # wider than the suspected cap worked: it was a stray
        if self.slow_start:
            self._change(self.limit + 1)
            self.slow_start = self.limit < self.ceiling
            return
        if self.limit < self.ceiling:  # at the ceiling, every answer costs only the above
            self._successes += 1
            windows = PROBE_WINDOWS if self.cap is not None and self.limit >= self.cap else 1
            if self._successes >= windows * self.limit:
                self._change(self.limit + 1)

    def rate_limited(
        self, sent_at: int, generation: int, *, budget_spent: bool = False, hinted: bool = False
    ) -> bool:
        """A 429 came back for a request sent at concurrency ``sent_at`` in ``generation``;
        True when it is a refusal for concurrency alone, which the window now accounts for.

        A 429 that says the budget is spent (``budget_spent``, from the headers, or one of a
        ``cluster``) teaches nothing about concurrency: the whole run waits instead. One
        with no hint of time (``hinted``: no Retry-After) sent wider than anything that
        succeeded, or than the window has been cut to since, is a cap's refusal: its row may
        go again as soon as the window has room, and it is no sign of a spent budget (it does
        not count towards a ``cluster``).
        """
        if budget_spent or self.cluster:
            self._consecutive_429 += 1
            return False
        if self.slow_start:
            # The first refusal ends the slow start, whatever grew since it was sent.
            self.slow_start = False
            generation = self.generation
        if generation == self.generation:
            wide = sent_at > max(1, self._peak_ok)
        else:  # sent before the last cut: wider than the cap that cut was for
            found = self.cap if self.cap is not None else self._suspect
            wide = found is not None and sent_at > found
        for_concurrency = wide and not hinted
        if not for_concurrency:
            self._consecutive_429 += 1
        if generation != self.generation:
            return for_concurrency
        if sent_at > self._peak_ok:
            # Nothing succeeded this wide: the provider may cap requests in flight, at the most
            # that did succeed (or just below this one, before anything succeeded). Taken as
            # found when a second 429 points at the same cap.
            proposed = self._peak_ok or max(1, sent_at - 1)
            if self._suspect == proposed or self.cap is not None:
                self.cap = proposed
            self._suspect = proposed
            if proposed < self.limit:
                self._change(proposed)
        else:
            self._change(max(1, self.limit - 1))  # a stray 429: give up one slot
        return for_concurrency

    @property
    def cluster(self) -> bool:
        """True when the last answers were all 429s: the budget is spent, not one replica."""
        return self._consecutive_429 >= CLUSTER

    def _change(self, limit: int) -> None:
        if limit < self.limit:
            self.lowest = min(self.lowest, limit)
        self.limit = limit
        self.generation += 1
        # What succeeded above the new limit says nothing about it; what succeeded below
        # still tells a stray 429 from a cap.
        self._peak_ok = min(self._peak_ok, limit)
        self._successes = 0


#: The width each endpoint took, by chat URL, for the runs of this process: a later run
#: slow-starts from there, not from ``INITIAL_WINDOW`` again, as TCP keeps what it learned of
#: a destination for the next connection (RFC 2140; Linux's tcp_metrics). A notebook's
#: second cell against the same provider starts at the width the first one reached.
_LEARNED: dict[str, int] = {}


def learned_width(endpoint: str) -> int:
    """The width to start a run to ``endpoint`` (its chat URL) at: what earlier runs of this
    process took there, or ``INITIAL_WINDOW``."""
    return _LEARNED.get(endpoint, INITIAL_WINDOW)


def remember_width(endpoint: str, window: ConcurrencyWindow) -> None:
    """Keep what a finished run learned of ``endpoint``'s width: the width it was cut to when
    429s taught it one (the newest lesson wins), else the widest it grew to (a short run
    that had no time to grow teaches nothing smaller)."""
    if window.lowest < window.ceiling or window.cap is not None:
        _LEARNED[endpoint] = window.limit
    else:
        _LEARNED[endpoint] = max(window.limit, _LEARNED.get(endpoint, 0))


@dataclass(slots=True)
class StatedLimit:
    """The request rate a provider states: ``x-ratelimit-limit-requests`` over its window.

    Once the budget headers say the budget is nearly spent, the run paces its sends at this
    rate (``Throttle.lower_request_rate``) instead of sending a burst at each reset: a
    sliding window frees one request at a time, so every burst beyond the first would be
    answered with 429s. OpenAI counts per minute; other windows (a gateway's, the local
    server's short ones) are read off the longest ``x-ratelimit-reset-requests`` seen, since
    a window's first request is told its budget resets a whole window later.
    """

    window: float = 0.0  # seconds: the longest reset seen

    def observe(self, headers: Mapping[str, str]) -> None:
        """Widen the window to a reset these headers state, if longer."""
        reset = headers.get("x-ratelimit-reset-requests")
        seconds = parse_duration(reset) if isinstance(reset, str) else None
        if seconds is not None and seconds > self.window:
            self.window = seconds

    def per_minute(self, headers: Mapping[str, str]) -> float | None:
        """The stated rate in requests per minute, or None when the headers state none."""
        value = headers.get("x-ratelimit-limit-requests")
        try:
            limit = float(value) if isinstance(value, str) else math.nan
        except ValueError:
            return None
        if not (math.isfinite(limit) and limit > 0 and self.window > 0):
            return None
        return limit * 60.0 / min(self.window, 60.0)


class ConcurrencyGate:
    """Admits at most ``window.limit`` requests in flight, first come first served.

    ``acquire`` returns the concurrency the request is sent at (itself included), which its
    answer reports back to the window.
    """

    def __init__(self, window: ConcurrencyWindow) -> None:
        self.window = window
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    # The gate is an admission part (``admission.Admitter``): it holds a slot from the
    # moment a send is admitted until its answer is back.
    holds = True

    def ready(self, ticket: Ticket) -> bool:
        """Take a slot if one is free and nobody waits, and tell ``ticket`` the requests in
        flight with it and the window's generation: the hot path, no coroutine per request
        while the window is open."""
        if self.in_flight < self.window.limit and not self._waiters:
            self.in_flight += 1
            ticket.sent_at, ticket.generation = self.in_flight, self.window.generation
            return True
        return False

    async def wait(self, ticket: Ticket) -> None:
        """``acquire`` a slot for ``ticket`` (the same telling as ``ready``)."""
        ticket.sent_at = await self.acquire()
        ticket.generation = self.window.generation

    async def acquire(self) -> int:
        """Wait for a slot; return the number of requests in flight with this one."""
        if self.in_flight >= self.window.limit or self._waiters:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self.release()  # it was handed a slot it will not use: pass it on
                raise
        else:
            self.in_flight += 1
        return self.in_flight

    def release(self, headers: Headers = None) -> None:
        """Give the slot back and let the next waiter in, if the window allows."""
        self.in_flight -= 1
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.window.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)
