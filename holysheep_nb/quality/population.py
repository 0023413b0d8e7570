"""The whole frame from a gold sample: how many of all the rows are right, with an interval.

Valid only when the gold rows are a **random sample** of the frame (``df.sample(n)``, not
the first rows, not the rows someone found interesting): then the labelled rows without gold
are right as often as the labelled gold rows, and Wilson's interval for that share carries
over. The frame's accuracy is then

    (right gold rows + rows without gold that have a label * p) / all rows

where ``p`` is the accuracy of the gold rows that have a label (its Wilson interval gives the
interval). Rows with no label (an error, an off-label answer) are wrong whether or not they
have gold; gold rows count as what they are. Per row, the estimate is 1 or 0 on a gold row,
0 without a label, and otherwise the accuracy of the gold rows like it: of the same
confidence bin when the labels have a confidence, else of the same predicted label (that
label's precision), each with its Wilson interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from holysheep_nb.quality.intervals import LEVEL, Interval, wilson, wilson_many


@dataclass(frozen=True)
class FrameEstimate:
    """The estimated accuracy of every row of the frame (assuming the gold rows are a random
    sample of it): ``accuracy`` over ``rows`` with its ``accuracy_ci``, and the expected
    number of right rows ``correct`` with ``correct_ci``."""

    rows: int  # all rows of the frame
    gold_rows: int
    unlabelled: int  # rows of the whole frame with no label: wrong, gold or not
    accuracy: float
    accuracy_ci: Interval
    correct: float
    correct_ci: Interval

    @classmethod
    def of(
        cls, has_gold: np.ndarray, labelled: np.ndarray, correct: np.ndarray, level: float = LEVEL
    ) -> FrameEstimate:
        """From per-row masks over the whole frame: ``has_gold``, ``labelled``, and
        ``correct`` (read on gold rows only)."""
        rows = int(has_gold.size)
        gold_right = int(np.sum(correct & has_gold))
        gold_labelled = int(np.sum(labelled & has_gold))
        others = int(np.sum(labelled & ~has_gold))
        share = gold_right / gold_labelled if gold_labelled else np.nan
        low, high = wilson(gold_right, gold_labelled, level)
        expected = gold_right + others * share
        ends = (gold_right + others * low, gold_right + others * high)
        if others == 0:  # every labelled row has gold: nothing is estimated
            expected, ends = float(gold_right), (float(gold_right), float(gold_right))
        return cls(
            rows=rows,
            gold_rows=int(has_gold.sum()),
            unlabelled=int(np.sum(~labelled)),
            accuracy=expected / rows if rows else np.nan,
            accuracy_ci=(ends[0] / rows, ends[1] / rows) if rows else (np.nan, np.nan),
            correct=float(expected),
            correct_ci=(float(ends[0]), float(ends[1])),
        )

    def __str__(self) -> str:
        low, high = self.accuracy_ci
        return (
            f"whole frame (gold rows taken as a random sample): {self.accuracy:.1%} of "
            f"{self.rows:,} rows right ({low:.1%} to {high:.1%}), about {self.correct:,.0f} rows"
        )


def row_estimates(
    index: pd.Index,
    has_gold: np.ndarray,
    labelled: np.ndarray,
    correct: np.ndarray,
    groups: np.ndarray,
    basis: str,
    level: float = LEVEL,
) -> pd.DataFrame:
    """Each row's estimated chance of being right: ``p_correct``, ``p_correct_low``,
    ``p_correct_high`` and ``basis`` (``gold``, ``no label``, or the group it was judged by).

    ``groups`` holds each row's group (a confidence bin or a predicted label, as text); a row
    without gold takes the accuracy of the labelled gold rows of its group (NaN when the
    group has none).
    """
    p = np.full(index.size, np.nan)
    low = np.full(index.size, np.nan)
    high = np.full(index.size, np.nan)
    basis_of = np.array([f"{basis} {group}" for group in groups], dtype=object)
    known = labelled & has_gold
    for group in np.unique(groups[labelled & ~has_gold]):
        in_group = groups == group
        trials = int(np.sum(known & in_group))
        hits = int(np.sum(correct & known & in_group))
        where = in_group & labelled & ~has_gold
        if trials:
            p[where] = hits / trials
        lo, hi = wilson_many(np.array([hits]), np.array([trials]), level)
        low[where], high[where] = lo[0], hi[0]
    right = correct & has_gold
    for mask, value, name in (
        (has_gold, right.astype(float), "gold"),
        (~labelled, np.zeros(index.size), "no label"),
    ):
        p[mask] = low[mask] = high[mask] = value[mask]
        basis_of[mask] = name
    table: pd.DataFrame = pd.DataFrame(
        {"p_correct": p, "p_correct_low": low, "p_correct_high": high, "basis": basis_of},
        index=index,
    )
    return table
