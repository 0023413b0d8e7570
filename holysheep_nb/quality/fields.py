"""Judging ``extract()`` results: each field against its gold column.

``gold={"stars": "gold_stars", "product": gold_series}`` maps a field (its result column)
to gold. Text and categories are compared after folding case and runs of whitespace
(``" Acme  Corp"`` is ``"acme corp"``); numbers are equal within ``tolerance`` (an absolute
difference: one for every numeric field, or a dict by field; 0 by default), and a gold
number written as text (``"4"`` from a CSV) is read as a number when the field is numeric.
A row whose field is missing (an error, a field left out) counts wrong where it has gold.

Per field: rows with gold, right rows, accuracy with Wilson's interval. Over rows: the share
whose every field with gold is right, with Wilson's interval.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from holysheep_nb.errors import ConfigError
from holysheep_nb.quality.display import Shown, figure
from holysheep_nb.quality.frames import aligned, column_of, missing, text_key
from holysheep_nb.quality.intervals import LEVEL, RESAMPLES, Interval, wilson
from holysheep_nb.validation import is_finite_number


@dataclass(frozen=True, eq=False)
class FieldEvaluation(Shown):
    """Extracted fields against gold columns.

    ``per_field``: by field, ``gold`` (rows with gold), ``correct``, ``accuracy``,
    ``accuracy_low``, ``accuracy_high``, ``missing`` (rows with gold whose field is missing).
    ``n``: rows with gold in at least one field; ``accuracy``: the share of them with every
    field that has gold right.
    """

    n: int
    accuracy: float
    accuracy_ci: Interval
    per_field: pd.DataFrame
    level: float

    def to_frame(self) -> pd.DataFrame:
        """Per-field accuracy with its interval, and the all-fields line ``(all)``."""
        frame: pd.DataFrame = self.per_field[["accuracy", "accuracy_low", "accuracy_high"]].copy()
        frame.columns = pd.Index(["value", "low", "high"])
        frame.loc["(all)"] = [self.accuracy, *self.accuracy_ci]
        return frame

    def _sections(self) -> tuple[str, Any, list[tuple[str, pd.DataFrame]]]:
        title = (
            f"holysheep_nb evaluation of extracted fields: {self.n:,} rows with gold "
            f"({self.level:.0%} intervals)"
        )
        rows = [("every field right", *figure(self.accuracy, self.accuracy_ci))]
        for name, line in self.per_field.iterrows():
            rows.append(
                (
                    str(name),
                    *figure(line["accuracy"], (line["accuracy_low"], line["accuracy_high"])),
                )
            )
        return title, [("", rows)], [("per field", self.per_field)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if is_finite_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def same(predicted: Any, gold: Any, *, numeric: bool, tolerance: float) -> bool:
    """Whether an extracted value matches its gold value (see the module docstring)."""
    if numeric:
        a, b = _number(predicted), _number(gold)
        if a is not None and b is not None:
            return abs(a - b) <= tolerance + 1e-12 * max(abs(a), abs(b))
    return text_key(predicted) == text_key(gold)


def _tolerance(tolerance: float | Mapping[str, float], field: str) -> float:
    value = tolerance.get(field, 0.0) if isinstance(tolerance, Mapping) else tolerance
    if not is_finite_number(value) or value < 0:
        raise ConfigError(f"tolerance must be a number >= 0, got {value!r} for {field!r}")
    return float(value)


def evaluate_fields(
    frame: pd.DataFrame,
    gold: Mapping[str, Hashable | pd.Series],
    *,
    tolerance: float | Mapping[str, float] = 0.0,
    level: float = LEVEL,
    seed: int | None = 0,
    resamples: int = RESAMPLES,
) -> FieldEvaluation:
    """Evaluate the extracted fields named in ``gold`` (field -> gold column or Series).

    ``seed`` and ``resamples`` are accepted for a uniform call; every figure here is a
    proportion, with Wilson's interval.
    """
    if not gold:
        raise ConfigError("gold is an empty dict: map each field to its gold column")
    if isinstance(tolerance, Mapping):
        unknown = set(tolerance) - set(gold)
        if unknown:
            raise ConfigError(f"tolerance names fields without gold: {sorted(unknown)}")
    lines = {}
    has_any = np.zeros(len(frame), dtype=bool)
    all_right = np.ones(len(frame), dtype=bool)
    for field, gold_source in gold.items():
        predicted = column_of(frame, field, "field")
        expected = aligned(frame, gold_source, f"gold for {field!r}")
        has_gold = ~missing(expected)
        present = ~missing(predicted)
        numeric = pd.api.types.is_numeric_dtype(predicted) and not pd.api.types.is_bool_dtype(
            predicted
        )
        limit = _tolerance(tolerance, field)
        right = np.array(
            [
                bool(g and p) and same(value, want, numeric=numeric, tolerance=limit)
                for value, want, g, p in zip(predicted, expected, has_gold, present, strict=True)
            ],
            dtype=bool,
        )
        rows = int(has_gold.sum())
        correct = int(right.sum())
        low, high = wilson(correct, rows, level)
        lines[field] = {
            "gold": rows,
            "correct": correct,
            "accuracy": correct / rows if rows else math.nan,
            "accuracy_low": low,
            "accuracy_high": high,
            "missing": int(np.sum(has_gold & ~present)),
        }
        has_any |= has_gold
        all_right &= right | ~has_gold
    n = int(has_any.sum())
    if n == 0:
        raise ConfigError("no row has gold in any of the fields named in gold")
    hits = int(np.sum(all_right & has_any))
    per_field: pd.DataFrame = pd.DataFrame.from_dict(lines, orient="index")
    per_field.index.name = "field"
    return FieldEvaluation(
        n=n,
        accuracy=hits / n,
        accuracy_ci=wilson(hits, n, level),
        per_field=per_field,
        level=level,
    )
