"""Agreement without gold: between two label columns (two models, two prompts, two people),
percent agreement and Cohen's kappa; between several, Krippendorff's alpha. Each with an
interval.

- Percent agreement: the share of rows where the columns agree, with Wilson's interval.
- Cohen's kappa (Cohen 1960; scikit-learn's ``cohen_kappa_score``): agreement beyond what
  the two columns' own label frequencies give by chance; bootstrap interval over rows.
- Krippendorff's alpha, nominal (the ``krippendorff`` package; Krippendorff 2011,
  "Computing Krippendorff's Alpha-Reliability"): any number of columns, missing cells
  allowed; bootstrap interval over rows (units), as Hayes & Krippendorff (2007) bootstrap
  the units.
- ``pairwise``: Cohen's kappa of every pair of columns on the rows both have.

Values are compared as text after folding case and spacing; a ``multi=True`` cell (a list)
is one value: its labels sorted and joined. A row missing a value is left out of a pair (and
counted); alpha uses whatever values a row has.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from holysheep_nb.errors import ConfigError
from holysheep_nb.quality import tables
from holysheep_nb.quality._deps import load
from holysheep_nb.quality.display import Shown, figure, metric_frame
from holysheep_nb.quality.frames import column_of, missing, text_key
from holysheep_nb.quality.intervals import (
    LEVEL,
    RESAMPLES,
    Interval,
    as_interval,
    bootstrap,
    wilson,
)

#: Resamples of alpha's bootstrap at most: each calls the krippendorff package once.
ALPHA_RESAMPLES = 1000


@dataclass(frozen=True, eq=False)
class Agreement(Shown):
    """How far label columns agree, with intervals at ``level`` (two-sided).

    ``n``: rows where every column has a value; ``agreement``: the share of them where all
    agree. ``kappa``: Cohen's kappa (two columns only, else None). ``alpha``: Krippendorff's
    alpha over every row with at least two values. ``pairwise``: kappa of each pair.
    """

    columns: tuple[Hashable, ...]
    n: int
    left_out: int  # rows missing a value in some column
    agreement: float
    agreement_ci: Interval
    kappa: float | None
    kappa_ci: Interval | None
    alpha: float
    alpha_ci: Interval
    pairwise: pd.DataFrame
    level: float

    def to_frame(self) -> pd.DataFrame:
        """The figures as a frame: ``value``, ``low``, ``high`` by ``metric``."""
        lines: dict[str, tuple[float, float, float]] = {
            "agreement": (self.agreement, *self.agreement_ci),
        }
        if self.kappa is not None and self.kappa_ci is not None:
            lines["kappa"] = (self.kappa, *self.kappa_ci)
        lines["alpha"] = (self.alpha, *self.alpha_ci)
        return metric_frame(lines)

    def _sections(self) -> tuple[str, Any, list[tuple[str, pd.DataFrame]]]:
        names = ", ".join(str(c) for c in self.columns)
        title = f"holysheep_nb agreement of {names} ({self.level:.0%} intervals)"
        rows = [("rows", f"{self.n:,}", "(every column has a value)")]
        if self.left_out:
            rows.append(("left out", f"{self.left_out:,}", "(a value missing)"))
        rows.append(("agreement", *figure(self.agreement, self.agreement_ci)))
        if self.kappa is not None and self.kappa_ci is not None:
            rows.append(("Cohen's kappa", *figure(self.kappa, self.kappa_ci, percent=False)))
        rows.append(("Krippendorff's alpha", *figure(self.alpha, self.alpha_ci, percent=False)))
        shown = [] if len(self.columns) == 2 else [("pairwise kappa", self.pairwise)]
        return title, [("", rows)], shown


def _as_text(values: pd.Series) -> list[str | None]:
    """Each cell as compared: folded text, a list as its sorted labels; None when missing."""
    absent = missing(values)
    shown: list[str | None] = []
    for value, gone in zip(values, absent, strict=True):
        if gone:
            shown.append(None)
        elif isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
            shown.append(", ".join(sorted(text_key(v) for v in value)))
        else:
            shown.append(text_key(value))
    return shown


def kappa_with_interval(
    first: Sequence[str],
    second: Sequence[str],
    *,
    level: float = LEVEL,
    seed: int | None = 0,
    resamples: int = RESAMPLES,
) -> tuple[float, Interval]:
    """Cohen's kappa of two equally long sequences of labels and its bootstrap interval."""
    classes = sorted(set(first) | set(second))
    code = {c: i for i, c in enumerate(classes)}
    a = np.array([code[v] for v in first], dtype=np.int64)
    b = np.array([code[v] for v in second], dtype=np.int64)
    k = max(len(classes), 1)
    value = cohen_kappa(first, second)

    def resampled(positions: np.ndarray) -> np.ndarray:
        return tables.kappa(tables.confusion_counts(a[positions], b[positions], k))

    ends = bootstrap(resampled, a.size, level=level, seed=seed, resamples=resamples)
    return value, as_interval(ends)


def kappa_matrix(columns: dict[Hashable, list[str | None]]) -> pd.DataFrame:
    """Cohen's kappa of every pair of columns on the rows both have (1 on the diagonal)."""
    names = list(columns)
    matrix: pd.DataFrame = pd.DataFrame(np.eye(len(names)), index=names, columns=names, dtype=float)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            pairs = [
                (x, y)
                for x, y in zip(columns[first], columns[second], strict=True)
                if x is not None and y is not None
            ]
            value = math.nan
            if pairs:
                a, b = (list(side) for side in zip(*pairs, strict=True))
                value = cohen_kappa(a, b)
            matrix.loc[first, second] = matrix.loc[second, first] = value
    return matrix


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two label sequences (scikit-learn's); NaN when it is 0/0 (every
    label the same, or no rows), where scikit-learn would warn."""
    if not a:
        return math.nan
    classes = sorted(set(a) | set(b))
    code = {c: i for i, c in enumerate(classes)}
    counts = tables.confusion_counts(
        np.array([code[v] for v in a]), np.array([code[v] for v in b]), len(classes)
    )
    value = float(tables.kappa(counts))
    if math.isnan(value):
        return value
    return float(load("sklearn.metrics").cohen_kappa_score(list(a), list(b), labels=classes))


def krippendorff_alpha(
    cells: list[list[str | None]],
    *,
    level: float = LEVEL,
    seed: int | None = 0,
    resamples: int = ALPHA_RESAMPLES,
) -> tuple[float, Interval]:
    """Nominal Krippendorff's alpha of ``cells`` (one list per column, None when missing)
    and its bootstrap interval over rows."""
    package = load("krippendorff")
    classes = sorted({v for column in cells for v in column if v is not None})
    code = {c: float(i) for i, c in enumerate(classes)}
    data = np.array([[np.nan if v is None else code[v] for v in column] for column in cells])
    # A row with fewer than two values tells nothing about agreement.
    data = data[:, np.sum(~np.isnan(data), axis=0) >= 2]
    domain = list(range(len(classes)))
    if data.shape[1] == 0 or len(classes) < 2:
        return math.nan, (math.nan, math.nan)

    def alpha(units: np.ndarray) -> float:
        chosen = data[:, units]
        if len(np.unique(chosen[~np.isnan(chosen)])) < 2:
            return math.nan  # one value only: alpha is 0/0
        return float(
            package.alpha(
                reliability_data=chosen, level_of_measurement="nominal", value_domain=domain
            )
        )

    value = alpha(np.arange(data.shape[1]))

    def resampled(positions: np.ndarray) -> np.ndarray:
        return np.array([alpha(line) for line in positions])

    count = min(resamples, ALPHA_RESAMPLES)
    ends = bootstrap(resampled, data.shape[1], level=level, seed=seed, resamples=count)
    return value, as_interval(ends)


def agreement(
    frame: pd.DataFrame,
    columns: Sequence[Hashable],
    *,
    level: float = LEVEL,
    seed: int | None = 0,
    resamples: int = RESAMPLES,
) -> Agreement:
    """Agreement of the label ``columns`` of ``frame`` (at least two). See ``Agreement``."""
    names = list(dict.fromkeys(columns))
    if len(names) < 2:
        raise ConfigError("agreement needs at least two different columns: pass against=...")
    cells = {name: _as_text(column_of(frame, name, "against")) for name in names}
    complete = [row for row in zip(*cells.values(), strict=True) if all(v is not None for v in row)]
    n = len(complete)
    agree = sum(1 for row in complete if len(set(row)) == 1)
    kappa: float | None = None
    kappa_ci: Interval | None = None
    options: dict[str, Any] = {"level": level, "seed": seed}
    if len(names) == 2:
        first = [str(row[0]) for row in complete]
        second = [str(row[1]) for row in complete]
        kappa, kappa_ci = kappa_with_interval(first, second, resamples=resamples, **options)
    alpha, alpha_ci = krippendorff_alpha(list(cells.values()), resamples=resamples, **options)
    return Agreement(
        columns=tuple(names),
        n=n,
        left_out=len(frame) - n,
        agreement=agree / n if n else math.nan,
        agreement_ci=wilson(agree, n, level),
        kappa=kappa,
        kappa_ci=kappa_ci,
        alpha=alpha,
        alpha_ci=alpha_ci,
        pairwise=kappa_matrix(cells),
        level=level,
    )
