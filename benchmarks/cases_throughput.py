"""Cases 1 and 2, and the OpenAI SDK reference: zero-latency throughput and client CPU.

With no latency the server answers as fast as it can, so the run is bound by CPU: the
server's (its own process) and the client's. Case 1 runs its two contenders in pairs and
takes the median of the pairs' ratios, with a confidence interval; the others run each
contender in turn, a few rounds, and compare the medians. The client's CPU time
(``time.process_time``: every thread of this process) per row shows the client's own cost
even when the server is what limits throughput.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from analysis import median, median_interval
from baseline import openai_available, openai_sdk, preload_openai, raw_aiohttp
from floor import contract_floor
from harness import (
    Context,
    Figure,
    Sample,
    alternate,
    at_least,
    at_most,
    check_answers,
    check_frame,
    complete,
    frame,
    measure,
    paired,
    prompts,
    server,
    summary,
    warm_up,
)

from holysheep_nb.server import ServerProcess

CONCURRENCY = 64


def _product_run(
    process: ServerProcess, df: pd.DataFrame, label: str, **options: object
) -> Callable[[], Sample]:
    def run() -> Sample:
        out, sample = measure(
            len(df),
            lambda: complete(df, process, max_concurrent=CONCURRENCY, **options),
        )
        check_frame(out, df, label)
        return sample

    return run


def _baseline_run(
    process: ServerProcess,
    texts: list[str],
    label: str,
    client: Callable[[str, list[str], int], list[str]] = raw_aiohttp,
) -> Callable[[], Sample]:
    def run() -> Sample:
        answers, sample = measure(len(texts), lambda: client(process.base_url, texts, CONCURRENCY))
        check_answers(answers, texts, label)
        return sample

    return run


def _ratio(top: list[Sample], bottom: list[Sample], key: Callable[[Sample], float]) -> float:
    return median([key(s) for s in top]) / median([key(s) for s in bottom])


def throughput(ctx: Context) -> list[Figure]:
    """Case 1: ``complete()`` (progress on, cache off) against raw aiohttp, same server.

    The two run in pairs, back to back, the order swapped every pair (``harness.paired``);
    each figure is the median of the pairs' ratios with its 95% confidence interval
    (``analysis.median_interval``). Judge parity by the interval: one that holds 1.0 has
    not told the two apart.
    """
    rows, pairs = ctx.pick((4_000, 30), (1_000, 6))
    texts = prompts(rows)
    df = frame(texts)
    with server() as process:
        warm_up(process)
        samples = paired(
            pairs,
            _baseline_run(process, texts, "raw aiohttp"),
            _product_run(process, df, "complete()", cache=False),
        )
    base = [b for b, _ in samples]
    product = [p for _, p in samples]
    speed = median_interval([p.rows_per_second / b.rows_per_second for b, p in samples])
    cpu = median_interval([p.cpu_per_row / b.cpu_per_row for b, p in samples])
    ctx.details.update(
        rows=rows,
        pairs=pairs,
        concurrency=CONCURRENCY,
        throughput_ratio=asdict(speed),
        cpu_ratio=asdict(cpu),
        raw_aiohttp=summary(base),
        holysheep=summary(product),
    )
    per_second = median([s.rows_per_second for s in product])
    return [
        Figure(
            "throughput vs raw aiohttp",
            speed.median,
            at_least(0.95),
            note=f"{speed}, {pairs} pairs; {per_second:,.0f} rows/s",
        ),
        Figure(
            "client CPU per row vs raw aiohttp",
            cpu.median,
            at_most(1.1),
            note=f"{cpu}; {median([s.cpu_per_row for s in product]) * 1e6:.0f} us/row",
        ),
    ]


def _floor_run(process: ServerProcess, df: pd.DataFrame) -> Callable[[], Sample]:
    def run() -> Sample:
        out, sample = measure(len(df), lambda: contract_floor(process.base_url, df, CONCURRENCY))
        check_frame(out, df, "contract floor")
        return sample

    return run


def floor(ctx: Context) -> list[Figure]:
    """Case 1 split in two: the contract's floor (``floor.contract_floor``) against raw
    aiohttp, and ``complete()`` against the floor, each in pairs as case 1 (reported only).

    The first ratio is what the product's duties to each row cost; the second, what the way
    the product is built costs on top of them.
    """
    rows, pairs = ctx.pick((4_000, 20), (1_000, 6))
    texts = prompts(rows)
    df = frame(texts)
    with server() as process:
        warm_up(process)
        raw = _baseline_run(process, texts, "raw aiohttp")
        least = _floor_run(process, df)
        product = _product_run(process, df, "complete()", cache=False, progress=False)
        duties = paired(pairs, raw, least)
        build = paired(pairs, least, product)
    figures: list[Figure] = []
    named = (("contract floor vs raw aiohttp", duties), ("complete() vs the floor", build))
    for name, series in named:
        cpu = median_interval([b.cpu_per_row / a.cpu_per_row for a, b in series])
        ctx.details[name] = {
            "cpu_ratio": asdict(cpu),
            "first": summary([a for a, _ in series]),
            "second": summary([b for _, b in series]),
        }
        figures.append(Figure(f"{name}: CPU per row", cpu.median, note=f"{cpu}, {pairs} pairs"))
    return figures


def _fresh_cache_run(
    process: ServerProcess, df: pd.DataFrame, folder: Path
) -> Callable[[], Sample]:
    """A run with the cache on, each time in a new file: every row a miss, then stored."""
    files = (folder / f"cache-{i}.sqlite" for i in itertools.count())

    def run() -> Sample:
        return _product_run(process, df, "complete(cache=path)", cache=str(next(files)))()

    return run


def cache(ctx: Context) -> list[Figure]:
    """Case 2: the same run with the cache on (a fresh file each time) against cache off."""
    rows, rounds = ctx.pick((20_000, 5), (2_000, 2))
    df = frame(prompts(rows))
    with tempfile.TemporaryDirectory(prefix="holysheep-bench-") as folder, server() as process:
        warm_up(process)
        samples = alternate(
            rounds,
            {
                "cache_off": _product_run(process, df, "complete(cache=False)", cache=False),
                "cache_on": _fresh_cache_run(process, df, Path(folder)),
            },
        )
    ctx.details.update(
        rows=rows, rounds=rounds, **{name: summary(s) for name, s in samples.items()}
    )
    return [
        Figure(
            "throughput, cache on vs off",
            _ratio(samples["cache_on"], samples["cache_off"], lambda s: s.rows_per_second),
            at_least(0.85),
            note="fresh cache file per run: every row a miss, then stored",
        ),
        Figure(
            "client CPU per row, cache on vs off",
            _ratio(samples["cache_on"], samples["cache_off"], lambda s: s.cpu_per_row),
            note="reported only",
        ),
    ]


def openai_reference(ctx: Context) -> list[Figure]:
    """Reference: case 1's workload through ``AsyncOpenAI`` + a semaphore, vs raw aiohttp."""
    if not openai_available():
        ctx.details["skipped"] = "openai is not installed (pip install openai to include it)"
        return [Figure("AsyncOpenAI throughput vs raw aiohttp", None, note="skipped: no openai")]
    rows, rounds = ctx.pick((20_000, 3), (300, 1))
    texts = prompts(rows)
    preload_openai()
    with server() as process:
        warm_up(process)
        samples = alternate(
            rounds,
            {
                "raw_aiohttp": _baseline_run(process, texts, "raw aiohttp"),
                "openai": _baseline_run(process, texts, "AsyncOpenAI", openai_sdk),
            },
        )
    ctx.details.update(
        rows=rows, rounds=rounds, **{name: summary(s) for name, s in samples.items()}
    )
    base, sdk = samples["raw_aiohttp"], samples["openai"]
    return [
        Figure(
            "AsyncOpenAI throughput vs raw aiohttp",
            _ratio(sdk, base, lambda s: s.rows_per_second),
            note=f"reference; {median([s.rows_per_second for s in sdk]):,.0f} rows/s",
        ),
        Figure(
            "AsyncOpenAI CPU per row vs raw aiohttp",
            _ratio(sdk, base, lambda s: s.cpu_per_row),
            note="reference",
        ),
    ]
