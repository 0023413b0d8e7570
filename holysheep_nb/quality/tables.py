"""Statistics of a confusion matrix, computed on many matrices at once (one per resample).

A confusion matrix here is an array of counts of shape ``(..., k, k)``: gold class by row,
predicted class by column, the leading axes one per bootstrap resample. scikit-learn gives
the point estimates (``evaluate`` calls it, and the tests check these formulas against it);
these vectorised forms give the thousands of resampled values an interval needs in
milliseconds. Division by zero follows scikit-learn's ``zero_division=0``, except where a
statistic is undefined for the whole matrix (kappa when chance agreement is 1): NaN.
``per_class_frame`` is the by-label table both the one-label and the several-label
evaluations show.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from holysheep_nb.quality.intervals import wilson_many


def confusion_counts(gold: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """Count matrices ``(..., k, k)`` of integer class codes ``gold`` and ``predicted``.

    Both have shape ``(..., n)`` (codes in ``0..k-1``); one matrix per leading position.
    """
    lead = gold.shape[:-1]
    m = int(np.prod(lead)) if lead else 1
    codes = (gold.astype(np.int64) * k + predicted.astype(np.int64)).reshape(m, -1)
    codes += (k * k) * np.arange(m, dtype=np.int64)[:, None]
    counts = np.bincount(codes.ravel(), minlength=m * k * k)
    return counts.reshape(*lead, k, k)


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """``top / bottom``, 0 where ``bottom`` is 0 (scikit-learn's ``zero_division=0``)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), 0.0)


def accuracy(counts: np.ndarray) -> np.ndarray:
    """Share of rows on the diagonal."""
    return _ratio(np.trace(counts, axis1=-2, axis2=-1), counts.sum(axis=(-2, -1)))


def per_class(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of each class, each of shape ``(..., k)``."""
    hits = np.diagonal(counts, axis1=-2, axis2=-1).astype(float)
    predicted = counts.sum(axis=-2)
    actual = counts.sum(axis=-1)
    return _ratio(hits, predicted), _ratio(hits, actual), _ratio(2 * hits, predicted + actual)


def macro_f1(counts: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Unweighted mean F1 over the class positions ``classes`` (scikit-learn's ``macro``)."""
    f1 = per_class(counts)[2]
    return np.asarray(f1[..., classes].mean(axis=-1))


def kappa(counts: np.ndarray) -> np.ndarray:
    """Cohen's kappa (Cohen 1960): ``(p_o - p_e) / (1 - p_e)``; NaN where ``p_e`` is 1."""
    total = counts.sum(axis=(-2, -1)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.trace(counts, axis1=-2, axis2=-1) / total
        expected = (counts.sum(axis=-1) * counts.sum(axis=-2)).sum(axis=-1) / total**2
        return np.where(expected < 1, (observed - expected) / (1 - expected), np.nan)


def per_class_frame(
    scores: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    f1_ends: np.ndarray,
    counts: tuple[np.ndarray, np.ndarray, np.ndarray],
    labels: list[str],
    level: float,
) -> pd.DataFrame:
    """By ``label``: ``precision``, ``recall``, ``f1`` (each with ``_low``/``_high``), ``support``.

    ``scores``: precision, recall, F1 and support of each label (scikit-learn's
    ``precision_recall_fscore_support``); ``f1_ends``: F1's bootstrap interval, shape
    ``(2, k)``; ``counts``: hits, predicted and gold rows of each label, whose ratios get
    Wilson intervals (precision: hits of predicted, recall: hits of gold).
    """
    precision, recall, f1, support = scores
    hits, predicted, actual = counts
    p_low, p_high = wilson_many(hits, predicted, level)
    r_low, r_high = wilson_many(hits, actual, level)
    frame: pd.DataFrame = pd.DataFrame(
        {
            "precision": precision,
            "precision_low": p_low,
            "precision_high": p_high,
            "recall": recall,
            "recall_low": r_low,
            "recall_high": r_high,
            "f1": f1,
            "f1_low": f1_ends[0],
            "f1_high": f1_ends[1],
            "support": np.asarray(support, dtype=np.int64),
        },
        index=pd.Index(labels, name="label"),
    )
    return frame
