"""Case 9: ``extract()`` against ``complete()`` on the same rows, same server, same run.

The server echoes each prompt, and each prompt is a JSON review, so ``extract()`` gets JSON
that fits its schema on every row and pays for everything it adds to ``complete()``: the
longer request (system prompt and strict ``response_format``), finding and validating the
JSON in strict mode, and building the typed columns. A third contender, ``complete()``
sending exactly ``extract()``'s request, separates the two: what the bigger request costs
(mostly the server's, on a shared machine) from what reading the answers costs the client.
All run in turn, seven rounds each (one round of 1,000 rows with --quick), with the progress
bar drawn and the cache off; the medians are compared.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any, Literal

import pandas as pd
from analysis import median
from harness import (
    MODEL,
    PROMPT_COLUMN,
    Context,
    CountingSink,
    Figure,
    RowCheckError,
    Sample,
    alternate,
    at_least,
    check_frame,
    complete,
    frame,
    measure,
    server,
    summary,
    warm_up,
)
from pydantic import BaseModel

from holysheep_nb.extract import ExtractFormat
from holysheep_nb.schema import Schema
from holysheep_nb.server import ServerProcess

CONCURRENCY = 64
_SENTIMENTS = ("positive", "negative", "neutral")


class Review(BaseModel):
    """The schema extracted from every row."""

    product: str
    stars: int | None
    sentiment: Literal["positive", "negative", "neutral"]
    reasons: list[str]


def reviews(rows: int) -> list[str]:
    """Unique JSON reviews that fit ``Review`` (an answer given to the wrong row is noticed)."""
    return [
        json.dumps(
            {
                "product": f"kettle {i}",
                "stars": None if i % 7 == 0 else i % 5 + 1,
                "sentiment": _SENTIMENTS[i % 3],
                "reasons": ["boils fast", "quiet"][: i % 3],
            }
        )
        for i in range(rows)
    ]


def drawn(call: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """``call()`` with its progress bar drawn to a sink (and checked to be drawn)."""
    sink = CountingSink()
    with contextlib.redirect_stderr(sink):
        out = call()
    if sink.writes == 0:
        raise RuntimeError("progress=True but the progress bar drew nothing")
    return out


def extract(df: pd.DataFrame, process: ServerProcess, **options: Any) -> pd.DataFrame:
    """``df.holysheep.extract`` against ``process``, as a user would call it."""
    return drawn(
        lambda: df.holysheep.extract(
            PROMPT_COLUMN, schema=Review, model=MODEL, base_url=process.base_url, **options
        )
    )


def complete_as_extract(df: pd.DataFrame, process: ServerProcess, **options: Any) -> pd.DataFrame:
    """``df.holysheep.complete`` sending exactly the request ``extract`` sends."""
    request = ExtractFormat(Schema.of(Review)).request_options(options)
    return drawn(
        lambda: df.holysheep.complete(
            PROMPT_COLUMN, model=MODEL, base_url=process.base_url, **request
        )
    )


def check_extracted(out: pd.DataFrame, source: pd.DataFrame) -> None:
    """Every row answered with its own review, each field in its column, no error."""
    check_frame(out, source, "extract()")
    expected = [json.loads(text) for text in source[PROMPT_COLUMN]]
    for field in Review.model_fields:
        got = out[field].astype(object).where(out[field].notna(), None).tolist()
        if got != [row[field] for row in expected]:
            raise RowCheckError(f"extract(): the {field!r} column does not hold the answers")


def _run(
    df: pd.DataFrame, call: Callable[[], pd.DataFrame], check: Callable[[pd.DataFrame], None]
) -> Callable[[], Sample]:
    def run() -> Sample:
        out, sample = measure(len(df), call)
        check(out)
        return sample

    return run


def extract_vs_complete(ctx: Context) -> list[Figure]:
    """Case 9: ``extract()`` rows/s and client CPU per row against ``complete()``."""
    rows, rounds = ctx.pick((10_000, 7), (1_000, 1))
    df = frame(reviews(rows))
    options: dict[str, Any] = {"max_concurrent": CONCURRENCY, "cache": False}
    with server() as process:
        warm_up(process)
        samples = alternate(
            rounds,
            {
                "complete": _run(
                    df,
                    lambda: complete(df, process, **options),
                    lambda out: check_frame(out, df, "complete()"),
                ),
                "complete_same_request": _run(
                    df,
                    lambda: complete_as_extract(df, process, **options),
                    lambda out: check_frame(out, df, "complete(extract's request)"),
                ),
                "extract": _run(
                    df,
                    lambda: extract(df, process, **options),
                    lambda out: check_extracted(out, df),
                ),
            },
        )
    done = samples["extract"]
    ctx.details.update(
        rows=rows,
        rounds=rounds,
        concurrency=CONCURRENCY,
        **{name: summary(s) for name, s in samples.items()},
    )

    def ratio(base: str, key: Callable[[Sample], float]) -> float:
        return median([key(s) for s in done]) / median([key(s) for s in samples[base]])

    def rows_per_second(sample: Sample) -> float:
        return sample.rows_per_second

    def cpu_per_row(sample: Sample) -> float:
        return sample.cpu_per_row

    cpu = f"{median([s.cpu_per_row for s in done]) * 1e6:.0f} us/row"
    return [
        Figure(
            "extract() throughput vs complete()",
            ratio("complete", rows_per_second),
            at_least(0.9),
            note=f"{median([s.rows_per_second for s in done]):,.0f} rows/s, a 4-field schema",
        ),
        Figure(
            "extract() throughput vs complete() sending the same request",
            ratio("complete_same_request", rows_per_second),
            at_least(0.9),
            note="the cost of reading answers alone",
        ),
        Figure(
            "extract() client CPU per row vs complete()",
            ratio("complete", cpu_per_row),
            note=f"{cpu}, reported only",
        ),
        Figure(
            "extract() client CPU per row vs the same request",
            ratio("complete_same_request", cpu_per_row),
            note="reported only",
        ),
    ]
