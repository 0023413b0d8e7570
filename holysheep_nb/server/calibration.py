"""The numbers behind a simulated model's chance of being right: seeded uniform and normal
draws, the row difficulty, and ``base``, solved so the model's accuracy on the sample is the
configured one.

Rows of a sample are independent draws of a text, so a model's accuracy on the sample is its
texts' correctness weighted by how often the generator writes them. ``base`` is estimated on
10,000 calibration rows (5 samples of 2,000, seeds 1000-1004): the frequent texts ("It does
the job.", seen 5 times or more) count with their realised answer, since they recur in every
sample and are right or wrong in all of them; the rare ones with their expected one (their
chance), since a new sample draws other rare texts. Solving takes about half a second the
first time a process needs a model (``is_calibrated`` / ``base``); a server does it off its
event loop (``app``).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import Counter
from functools import lru_cache
from statistics import NormalDist

from holysheep_nb.reviews import HARD_KINDS, generate
from holysheep_nb.server.models import SimModel

__all__ = ["base", "difficulty", "is_calibrated", "logit", "sigmoid", "uniform"]

_NORMAL = NormalDist()
_SHARED = math.sqrt(0.5)  # the part of a row's difficulty every model shares
_CALIBRATION_SAMPLES = 5
_CALIBRATION_ROWS = 2000 * _CALIBRATION_SAMPLES
_FREQUENT = 5  # a text seen this often in the calibration rows recurs in every sample
_BASES: dict[tuple[str, float, float, float, int], float] = {}
_LOCK = threading.Lock()


def uniform(*parts: object) -> float:
    """A uniform draw in (0, 1) fixed by ``parts`` (a hash: the same parts, the same draw)."""
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def sigmoid(x: float) -> float:
    """``1 / (1 + exp(-x))``: log-odds to a probability."""
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0


def logit(p: float) -> float:
    """A probability's log-odds (``p`` kept within 1e-12 of 0 and 1)."""
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def difficulty(name: str, seed: int, text: str) -> float:
    """The row's standard normal ``z``: half shared by every model, half model ``name``'s."""
    shared = _NORMAL.inv_cdf(uniform(seed, "row", text))
    return _SHARED * shared + _SHARED * _NORMAL.inv_cdf(uniform(seed, name, "row", text))


@lru_cache(maxsize=1)
def _calibration_texts() -> tuple[tuple[str, bool, int], ...]:
    """(text, hard, count) over the calibration rows."""
    counts = Counter(
        (review.text, review.kind in HARD_KINDS)
        for sample in range(_CALIBRATION_SAMPLES)
        for review in generate(_CALIBRATION_ROWS // _CALIBRATION_SAMPLES, 1000 + sample)
    )
    return tuple((text, hard, n) for (text, hard), n in counts.items())


def _key(model: SimModel, seed: int) -> tuple[str, float, float, float, int]:
    return (model.name, model.accuracy, model.discrimination, model.hard_penalty, seed)


def is_calibrated(model: SimModel, seed: int) -> bool:
    """Whether ``base(model, seed)`` is known (answers at once)."""
    return _key(model, seed) in _BASES


def base(model: SimModel, seed: int) -> float:
    """The log-odds of a row of average difficulty for which ``model``'s accuracy on the
    sample, asked plainly at temperature 0, is its ``accuracy`` (module docstring). Solved
    once per model and server seed; thread-safe."""
    key = _key(model, seed)
    with _LOCK:
        if key not in _BASES:
            _BASES[key] = _solve(model, seed)
        return _BASES[key]


def _solve(model: SimModel, seed: int) -> float:
    frequent: list[tuple[float, int]] = []  # (logit(u) - x, n): right when below base
    rare: list[tuple[float, int]] = []  # (x, n): right with chance sigmoid(base + x)
    for text, hard, n in _calibration_texts():
        x = model.discrimination * difficulty(model.name, seed, text)
        x -= model.hard_penalty * hard
        if n >= _FREQUENT:
            frequent.append((logit(uniform(seed, model.name, text, "", "u")) - x, n))
        else:
            rare.append((x, n))

    def accuracy(odds: float) -> float:
        right = sum(n for threshold, n in frequent if threshold < odds)
        return (right + sum(sigmoid(odds + x) * n for x, n in rare)) / _CALIBRATION_ROWS

    low, high = -20.0, 30.0
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if accuracy(middle) < model.accuracy else (low, middle)
    return (low + high) / 2
