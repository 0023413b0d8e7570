"""Intervals for every figure: Wilson's for proportions, a seeded percentile bootstrap for the rest.

Wilson's score interval (Wilson 1927; the tests check it against SciPy's
``binomtest(k, n).proportion_ci(method="wilson")``) keeps its coverage near the nominal
level for small samples and for proportions near 0 or 1, where the normal ("Wald")
interval does not (Brown, Cai & DasGupta 2001, "Interval Estimation for a Binomial
Proportion").

The bootstrap resamples rows with replacement (Efron & Tibshirani 1993, the percentile
method) from a seeded ``numpy.random.Generator``, so the same seed gives the same interval.
It is our own few lines rather than ``scipy.stats.bootstrap`` because a resample can leave a
statistic undefined (a class absent from the resample leaves its F1 or kappa 0/0): those
resamples are skipped (``nanquantile``) instead of turning the whole interval into NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import numpy as np

from holysheep_nb.errors import ConfigError

#: Two-sided confidence level of every interval unless the caller gives another.
LEVEL = 0.95
#: Bootstrap resamples: the percentile ends settle to about +-0.01 at 2,000.
RESAMPLES = 2000

#: Row positions per chunk of resamples given to a statistic at once.
_CHUNK_CELLS = 1_000_000

Interval = tuple[float, float]
NAN_INTERVAL: Interval = (math.nan, math.nan)


def check_level(level: float) -> float:
    """``level`` when it is a share strictly between 0 and 1; ``ConfigError`` otherwise."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ConfigError(f"level must be a share between 0 and 1, e.g. 0.95; got {level!r}")
    return float(level)


def wilson(successes: int, trials: int, level: float = LEVEL) -> Interval:
    """Wilson's score interval ``(low, high)`` for ``successes`` out of ``trials``.

    ``(nan, nan)`` when ``trials`` is 0: nothing was measured.
    """
    low, high = wilson_many(np.array([successes]), np.array([trials]), level)
    return (float(low[0]), float(high[0]))


def wilson_many(
    successes: np.ndarray, trials: np.ndarray, level: float = LEVEL
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson's interval for many proportions at once: the ``(low, high)`` arrays.

    The closed form (Wilson 1927), the same numbers as SciPy's
    ``binomtest(k, n).proportion_ci(method="wilson")`` (the tests compare them), without a
    call per proportion: choosing a threshold tries hundreds. NaN where ``trials`` is 0.
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        scale = 1 + z**2 / n
        center = (p + z**2 / (2 * n)) / scale
        half = z / scale * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
        low = np.where(n > 0, np.clip(center - half, 0.0, 1.0), np.nan)
        high = np.where(n > 0, np.clip(center + half, 0.0, 1.0), np.nan)
    return low, high


def bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    rows: int,
    *,
    level: float = LEVEL,
    seed: int | None = 0,
    resamples: int = RESAMPLES,
    width: int | None = None,
) -> np.ndarray:
    """Percentile bootstrap interval of ``statistic`` over ``rows`` rows.

    ``statistic`` takes an integer array of row positions of shape ``(resamples, rows)`` (one
    resample per line) and returns one value per resample, shape ``(resamples,)``, or
    ``width`` values, ``(resamples, width)``; NaN marks a resample where it is undefined.
    Returns the ``(low, high)`` ends with shape ``(2,)`` or ``(2, width)``, NaN where fewer
    than half the resamples are defined or there are fewer than two rows.
    """
    if rows < 2:
        return np.full((2,) if width is None else (2, width), np.nan)
    rng = np.random.default_rng(seed)
    positions = rng.integers(0, rows, size=(resamples, rows))
    # A chunk of resamples at a time keeps a statistic's (resamples, rows, ...) arrays small.
    step = max(1, _CHUNK_CELLS // rows)
    values = np.concatenate(
        [
            np.asarray(statistic(positions[start : start + step]), dtype=float)
            for start in range(0, resamples, step)
        ]
    )
    tail = (1 - level) / 2
    defined = np.sum(~np.isnan(values), axis=0)
    with np.errstate(invalid="ignore"):
        ends = np.full((2, *values.shape[1:]), np.nan)
        usable = defined >= resamples / 2
        if np.any(usable):
            quantiles = np.nanquantile(
                values[:, usable] if values.ndim > 1 else values, [tail, 1 - tail], axis=0
            )
            if values.ndim > 1:
                ends[:, usable] = quantiles
            else:
                ends = quantiles
    return ends


def as_interval(ends: np.ndarray) -> Interval:
    """A ``(low, high)`` tuple of floats from a bootstrap's two ends."""
    return (float(ends[0]), float(ends[1]))
