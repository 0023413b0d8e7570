"""Cases 5 and 8: rate limits, judged by the server's own clock.

Case 5 caps the client (``requests_per_minute``) and reads the request arrival times the
server recorded (``record_times=True``): the paced rate after the initial burst must be the
cap, and no window of T seconds may hold more than ``rate * T + burst`` requests.

Case 8 puts the limit on the server instead (a provider's sliding window that answers 429
with ``Retry-After``) and runs the same work with the client told the limit and not told.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from analysis import steady_rate, worst_window_ratio
from harness import (
    Context,
    Figure,
    Target,
    at_least,
    at_most,
    check_frame,
    complete,
    frame,
    measure,
    prompts,
    server,
)

from holysheep_nb.policies import RateLimits
from holysheep_nb.server import ServerProcess

CONCURRENCY = 64
RPM = 1_200
#: Window lengths (seconds) checked against ``rate * T + burst``.
WINDOWS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)


def rate_limit(ctx: Context) -> list[Figure]:
    """Case 5: ``requests_per_minute`` held over ~20 s (3 s quick), by server timestamps."""
    seconds = ctx.pick(20, 3)
    rate = RPM / 60.0
    burst = RateLimits(requests_per_minute=RPM).request_capacity  # the client's own default
    assert burst is not None
    rows = int(burst + rate * seconds)
    df = frame(prompts(rows))
    with server(record_times=True) as process:
        out, sample = measure(
            rows,
            lambda: complete(
                df, process, max_concurrent=CONCURRENCY, cache=False, requests_per_minute=RPM
            ),
        )
        times: list[float] = process.stats()["times"]
    check_frame(out, df, "rate-limited complete()")
    if len(times) != rows:
        raise AssertionError(f"the server saw {len(times)} requests for {rows} rows")
    achieved = steady_rate(times, skip=int(burst))
    worst, window = worst_window_ratio(times, rate, burst, WINDOWS)
    ctx.details.update(
        rows=rows,
        rpm=RPM,
        burst=burst,
        wall_s=round(sample.wall, 3),
        achieved_per_s=round(achieved, 4),
        worst_window_s=window,
        worst_window_ratio=round(worst, 4),
    )
    return [
        Figure(
            "rate limit: achieved / cap",
            achieved / rate,
            Target(0.98, 1.02),
            note=f"{achieved:.2f}/s for a cap of {rate:g}/s (burst {burst:g})",
        ),
        Figure(
            "rate limit: worst window / (rate*T + burst)",
            worst,
            at_most(1.0),
            note=f"worst at T = {window:g} s",
        ),
    ]


def _provider_run(process: ServerProcess, df: pd.DataFrame, told: bool) -> dict[str, Any]:
    process.reset()
    limit = {"requests_per_minute": RPM} if told else {}
    out, sample = measure(
        len(df),
        lambda: complete(df, process, max_concurrent=CONCURRENCY, cache=False, **limit),
    )
    check_frame(out, df, f"provider limit, client {'told' if told else 'not told'}")
    stats = process.stats()
    limited = int(stats["by_status"].get("429", 0))
    return {
        "wall_s": round(sample.wall, 3),
        "requests": stats["requests"],
        "answered_429": limited,
        "share_429": limited / stats["requests"],
        "achieved_per_s": len(df) / sample.wall,
        "retries": int(out["attempts"].sum()) - len(df),
    }


def provider_limit(ctx: Context) -> list[Figure]:
    """Case 8: the server enforces 1,200 rpm (sliding window) and answers 429 beyond it.

    The work is 30 s at the allowed rate (5 s quick, with a 4 s window instead of 10 s: a
    window must hold more than ``max_concurrent`` requests, or the very first wave of a
    client that is not told the limit overflows it before any answer can say so).
    The achieved rate is rows / wall time: a sliding window lets a fresh client burst a whole
    window's capacity at once, so a client that is not told the limit may exceed 1.0.
    """
    seconds, window = ctx.pick((30, 10.0), (5, 4.0))
    rate = RPM / 60.0
    df = frame(prompts(int(rate * seconds)))
    with server(rpm=RPM, limit_window=window) as process:
        told = _provider_run(process, df, told=True)
        untold = _provider_run(process, df, told=False)
    ctx.details.update(rows=len(df), rpm=RPM, limit_window_s=window, told=told, not_told=untold)
    return [
        Figure(
            "provider limit, told: achieved / allowed",
            told["achieved_per_s"] / rate,
            at_least(0.97),
            note=f"{told['wall_s']:.1f} s",
        ),
        Figure(
            "provider limit, told: share answered 429",
            told["share_429"],
            at_most(0.0),
            unit="",
            note=f"{told['answered_429']} of {told['requests']} requests",
        ),
        Figure(
            "provider limit, not told: achieved / allowed",
            untold["achieved_per_s"] / rate,
            at_least(0.90),
            note=f"{untold['wall_s']:.1f} s",
        ),
        Figure(
            "provider limit, not told: share answered 429",
            untold["share_429"],
            at_most(0.05),
            unit="",
            note=f"{untold['answered_429']} of {untold['requests']} requests",
        ),
    ]
