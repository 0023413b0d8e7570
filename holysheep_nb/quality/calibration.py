"""Does ``confidence`` mean something? Reliability, calibration error, accuracy at coverage,
and the threshold that keeps a target accuracy, measured on the gold rows.

- The reliability table bins the rows by confidence (equal-width bins over 0..1, as in Guo
  et al. 2017, "On Calibration of Modern Neural Networks") and gives each bin's mean
  confidence and accuracy with Wilson's interval; the diagram draws it against the diagonal.
- The expected calibration error (Naeini et al. 2015) is ``sum_b (n_b / n) * |acc_b -
  conf_b|`` over those bins, with a bootstrap interval (rows resampled).
- Accuracy at coverage keeps the rows with confidence >= t: the share kept and their
  accuracy with its interval, for each t of a grid.
- ``threshold_for(accuracy)`` goes down the rows' own confidence values from the highest and
  returns the lowest threshold before the first one whose Wilson lower bound misses the
  target. Stopping at the first miss, rather than taking any low threshold that passes, is
  fixed-sequence testing (as in Angelopoulos et al. 2021, "Learn then Test"): a threshold far
  down that passed by luck after others failed is not picked.

Rows with no confidence (NaN: cached answers, no label) are outside the reliability table
and the ECE, and never kept by a threshold; a row with gold but no label counts as wrong.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from holysheep_nb.errors import ConfigError, HolySheepWarning
from holysheep_nb.quality.display import new_axes
from holysheep_nb.quality.intervals import (
    LEVEL,
    RESAMPLES,
    Interval,
    as_interval,
    bootstrap,
    check_level,
    wilson_many,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Equal-width confidence bins of the reliability table and the ECE.
BINS = 10
#: Thresholds of the accuracy-at-coverage table unless the caller gives others.
THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)


def target(accuracy: float) -> float:
    """``accuracy`` when it is a share in (0, 1]; ``ConfigError`` otherwise."""
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)):
        raise ConfigError(f"accuracy must be a share in (0, 1], e.g. 0.95; got {accuracy!r}")
    if not 0 < accuracy <= 1:
        raise ConfigError(f"accuracy must be a share in (0, 1], e.g. 0.95; got {accuracy!r}")
    return float(accuracy)


def _bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin index 0..bins-1 of each confidence (1.0 in the last bin)."""
    return np.minimum((confidence * bins).astype(np.int64), bins - 1)


def _ece(
    bin_index: np.ndarray, confidence: np.ndarray, correct: np.ndarray, bins: int
) -> np.ndarray:
    """ECE of each line of ``(m, n)`` arrays (one resample per line): shape ``(m,)``."""
    m, n = bin_index.shape
    offsets = (bins * np.arange(m, dtype=np.int64))[:, None]
    flat = (bin_index + offsets).ravel()
    size = m * bins
    conf = np.bincount(flat, weights=confidence.ravel(), minlength=size).reshape(m, bins)
    hits = np.bincount(flat, weights=correct.ravel().astype(float), minlength=size).reshape(m, bins)
    return np.asarray(np.abs(conf - hits).sum(axis=1) / n)


@dataclass(frozen=True, eq=False)
class Calibration:
    """Reliability, ECE and accuracy at coverage of the gold rows' ``confidence``.

    ``confidence``: each gold row's confidence (NaN when it has none); ``correct``: whether its
    label matches the gold label. Build with ``Calibration.of``.
    """

    confidence: np.ndarray
    correct: np.ndarray
    level: float
    bins: int
    ece: float  # NaN without a row with confidence
    ece_ci: Interval
    cached: int = 0  # gold rows with no confidence that were answered from the cache

    @classmethod
    def of(
        cls,
        confidence: np.ndarray,
        correct: np.ndarray,
        *,
        level: float = LEVEL,
        bins: int = BINS,
        seed: int | None = 0,
        resamples: int = RESAMPLES,
        cached: np.ndarray | None = None,
    ) -> Calibration:
        """Measure the calibration of ``confidence`` (floats 0..1, NaN) against ``correct``;
        ``cached`` (bools, one per gold row) says which rows were answered from the cache (a
        cache written before it kept logprobs has no confidence for them)."""
        confidence = np.asarray(confidence, dtype=float)
        correct = np.asarray(correct, dtype=bool)
        if confidence.shape != correct.shape:
            raise ConfigError("confidence and correct must have one value per gold row")
        known = ~np.isnan(confidence)
        if np.any((confidence[known] < 0) | (confidence[known] > 1)):
            raise ConfigError("confidence must be a probability in 0..1 (NaN when unknown)")
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ConfigError(f"bins must be a whole number >= 1, got {bins!r}")
        conf, hit = confidence[known], correct[known]
        index = _bin_of(conf, bins)
        ece = float(_ece(index[None], conf[None], hit[None], bins)[0]) if conf.size else math.nan

        def resampled(positions: np.ndarray) -> np.ndarray:
            return _ece(index[positions], conf[positions], hit[positions], bins)

        ends = bootstrap(resampled, conf.size, level=level, seed=seed, resamples=resamples)
        from_cache = 0 if cached is None else int(np.sum(np.asarray(cached, dtype=bool) & ~known))
        return cls(
            confidence, correct, check_level(level), bins, ece, as_interval(ends), from_cache
        )

    @property
    def without_confidence(self) -> int:
        """Gold rows with no confidence (outside the table and the ECE)."""
        return int(np.isnan(self.confidence).sum())

    def reliability(self) -> pd.DataFrame:
        """One line per confidence bin (``"0.9-1.0"``): ``rows``, ``confidence`` (the mean),
        ``accuracy`` with ``accuracy_low``/``accuracy_high``, and ``gap`` (confidence minus
        accuracy: > 0 is over-confident). Empty bins have NaN figures."""
        known = ~np.isnan(self.confidence)
        conf, hit = self.confidence[known], self.correct[known]
        index = _bin_of(conf, self.bins)
        rows = np.bincount(index, minlength=self.bins)
        hits = np.bincount(index, weights=hit.astype(float), minlength=self.bins)
        sums = np.bincount(index, weights=conf, minlength=self.bins)
        low, high = wilson_many(hits, rows, self.level)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_conf = np.where(rows > 0, sums / np.maximum(rows, 1), np.nan)
            acc = np.where(rows > 0, hits / np.maximum(rows, 1), np.nan)
        edges = np.linspace(0, 1, self.bins + 1)
        names = [f"{edges[i]:.2g}-{edges[i + 1]:.2g}" for i in range(self.bins)]
        table: pd.DataFrame = pd.DataFrame(
            {
                "rows": rows,
                "confidence": mean_conf,
                "accuracy": acc,
                "accuracy_low": low,
                "accuracy_high": high,
                "gap": mean_conf - acc,
            },
            index=pd.Index(names, name="bin"),
        )
        return table

    def at_coverage(self, thresholds: tuple[float, ...] | list[float] = THRESHOLDS) -> pd.DataFrame:
        """Keeping the gold rows with confidence >= t, for each t: ``kept`` rows,
        ``coverage`` (kept / gold rows), ``accuracy`` of the kept with ``accuracy_low`` and
        ``accuracy_high``. Indexed by ``threshold``."""
        ts = np.asarray(list(thresholds), dtype=float)
        if ts.size == 0 or np.any(np.isnan(ts)):
            raise ConfigError("thresholds must be a non-empty list of numbers in 0..1")
        kept, hits = self._kept(ts)
        low, high = wilson_many(hits, kept, self.level)
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = np.where(kept > 0, hits / np.maximum(kept, 1), np.nan)
        total = max(self.confidence.size, 1)
        table: pd.DataFrame = pd.DataFrame(
            {
                "kept": kept,
                "coverage": kept / total,
                "accuracy": accuracy,
                "accuracy_low": low,
                "accuracy_high": high,
            },
            index=pd.Index(ts, name="threshold"),
        )
        return table

    def _kept(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows kept and correct rows kept at each threshold (NaN confidence never kept)."""
        known = ~np.isnan(self.confidence)
        conf, hit = self.confidence[known], self.correct[known]
        order = np.argsort(-conf, kind="stable")
        conf, hit = conf[order], hit[order]
        # Rows with confidence >= t are a prefix of the rows sorted by confidence, descending.
        kept = np.searchsorted(-conf, -thresholds, side="right")
        hits_prefix = np.concatenate([[0], np.cumsum(hit)])
        return kept, hits_prefix[kept]

    def threshold_for(self, accuracy: float) -> float | None:
        """The lowest confidence threshold whose kept gold rows have a Wilson lower bound >=
        ``accuracy``, going down from the highest and stopping at the first that misses.

        Returns None, with a ``HolySheepWarning`` saying why, when no threshold reaches it.
        """
        chosen, reason = self.choose_threshold(target(accuracy))
        if chosen is None:
            warnings.warn(reason, HolySheepWarning, stacklevel=2)
        return chosen

    def choose_threshold(self, accuracy: float) -> tuple[float | None, str]:
        """``threshold_for`` without the warning: ``(threshold or None, what happened)``."""
        known = self.confidence[~np.isnan(self.confidence)]
        if known.size == 0:
            if self.cached:
                return None, (
                    f"no gold row has a confidence: {self.cached} of {self.confidence.size} were "
                    "answered from a cache written before it kept logprobs (pass cache=False "
                    "to ask again)"
                )
            return None, "no gold row has a confidence: label with logprobs=True"
        candidates = np.unique(known)[::-1]  # highest first
        kept, hits = self._kept(candidates)
        low, _ = wilson_many(hits, kept, self.level)
        passing = low >= accuracy
        if not passing.any():
            best = int(np.nanargmax(low))
            return None, (
                f"no confidence threshold keeps gold rows whose {self.level:.0%} lower bound "
                f"reaches {accuracy:.1%}: the best is {low[best]:.1%} at confidence >= "
                f"{candidates[best]:.3g} ({kept[best]} of {self.confidence.size} gold rows). "
                "More gold rows narrow the interval; or ask for a lower accuracy"
            )
        first = int(np.argmax(passing))
        misses = np.flatnonzero(~passing[first:])
        last = first + (int(misses[0]) - 1 if misses.size else passing.size - first - 1)
        chosen = float(candidates[last])
        return chosen, (
            f"confidence >= {chosen:.3g} keeps {kept[last]} of {self.confidence.size} gold rows "
            f"({kept[last] / self.confidence.size:.0%}), accuracy lower bound {low[last]:.1%}"
        )

    def plot(self, ax: Axes | None = None) -> Figure | Axes:
        """The reliability diagram: accuracy (with its interval) against mean confidence per
        bin, and the diagonal of perfect calibration. Needs matplotlib (the ``plot`` extra).
        Without ``ax``, returns a new Figure (Jupyter shows it once)."""
        figure, ax = new_axes(ax, (4.5, 4.5))
        table = self.reliability()
        table = table[table["rows"] > 0]
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
        ax.errorbar(
            table["confidence"],
            table["accuracy"],
            yerr=[
                table["accuracy"] - table["accuracy_low"],
                table["accuracy_high"] - table["accuracy"],
            ],
            fmt="o-",
            capsize=3,
            label=f"gold rows ({self.level:.0%} interval)",
        )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence (bin mean)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"reliability (ECE {self.ece:.3f})")
        ax.legend(loc="upper left")
        return figure if figure is not None else ax
