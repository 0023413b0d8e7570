"""Cases 9 and 10: 429s that do not mean the account's budget is spent.

Case 9 (stray 429s): the embedded server answers 5% of requests with 429 and
``Retry-After: 1`` at 50 ms latency. ``complete()`` must finish in at most 1.25x the wall time
of a plain aiohttp client that retries each 429 on its own row (``retrying_aiohttp``), and be
sent no more 429s. The server draws one fault per request from its seeded RNG in arrival order,
and ``reset()`` reseeds it, so every contender meets the same sequence of draws: the 429s are
those drawn before the last row's answer, and the count differs only if a client sends more
requests (gives up on a row, or sends one it does not need).

Case 10 (a cap on requests in flight): ``chaos.CappedServer`` accepts 8 requests in flight
and answers 429 beyond, with no headers at all. ``complete(max_concurrent=32)`` must reach 0.9
of the throughput of ``complete(max_concurrent=8)`` against the same server, with at most 5%
of the answers 429.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from analysis import median
from baseline import retrying_aiohttp
from chaos import CappedServer
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
    prompts,
    server,
)

from holysheep_nb.server import Faults, Latency, ServerProcess

STRAY_RATE = 0.05
STRAY_WIDTH = 16
LATENCY = 0.05
CAP = 8
CAP_CLIENT = 32


def stray_429(ctx: Context) -> list[Figure]:
    """Case 9: 2,000 rows (200 quick), 5% 429s with Retry-After 1 s, 16 wide, 2 rounds in turn.

    The baseline keeps its semaphore slot while a row waits out its Retry-After, as a
    semaphore around an SDK call that retries inside does (and as the product's workers do);
    the same client giving the slot back during the wait is shown for reference.
    """
    rows, rounds = ctx.pick((2_000, 2), (200, 1))
    texts = prompts(rows)
    df = frame(texts)
    faults = Faults({"429": STRAY_RATE})
    reports: list[dict[str, Any]] = []
    limited: dict[str, list[int]] = {"complete": [], "baseline": [], "released": []}

    def run_baseline(process: ServerProcess, name: str, hold_slot: bool) -> Callable[[], Sample]:
        def run() -> Sample:
            process.reset()
            result, sample = measure(
                rows,
                lambda: retrying_aiohttp(process.base_url, texts, STRAY_WIDTH, hold_slot=hold_slot),
            )
            check_answers(result.answers, texts, name)
            limited[name].append(_server_429s(process))
            return sample

        return run

    def run_complete(process: ServerProcess) -> Sample:
        process.reset()
        out, sample = measure(
            rows,
            lambda: complete(df, process, max_concurrent=STRAY_WIDTH, cache=False),
        )
        check_frame(out, df, "complete() with stray 429s")
        limited["complete"].append(_server_429s(process))
        reports.append(_learned(out))
        return sample

    with server(faults=faults, retry_after=1.0, latency=Latency.fixed(LATENCY)) as process:
        samples = alternate(
            rounds,
            {
                "baseline": run_baseline(process, "baseline", True),
                "complete": lambda: run_complete(process),
                "released": run_baseline(process, "released", False),
            },
        )
    walls = {name: [s.wall for s in runs] for name, runs in samples.items()}
    ratio = median([c / b for c, b in zip(walls["complete"], walls["baseline"], strict=True)])
    released = median([c / b for c, b in zip(walls["complete"], walls["released"], strict=True)])
    fewer = median(
        [c / max(1, b) for c, b in zip(limited["complete"], limited["baseline"], strict=True)]
    )
    ctx.details.update(
        rows=rows,
        rounds=rounds,
        wall_s={name: [round(w, 3) for w in runs] for name, runs in walls.items()},
        answered_429=limited,
        learned=reports,
    )
    return [
        Figure(
            "stray 429s: wall / retrying baseline",
            ratio,
            at_most(1.25),
            note=f"median of {rounds}; {median(walls['complete']):.2f} s vs "
            f"{median(walls['baseline']):.2f} s",
        ),
        Figure(
            "stray 429s: 429s / retrying baseline's",
            fewer,
            at_most(1.0),
            note=f"{limited['complete']} vs {limited['baseline']}",
        ),
        Figure(
            "stray 429s: wall / baseline giving its slot back",
            released,
            None,
            note=f"reference; {median(walls['released']):.2f} s",
        ),
    ]


def concurrency_cap(ctx: Context) -> list[Figure]:
    """Case 10: 2,000 rows (200 quick) at 50 ms against a cap of 8 in flight, 2 rounds in turn.

    Throughput is rows / wall of the whole run, the first burst above the cap included.
    """
    rows, rounds = ctx.pick((2_000, 2), (200, 1))
    df = frame(prompts(rows))
    shares: list[float] = []
    reports: list[dict[str, Any]] = []
    counts: list[dict[str, Any]] = []

    def run(capped: CappedServer, width: int) -> Sample:
        capped.reset()
        out, sample = measure(
            rows,
            lambda: complete(df, capped, max_concurrent=width, cache=False),
        )
        check_frame(out, df, f"complete(max_concurrent={width}) against a cap of {CAP}")
        stats = capped.stats()
        if width == CAP_CLIENT:
            shares.append(stats["refused"] / stats["requests"])
            reports.append(_learned(out))
            counts.append(stats)
        elif stats["refused"]:
            raise AssertionError(f"max_concurrent={CAP} was refused {stats['refused']} times")
        return sample

    with CappedServer(cap=CAP, latency=LATENCY) as capped:
        samples = alternate(
            rounds,
            {
                "capped": lambda: run(capped, CAP),
                "wide": lambda: run(capped, CAP_CLIENT),
            },
        )
    ratios = [
        w.rows_per_second / c.rows_per_second
        for w, c in zip(samples["wide"], samples["capped"], strict=True)
    ]
    ctx.details.update(
        rows=rows,
        rounds=rounds,
        wall_s={name: [round(s.wall, 3) for s in runs] for name, runs in samples.items()},
        server=counts,
        learned=reports,
    )
    return [
        Figure(
            f"cap of {CAP}: throughput at {CAP_CLIENT} / at {CAP}",
            median(ratios),
            at_least(0.9),
            note=f"median of {rounds}; settled on {[r['concurrency'] for r in reports]}",
        ),
        Figure(
            f"cap of {CAP}: share answered 429",
            median(shares),
            at_most(0.05),
            unit="",
            note=f"{[c['refused'] for c in counts]} of {[c['requests'] for c in counts]}",
        ),
    ]


def _server_429s(process: ServerProcess) -> int:
    return int(process.stats()["by_status"].get("429", 0))


def _learned(out: pd.DataFrame) -> dict[str, Any]:
    """What the run's report says it learned about concurrency."""
    report = out.holysheep.report()
    return {
        "concurrency": report.concurrency,
        "lowest": report.concurrency_lowest,
        "cap": report.concurrency_cap,
        "paused": report.paused,
        "paused_s": round(report.paused_seconds, 2),
        "rate_limited": report.rate_limited,
    }
