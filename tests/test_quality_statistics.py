"""The statistics under evaluate(): each against a hand-computed case and against the library
that the field trusts (SciPy's Wilson interval, scikit-learn's metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import (
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from holysheep_nb.quality import tables
from holysheep_nb.quality.intervals import bootstrap, wilson, wilson_many


def test_wilson_by_hand() -> None:
    # 8 of 10 at 95%: z = 1.959964; centre (0.8 + z²/20) / (1 + z²/10), half-width
    # z / (1 + z²/10) * sqrt(0.8 * 0.2 / 10 + z² / 400).
    z = 1.959963984540054
    centre = (0.8 + z**2 / 20) / (1 + z**2 / 10)
    half = z / (1 + z**2 / 10) * math.sqrt(0.016 + z**2 / 400)
    low, high = wilson(8, 10)
    assert low == pytest.approx(centre - half)
    assert high == pytest.approx(centre + half)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)


@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
def test_wilson_matches_scipy(level: float) -> None:
    trials = np.array([1, 5, 10, 37, 200, 5000] * 4)
    successes = np.concatenate(
        [np.zeros(6), trials[:6], trials[:6] // 2, np.maximum(trials[:6] - 1, 0)]
    ).astype(int)
    low, high = wilson_many(successes, trials, level)
    for k, n, lo, hi in zip(successes, trials, low, high, strict=True):
        ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
        assert lo == pytest.approx(ci.low, abs=1e-12)
        assert hi == pytest.approx(ci.high, abs=1e-12)


def test_wilson_of_no_trials_is_nan() -> None:
    assert all(math.isnan(end) for end in wilson(0, 0))


def test_bootstrap_is_seeded_and_a_percentile_interval() -> None:
    values = np.arange(100, dtype=float)

    def mean(positions: np.ndarray) -> np.ndarray:
        return np.asarray(values[positions].mean(axis=1))

    first = bootstrap(mean, 100, seed=7)
    assert np.array_equal(first, bootstrap(mean, 100, seed=7))
    assert not np.array_equal(first, bootstrap(mean, 100, seed=8))
    # The mean of 100 draws from 0..99: sd 28.87 / 10, so about 49.5 +- 1.96 * 2.887.
    assert first[0] == pytest.approx(49.5 - 5.66, abs=0.6)
    assert first[1] == pytest.approx(49.5 + 5.66, abs=0.6)


def test_bootstrap_skips_undefined_resamples_and_gives_nan_when_most_are() -> None:
    def sometimes(positions: np.ndarray) -> np.ndarray:
        out = np.ones(len(positions))
        out[::4] = np.nan  # a quarter undefined: skipped
        return out

    assert bootstrap(sometimes, 10).tolist() == [1.0, 1.0]

    def mostly_undefined(positions: np.ndarray) -> np.ndarray:
        out = np.full(len(positions), np.nan)
        out[::4] = 1.0
        return out

    assert np.isnan(bootstrap(mostly_undefined, 10)).all()
    assert np.isnan(bootstrap(sometimes, 1)).all()  # one row: nothing to resample


GOLD = np.array([0, 0, 0, 1, 1, 1, 2, 2, 0, 1])
PRED = np.array([0, 0, 1, 1, 1, 0, 2, 1, 0, 2])


def test_confusion_counts_match_scikit_learn_and_stack_per_resample() -> None:
    counts = tables.confusion_counts(GOLD, PRED, 3)
    assert counts.tolist() == confusion_matrix(GOLD, PRED, labels=[0, 1, 2]).tolist()
    stacked = tables.confusion_counts(np.stack([GOLD, PRED]), np.stack([PRED, GOLD]), 3)
    assert stacked.shape == (2, 3, 3)
    assert stacked[1].tolist() == counts.T.tolist()


def test_kappa_by_hand_and_against_scikit_learn() -> None:
    # p_o = 4/6; marginals 3/3 and 3/3 so p_e = 1/2; kappa = (2/3 - 1/2) / (1/2) = 1/3.
    gold, pred = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 1, 1, 1, 0])
    assert float(tables.kappa(tables.confusion_counts(gold, pred, 2))) == pytest.approx(1 / 3)
    counts = tables.confusion_counts(GOLD, PRED, 3)
    assert float(tables.kappa(counts)) == pytest.approx(cohen_kappa_score(GOLD, PRED))


def test_kappa_is_nan_when_chance_agreement_is_certain() -> None:
    same = np.zeros(5, dtype=int)
    assert math.isnan(float(tables.kappa(tables.confusion_counts(same, same, 1))))


def test_per_class_and_macro_f1_match_scikit_learn() -> None:
    counts = tables.confusion_counts(GOLD, PRED, 3)
    precision, recall, f1 = tables.per_class(counts)
    want = precision_recall_fscore_support(GOLD, PRED, labels=[0, 1, 2], zero_division=0)
    for ours, theirs in zip((precision, recall, f1), want[:3], strict=True):
        assert ours == pytest.approx(theirs)
    assert float(tables.macro_f1(counts, np.array([0, 1, 2]))) == pytest.approx(
        f1_score(GOLD, PRED, average="macro")
    )
    # Class 0 by hand: 3 right of 4 predicted, of 4 gold: P = R = F1 = 0.75.
    assert (precision[0], recall[0], f1[0]) == pytest.approx((0.75, 0.75, 0.75))
    assert float(tables.accuracy(counts)) == pytest.approx(0.6)
