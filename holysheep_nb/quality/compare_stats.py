"""The statistics of comparing variants (prompts, models, options) run on the same sample.

Pure functions of the variants' result frames, so that ``compare()`` only runs the variants
and hands their frames here:

- ``comparison_table``: by variant, accuracy with Wilson's interval (with gold), the cost of
  the sample, the projected cost of a bigger run, p50/p95 latency and tokens;
- ``agreement_matrix``: Cohen's kappa of every pair of variants' labels;
- ``mcnemar``: the exact McNemar test of the most accurate variant against each other one
  (McNemar 1947; exact form: a two-sided binomial test with p = 1/2 on the rows only one of
  the two got right, SciPy's ``binomtest``), valid because every variant labels the same rows;
- ``choose_best``: the rule that names the best variant.

``holysheep_nb.quality.comparison.Comparison`` puts them together, with the plot.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from holysheep_nb.errors import ConfigError
from holysheep_nb.prices import Prices
from holysheep_nb.quality._deps import load
from holysheep_nb.quality.agreement import kappa_matrix
from holysheep_nb.quality.frames import aligned, label_column, missing, text_key
from holysheep_nb.quality.intervals import LEVEL, wilson
from holysheep_nb.quality.multilabel import label_list

if TYPE_CHECKING:
    from holysheep_nb.report import RunReport

#: Significance level of the McNemar tests behind ``best``.
ALPHA = 0.05


def _report(frame: pd.DataFrame) -> RunReport | None:
    from holysheep_nb.report import attached

    return attached(frame.attrs)


def _keys(frame: pd.DataFrame, column: Hashable | None) -> list[str | None]:
    """Each row's label(s) as compared: folded text, a list as its sorted labels."""
    values = frame[label_column(frame, column)]
    absent = missing(values)
    keys: list[str | None] = []
    for value, gone in zip(values, absent, strict=True):
        if gone:
            keys.append(None)
        elif isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
            keys.append(", ".join(sorted({text_key(v) for v in value})))
        else:
            keys.append(text_key(value))
    return keys


def _gold_keys(gold: pd.Series) -> list[str | None]:
    keys: list[str | None] = []
    for value, gone in zip(gold, missing(gold), strict=True):
        if gone:
            keys.append(None)
        elif isinstance(value, str) and not any(sep in value for sep in ",;\n["):
            keys.append(text_key(value))
        else:
            keys.append(", ".join(sorted({text_key(v) for v in label_list(value)})))
    return keys


def correct_rows(
    frame: pd.DataFrame, gold: Hashable | pd.Series, column: Hashable | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(has_gold, correct)`` boolean arrays over the frame's rows: a row is correct when its
    label (its set of labels) equals the gold after folding case and spacing; a row with no
    label is wrong."""
    gold_keys = _gold_keys(aligned(frame, gold, "gold"))
    predicted = _keys(frame, column)
    has_gold = np.array([g is not None for g in gold_keys], dtype=bool)
    correct = np.array(
        [g is not None and p == g for g, p in zip(gold_keys, predicted, strict=True)], dtype=bool
    )
    return has_gold, correct


@dataclass(frozen=True)
class McNemar:
    """The exact McNemar test of two variants on the rows both were judged on."""

    only_first: int  # rows only the first got right
    only_second: int  # rows only the second got right
    p_value: float  # two-sided; 1.0 when no row tells them apart


def mcnemar(first: np.ndarray, second: np.ndarray) -> McNemar:
    """Exact McNemar test of two boolean arrays of correct rows (the same rows, in order)."""
    b = int(np.sum(first & ~second))
    c = int(np.sum(~first & second))
    if b + c == 0:
        return McNemar(b, c, 1.0)
    stats = load("scipy.stats")
    return McNemar(b, c, float(stats.binomtest(b, b + c, 0.5).pvalue))


def projected_cost(
    frame: pd.DataFrame, rows: int, *, prices: Prices | None = None, batch: bool = False
) -> float | None:
    """What ``rows`` more rows would cost, at this sample's cost per row.

    With ``prices``: the mean tokens of the sample's answers (cached or not) at those prices,
    times the Batch API's share (``Prices.batch_discount``) when ``batch``. Without: the
    run report's cost over the rows it paid for (not cached, not repeated, sent); None when
    it has no cost (no prices) or paid for no row. ``rows`` is what the bigger run would send:
    its rows after cache hits and repeats (``Estimate.to_send``), or a plain row count.
    """
    if rows < 0:
        raise ConfigError(f"rows to project to must be >= 0, got {rows}")
    if prices is not None:
        per_row = _token_cost(frame, prices) / max(len(frame), 1)
        return per_row * rows * (prices.batch_discount if batch else 1.0)
    report = _report(frame)
    if report is None or report.cost is None:
        return None
    paid = report.rows - report.cached - report.deduplicated - report.not_sent
    return report.cost / paid * rows if paid > 0 else None


def _token_cost(frame: pd.DataFrame, prices: Prices) -> float:
    """USD of the tokens in the frame's ``prompt_tokens``/``completion_tokens`` columns."""
    prompt = frame["prompt_tokens"].sum(skipna=True) if "prompt_tokens" in frame else 0
    completion = frame["completion_tokens"].sum(skipna=True) if "completion_tokens" in frame else 0
    return float(prompt * prices.input_per_1k + completion * prices.output_per_1k) / 1000


def comparison_table(
    results: Mapping[str, pd.DataFrame],
    *,
    gold: Hashable | pd.Series | None = None,
    column: Hashable | None = None,
    project_to: int | Mapping[str, int] | None = None,
    prices: Mapping[str, Prices | None] | None = None,
    batch: bool = False,
    level: float = LEVEL,
) -> pd.DataFrame:
    """One line per variant (indexed by its name), columns:

    ``rows``; with gold ``gold_rows``, ``accuracy``, ``accuracy_low``, ``accuracy_high``;
    ``cost`` (USD of this sample: the variant's ``prices`` applied to its tokens, else its
    run report's cost; NaN when unknown); ``projected_cost`` (``project_to`` rows, one count
    or one per variant: see ``projected_cost``); ``p50_latency``, ``p95_latency`` (seconds,
    from the run report); ``prompt_tokens``, ``completion_tokens`` (summed over the rows'
    answers, cached or not).
    """
    lines: dict[str, dict[str, Any]] = {}
    for name, frame in results.items():
        report = _report(frame)
        variant_prices = (prices or {}).get(name)
        line: dict[str, Any] = {"rows": len(frame)}
        if gold is not None:
            has_gold, correct = correct_rows(frame, gold, column)
            n, hits = int(has_gold.sum()), int(np.sum(correct & has_gold))
            low, high = wilson(hits, n, level)
            line.update(
                gold_rows=n,
                accuracy=hits / n if n else math.nan,
                accuracy_low=low,
                accuracy_high=high,
            )
        if variant_prices is not None:
            line["cost"] = _token_cost(frame, variant_prices)
        else:
            line["cost"] = math.nan if report is None or report.cost is None else report.cost
        rows = project_to.get(name) if isinstance(project_to, Mapping) else project_to
        projected = (
            None
            if rows is None
            else projected_cost(frame, rows, prices=variant_prices, batch=batch)
        )
        line["projected_cost"] = math.nan if projected is None else projected
        for key, value in (
            ("p50_latency", None if report is None else report.latency_p50),
            ("p95_latency", None if report is None else report.latency_p95),
        ):
            line[key] = math.nan if value is None else value
        for key in ("prompt_tokens", "completion_tokens"):
            line[key] = int(frame[key].sum(skipna=True)) if key in frame else 0
        lines[name] = line
    table: pd.DataFrame = pd.DataFrame.from_dict(lines, orient="index")
    table.index.name = "variant"
    return table


def agreement_matrix(
    results: Mapping[str, pd.DataFrame], column: Hashable | None = None
) -> pd.DataFrame:
    """Cohen's kappa of every pair of variants' labels, on the rows both labelled."""
    matrix = kappa_matrix({name: _keys(frame, column) for name, frame in results.items()})
    matrix.index.name = "variant"
    return matrix


def mcnemar_table(
    results: Mapping[str, pd.DataFrame],
    reference: str,
    *,
    gold: Hashable | pd.Series,
    column: Hashable | None = None,
) -> pd.DataFrame:
    """The exact McNemar test of ``reference`` against each other variant, on the rows that
    have gold: ``only_reference`` and ``only_other`` (rows only one got right), ``p_value``.
    """
    _same_rows(results)
    has_gold, ref = correct_rows(results[reference], gold, column)
    lines = {}
    for name, frame in results.items():
        if name == reference:
            continue
        _, other = correct_rows(frame, gold, column)
        test = mcnemar(ref[has_gold], other[has_gold])
        lines[name] = {
            "only_reference": test.only_first,
            "only_other": test.only_second,
            "p_value": test.p_value,
        }
    table: pd.DataFrame = pd.DataFrame.from_dict(
        lines, orient="index", columns=["only_reference", "only_other", "p_value"]
    )
    table.index.name = "variant"
    return table


def _same_rows(results: Mapping[str, pd.DataFrame]) -> None:
    frames = list(results.values())
    if any(not frame.index.equals(frames[0].index) for frame in frames[1:]):
        raise ConfigError("the variants' result frames must hold the same rows in the same order")


@dataclass(frozen=True)
class Best:
    """The variant ``compare`` recommends, and the rule that chose it, in words."""

    name: str | None
    rule: str

    def __str__(self) -> str:
        return f"{self.name}: {self.rule}" if self.name else self.rule


def choose_best(table: pd.DataFrame, tests: pd.DataFrame | None, alpha: float = ALPHA) -> Best:
    """The most accurate variant; among those whose accuracy is not significantly different
    from it (McNemar p >= ``alpha``), the cheapest (projected cost, else sample cost).

    Without gold (no ``accuracy`` column) no variant is named.
    """
    if "accuracy" not in table or table["accuracy"].isna().all():
        return Best(None, "no best without gold: pass gold= to compare accuracy")
    top = str(table["accuracy"].idxmax())
    tied = [top]
    if tests is not None:
        tied += [str(name) for name, p in tests["p_value"].items() if p >= alpha]
    cost_column = next(
        (c for c in ("projected_cost", "cost") if c in table and table.loc[tied, c].notna().all()),
        None,
    )
    if len(tied) == 1:
        return Best(
            top,
            f"the most accurate; every other is significantly less accurate "
            f"(exact McNemar p < {alpha})",
        )
    if cost_column is None:
        return Best(
            top,
            f"the most accurate; {', '.join(tied[1:])} not significantly different (McNemar "
            f"p >= {alpha}) but without a cost to choose the cheapest",
        )
    cheapest = str(table.loc[tied, cost_column].idxmin())
    what = "projected cost" if cost_column == "projected_cost" else "cost"
    if cheapest == top:
        return Best(
            top,
            f"the most accurate, and the cheapest ({what}) of those not "
            f"significantly less accurate (McNemar p >= {alpha}): {', '.join(tied)}",
        )
    return Best(
        cheapest,
        f"the cheapest ({what}) of the variants whose accuracy is not significantly "
        f"different from the most accurate, {top} (exact McNemar p >= {alpha}): "
        f"{', '.join(tied)}",
    )
