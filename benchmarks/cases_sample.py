"""Case 13: how long the demo's sample reviews take to make (``holysheep_nb.sample``).

``load_reviews(3000)`` is what the demo and the docs' examples call first, in the user's
process, before anything is sent; the best of a few runs is compared with a bar of 200 ms,
and with building a frame of the same shape from ready lists (pandas' own share of it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
from harness import Context, Figure, at_most

from holysheep_nb.sample import load_reviews

ROWS = 3_000
#: Milliseconds: the bar the sample must stay under to feel instant in a notebook cell.
MAX_MS = 200.0


def sample_reviews(ctx: Context) -> list[Figure]:
    """Case 13: best wall time of ``load_reviews(3000)``, and its ratio to pandas alone."""
    runs = ctx.pick(7, 3)
    made = min(_timed(lambda: load_reviews(ROWS)) for _ in range(runs))
    frame = load_reviews(ROWS)
    columns = {name: frame[name].tolist() for name in frame.columns}
    pandas_only = min(_timed(lambda: pd.DataFrame(columns)) for _ in range(runs))
    ctx.details.update(runs=runs, load_reviews_ms=made * 1e3, pandas_only_ms=pandas_only * 1e3)
    return [
        Figure(f"load_reviews({ROWS:,}), best of {runs}", made * 1e3, at_most(MAX_MS), unit="ms"),
        Figure(
            "load_reviews / pandas frame of the same lists",
            made / pandas_only,
            note=f"pandas alone {pandas_only * 1e3:.1f} ms",
        ),
    ]


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started
