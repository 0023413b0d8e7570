"""Pure arithmetic behind the figures: ideals, schedules, windows and medians.

Nothing here touches the network or the clock, so every ideal the benchmarks compare against
can be checked by hand (and is, in ``tests/test_benchmarks_quick.py``).
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return float(statistics.median(values))


def batch_ideal(rows: int, concurrency: int, latency: float) -> float:
    """Wall time of ``rows`` requests of fixed ``latency`` through ``concurrency`` slots."""
    return math.ceil(rows / concurrency) * latency


def greedy_makespan(durations: Sequence[float], workers: int) -> float:
    """Makespan of the greedy list schedule: each job, in order, goes to the first free worker.

    That is what a pool of ``workers`` does when each worker sends its next request the moment
    its previous one answers, so it is the ideal wall time for latencies known in arrival order.
    """
    free_at = [0.0] * min(workers, max(1, len(durations)))
    for duration in durations:
        heapq.heapreplace(free_at, free_at[0] + duration)
    return max(free_at, default=0.0)


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most timestamps in any half-open window ``[t, t + window)``.

    Half-open because the timestamps are arrival times at the server: a send scheduled exactly
    ``window`` seconds after another is not in the same window, and sub-millisecond arrival
    jitter must not turn into a phantom extra request.
    """
    ordered = sorted(times)
    best = 0
    start = 0
    for end, stamp in enumerate(ordered):
        while stamp - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def worst_window_ratio(
    times: Sequence[float], rate: float, burst: float, windows: Sequence[float]
) -> tuple[float, float]:
    """The largest ``count / (rate * T + burst)`` over the window lengths ``T``, and that ``T``.

    Above 1.0 means some window of ``T`` seconds held more requests than the limit allows.
    """
    worst, worst_window = 0.0, windows[0]
    for window in windows:
        ratio = max_in_window(times, window) / (rate * window + burst)
        if ratio > worst:
            worst, worst_window = ratio, window
    return worst, worst_window


def steady_rate(times: Sequence[float], skip: int) -> float:
    """Requests per second after the first ``skip`` (the initial burst), from arrival times.

    ``n`` arrivals after the skipped ones span ``n - 1`` intervals, counted from the last
    skipped arrival so that the first paced request counts as one interval.
    """
    ordered = sorted(times)
    if len(ordered) < skip + 2:
        raise ValueError(f"need over {skip + 1} arrivals for a rate, got {len(ordered)}")
    start = ordered[skip - 1] if skip > 0 else ordered[0]
    intervals = len(ordered) - max(skip, 1)
    return intervals / (ordered[-1] - start)


@dataclass(frozen=True)
class MedianInterval:
    """The median of some values and a distribution-free confidence interval around it."""

    median: float
    low: float  # nan when too few values for the confidence asked (under 6 for 95%)
    high: float
    confidence: float = 0.95

    def __str__(self) -> str:
        if math.isnan(self.low):
            return f"{self.median:.3f}"
        return f"{self.median:.3f} ({self.confidence:.0%} CI {self.low:.3f}-{self.high:.3f})"


def median_interval(values: Sequence[float], confidence: float = 0.95) -> MedianInterval:
    """The median of ``values`` with its ``confidence`` interval from order statistics.

    The interval is two of the sorted values, chosen by the binomial distribution of how many
    values fall below the true median (``scipy.stats.quantile_test``; Conover, *Practical
    Nonparametric Statistics*, 3.2): it assumes nothing of the values' distribution, which on
    a shared machine is skewed by whatever else runs. For 30 values at 95% it is the 10th
    and the 21st smallest.
    """
    from scipy.stats import quantile_test  # the [eval] extra; only this figure needs it

    middle = median(values)
    interval = quantile_test(list(values), q=middle, p=0.5).confidence_interval(confidence)
    return MedianInterval(middle, float(interval.low), float(interval.high), confidence)
