"""Issue 30's figures on the simulated models, through the local server end to end.

    python benchmarks/cascade.py                 # 3 seeds (about 5 minutes on a shared machine)
    python benchmarks/cascade.py --seeds 1       # quicker

- **Cascade.** ``load_reviews(5300, seed)``: 300 gold rows and 5,000 rows. ``sim-small``
  labels all with ``votes=5`` at temperature 1 (the vote share is the confidence; the
  ``cascade_logprobs`` case uses one answer's logprobs confidence at temperature 0
  instead); ``sim-large`` labels the 300 gold rows; ``cascade_threshold`` on them (within
  1 point of ``sim-large`` at 90% one-sided) gives ``below``; ``escalate(model="sim-large",
  below=...)`` on the 5,000 rows. Against ``sim-large`` on all 5,000 rows: accuracy
  difference (points) and cost ratio, from the same seed (cost from the reports, at the
  simulated prices). Both models answer plain labels (``structured=False``).
- **Votes.** ``votes=5`` on ``sim-small`` at temperature 1 on 2,000 distinct texts, and one
  sample on the same rows: accuracy of each; the accuracy independent errors predict from
  the one-sample accuracy p and the observed split of wrong answers between the two other
  labels (every sequence of 5 samples enumerated, the first sampled winning a tie); and the
  prompt tokens of the votes run over the one-sample run's. Two predictions: errors
  independent across rows and samples (one p for every row), and independent samples
  given the row (each row's own chance, ``Draw.chance`` of the simulation): the simulated
  rows differ in difficulty, so the second is the fair one.
- **Examples.** 1,000 rows, a pool of 300 gold rows overlapping 100 of them: for
  ``similar`` (the provider's embeddings), every row's examples are checked to be the k
  nearest by the same embedding and never the row; for ``balanced`` every label present.
  The time ``select="similar"`` adds per 1,000 rows: the wall of ``label`` with
  ``similar`` over ``fixed`` (same k, cache off), in turn, 3 rounds, and the time to choose
  the examples alone (embeddings, cached in a fresh file, and TF-IDF).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import holysheep_nb
from holysheep_nb.escalate import cascade_threshold
from holysheep_nb.labels import LabelSet
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import LocalServer
from holysheep_nb.server.embeddings import bag_vector
from holysheep_nb.server.models import SIM_MODELS
from holysheep_nb.server.simulate import simulate_label

LABELS = ["positive", "negative", "neutral"]
SMALL = (0.00015, 0.0006)
LARGE = (0.0015, 0.006)


def accuracy(out: pd.DataFrame) -> float:
    return float((out["label"].astype(str) == out["sentiment"].astype(str)).mean())


def cascade(server: LocalServer, seed: int, first_votes: int | None = 5) -> dict[str, Any]:
    reviews = load_reviews(5300, seed=seed)
    gold, rows = reviews.iloc[:300], reviews.iloc[300:].reset_index(drop=True)
    # Plain answers (structured=False: the bare label, a token or two) for both models.
    base: dict[str, Any] = dict(
        base_url=server.base_url, progress=False, cache=False, structured=False
    )
    sure: dict[str, Any] = dict(temperature=0, logprobs=True)
    # The first step: sim-small with votes at temperature 1 (the vote share is the
    # confidence), or (first_votes=None) one answer with its logprobs confidence.
    first: dict[str, Any] = dict(temperature=1, votes=first_votes) if first_votes else sure
    large_gold = gold.holysheep.label("text", labels=LABELS, model="sim-large", **base, **sure)
    small_gold = gold.holysheep.label("text", labels=LABELS, model="sim-small", **base, **first)
    below = cascade_threshold(small_gold, large_gold, "sentiment")
    small = rows.holysheep.label(
        "text", labels=LABELS, model="sim-small", prices=SMALL, **base, **first
    )
    large = rows.holysheep.label(
        "text", labels=LABELS, model="sim-large", prices=LARGE, **base, **sure
    )
    out = small.holysheep.escalate(
        model="sim-large", below=min(below, 1.0), prices=LARGE, **sure, votes=None
    )
    report = out.holysheep.report()
    return {
        "seed": seed,
        "first": f"votes={first_votes}" if first_votes else "logprobs",
        "target": accuracy(large_gold),
        "below": below,
        "escalated": report.escalated / len(out),
        "small": accuracy(small),
        "large": accuracy(large),
        "cascade": accuracy(out),
        "points_below_large": 100 * (accuracy(large) - accuracy(out)),
        "cost_ratio": (report.cost or 0) / (large.holysheep.report().cost or 1),
    }


def predicted_votes(p: Any, split: float, k: int = 5) -> Any:
    """P(the plurality of k independent samples is right), for each chance in ``p``: right
    with p, else the first other label with ``split`` and the second with 1 - split; a tie
    goes to the label sampled first among the tied (as ``votes=`` keeps it)."""
    p = np.asarray(p, dtype=float)
    total = np.zeros_like(p)
    for sequence in itertools.product(range(3), repeat=k):
        counts = np.bincount(sequence, minlength=3)
        top = counts.max()
        if next(s for s in sequence if counts[s] == top) != 0:
            continue
        wrong = (1 - p) ** (counts[1] + counts[2])
        total += p ** counts[0] * wrong * split ** counts[1] * (1 - split) ** counts[2]
    return total


def votes(server: LocalServer, seed: int) -> dict[str, Any]:
    reviews = load_reviews(6000, seed=seed).drop_duplicates("text").head(2000)
    options: dict[str, Any] = dict(
        base_url=server.base_url, model="sim-small", progress=False, cache=False
    )
    one = reviews.holysheep.label("text", labels=LABELS, temperature=1, **options)
    five = reviews.holysheep.label("text", labels=LABELS, temperature=1, votes=5, **options)
    p = accuracy(one)
    wrong = one[one["label"].astype(str) != one["sentiment"].astype(str)]
    # The split of wrong answers: for each gold label, the share of its wrong answers that
    # went to the first other label, weighted by rows.
    splits = []
    for gold, part in wrong.groupby(wrong["sentiment"].astype(str)):
        others = [label for label in LABELS if label != gold]
        splits.append(((part["label"].astype(str) == others[0]).mean(), len(part)))
    split = sum(s * n for s, n in splits) / max(1, sum(n for _, n in splits))
    # Each row's own chance of a right sample (the simulation's ``Draw.chance`` for the very
    # prompt label() sends): independent samples given the row.
    small = next(model for model in SIM_MODELS if model.name == "sim-small")
    system = LabelSet(LABELS).system_prompt()
    chances = [simulate_label(small, text, system=system).chance for text in reviews["text"]]
    return {
        "seed": seed,
        "one": p,
        "five": accuracy(five),
        "predicted_iid": float(predicted_votes(p, split)),
        "predicted_per_row": float(np.mean(predicted_votes(chances, split))),
        "prompt_ratio": five.holysheep.report().prompt_tokens
        / max(1, one.holysheep.report().prompt_tokens),
        "samples": five.holysheep.report().samples,
    }


def examples(server: LocalServer, seed: int) -> dict[str, Any]:
    reviews = load_reviews(1300, seed=seed).drop_duplicates("text")
    rows = reviews.head(1000)
    pool = reviews.iloc[900:1200].rename(columns={"sentiment": "label"})[["text", "label"]]
    pool["label"] = pool["label"].astype(str)
    vectors = np.array([bag_vector(text) for text in pool["text"]])
    base: dict[str, Any] = dict(
        base_url=server.base_url, model="sim-small", temperature=0, progress=False
    )
    from holysheep_nb.namespace import label_call

    call = label_call("text", LABELS, None, False, True, None)
    wrong = leaked = unbalanced = 0
    with tempfile.TemporaryDirectory() as folder:
        cache = f"{folder}/c.sqlite"
        started = time.perf_counter()
        job = holysheep_nb.runner.run_sync(
            lambda: rows.holysheep._ajob(
                call,
                {**base, "cache": cache, "examples": pool, "k": 4, "select": "similar",
                 "embedding_model": "e"},
            )
        )  # fmt: skip
        choose_embeddings = time.perf_counter() - started
        started = time.perf_counter()
        rows.holysheep._job(call, {**base, "examples": pool, "k": 4, "select": "similar"})
        choose_tfidf = time.perf_counter() - started
    for text in rows["text"]:
        sent = [m["content"] for m in job.options.messages(text)[1:-1:2]]
        leaked += text in sent
        scores = dict(zip(pool["text"], vectors @ np.array(bag_vector(text)), strict=True))
        best = sorted((scores[t] for t in scores if t != text), reverse=True)[:4]
        wrong += not np.allclose(sorted((scores[t] for t in sent), reverse=True), best, atol=1e-6)
    balanced = rows.holysheep._job(call, {**base, "examples": pool, "select": "balanced"})
    for text in rows["text"]:
        answers = {m["content"] for m in balanced.options.messages(text)[2:-1:2]}
        unbalanced += len(answers) != len(LABELS)
    walls: dict[str, list[float]] = {"fixed": [], "similar": []}
    accuracies: dict[str, float] = {}
    for _ in range(3):
        for select in ("fixed", "similar"):
            started = time.perf_counter()
            out = rows.holysheep.label(
                "text", labels=LABELS, cache=False, examples=pool, k=4, select=select, **base
            )
            walls[select].append(time.perf_counter() - started)
            accuracies[select] = accuracy(out)
    return {
        "seed": seed,
        "rows": len(rows),
        "wrong": wrong,
        "leaked": leaked,
        "unbalanced": unbalanced,
        "choose_embeddings_s": choose_embeddings,
        "choose_tfidf_s": choose_tfidf,
        "wall_ratio": float(np.median(walls["similar"]) / np.median(walls["fixed"])),
        "extra_s_per_1000": float(np.median(walls["similar"]) - np.median(walls["fixed"]))
        * 1000
        / len(rows),
        "accuracy_fixed": accuracies["fixed"],
        "accuracy_similar": accuracies["similar"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", choices=("cascade", "cascade_logprobs", "votes", "examples"))
    args = parser.parse_args()
    cases = {
        "cascade": cascade,
        "cascade_logprobs": lambda server, seed: cascade(server, seed, None),
        "votes": votes,
        "examples": examples,
    }
    with LocalServer() as server:
        for name, case in cases.items():
            if args.only and name != args.only:
                continue
            results = [case(server, seed) for seed in range(args.seeds)]
            print(f"== {name}")
            frame = pd.DataFrame(results)
            print(frame.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
            print("mean:", frame.drop(columns="seed").mean(numeric_only=True).round(4).to_dict())


if __name__ == "__main__":
    main()
