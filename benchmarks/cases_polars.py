"""The polars case: case 1's zero-latency run on a polars frame against the same run on a
pandas frame, in turn, same server, same rows (issue 32: within 10% of pandas).

Only the frame adapter differs between the two (``holysheep_nb.frames``): the rows are read
a chunk at a time and the result frame is built once at the end, so the ratio shows what
the polars adapter costs on top of the shared run.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
from analysis import median
from harness import (
    PROMPT_COLUMN,
    Context,
    Figure,
    Sample,
    alternate,
    at_least,
    check_answers,
    check_frame,
    complete,
    frame,
    measure,
    prompts,
    server,
    summary,
    warm_up,
)

from holysheep_nb.server import ServerProcess

CONCURRENCY = 64


def _run(process: ServerProcess, df: object, texts: list[str]) -> Callable[[], Sample]:
    def run() -> Sample:
        out, sample = measure(
            len(texts),
            lambda: complete(df, process, max_concurrent=CONCURRENCY, cache=False),  # type: ignore[arg-type]
        )
        if isinstance(out, pl.DataFrame):
            if out["error"].null_count() != len(texts):
                raise RuntimeError("polars: rows failed")
            check_answers(out["response"].to_list(), texts, "polars complete()")
        else:
            check_frame(out, df, "pandas complete()")  # type: ignore[arg-type]
        return sample

    return run


def polars_vs_pandas(ctx: Context) -> list[Figure]:
    """``complete()`` (progress on, cache off) on a polars frame vs on a pandas frame."""
    rows, rounds = ctx.pick((20_000, 5), (2_000, 2))
    texts = prompts(rows)
    on_pandas = frame(texts)
    on_polars = pl.DataFrame({PROMPT_COLUMN: texts})
    with server() as process:
        warm_up(process)
        samples = alternate(
            rounds,
            {
                "pandas": _run(process, on_pandas, texts),
                "polars": _run(process, on_polars, texts),
            },
        )
    ctx.details.update(
        rows=rows, rounds=rounds, **{name: summary(s) for name, s in samples.items()}
    )
    pandas, polars = samples["pandas"], samples["polars"]
    ratio = median([s.rows_per_second for s in polars]) / median(
        [s.rows_per_second for s in pandas]
    )
    cpu = median([s.cpu_per_row for s in polars]) / median([s.cpu_per_row for s in pandas])
    return [
        Figure(
            "throughput, polars frame vs pandas frame",
            ratio,
            at_least(0.9),
            note=f"{median([s.rows_per_second for s in polars]):,.0f} rows/s on polars",
        ),
        Figure("client CPU per row, polars vs pandas", cpu, note="reported only"),
    ]
