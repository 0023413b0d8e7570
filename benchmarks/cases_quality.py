"""The statistical checks of evaluate() and compare() on the simulated models.

Every seed draws a new sample of ``ROWS`` reviews, ``load_reviews(ROWS, seed)``, with its
``sentiment`` gold, and labels it with ``sim-small`` and ``sim-large`` as ``label()`` asks
(its system prompt, the three sentiments, temperature 0) by calling the simulation directly:
``simulate_label`` is the draw the local server makes for that request, without the HTTP
round trip, so a thousand samples take minutes rather than hours. At temperature 0 a model's
answer is fixed by the text, so answers are memoised by (model, text). The models stay the
server's (seed 0); what changes from seed to seed is the sample, and the random gold rows.

- ``coverage``: the 95% interval of ``evaluate()`` on ``GOLD`` random gold rows contains
  the accuracy on all ``ROWS`` rows (target 93-97% of seeds), for each model.
- ``power``: on ``GOLD`` rows (the same gold rows), ``Comparison.of`` (what ``compare()``
  returns) gives exact McNemar p < 0.05 for sim-large against sim-small and names it best
  (reported: the share of seeds).
- ``threshold``: ``threshold_for(accuracy=0.95)`` chosen on ``THRESHOLD_GOLD`` random gold
  rows of sim-large holds on the other rows (their accuracy at that threshold >= 0.95) in
  >= 90% of the seeds where it returns one; how often it returns one and the share of the
  other rows it keeps (reported).

The three cases share one pass over the seeds (``_pass``, memoised), so the full run
generates and labels each sample once. Run alone:
``python benchmarks/cases_quality.py [--quick]`` (no server: nothing is sent).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Context, Figure, Target, at_least

from holysheep_nb.labels import LabelSet
from holysheep_nb.quality import evaluate
from holysheep_nb.quality.calibration import Calibration
from holysheep_nb.quality.comparison import Comparison
from holysheep_nb.sample import load_reviews
from holysheep_nb.server.models import SIM_MODELS
from holysheep_nb.server.simulate import simulate_label

ROWS = 5000
GOLD = 200
THRESHOLD_GOLD = 300
TARGET_ACCURACY = 0.95
#: Seeds of a ``--quick`` run: enough to run every step of the pass, not to read a share off.
QUICK_SEEDS = 4
LABELS = ["positive", "negative", "neutral"]
SYSTEM = LabelSet(LABELS).system_prompt()  # what label() sends for these labels
MODELS = {model.name: model for model in SIM_MODELS}


@lru_cache(maxsize=400_000)
def answer(model: str, text: str) -> tuple[str, float]:
    """The label ``model`` gives ``text`` at temperature 0, and its confidence."""
    draw = simulate_label(MODELS[model], text, system=SYSTEM)
    return draw.label, draw.scores[0][1]


def labelled(model: str, sample: pd.DataFrame) -> pd.DataFrame:
    """The ``label(logprobs=True)`` result of ``model`` on ``sample``: its columns, then
    ``label`` (a Categorical over the labels) and ``confidence``."""
    answers = [answer(model, text) for text in sample["text"]]
    out = sample.copy()
    out["label"] = pd.Categorical([label for label, _ in answers], categories=LABELS)
    out["confidence"] = [confidence for _, confidence in answers]
    return out


@dataclass
class Tally:
    """What one pass over the seeds counted."""

    seeds: int
    covered: dict[str, int] = field(default_factory=dict)  # model -> seeds covered
    widths: dict[str, list[float]] = field(default_factory=dict)
    significant: int = 0  # McNemar p < 0.05, large against small
    named: int = 0  # best = sim-large
    p_values: list[float] = field(default_factory=list)
    returned: int = 0  # threshold_for returned a threshold
    held: int = 0  # ... and it held on the other rows
    kept: list[float] = field(default_factory=list)  # share of the other rows it kept
    thresholds: list[float] = field(default_factory=list)


@lru_cache(maxsize=2)
def _pass(seeds: int) -> Tally:
    tally = Tally(seeds)
    for name in MODELS:
        tally.covered[name], tally.widths[name] = 0, []
    for seed in range(seeds):
        _one_seed(seed, tally)
    return tally


def _one_seed(seed: int, tally: Tally) -> None:
    frame = load_reviews(ROWS, seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(ROWS)
    gold_rows = frame.index[order[:GOLD]]
    results = {name: labelled(name, frame) for name in MODELS}
    for name, out in results.items():
        truth = float((out["label"].astype(str) == out["sentiment"].astype(str)).mean())
        gold = out["sentiment"].where(out.index.isin(gold_rows))
        ev = evaluate(out, gold, confidence=False, resamples=100, seed=seed)
        low, high = ev.accuracy_ci
        tally.covered[name] += low <= truth <= high
        tally.widths[name].append(high - low)
    # compare()'s statistics on the gold rows, as compare() would return them.
    sample = {name: out.loc[gold_rows] for name, out in results.items()}
    cmp = Comparison.of(sample, gold="sentiment")
    large, small = "sim-large", "sim-small"
    p = 1.0
    if cmp.mcnemar is not None and small in cmp.mcnemar.index:
        p = float(cmp.mcnemar.loc[small, "p_value"])
    tally.p_values.append(p)
    tally.significant += (
        p < 0.05 and cmp.table.loc[large, "accuracy"] > cmp.table.loc[small, "accuracy"]
    )
    tally.named += cmp.best.name == large
    # The threshold, chosen on THRESHOLD_GOLD other random gold rows of sim-large.
    out = results[large]
    right = (out["label"].astype(str) == out["sentiment"].astype(str)).to_numpy()
    confidence = out["confidence"].to_numpy()
    chosen_rows = np.zeros(ROWS, dtype=bool)
    chosen_rows[rng.choice(ROWS, THRESHOLD_GOLD, replace=False)] = True
    calibration = Calibration.of(
        confidence[chosen_rows], right[chosen_rows], resamples=100, seed=seed
    )
    threshold, _ = calibration.choose_threshold(TARGET_ACCURACY)
    if threshold is None:
        return
    tally.returned += 1
    tally.thresholds.append(threshold)
    others = ~chosen_rows
    kept = others & (confidence >= threshold)
    tally.kept.append(float(kept.sum() / others.sum()))
    tally.held += bool(kept.any() and right[kept].mean() >= TARGET_ACCURACY)


def coverage(ctx: Context) -> list[Figure]:
    """Case: the accuracy interval's coverage of the whole sample's accuracy."""
    tally = _pass(ctx.pick(1000, QUICK_SEEDS))
    ctx.details["coverage"] = {
        name: {"covered": tally.covered[name], "mean_width": float(np.mean(tally.widths[name]))}
        for name in MODELS
    }
    return [
        Figure(
            f"{name}: 95% interval on {GOLD} gold rows contains the {ROWS:,}-row accuracy",
            tally.covered[name] / tally.seeds,
            Target(0.93, 0.97),
            unit="share",
            note=f"{tally.seeds} seeds; mean width {np.mean(tally.widths[name]):.3f}",
        )
        for name in MODELS
    ]


def power(ctx: Context) -> list[Figure]:
    """Case: how often compare's statistics tell sim-large from sim-small on a sample."""
    tally = _pass(ctx.pick(1000, QUICK_SEEDS))
    ctx.details["power"] = {"median_p": float(np.median(tally.p_values))}
    return [
        Figure(
            f"compare: McNemar p < 0.05, sim-large better than sim-small, {GOLD} rows",
            tally.significant / tally.seeds,
            at_least(0.8),
            unit="share",
            note=(
                f"{tally.seeds} seeds; best = sim-large in {tally.named / tally.seeds:.1%}; "
                f"median p {np.median(tally.p_values):.2g}"
            ),
        )
    ]


def threshold(ctx: Context) -> list[Figure]:
    """Case: does the threshold chosen on gold rows of sim-large hold on the others?"""
    tally = _pass(ctx.pick(1000, QUICK_SEEDS))
    returned = tally.returned
    kept = float(np.mean(tally.kept)) if tally.kept else float("nan")
    ctx.details["threshold"] = {
        "returned": returned,
        "held": tally.held,
        "mean_kept": kept,
        "median_threshold": float(np.median(tally.thresholds)) if tally.thresholds else None,
    }
    return [
        Figure(
            f"sim-large: threshold_for({TARGET_ACCURACY}) on {THRESHOLD_GOLD} gold rows holds "
            "on the other rows",
            tally.held / returned if returned else None,
            at_least(0.9),
            unit="share",
            note=(
                f"returned in {returned / tally.seeds:.0%} of {tally.seeds} seeds; "
                f"mean share of the other rows kept {kept:.0%}"
            ),
        )
    ]


CASES = {"coverage": coverage, "power": power, "threshold": threshold}


def main(argv: list[str]) -> int:
    """Run the three cases and print their figures."""
    ctx = Context(quick="--quick" in argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, case in CASES.items():
            for figure in case(ctx):
                target: Any = figure.target
                value = "-" if figure.value is None else f"{figure.value:.3f}"
                print(
                    f"{name:10} {figure.name}: {value} (target {target}; met {figure.met}) "
                    f"{figure.note}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
