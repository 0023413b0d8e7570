"""``out.holysheep.evaluate(...)``: which judgement a call asks for, and its input checks.

- ``gold="column"`` (or a Series) on a ``label()`` result: ``LabelEvaluation``; with
  ``multi=True`` labels (lists): ``MultiLabelEvaluation``.
- ``gold={"field": "gold column", ...}`` on an ``extract()`` result: ``FieldEvaluation``.
- ``against="column"`` or a list of columns, no gold: ``Agreement`` between the label
  column and those.

Bad input is a ``ConfigError`` naming the fix; without the ``eval`` extra, an
``ImportError`` naming ``pip install 'holysheep_nb[eval]'``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from holysheep_nb.errors import ConfigError
from holysheep_nb.quality.frames import aligned, confidence_column, label_column, missing
from holysheep_nb.quality.intervals import LEVEL, RESAMPLES, check_level


def evaluate(
    frame: pd.DataFrame,
    gold: Hashable | pd.Series | Mapping[str, Hashable | pd.Series] | None = None,
    *,
    against: Hashable | Sequence[Hashable] | None = None,
    column: Hashable | None = None,
    confidence: Hashable | bool | None = None,
    tolerance: float | Mapping[str, float] = 0.0,
    level: float = LEVEL,
    seed: int | None = 0,
    resamples: int = RESAMPLES,
) -> Any:
    """Judge a result frame against gold, or measure agreement between label columns.

    ``gold``: a column name or a Series aligned by index (labels), or a dict of field to gold
    column (an ``extract()`` result). ``against``: a column or list of columns to agree with
    (no gold). ``column``: the predicted labels (default: the newest ``label`` /
    ``predicted_label`` column). ``confidence``: the confidence column (default: the newest
    ``confidence`` column if any; ``False`` for none). ``tolerance``: for numeric fields of
    an extraction, an absolute difference still counted right (one number, or per field).
    ``level``: of every interval (two-sided). ``seed``, ``resamples``: of the bootstrap.

    Returns a ``LabelEvaluation``, ``MultiLabelEvaluation``, ``FieldEvaluation`` or
    ``Agreement``. Raises ``ConfigError`` for a missing column, both or neither of ``gold``
    and ``against``, and no row with gold.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"evaluate needs a DataFrame, got {type(frame).__name__}")
    level = check_level(level)
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        raise ConfigError(f"resamples must be a whole number >= 100, got {resamples!r}")
    if (gold is None) == (against is None):
        raise ConfigError(
            "pass gold= (the right answers: a column, a Series, or for extract() a dict of "
            "field to gold column) or against= (another label column to agree with), not "
            + ("both" if gold is not None else "neither")
        )
    options: dict[str, Any] = {"level": level, "seed": seed, "resamples": resamples}
    if against is not None:
        from holysheep_nb.quality.agreement import agreement

        others = (
            [against]
            if isinstance(against, str) or not isinstance(against, Sequence)
            else list(against)
        )
        columns = [label_column(frame, column), *others]
        return agreement(frame, columns, **options)
    if isinstance(gold, Mapping):
        from holysheep_nb.quality.fields import evaluate_fields

        return evaluate_fields(frame, gold, tolerance=tolerance, **options)
    predicted = frame[label_column(frame, column)]
    gold_values = aligned(frame, gold, "gold")
    has_gold = ~missing(gold_values)
    if not has_gold.any():
        raise ConfigError("no row has gold: every value of the gold column is missing")
    if _is_multi(predicted) or _is_multi(gold_values[has_gold]):
        from holysheep_nb.quality.multilabel import evaluate_multi

        return evaluate_multi(predicted, gold_values, has_gold=has_gold, **options)
    from holysheep_nb.quality.classification import evaluate_labels

    confidence_name = confidence_column(frame, confidence)
    errors = frame["error"] if "error" in frame.columns else None
    cached_name = (
        str(confidence_name).replace("confidence", "cached", 1)
        if isinstance(confidence_name, str)
        else None
    )
    return evaluate_labels(
        predicted,
        gold_values,
        has_gold=has_gold,
        confidence=None if confidence_name is None else frame[confidence_name],
        cached=frame[cached_name].fillna(False) if cached_name in frame.columns else None,
        errors=errors,
        **options,
    )


def _is_multi(values: pd.Series) -> bool:
    """Whether a column holds lists of labels (``multi=True``) rather than single labels."""
    return bool(
        values.dtype == object
        and any(isinstance(v, (list, tuple, set, frozenset, np.ndarray)) for v in values)
    )
