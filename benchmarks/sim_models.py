"""The simulated models' statistics over many samples: are they what ``docs/server.md`` says?

    python benchmarks/sim_models.py               # 10 samples of 2,000 rows (about 2 minutes)
    python benchmarks/sim_models.py --seeds 3     # quicker

For each model and each sample ``load_reviews(2000, seed)``, asked as ``label()`` asks
(its system prompt, the three sentiments, temperature 0), by calling the simulation
directly (``simulate_label``: the draw the server makes). Printed per model, as the mean
over samples (min..max): accuracy, whether it lies in the 95% binomial interval of the
configured accuracy, expected calibration error (10 equal-width bins), mean confidence,
AUROC of confidence for correctness (scikit-learn), accuracy on sarcastic and mixed rows
without and with instructions that define them, accuracy with two few-shot examples that
share no word with the row and with the two nearest of a pool, and the agreement of two
temperature-1 samples (distinct texts) against the agreement independent draws predict.
No timing here: every figure is a statistic of the answers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binom
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from holysheep_nb.labels import LabelSet
from holysheep_nb.reviews import truth_of
from holysheep_nb.sample import load_reviews
from holysheep_nb.server.embeddings import bag_vector
from holysheep_nb.server.models import SIM_MODELS, SimModel
from holysheep_nb.server.simulate import simulate_label

LABELS = ["positive", "negative", "neutral"]
PLAIN = LabelSet(LABELS).system_prompt()
DEFINED = LabelSet(
    LABELS,
    instructions="Sarcasm counts as negative. A mixed review follows its overall verdict.",
).system_prompt()
FAR = [("Zebra quartz vortex.", "positive"), ("Xylophone jigsaw.", "neutral")]


def ece(right: np.ndarray, confidence: np.ndarray, bins: int = 10) -> float:
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return float(
        sum(
            abs(right[which == b].mean() - confidence[which == b].mean()) * (which == b).mean()
            for b in range(bins)
            if (which == b).any()
        )
    )


def one_sample(model: SimModel, seed: int) -> dict[str, float]:
    frame = load_reviews(2000, seed)
    texts, gold = frame["text"].tolist(), frame["sentiment"].astype(str).tolist()
    hard = np.array([truth_of(t).kind in ("mixed", "sarcastic") for t in texts])  # type: ignore[union-attr]
    plain = [simulate_label(model, t, system=PLAIN) for t in texts]
    right = np.array([d.label == g for d, g in zip(plain, gold, strict=True)])
    confidence = np.array([d.scores[0][1] for d in plain])
    defined = np.array(
        [
            simulate_label(model, t, system=DEFINED).label == g
            for t, g in zip(texts, gold, strict=True)
        ]
    )
    pool = load_reviews(300, seed + 5000)
    vectors = np.array([bag_vector(t) for t in pool["text"]])
    sample = list(zip(texts[:500], gold[:500], strict=True))
    far = np.mean(
        [simulate_label(model, t, system=PLAIN, examples=FAR).label == g for t, g in sample]
    )
    near = []
    for text, truth in sample:
        best = np.argsort(vectors @ np.array(bag_vector(text)))[::-1][:2]
        shots = [(pool["text"][i], str(pool["sentiment"][i])) for i in best]
        near.append(simulate_label(model, text, system=PLAIN, examples=shots).label == truth)
    distinct = frame.drop_duplicates("text")
    first = [simulate_label(model, t, system=PLAIN, draw="1:0") for t in distinct["text"]]
    second = [simulate_label(model, t, system=PLAIN, draw="2:0") for t in distinct["text"]]
    chance = np.array([d.chance for d in first])
    collide = {
        g: sum(w**2 for w in ws.values()) / sum(ws.values()) ** 2
        for g, ws in model.confusion.items()
    }
    same_wrong = np.array([collide[g] for g in distinct["sentiment"].astype(str)])
    low, high = binom.interval(0.95, len(texts), model.accuracy)
    return {
        "accuracy": right.mean(),
        "in 95% interval": float(low <= right.sum() <= high),
        "ECE": ece(right, confidence),
        "mean confidence": confidence.mean(),
        "AUROC": roc_auc_score(right, confidence),
        "hard rows, plain": right[hard].mean(),
        "hard rows, defined": defined[hard].mean(),
        "other rows, plain": right[~hard].mean(),
        "other rows, defined": defined[~hard].mean(),
        "500 rows, plain": right[:500].mean(),
        "500 rows, 2 far examples": far,
        "500 rows, 2 nearest examples": float(np.mean(near)),
        "T=1 agreement": np.mean([a.label == b.label for a, b in zip(first, second, strict=True)]),
        "T=1 agreement predicted": np.mean(chance**2 + (1 - chance) ** 2 * same_wrong),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="samples per model (default 10)")
    args = parser.parse_args()
    for model in SIM_MODELS:
        rows = [one_sample(model, seed) for seed in range(args.seeds)]
        print(f"\n{model.name}: configured accuracy {model.accuracy}, {model.calibration}")
        for name in rows[0]:
            values = np.array([row[name] for row in rows])
            print(f"  {name:<30} {values.mean():.3f}  ({values.min():.3f}..{values.max():.3f})")


if __name__ == "__main__":
    main()
