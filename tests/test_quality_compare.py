"""The statistics compare() will call: the table, the exact McNemar test, the kappa matrix,
the best-variant rule and the plot, on result frames made by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from holysheep_nb.errors import ConfigError
from holysheep_nb.job import REPORT_ATTR
from holysheep_nb.outcome import RunStats
from holysheep_nb.prices import Prices
from holysheep_nb.quality.compare_stats import (
    agreement_matrix,
    choose_best,
    comparison_table,
    mcnemar,
    projected_cost,
)
from holysheep_nb.quality.comparison import Comparison
from holysheep_nb.quality.intervals import wilson
from holysheep_nb.report import RunReport

PRICES = Prices(input_per_1k=1.0, output_per_1k=2.0)


def variant(
    labels: list[str | None], *, prompt: int, cached: int = 0, latency: float = 0.5
) -> pd.DataFrame:
    """A label() result of ``labels`` with a run report: ``prompt`` tokens and 1 completion
    token per row, the first ``cached`` rows from the cache (not paid)."""
    rows = len(labels)
    frame = pd.DataFrame(
        {
            "label": labels,
            "prompt_tokens": pd.array([prompt] * rows, dtype="Int64"),
            "completion_tokens": pd.array([1] * rows, dtype="Int64"),
        }
    )
    paid = rows - cached
    stats = RunStats(
        succeeded=rows, cached=cached, prompt_tokens=prompt * paid, completion_tokens=paid
    )
    latencies = np.array([np.nan] * cached + [latency] * paid)
    frame.attrs[REPORT_ATTR] = RunReport.from_run(
        stats, latency=latencies, elapsed=1.0, prices=PRICES
    )
    return frame


GOLD = pd.Series(["a"] * 30 + ["b"] * 30)


def results() -> dict[str, pd.DataFrame]:
    right = list(GOLD)
    wrong = ["b" if g == "a" else "a" for g in right]
    return {
        "large": variant(right[:57] + wrong[57:], prompt=1000),  # 57 of 60
        "small": variant(right[:30] + wrong[30:45] + right[45:], prompt=100),  # 45 of 60
        "terse": variant(right[:55] + wrong[55:], prompt=500, cached=30),  # 55 of 60
    }


def test_exact_mcnemar_by_hand_and_against_scipy() -> None:
    first = np.array([True] * 10 + [True] + [False] * 6)
    second = np.array([True] * 10 + [False] + [True] * 6)
    test = mcnemar(first, second)
    assert (test.only_first, test.only_second) == (1, 6)
    # Two-sided binomial with p = 1/2 on 7 discordant rows: 2 * (1 + 7) / 2**7.
    assert test.p_value == pytest.approx(16 / 128)
    assert test.p_value == pytest.approx(binomtest(1, 7, 0.5).pvalue)
    assert mcnemar(first, first).p_value == 1.0


def test_the_table_by_variant() -> None:
    table = comparison_table(results(), gold=GOLD, project_to=1000)
    assert table.index.tolist() == ["large", "small", "terse"]
    assert table["accuracy"].tolist() == pytest.approx([57 / 60, 45 / 60, 55 / 60])
    assert (table.loc["small", "accuracy_low"], table.loc["small", "accuracy_high"]) == (
        pytest.approx(wilson(45, 60))
    )
    # Cost from the run report: prompt tokens at $1/1k and one completion token at $2/1k.
    assert table.loc["large", "cost"] == pytest.approx(60 * (1000 * 1 + 1 * 2) / 1000)
    assert table.loc["terse", "cost"] == pytest.approx(30 * (500 + 2) / 1000)  # 30 cached
    # Projected: the report's cost per paid row, for 1000 rows.
    assert table.loc["terse", "projected_cost"] == pytest.approx(1000 * (500 + 2) / 1000)
    assert table.loc["large", "p50_latency"] == pytest.approx(0.5)
    assert table.loc["large", "p95_latency"] == pytest.approx(0.5)
    assert table.loc["terse", "prompt_tokens"] == 60 * 500  # cached answers' tokens included
    assert table.loc["terse", "completion_tokens"] == 60


def test_projected_cost_with_prices_and_the_batch_discount() -> None:
    frame = results()["terse"]
    per_row = (500 * 1.0 + 1 * 2.0) / 1000
    assert projected_cost(frame, 200, prices=PRICES) == pytest.approx(200 * per_row)
    assert projected_cost(frame, 200, prices=PRICES, batch=True) == pytest.approx(100 * per_row)
    no_report = frame.copy()
    no_report.attrs = {}
    assert projected_cost(no_report, 200) is None
    with pytest.raises(ConfigError, match="rows to project to"):
        projected_cost(frame, -1)


def test_agreement_matrix_is_kappa_per_pair() -> None:
    matrix = agreement_matrix(results())
    assert matrix.loc["large", "large"] == 1.0
    assert matrix.loc["large", "small"] == matrix.loc["small", "large"]
    assert -1 <= matrix.loc["large", "small"] < 1


def test_best_is_the_cheapest_of_those_not_significantly_less_accurate() -> None:
    cmp = Comparison.of(results(), gold=GOLD, project_to=1000)
    assert cmp.mcnemar is not None
    assert cmp.mcnemar.index.tolist() == ["small", "terse"]  # against large, the most accurate
    # small: 15 rows only large got right (30-44), 3 the other way (57-59): two-sided
    # 2 * P(X <= 3) for X ~ Binomial(18, 1/2). terse: 2 against 0, whose exact two-sided p
    # is 2 * (1/2)**2 = 0.5: not significantly less accurate.
    assert cmp.mcnemar.loc["small", ["only_reference", "only_other"]].tolist() == [15, 3]
    assert cmp.mcnemar.loc["small", "p_value"] == pytest.approx(2 * (1 + 18 + 153 + 816) / 2**18)
    assert cmp.mcnemar.loc["terse", "p_value"] == pytest.approx(0.5)
    # terse projects to half of large's cost (500 prompt tokens a row against 1000).
    assert cmp.best.name == "terse"
    assert "cheapest (projected cost)" in cmp.best.rule


def test_best_rule_cases() -> None:
    table = pd.DataFrame(
        {"accuracy": [0.9, 0.85, 0.6], "projected_cost": [10.0, 1.0, 0.1]},
        index=["large", "mid", "small"],
    )
    tests = pd.DataFrame({"p_value": [0.3, 0.001]}, index=["mid", "small"])
    best = choose_best(table, tests)
    assert best.name == "mid"
    assert "cheapest (projected cost)" in best.rule
    assert "large" in best.rule
    significant = choose_best(
        table, pd.DataFrame({"p_value": [0.01, 0.001]}, index=["mid", "small"])
    )
    assert significant.name == "large"
    assert "significantly less accurate" in significant.rule
    no_gold = choose_best(table.drop(columns="accuracy"), None)
    assert no_gold.name is None
    assert "gold" in no_gold.rule


def test_comparison_without_gold_has_no_tests_and_no_best() -> None:
    cmp = Comparison.of(results())
    assert cmp.mcnemar is None
    assert cmp.best.name is None
    assert "accuracy" not in cmp.table
    assert math.isnan(cmp.table.loc["large", "projected_cost"])
    with pytest.raises(ConfigError, match="needs accuracy"):
        cmp.plot()


def test_comparison_reads_and_plots() -> None:
    cmp = Comparison.of(results(), gold=GOLD, project_to=1000)
    shown = str(cmp)
    assert "best" in shown
    assert "exact McNemar against the most accurate" in shown
    assert "holysheep-comparison" in cmp._repr_html_()
    figure = cmp.plot()
    ax = figure.axes[0]
    assert ax.get_xlabel() == "projected cost (USD)"
    assert {text.get_text() for text in ax.texts} == {"large", "small", "terse"}


def test_variants_must_label_the_same_rows() -> None:
    shifted = results()
    shifted["small"] = shifted["small"].set_axis(range(1, 61))
    with pytest.raises(ConfigError, match="same rows in the same order"):
        Comparison.of(shifted, gold=GOLD)
    with pytest.raises(ConfigError, match="at least two variants"):
        Comparison.of({"one": results()["large"]})
