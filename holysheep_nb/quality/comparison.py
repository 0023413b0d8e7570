"""``Comparison``: the variants' results side by side, the tests, the choice and the plot.

Built from result frames by ``Comparison.of`` (the statistics are ``compare_stats``), so the
``compare()`` call only has to run the variants.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from holysheep_nb.errors import ConfigError
from holysheep_nb.prices import Prices
from holysheep_nb.quality.compare_stats import (
    ALPHA,
    Best,
    agreement_matrix,
    choose_best,
    comparison_table,
    mcnemar_table,
)
from holysheep_nb.quality.display import Shown, new_axes
from holysheep_nb.quality.intervals import LEVEL

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@dataclass(frozen=True, eq=False)
class Comparison(Shown):
    """Variants run on the same rows: ``results[name]`` (each variant's result frame),
    ``table`` (see ``comparison_table``), ``agreement`` (variant x variant kappa),
    ``mcnemar`` (the most accurate against each other; None without gold) and ``best``."""

    results: Mapping[str, pd.DataFrame]
    table: pd.DataFrame
    agreement: pd.DataFrame
    mcnemar: pd.DataFrame | None
    best: Best
    level: float

    _css_class: ClassVar[str] = "holysheep-comparison"

    @classmethod
    def of(
        cls,
        results: Mapping[str, pd.DataFrame],
        *,
        gold: Hashable | pd.Series | None = None,
        column: Hashable | None = None,
        project_to: int | Mapping[str, int] | None = None,
        prices: Mapping[str, Prices | None] | None = None,
        batch: bool = False,
        level: float = LEVEL,
        alpha: float = ALPHA,
    ) -> Comparison:
        """Compare the result frames of ``results`` (name -> frame, the same rows each).

        ``gold``: a column of the frames or a Series with their index. ``project_to``: rows
        a bigger run would send (one count, or one per variant after its cache hits).
        ``prices``: per variant, to price tokens (and the Batch discount with ``batch``).
        ``alpha``: significance level of the McNemar tests behind ``best``.
        """
        if len(results) < 2:
            raise ConfigError("compare needs at least two variants")
        table = comparison_table(
            results,
            gold=gold,
            column=column,
            project_to=project_to,
            prices=prices,
            batch=batch,
            level=level,
        )
        tests = None
        if gold is not None and table["accuracy"].notna().any():
            top = str(table["accuracy"].idxmax())
            tests = mcnemar_table(results, top, gold=gold, column=column)
        return cls(
            results=dict(results),
            table=table,
            agreement=agreement_matrix(results, column),
            mcnemar=tests,
            best=choose_best(table, tests, alpha),
            level=level,
        )

    def plot(self, ax: Axes | None = None) -> Figure | Axes:
        """Accuracy (with its interval) against cost, one point per variant, the best one
        circled. Cost is the projected cost when there is one, else the sample's. Needs gold
        and matplotlib (the ``plot`` extra). Without ``ax``, returns a new Figure."""
        if "accuracy" not in self.table:
            raise ConfigError("the plot needs accuracy: compare with gold=")
        figure, ax = new_axes(ax, (6, 4))
        table = self.table
        cost = "projected_cost" if table["projected_cost"].notna().all() else "cost"
        x = table[cost].fillna(0.0)
        y = table["accuracy"]
        ax.errorbar(
            x,
            y,
            yerr=[y - table["accuracy_low"], table["accuracy_high"] - y],
            fmt="o",
            capsize=4,
        )
        for name in table.index:
            ax.annotate(str(name), (x[name], y[name]), textcoords="offset points", xytext=(6, 4))
        if self.best.name is not None:
            ax.scatter(
                [x[self.best.name]],
                [y[self.best.name]],
                s=250,
                facecolors="none",
                edgecolors="tab:red",
                label=f"best: {self.best.name}",
            )
            ax.legend(loc="lower right")
        ax.set_xlabel(
            ("projected cost" if cost == "projected_cost" else "cost of the sample") + " (USD)"
        )
        ax.set_ylabel(f"accuracy ({self.level:.0%} interval)")
        ax.set_title("accuracy against cost")
        return figure if figure is not None else ax

    def _sections(self) -> tuple[str, Any, list[tuple[str, pd.DataFrame]]]:
        title = f"holysheep_nb comparison of {len(self.results)} variants"
        rows = [("best", self.best.name or "n/a", self.best.rule)]
        shown = [("variants", self.table), ("agreement (Cohen's kappa)", self.agreement)]
        if self.mcnemar is not None:
            shown.append(("exact McNemar against the most accurate", self.mcnemar))
        return title, [("", rows)], shown
