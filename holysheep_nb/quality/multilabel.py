"""Judging ``multi=True`` labels (a list per row) against gold lists.

Per label: precision, recall (Wilson intervals) and F1 (bootstrap); over rows: the exact-match
accuracy (every label right; Wilson), the mean Jaccard index (labels in common over labels in
either; bootstrap) and micro and macro F1 (bootstrap). Point estimates are scikit-learn's
(``precision_recall_fscore_support``, ``jaccard_score(average="samples")``, ``f1_score``) on
the binarised label matrix.

Gold is a list (tuple, set) of labels, or text with the labels separated by commas or
semicolons (as a CSV cell holds them), or a JSON list. Labels are matched after folding case
and spacing. A row with gold but no label (an error) has no label predicted, never matches
exactly and has Jaccard 0.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from holysheep_nb.quality._deps import load
from holysheep_nb.quality.display import Shown, figure, metric_frame
from holysheep_nb.quality.frames import missing, text_key
from holysheep_nb.quality.intervals import (
    LEVEL,
    RESAMPLES,
    Interval,
    as_interval,
    bootstrap,
    wilson,
)
from holysheep_nb.quality.tables import per_class_frame

_SEPARATORS = re.compile(r"[,;\n]+")


@dataclass(frozen=True, eq=False)
class MultiLabelEvaluation(Shown):
    """``multi=True`` labels against gold on the ``n`` rows with gold.

    ``accuracy``: exact match (the row's labels are exactly the gold's); ``jaccard``: mean
    Jaccard index; ``micro_f1`` and ``macro_f1``; ``per_class``: by label, ``precision``,
    ``recall``, ``f1`` (each with ``_low``/``_high``) and ``support``.
    """

    n: int
    without_gold: int
    unlabelled: int
    accuracy: float
    accuracy_ci: Interval
    jaccard: float
    jaccard_ci: Interval
    micro_f1: float
    micro_f1_ci: Interval
    macro_f1: float
    macro_f1_ci: Interval
    per_class: pd.DataFrame
    level: float

    def to_frame(self) -> pd.DataFrame:
        """The headline figures: ``value``, ``low``, ``high`` by ``metric``."""
        lines = {
            "accuracy": (self.accuracy, *self.accuracy_ci),
            "jaccard": (self.jaccard, *self.jaccard_ci),
            "micro_f1": (self.micro_f1, *self.micro_f1_ci),
            "macro_f1": (self.macro_f1, *self.macro_f1_ci),
        }
        return metric_frame(lines)

    def _sections(self) -> tuple[str, Any, list[tuple[str, pd.DataFrame]]]:
        title = (
            f"holysheep_nb evaluation (several labels a row): {self.n:,} rows with gold "
            f"({self.level:.0%} intervals)"
        )
        rows = [
            ("exact match", *figure(self.accuracy, self.accuracy_ci)),
            ("Jaccard", *figure(self.jaccard, self.jaccard_ci, percent=False)),
            ("micro F1", *figure(self.micro_f1, self.micro_f1_ci, percent=False)),
            ("macro F1", *figure(self.macro_f1, self.macro_f1_ci, percent=False)),
        ]
        if self.without_gold:
            rows.append(("left out", f"{self.without_gold:,}", "(rows without gold)"))
        if self.unlabelled:
            rows.append(("no label", f"{self.unlabelled:,}", "(counted wrong)"))
        return title, [("", rows)], [("per label", self.per_class)]


def label_list(value: Any) -> list[str]:
    """A cell's labels: a list as it is, text split on commas/semicolons or read as JSON."""
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return [str(v) for v in value]
    cell = str(value).strip()
    if cell.startswith("["):
        try:
            parsed = json.loads(cell)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list):
            return [str(v) for v in parsed]
    return [part.strip() for part in _SEPARATORS.split(cell) if part.strip()]


def _f1(hits: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(predicted + actual > 0, 2 * hits / (predicted + actual), 0.0)


def evaluate_multi(
    predicted: pd.Series,
    gold: pd.Series,
    *,
    has_gold: np.ndarray,
    level: float = LEVEL,
    seed: int | None = 0,
    resamples: int = RESAMPLES,
) -> MultiLabelEvaluation:
    """Evaluate lists of labels against gold lists on the rows of ``has_gold``."""
    metrics = load("sklearn.metrics")
    labelled = ~missing(predicted)
    pred_sets = [
        {text_key(v) for v in label_list(p)} if ok else set()
        for p, ok in zip(predicted[has_gold], labelled[has_gold], strict=True)
    ]
    spelling: dict[str, str] = {}
    for value in predicted[labelled]:
        for label in label_list(value):
            spelling.setdefault(text_key(label), label)
    gold_sets = [{text_key(v) for v in label_list(g)} for g in gold[has_gold]]
    for value in gold[has_gold]:
        for label in label_list(value):
            spelling.setdefault(text_key(label), label.strip())
    keys = sorted(spelling, key=lambda key: spelling[key])
    column = {key: i for i, key in enumerate(keys)}
    n, k = len(gold_sets), len(keys)
    y_true = np.zeros((n, k), dtype=bool)
    y_pred = np.zeros((n, k), dtype=bool)
    for row, (g, p) in enumerate(zip(gold_sets, pred_sets, strict=True)):
        y_true[row, [column[x] for x in g]] = True
        y_pred[row, [column[x] for x in p]] = True
    row_labelled = labelled[has_gold]
    exact = np.all(y_true == y_pred, axis=1) & row_labelled
    both = (y_true & y_pred).sum(axis=1)
    either = (y_true | y_pred).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Both empty agree fully (scikit-learn's zero_division=1); no label scores 0.
        row_jaccard = np.where(either > 0, both / np.maximum(either, 1), 1.0) * row_labelled
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_true, y_pred, zero_division=0
    )
    micro = float(metrics.f1_score(y_true, y_pred, average="micro", zero_division=0))
    present = (y_true.sum(axis=0) + y_pred.sum(axis=0)) > 0
    macro = float(np.mean(f1[present])) if present.any() else math.nan

    def resampled(positions: np.ndarray) -> np.ndarray:
        t, p = y_true[positions], y_pred[positions]  # (resamples, n, k)
        hits, pred_n, true_n = (t & p).sum(axis=1), p.sum(axis=1), t.sum(axis=1)
        per_label = _f1(hits, pred_n, true_n)
        shown = (pred_n + true_n) > 0
        with np.errstate(invalid="ignore"):
            macro_f1 = np.where(shown, per_label, np.nan)
            macro_f1 = np.nanmean(np.where(shown.any(axis=1, keepdims=True), macro_f1, 0), axis=1)
        micro_f1 = _f1(hits.sum(axis=1), pred_n.sum(axis=1), true_n.sum(axis=1))
        jaccard = row_jaccard[positions].mean(axis=1)
        return np.column_stack([jaccard, micro_f1, macro_f1, per_label])

    ends = bootstrap(resampled, n, level=level, seed=seed, resamples=resamples, width=3 + k)
    hits = (y_true & y_pred).sum(axis=0)
    per_class = per_class_frame(
        (precision, recall, f1, support),
        ends[:, 3:],
        (hits, y_pred.sum(axis=0), y_true.sum(axis=0)),
        [spelling[key] for key in keys],
        level,
    )
    return MultiLabelEvaluation(
        n=n,
        without_gold=int(np.sum(~has_gold)),
        unlabelled=int(np.sum(~row_labelled)),
        accuracy=float(exact.mean()) if n else math.nan,
        accuracy_ci=wilson(int(exact.sum()), n, level),
        jaccard=float(row_jaccard.mean()) if n else math.nan,
        jaccard_ci=as_interval(ends[:, 0]),
        micro_f1=micro,
        micro_f1_ci=as_interval(ends[:, 1]),
        macro_f1=macro,
        macro_f1_ci=as_interval(ends[:, 2]),
        per_class=per_class,
        level=level,
    )
