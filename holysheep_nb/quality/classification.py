"""Judging single labels against gold: accuracy, macro F1, Cohen's kappa, per class and the
confusion matrix, each with its interval.

Point estimates come from scikit-learn's metrics (``accuracy_score``,
``precision_recall_fscore_support``, ``f1_score``, ``cohen_kappa_score``,
``confusion_matrix``). Intervals: Wilson's for the proportions (accuracy, each class's
precision and recall), the seeded bootstrap for the rest (macro F1, kappa, each class's F1).

Rows with gold but no label (an error, an answer off the label set) are predicted as the
class ``(no label)``: always wrong, a column of the confusion matrix, a category of kappa,
outside the macro average. A gold value that is not a label of the set (after matching case
and spacing) is a class of its own: its rows are always wrong.

Length: one frozen result with its renderings and the delegation to calibration and the
whole-frame estimate; the construction is one function.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from holysheep_nb.errors import ConfigError, HolySheepError, HolySheepWarning
from holysheep_nb.quality import tables
from holysheep_nb.quality._deps import load
from holysheep_nb.quality.calibration import THRESHOLDS, Calibration, target
from holysheep_nb.quality.display import Shown, figure, metric_frame
from holysheep_nb.quality.frames import text_key
from holysheep_nb.quality.intervals import (
    LEVEL,
    RESAMPLES,
    Interval,
    as_interval,
    bootstrap,
    wilson,
)
from holysheep_nb.quality.population import FrameEstimate, row_estimates

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: The predicted class of a row that has gold but no label.
NO_LABEL = "(no label)"
#: Why calibration and thresholds need confidence, and how to get it.
NO_CONFIDENCE = (
    "these labels have no confidence column: label with logprobs=True (or pass confidence='column')"
)


@dataclass(frozen=True, eq=False)
class LabelEvaluation(Shown):
    """Single labels against gold on the ``n`` rows that have gold.

    Every proportion has a Wilson interval and every other figure a bootstrap interval, at
    ``level`` (two-sided). ``per_class``: by label, ``precision``, ``recall``, ``f1`` (each
    with ``_low``/``_high``) and ``support`` (gold rows). ``confusion``: gold labels as rows,
    predicted labels as columns (``(no label)`` for rows without one), counts in the cells.
    """

    n: int  # rows with gold
    without_gold: int  # rows left out: no gold
    unlabelled: int  # rows with gold and no label: counted wrong
    unlabelled_causes: tuple[tuple[str, int], ...]
    accuracy: float
    accuracy_ci: Interval
    macro_f1: float
    macro_f1_ci: Interval
    kappa: float
    kappa_ci: Interval
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    level: float
    calibration: Calibration | None
    frame_estimate: FrameEstimate
    _rows: pd.DataFrame  # per frame row: has_gold, labelled, correct, group (for estimates)
    _basis: str

    # --- confidence ------------------------------------------------------------------------

    def _calibrated(self) -> Calibration:
        if self.calibration is None:
            raise HolySheepError(f"{NO_CONFIDENCE} to measure calibration")
        return self.calibration

    @property
    def ece(self) -> float:
        """Expected calibration error of ``confidence`` on the gold rows (10 equal bins)."""
        return self._calibrated().ece

    @property
    def ece_ci(self) -> Interval:
        """Bootstrap interval of ``ece``."""
        return self._calibrated().ece_ci

    @property
    def reliability(self) -> pd.DataFrame:
        """The reliability table (see ``Calibration.reliability``)."""
        return self._calibrated().reliability()

    def at_coverage(self, thresholds: tuple[float, ...] | list[float] = THRESHOLDS) -> pd.DataFrame:
        """Coverage and accuracy (with interval) keeping confidence >= t, per threshold t."""
        return self._calibrated().at_coverage(thresholds)

    def threshold_for(self, accuracy: float) -> float | None:
        """The lowest confidence threshold whose kept gold rows' lower interval bound is at
        least ``accuracy`` (see ``Calibration.threshold_for``); None with a
        ``HolySheepWarning`` saying why when there is none."""
        chosen, reason = self.choose_threshold(accuracy)
        if chosen is None:
            warnings.warn(reason, HolySheepWarning, stacklevel=2)
        return chosen

    def choose_threshold(self, accuracy: float) -> tuple[float | None, str]:
        """``threshold_for`` without the warning: ``(threshold or None, what it keeps or
        why there is none)``."""
        accuracy = target(accuracy)
        if self.calibration is None:
            return None, f"{NO_CONFIDENCE} to choose a threshold"
        return self.calibration.choose_threshold(accuracy)

    def plot_reliability(self, ax: Axes | None = None) -> Figure | Axes:
        """The reliability diagram (matplotlib, the ``plot`` extra)."""
        return self._calibrated().plot(ax)

    # --- the whole frame -------------------------------------------------------------------

    def row_estimates(self) -> pd.DataFrame:
        """Each row of the frame's estimated chance of being right, with its interval: see
        ``holysheep_nb.quality.population`` (the gold rows must be a random sample)."""
        rows = self._rows
        return row_estimates(
            rows.index,
            rows["has_gold"].to_numpy(),
            rows["labelled"].to_numpy(),
            rows["correct"].to_numpy(),
            rows["group"].to_numpy(dtype=object),
            self._basis,
            self.level,
        )

    # --- renderings ------------------------------------------------------------------------

    def to_frame(self) -> pd.DataFrame:
        """The headline figures as a frame: ``value``, ``low``, ``high`` by ``metric``."""
        lines: dict[str, tuple[float, float, float]] = {
            "accuracy": (self.accuracy, *self.accuracy_ci),
            "macro_f1": (self.macro_f1, *self.macro_f1_ci),
            "kappa": (self.kappa, *self.kappa_ci),
        }
        if self.calibration is not None:
            lines["ece"] = (self.ece, *self.ece_ci)
        estimate = self.frame_estimate
        lines["frame_accuracy"] = (estimate.accuracy, *estimate.accuracy_ci)
        return metric_frame(lines)

    def _sections(self) -> tuple[str, Any, list[tuple[str, pd.DataFrame]]]:
        title = f"holysheep_nb evaluation: {self.n:,} rows with gold ({self.level:.0%} intervals)"
        summary = [
            ("accuracy", *figure(self.accuracy, self.accuracy_ci)),
            ("macro F1", *figure(self.macro_f1, self.macro_f1_ci, percent=False)),
            ("Cohen's kappa", *figure(self.kappa, self.kappa_ci, percent=False)),
        ]
        if self.without_gold:
            summary.append(("left out", f"{self.without_gold:,}", "(rows without gold)"))
        if self.unlabelled:
            causes = ", ".join(f"{cause}: {count}" for cause, count in self.unlabelled_causes)
            summary.append(("no label", f"{self.unlabelled:,}", f"(counted wrong; {causes})"))
        if self.calibration is not None:
            summary.append(("ECE", *figure(self.ece, self.ece_ci, percent=False)))
        if self.without_gold:
            estimate = self.frame_estimate
            summary.append(
                (
                    "whole frame",
                    *figure(estimate.accuracy, estimate.accuracy_ci),
                )
            )
            summary.append(("", "", "(if the gold rows are a random sample of the frame)"))
        tables_shown = [
            ("per class", self.per_class),
            ("confusion (gold \\ predicted)", self.confusion),
        ]
        if self.calibration is not None:
            reliability = self.reliability
            tables_shown.append(("reliability", reliability[reliability["rows"] > 0]))
        return title, [("", summary)], tables_shown

    def __repr__(self) -> str:
        return (
            f"LabelEvaluation(n={self.n}, accuracy={self.accuracy:.3f}, "
            f"macro_f1={self.macro_f1:.3f}, kappa={self.kappa:.3f})"
        )


def _classes(predicted: pd.Series, gold: list[str]) -> list[str]:
    """Label set order (a Categorical's categories), then other predicted, then gold-only."""
    if isinstance(predicted.dtype, pd.CategoricalDtype):
        known = [str(c) for c in predicted.cat.categories]
    else:
        known = sorted({str(v) for v in predicted.dropna()})
    extra = sorted(set(gold) - set(known))
    return known + extra


def evaluate_labels(
    predicted: pd.Series,
    gold: pd.Series,
    *,
    has_gold: np.ndarray,
    confidence: pd.Series | None = None,
    cached: pd.Series | None = None,
    errors: pd.Series | None = None,
    level: float = LEVEL,
    seed: int | None = 0,
    resamples: int = RESAMPLES,
) -> LabelEvaluation:
    """Evaluate ``predicted`` labels (NaN: no label) against ``gold`` on the rows of
    ``has_gold``; all Series share the frame's index. ``cached`` (bools) marks the rows
    answered from the cache (from an older cache, without confidence). See
    ``LabelEvaluation``."""
    if not np.any(has_gold):
        raise ConfigError("no row has gold: every value of the gold column is missing")
    metrics = load("sklearn.metrics")
    labelled = ~pd.isna(predicted).to_numpy()
    # Gold spelled like a label, or like other gold (case, spacing), is that spelling.
    by_key = {text_key(label): label for label in _classes(predicted, [])}
    for value in gold[has_gold]:
        by_key.setdefault(text_key(value), str(value).strip())
    gold_text = [by_key[text_key(v)] for v in gold[has_gold]]
    classes = _classes(predicted, gold_text)
    pred_text = [
        str(v) if ok else NO_LABEL
        for v, ok in zip(predicted[has_gold], labelled[has_gold], strict=True)
    ]
    unlabelled = int(np.sum(~labelled[has_gold]))
    all_classes = [*classes, NO_LABEL] if unlabelled else classes
    n = len(gold_text)
    code = {c: i for i, c in enumerate(all_classes)}
    g = np.array([code[v] for v in gold_text], dtype=np.int64)
    p = np.array([code[v] for v in pred_text], dtype=np.int64)
    k = len(all_classes)
    present = sorted((set(g.tolist()) | set(p.tolist())) - {code.get(NO_LABEL, -1)})
    averaged = [all_classes[i] for i in present]

    hits = int(np.sum(g == p))
    accuracy = float(metrics.accuracy_score(gold_text, pred_text))
    macro = float(
        metrics.f1_score(gold_text, pred_text, labels=averaged, average="macro", zero_division=0)
    )
    counts = tables.confusion_counts(g, p, k)
    kappa = float(tables.kappa(counts))  # NaN where scikit-learn would warn of 0/0
    if not math.isnan(kappa):
        kappa = float(metrics.cohen_kappa_score(gold_text, pred_text, labels=all_classes))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        gold_text, pred_text, labels=classes, zero_division=0
    )

    present_idx = np.array(present, dtype=np.int64)

    def resampled(positions: np.ndarray) -> np.ndarray:
        matrices = tables.confusion_counts(g[positions], p[positions], k)
        class_f1 = tables.per_class(matrices)[2][:, : len(classes)]
        summary = np.stack([tables.macro_f1(matrices, present_idx), tables.kappa(matrices)], axis=1)
        return np.concatenate([summary, class_f1], axis=1)

    ends = bootstrap(
        resampled, n, level=level, seed=seed, resamples=resamples, width=2 + len(classes)
    )
    tp = np.diagonal(counts)[: len(classes)]
    per_class = tables.per_class_frame(
        (precision, recall, f1, support),
        ends[:, 2:],
        (tp, counts.sum(axis=0)[: len(classes)], counts.sum(axis=1)[: len(classes)]),
        classes,
        level,
    )
    confusion = pd.DataFrame(
        counts[: len(classes)],
        index=pd.Index(classes, name="gold"),
        columns=pd.Index(all_classes, name="predicted"),
    )
    correct_rows = np.zeros(len(predicted), dtype=bool)
    correct_rows[has_gold] = g == p
    calibration = None
    groups = np.array([str(v) for v in predicted], dtype=object)
    basis = "label"
    if confidence is not None:
        conf = confidence.to_numpy(dtype=float)
        calibration = Calibration.of(
            conf[has_gold],
            g == p,
            level=level,
            seed=seed,
            resamples=resamples,
            cached=None if cached is None else cached.to_numpy(dtype=bool)[has_gold],
        )
        bins = calibration.bins
        index = np.minimum(np.nan_to_num(conf, nan=-1.0) * bins, bins - 1).astype(np.int64)
        groups = np.array(
            [
                f"{i / bins:.2g}-{(i + 1) / bins:.2g}" if c == c else "unknown"
                for i, c in zip(index, conf, strict=True)
            ],
            dtype=object,
        )
        basis = "confidence"
    causes: Counter[str] = Counter()
    if errors is not None and unlabelled:
        for value in errors[has_gold & ~labelled]:
            causes[_cause(value)] += 1
    rows = pd.DataFrame(
        {"has_gold": has_gold, "labelled": labelled, "correct": correct_rows, "group": groups},
        index=predicted.index,
    )
    return LabelEvaluation(
        n=n,
        without_gold=int(np.sum(~has_gold)),
        unlabelled=unlabelled,
        unlabelled_causes=tuple(sorted(causes.items(), key=lambda item: (-item[1], item[0]))),
        accuracy=accuracy,
        accuracy_ci=wilson(hits, n, level),
        macro_f1=macro,
        macro_f1_ci=as_interval(ends[:, 0]),
        kappa=kappa,
        kappa_ci=as_interval(ends[:, 1]),
        per_class=per_class,
        confusion=confusion,
        level=level,
        calibration=calibration,
        frame_estimate=FrameEstimate.of(has_gold, labelled, correct_rows, level),
        _rows=rows,
        _basis=basis,
    )


def _cause(error: object) -> str:
    """The kind of a row's error (``not in label set``, ``HTTP 500``, ...): before the first
    colon."""
    if not isinstance(error, str) or not error:
        return "no error text"
    return error.split(":", 1)[0].strip() or "error"
