"""Two measures behind docs/performance.md's account of client CPU in the throughput case.

1. ``coupling``: the server's CPU per row, and the client's, for raw aiohttp, the contract's
   floor (``floor.py``) and ``complete()``, one after another against one server, ``--rounds``
   times (the order reversed every other round). Every request is the same to the server;
   what differs is how fast the client sends, hence how many requests each turn of the
   server's event loop reads. The server's CPU is read from ``/proc/<pid>/stat`` (Linux).
2. ``tasks``: ``complete()`` on asyncio's C tasks and futures against the pure-Python ones
   that nest_asyncio2 installs on Python 3.11-3.13 (a synchronous call inside a notebook's
   running loop), in pairs as case 1 of ``run.py``: the median of the pairs' ratios of
   client CPU and of throughput, with 95% confidence intervals.
3. ``sensitivity``: the floor with ``--spin`` microseconds of pure-Python work added to each
   answer, against the floor, in pairs: how much client CPU a row's own microsecond costs
   in this case (one, if the coupling above does not amplify it). It tells how much of the
   product's own work per row must go to close a given distance from raw aiohttp.

    python benchmarks/coupling.py [--rows 4000] [--rounds 10] [--pairs 20] [--spin 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from analysis import median_interval
from baseline import raw_aiohttp
from floor import contract_floor
from harness import (
    Sample,
    check_answers,
    check_frame,
    complete,
    frame,
    measure,
    paired,
    prompts,
    server,
    warm_up,
)

from holysheep_nb.server import ServerProcess

#: Requests in flight, as case 1 of ``run.py``.
CONCURRENCY = 64


def server_cpu(process: ServerProcess) -> float:
    """CPU seconds (user and system) the server process has used so far."""
    with open(f"/proc/{process.pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def coupling(process: ServerProcess, rows: int, rounds: int) -> None:
    texts = prompts(rows)
    df = frame(texts)
    runs: dict[str, Callable[[], object]] = {
        "raw aiohttp": lambda: check_answers(
            raw_aiohttp(process.base_url, texts, CONCURRENCY), texts, "raw aiohttp"
        ),
        "contract floor": lambda: check_frame(
            contract_floor(process.base_url, df, CONCURRENCY), df, "contract floor"
        ),
        "complete()": lambda: check_frame(
            complete(df, process, max_concurrent=CONCURRENCY, cache=False, progress=False),
            df,
            "complete()",
        ),
    }
    seen: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runs}
    for round_ in range(rounds):
        order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
        for name in order:
            before = server_cpu(process)
            _, sample = measure(rows, runs[name])
            served = (server_cpu(process) - before) / rows
            seen[name].append((sample.cpu_per_row, served, sample.rows_per_second))
    print(f"{'client':16s} {'client us/row':>14s} {'server us/row':>14s} {'rows/s':>8s}")
    for name, values in seen.items():
        client, served, rate = (statistics.median(column) for column in zip(*values, strict=True))
        print(f"{name:16s} {client * 1e6:14.1f} {served * 1e6:14.1f} {rate:8.0f}")


def _use(task: Any, future: Any) -> None:
    asyncio.Task = asyncio.tasks.Task = task  # type: ignore[misc]
    asyncio.Future = asyncio.futures.Future = future  # type: ignore[misc]


def tasks(process: ServerProcess, rows: int, pairs: int) -> None:
    df = frame(prompts(rows))
    c_classes = (asyncio.tasks._CTask, asyncio.futures._CFuture)  # type: ignore[attr-defined]
    python_classes = (asyncio.tasks._PyTask, asyncio.futures._PyFuture)  # type: ignore[attr-defined]

    def on(classes: tuple[Any, Any]) -> Callable[[], Sample]:
        def run() -> Sample:
            _use(*classes)
            try:
                out, sample = measure(
                    rows,
                    lambda: complete(
                        df, process, max_concurrent=CONCURRENCY, cache=False, progress=False
                    ),
                )
            finally:
                _use(*c_classes)
            check_frame(out, df, "complete()")
            return sample

        return run

    samples = paired(pairs, on(python_classes), on(c_classes))
    cpu = median_interval([py.cpu / c.cpu for py, c in samples])
    throughput = median_interval([c.wall / py.wall for py, c in samples])
    print(f"pure-Python tasks vs C tasks, {pairs} pairs of {rows:,} rows:")
    print(f"  client CPU {cpu}; throughput {throughput}")


def spinner(microseconds: float) -> Callable[[], None]:
    """A call that keeps the CPU busy for ``microseconds`` (by the performance counter)."""

    def spin() -> None:
        until = time.perf_counter() + microseconds * 1e-6
        while time.perf_counter() < until:
            pass

    return spin


def sensitivity(process: ServerProcess, rows: int, pairs: int, microseconds: float) -> None:
    df = frame(prompts(rows))
    spin = spinner(microseconds)
    started = time.process_time()
    for _ in range(rows):
        spin()
    alone = (time.process_time() - started) / rows

    def floor_run(per_row: Callable[[], None] | None) -> Callable[[], Sample]:
        def run() -> Sample:
            out, sample = measure(
                rows, lambda: contract_floor(process.base_url, df, CONCURRENCY, per_row)
            )
            check_frame(out, df, "contract floor")
            return sample

        return run

    samples = paired(pairs, floor_run(spin), floor_run(None))
    added = median_interval([(spun.cpu - plain.cpu) / rows * 1e6 for spun, plain in samples])
    print(f"the floor with {alone * 1e6:.1f} us of work added to each row, {pairs} pairs:")
    print(f"  client CPU per row grew by {added} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--spin", type=float, default=10.0)
    args = parser.parse_args()
    with server() as process:
        warm_up(process)
        coupling(process, args.rows, args.rounds)
        tasks(process, args.rows, args.pairs)
        sensitivity(process, args.rows, args.pairs, args.spin)


if __name__ == "__main__":
    main()
