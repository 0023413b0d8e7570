"""Deterministic sample data for the demo, notebooks and benchmarks: product reviews.

Generated from templates in code (no data file, no download, ``holysheep_nb.reviews``), so
``load_reviews(n, seed)`` is the same frame on every machine. A handful of reviews are in
Thai or Japanese or carry emoji, to show that Unicode round-trips. Each row carries its gold
labels (``sentiment``, ``aspect``; ``product`` and ``rating`` are gold for extracted product
and stars), which the local server's simulated models know too (``docs/server.md``).
"""

from __future__ import annotations

import pandas as pd

from holysheep_nb.errors import ConfigError
from holysheep_nb.reviews import SENTIMENTS, generate

__all__ = ["load_reviews"]


def load_reviews(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """``n`` product reviews with columns ``id``, ``product``, ``text``, ``rating`` (1-5),
    ``sentiment`` and ``aspect``.

    ``sentiment`` (a category of positive / negative / neutral) is the truth a careful human
    would give: sarcastic reviews are negative, mixed ones follow their closing verdict.
    ``rating`` follows from the words (the stars a reader would give), ``aspect`` is the
    aspect of the product the text names (missing when it names none), and ``product`` is
    the product reviewed (about two texts in five name it). The same ``(n, seed)`` always
    gives the same frame, and a longer frame starts with the shorter one.
    """
    if not isinstance(n, int) or n < 0:
        raise ConfigError(f"n must be a whole number of rows >= 0, got {n!r}")
    reviews = generate(n, seed)
    # Annotated: pandas-stubs types this constructor as Any when mypy targets Python 3.10.
    frame: pd.DataFrame = pd.DataFrame(
        {
            "id": pd.Series(range(1, n + 1), dtype="int64"),
            "product": pd.Series([r.product for r in reviews], dtype="str"),
            "text": pd.Series([r.text for r in reviews], dtype="str"),
            "rating": pd.Series([r.stars for r in reviews], dtype="int64"),
            "sentiment": pd.Categorical(
                [r.sentiment for r in reviews], categories=list(SENTIMENTS)
            ),
            "aspect": pd.Series([r.aspect for r in reviews], dtype="object"),
        }
    )
    return frame
