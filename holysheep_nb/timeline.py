"""Requests, retries and 429s per second of a run, for ``report.plot()``."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from holysheep_nb.outcome import RunStats


class Timeline:
    """Requests, retries and 429s per second of the run, sampled from the periodic tick.

    Sampling the engine's counters once a second costs nothing per request, and is enough
    to show 429 cool-downs and retry bursts in ``report.plot()``. ``now`` is the run's clock.
    """

    def __init__(self, stats: RunStats, now: Callable[[], float]) -> None:
        self._stats = stats
        self._now = now
        self._start = now()
        self._marks: list[tuple[int, int, int]] = [(0, 0, 0)]

    def sample(self) -> None:
        """Record the counters once for each whole second that has passed."""
        stats = self._stats
        while self._now() - self._start >= len(self._marks):
            self._marks.append((stats.requests_sent, stats.retries, stats.rate_limited))

    def per_second(self) -> tuple[tuple[float, int, int, int], ...]:
        """``(second, requests sent, retries, 429s)`` for each whole second, then the rest."""
        stats = self._stats
        marks = [*self._marks, (stats.requests_sent, stats.retries, stats.rate_limited)]
        return tuple(
            (float(second), sent - sent_before, retries - retries_before, limited - limited_before)
            for second, (
                (sent_before, retries_before, limited_before),
                (sent, retries, limited),
            ) in enumerate(itertools.pairwise(marks))
        )
