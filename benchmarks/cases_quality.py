"""The statistical checks of evaluate() and compare's statistics, on a synthetic labeller.

Until the simulated models (``sim-small``, ``sim-large``) serve labels through the local
server, a small generator stands in for them: a frame of ``ROWS`` rows with three balanced
gold labels, and a model that gives each row a confidence ``c`` drawn from a Beta
distribution and is right with probability ``c`` (calibrated by construction); a wrong row
gets one of the other two labels at random. "large" draws ``c ~ Beta(9, 1.2)`` (about 88%
right), "small" ``Beta(3, 1)`` (about 75%). Every seed draws a new frame and a new sample.

- ``coverage``: the 95% interval of ``evaluate()`` on ``GOLD`` random gold rows contains the
  accuracy on all rows (target 93-97% of seeds).
- ``power``: on ``GOLD`` rows, the exact McNemar test of large against small gives p < 0.05,
  and ``best`` names large (reported: the share of seeds).
- ``threshold``: ``threshold_for(accuracy=0.95)`` chosen on ``THRESHOLD_GOLD`` gold rows of
  large holds on the other rows (their accuracy at that threshold >= 0.95) in >= 90% of the
  seeds where it returns one; how often it returns one, and the coverage kept (reported),
  beside the naive choice (the lowest threshold that passes anywhere) on the same seeds.

Run alone: ``python benchmarks/cases_quality.py [--quick]`` (no server: nothing is sent).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np
import pandas as pd
from harness import Context, Figure, Target, at_least

from holysheep_nb.quality import evaluate
from holysheep_nb.quality.calibration import Calibration
from holysheep_nb.quality.comparison import Comparison
from holysheep_nb.quality.intervals import wilson_many

ROWS = 5000
GOLD = 200
THRESHOLD_GOLD = 300
LABELS = ("positive", "negative", "neutral")
MODELS = {"large": (9.0, 1.2), "small": (3.0, 1.0)}


def labelled(rng: np.random.Generator, model: str, gold: np.ndarray) -> pd.DataFrame:
    """A label() result of ``model`` on rows whose true labels are ``gold``."""
    a, b = MODELS[model]
    confidence = rng.beta(a, b, size=gold.size)
    right = rng.random(gold.size) < confidence
    shift = rng.integers(1, len(LABELS), size=gold.size)
    codes = np.where(right, gold, (gold + shift) % len(LABELS))
    return pd.DataFrame(
        {
            "sentiment": np.array(LABELS, dtype=object)[gold],
            "label": pd.Categorical.from_codes(codes, categories=list(LABELS)),
            "confidence": confidence,
        }
    )


def coverage(ctx: Context) -> list[Figure]:
    """Case: the accuracy interval's coverage of the whole frame's accuracy."""
    seeds = ctx.pick(1000, 100)
    hits = 0
    widths = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        frame = labelled(rng, "small", rng.integers(0, len(LABELS), size=ROWS))
        truth = float((frame["label"].astype(object) == frame["sentiment"]).mean())
        gold = frame["sentiment"].where(frame.index.isin(rng.choice(ROWS, GOLD, replace=False)))
        ev = evaluate(frame, gold, confidence=False, resamples=100, seed=seed)
        low, high = ev.accuracy_ci
        hits += low <= truth <= high
        widths.append(high - low)
    ctx.details["coverage"] = {"seeds": seeds, "mean_width": float(np.mean(widths))}
    return [
        Figure(
            f"95% interval on {GOLD} gold rows contains the {ROWS:,}-row accuracy",
            hits / seeds,
            Target(0.93, 0.97),
            unit="share",
            note=f"{seeds} seeds; mean width {np.mean(widths):.3f}",
        )
    ]


def power(ctx: Context) -> list[Figure]:
    """Case: how often compare's statistics tell large from small on a sample."""
    seeds = ctx.pick(200, 30)
    significant = named = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        gold = rng.integers(0, len(LABELS), size=GOLD)
        results = {name: labelled(rng, name, gold) for name in MODELS}
        cmp = Comparison.of(results, gold="sentiment")
        assert cmp.mcnemar is not None
        significant += bool((cmp.mcnemar["p_value"] < 0.05).all())
        named += cmp.best.name == "large"
    return [
        Figure(
            f"McNemar p < 0.05, large against small, {GOLD} rows",
            significant / seeds,
            at_least(0.8),
            unit="share",
            note=f"{seeds} seeds; best = large in {named / seeds:.0%}",
        )
    ]


def naive_threshold(conf: np.ndarray, right: np.ndarray, target: float) -> float | None:
    """The lowest confidence whose kept rows' Wilson lower bound meets ``target``, wherever it
    lies: the choice without fixed-sequence testing, measured for comparison."""
    candidates = np.unique(conf)
    kept = np.array([np.sum(conf >= t) for t in candidates])
    hits = np.array([np.sum(right[conf >= t]) for t in candidates])
    low, _ = wilson_many(hits, kept)
    passing = np.flatnonzero(low >= target)
    return float(candidates[passing[0]]) if passing.size else None


def threshold(ctx: Context) -> list[Figure]:
    """Case: does the threshold chosen on gold rows hold on the others? The same seeds with
    the naive choice (any threshold that passes) are reported beside it."""
    seeds = ctx.pick(1000, 100)
    tallies = {"fixed": [0, 0, []], "naive": [0, 0, []]}  # returned, held, coverage kept
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        frame = labelled(rng, "large", rng.integers(0, len(LABELS), size=ROWS))
        right = (frame["label"].astype(object) == frame["sentiment"]).to_numpy()
        conf = frame["confidence"].to_numpy()
        sample = np.zeros(ROWS, dtype=bool)
        sample[rng.choice(ROWS, THRESHOLD_GOLD, replace=False)] = True
        fixed, _ = Calibration.of(conf[sample], right[sample], resamples=100).choose_threshold(0.95)
        naive = naive_threshold(conf[sample], right[sample], 0.95)
        for name, chosen in (("fixed", fixed), ("naive", naive)):
            if chosen is None:
                continue
            tally = tallies[name]
            tally[0] += 1
            others = ~sample & (conf >= chosen)
            tally[1] += bool(others.any() and right[others].mean() >= 0.95)
            tally[2].append(float(np.mean(conf[~sample] >= chosen)))
    figures = []
    for name, (returned, held, kept) in tallies.items():
        figures.append(
            Figure(
                f"threshold_for(0.95) holds on the other rows ({name} choice)",
                held / returned if returned else None,
                at_least(0.9) if name == "fixed" else None,
                unit="share",
                note=(
                    f"returned in {returned / seeds:.0%} of {seeds} seeds; mean coverage kept "
                    f"{np.mean(kept) if kept else float('nan'):.0%}"
                ),
            )
        )
    return figures


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
