"""Cases 3 and 4: latency-bound runs, where the ideal wall time is known in advance.

Fixed latency: ``ceil(rows / C)`` waves of ``latency`` seconds. Lognormal latency: the server
draws one delay per request from ``Random(seed)`` in arrival order (``Latency.sample``; no
faults configured, so nothing else draws), so the benchmark replays the same draws and
computes the makespan of the greedy list schedule on C workers, which is what an ideal pool
does. The client's own per-row latencies are compared with the replayed draws to prove that
the replay matched what the server really did.
"""

from __future__ import annotations

from random import Random

import numpy as np
from analysis import batch_ideal, greedy_makespan, median
from baseline import raw_aiohttp
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
    summary,
    warm_up,
)

from holysheep_nb.server import Latency

SEED = 20_240_901


def latency_bound(ctx: Context) -> list[Figure]:
    """Case 3: fixed 100 ms latency, C=64: wall time against ``ceil(n / C) * 0.1 s``.

    Raw aiohttp runs the same rows in turn with the product: it shows how much of the gap
    to the ideal is the machine's (two event loops on shared cores) rather than the client's.
    """
    rows, rounds, concurrency, latency = *ctx.pick((2_000, 3), (640, 1)), 64, 0.1
    texts = prompts(rows)
    df = frame(texts)

    def product() -> Sample:
        out, sample = measure(
            rows, lambda: complete(df, process, max_concurrent=concurrency, cache=False)
        )
        check_frame(out, df, "latency-bound complete()")
        return sample

    def raw() -> Sample:
        answers, sample = measure(rows, lambda: raw_aiohttp(process.base_url, texts, concurrency))
        check_answers(answers, texts, "latency-bound raw aiohttp")
        return sample

    with server(latency=Latency.fixed(latency)) as process:
        warm_up(process, rows=64)
        samples = alternate(rounds, {"holysheep": product, "raw_aiohttp": raw})
    ideal = batch_ideal(rows, concurrency, latency)
    wall = median([s.wall for s in samples["holysheep"]])
    raw_wall = median([s.wall for s in samples["raw_aiohttp"]])
    ctx.details.update(
        rows=rows,
        rounds=rounds,
        concurrency=concurrency,
        latency_s=latency,
        ideal_s=ideal,
        **{name: summary(s) for name, s in samples.items()},
    )
    return [
        Figure(
            "latency-bound: ideal / wall",
            ideal / wall,
            at_least(0.96),
            note=f"ideal {ideal:.2f} s, wall {wall:.2f} s",
        ),
        Figure(
            "latency-bound: raw aiohttp wall / wall",
            raw_wall / wall,
            note=f"reference: raw aiohttp reaches {ideal / raw_wall:.3f} of the ideal",
        ),
    ]


def replayed_draws(latency: Latency, seed: int, count: int) -> list[float]:
    """The first ``count`` delays a server seeded with ``seed`` draws, in arrival order."""
    rng = Random(seed)
    return [latency.sample(rng) for _ in range(count)]


def heavy_tail(ctx: Context) -> list[Figure]:
    """Case 4: lognormal latency (median 100 ms, p99.9 a few s), C=32, vs the greedy schedule."""
    rows, concurrency = ctx.pick(3_000, 200), 32
    # sigma 1.1: p99 = 1.3 s, p99.9 = 3.0 s, mean 0.18 s.
    latency = Latency.lognormal(0.1, 1.1)
    df = frame(prompts(rows))
    with server(latency=latency, seed=SEED) as process:
        warm_up(process, rows=32)  # the reset reseeds: the run gets draws 1..rows
        out, sample = measure(
            rows, lambda: complete(df, process, max_concurrent=concurrency, cache=False)
        )
        served = process.stats()["requests"]
    check_frame(out, df, "heavy-tail complete()")
    draws = replayed_draws(latency, SEED, rows)
    ideal = greedy_makespan(draws, concurrency)
    offset = _replay_offset(out["latency"].to_numpy(), draws)
    ctx.details.update(
        rows=rows,
        concurrency=concurrency,
        latency=str(latency),
        seed=SEED,
        ideal_s=round(ideal, 4),
        wall_s=round(sample.wall, 4),
        server_requests=served,
        draws_p50_s=float(np.percentile(draws, 50)),
        draws_p999_s=float(np.percentile(draws, 99.9)),
        draws_max_s=max(draws),
        client_minus_draw_median_ms=round(offset * 1e3, 2),
    )
    # A replay that does not match the server's draws shows as a count that differs or as
    # client latencies shorter than the draws; a large positive offset is the client's own
    # overhead (a busy machine), shown in the note, not a wrong ideal.
    if served != rows or offset < 0:
        raise AssertionError(
            f"the replayed latencies do not match the server's ({served} requests for {rows} "
            f"rows, client latency - draw = {offset * 1e3:.1f} ms): the ideal would be wrong"
        )
    return [
        Figure(
            "heavy tail: wall / greedy schedule",
            sample.wall / ideal,
            at_most(1.05),
            note=f"ideal {ideal:.2f} s, wall {sample.wall:.2f} s, "
            f"client latency - draw {offset * 1e3:.1f} ms",
        )
    ]


def _replay_offset(client_latencies: np.ndarray, draws: list[float]) -> float:
    """Median of (client-measured latency - replayed draw), matched by rank.

    Ranks rather than rows: the draw a row got depends on when it reached the server, but
    the two sorted sequences must agree up to the client's own per-request overhead.
    """
    return float(np.median(np.sort(client_latencies) - np.sort(draws)))
