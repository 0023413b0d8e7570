"""Case 10: the Dask path (``holysheep_nb.dask``) on a LocalCluster of worker processes.

- Provider-limit utilisation: the server enforces 1,200 rpm over a sliding window and answers
  429 beyond it; 1, 2 and 4 workers (one thread each) share it, (a) told
  ``requests_per_minute=1200`` (achieved rate from the server's arrival times over the
  allowed rate, and the share of 429s: none expected), (b) not told (rows / wall over the
  allowed rate, as case 8, and the share of 429s), full run only.
- Overhead: the same rows through ``ddf.holysheep.complete`` on 2 workers and through the
  pandas path in this process, in turn, a few rounds; median wall time ratio.
- The shared limit's round trip: one ``admit`` from a worker to the scheduler and back,
  median over a few hundred sequential asks.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import cloudpickle
import dask.dataframe as dd
import pandas as pd
from analysis import median
from harness import (
    MODEL,
    PROMPT_COLUMN,
    SYSTEM,
    Context,
    Figure,
    Sample,
    alternate,
    at_least,
    at_most,
    check_frame,
    complete,
    frame,
    measure,
    prompts,
    server,
)

import holysheep_nb.dask  # noqa: F401 - registers ddf.holysheep
from holysheep_nb.server import Latency, ServerProcess

RPM = 1_200
CONCURRENCY = 16

# The round-trip probe below runs on a worker, which cannot import this file by name.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@contextmanager
def cluster(workers: int) -> Iterator[Any]:
    """A LocalCluster of ``workers`` processes with one thread each, and its client."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            worker_dashboard_address=None,
        ) as local,
        Client(local) as client,
    ):
        yield client


def dask_complete(
    df: pd.DataFrame, process: ServerProcess, partitions: int, **options: Any
) -> pd.DataFrame:
    """``ddf.holysheep.complete`` on ``df`` split in ``partitions``, computed."""
    ddf = dd.from_pandas(df, npartitions=partitions)
    out = ddf.holysheep.complete(
        PROMPT_COLUMN, model=MODEL, system=SYSTEM, base_url=process.base_url, **options
    )
    result: pd.DataFrame = out.compute()
    result[PROMPT_COLUMN] = result[PROMPT_COLUMN].astype(object)  # Dask's string dtype
    return result


def _utilisation(workers: int, seconds: float, window: float, told: bool) -> dict[str, Any]:
    """One run against the server's limit on the current cluster of ``workers``."""
    rate = RPM / 60.0
    df = frame(prompts(int(rate * seconds), f"{workers}w "))
    limit = {"requests_per_minute": RPM} if told else {}
    with server(rpm=RPM, limit_window=window, record_times=True) as process:
        out, sample = measure(
            len(df),
            lambda: dask_complete(
                df, process, 2 * workers, max_concurrent=CONCURRENCY, cache=False, **limit
            ),
        )
        stats = process.stats()
    check_frame(out, df, f"dask, {workers} workers, {'told' if told else 'not told'}")
    times = sorted(stats["times"])
    limited = int(stats["by_status"].get("429", 0))
    return {
        "rows": len(df),
        "wall_s": round(sample.wall, 3),
        "requests": stats["requests"],
        "answered_429": limited,
        "share_429": limited / stats["requests"],
        "paced_per_s": (len(times) - 1) / (times[-1] - times[0]),
        "rows_per_s": len(df) / sample.wall,
    }


def _round_trip(sends: int) -> list[float]:
    """Runs on a worker: seconds of each of ``sends`` sequential asks to the scheduler."""
    from distributed import get_worker

    from holysheep_nb.dask.limits import LimitConfig
    from holysheep_nb.dask.worker import ClusterLimit

    limit = ClusterLimit(get_worker(), f"round-trip-{time.time_ns()}", 0)
    limit.begin(LimitConfig(max_concurrent=sends).to_dict(), 0)

    async def ask() -> list[float]:
        took = []
        for _ in range(sends):
            started = time.perf_counter()
            await limit.admit(0)
            took.append(time.perf_counter() - started)
            limit.release()
        return took

    try:
        return asyncio.run(ask())
    finally:
        limit.finish(None)


def _overhead(ctx: Context, client: Any) -> tuple[list[Figure], dict[str, Any]]:
    """The Dask path against the pandas path on the same rows, on a 2-worker ``client``."""
    rows, rounds = ctx.pick((2_000, 3), (200, 1))
    df = frame(prompts(rows, "overhead "))
    options = {"max_concurrent": CONCURRENCY, "cache": False, "progress": False}
    with server(latency=Latency.fixed(0.02)) as process:
        check_frame(dask_complete(df, process, 4, **options), df, "dask warm-up")

        def pandas_run() -> Sample:
            out, sample = measure(rows, lambda: complete(df, process, **options))
            check_frame(out, df, "pandas path")
            return sample

        def dask_run() -> Sample:
            out, sample = measure(rows, lambda: dask_complete(df, process, 4, **options))
            check_frame(out, df, "dask path")
            return sample

        runs: dict[str, Callable[[], Sample]] = {"pandas": pandas_run, "dask": dask_run}
        samples = alternate(rounds, runs)
        trips = client.submit(_round_trip, ctx.pick(500, 100), pure=False).result()
    pandas_wall = median([s.wall for s in samples["pandas"]])
    dask_wall = median([s.wall for s in samples["dask"]])
    trip = median(trips)
    p90 = sorted(trips)[int(0.9 * len(trips))]
    figures = [
        Figure(
            "dask: wall vs the pandas path, same rows",
            dask_wall / pandas_wall,
            note=f"{rows:,} rows, 20 ms latency, C={CONCURRENCY}, 2 workers, 4 partitions",
        ),
        Figure(
            "dask: shared limit round trip (admit)",
            trip * 1000,
            unit="ms",
            note=f"median of {len(trips)} sequential asks; p90 {p90 * 1000:.2f} ms",
        ),
    ]
    details = {
        "pandas_wall_s": [round(s.wall, 3) for s in samples["pandas"]],
        "dask_wall_s": [round(s.wall, 3) for s in samples["dask"]],
        "round_trip_ms_median": round(trip * 1000, 3),
    }
    return figures, details


def dask_path(ctx: Context) -> list[Figure]:
    """Case 10: provider-limit utilisation with 1, 2 and 4 workers (2 with ``--quick``, and
    told the limit only), and the Dask path's overhead on 2 workers."""
    seconds, window = ctx.pick((20, 10.0), (2, 4.0))
    figures: list[Figure] = []
    overhead: list[Figure] = []
    for workers in ctx.pick((1, 2, 4), (2,)):
        with cluster(workers) as client:
            figures += _limit_figures(ctx, workers, seconds, window)
            if workers == 2:
                overhead, details = _overhead(ctx, client)
                ctx.details.update(details)
    return figures + overhead


def _limit_figures(ctx: Context, workers: int, seconds: float, window: float) -> list[Figure]:
    rate = RPM / 60.0
    told = _utilisation(workers, seconds, window, told=True)
    ctx.details[f"told_{workers}_workers"] = told
    figures = [
        Figure(
            f"dask {workers}w, told: paced rate / allowed",
            told["paced_per_s"] / rate,
            at_least(0.97),
            note=f"{told['rows']} rows in {told['wall_s']:.1f} s",
        ),
        Figure(
            f"dask {workers}w, told: share answered 429",
            told["share_429"],
            at_most(0.0),
            unit="",
            note=f"{told['answered_429']} of {told['requests']} requests",
        ),
    ]
    if ctx.quick:
        return figures
    untold = _utilisation(workers, 30, window, told=False)
    ctx.details[f"not_told_{workers}_workers"] = untold
    return [
        *figures,
        Figure(
            f"dask {workers}w, not told: achieved / allowed",
            untold["rows_per_s"] / rate,
            at_least(0.9),
            note=f"{untold['rows']} rows in {untold['wall_s']:.1f} s",
        ),
        Figure(
            f"dask {workers}w, not told: share answered 429",
            untold["share_429"],
            at_most(0.02),
            unit="",
            note=f"{untold['answered_429']} of {untold['requests']} requests",
        ),
    ]
