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


#: Case 8's provider: 3,000 rpm over a 2 s sliding window (100 requests: more than
#: ``CONCURRENCY``, or the very first wave of a client that is not told the limit overflows
#: the window before any answer can say so). Quick: 12,000 rpm over 0.5 s, the same 100.
PROVIDER = {"full": (3_000, 2.0, 10), "quick": (12_000, 0.5, 1)}  # rpm, window s, windows


def _provider_run(
    process: ServerProcess, df: pd.DataFrame, told: bool, rpm: int, window: float, windows: int
) -> dict[str, Any]:
    process.reset()
    limit = {"requests_per_minute": rpm} if told else {}
    out, sample = measure(
        len(df),
        lambda: complete(df, process, max_concurrent=CONCURRENCY, cache=False, **limit),
    )
    check_frame(out, df, f"provider limit, client {'told' if told else 'not told'}")
    stats = process.stats()
    limited = int(stats["by_status"].get("429", 0))
    times: list[float] = stats["times"]
    if len(times) != stats["requests"]:
        raise AssertionError(f"{len(times)} arrival times for {stats['requests']} requests")
    capacity = rpm * window / 60.0
    # Every arrival in the whole windows after the first, less every 429 of the run: a lower
    # bound on the requests the provider admitted there (the server does not say which).
    start = times[0] + window
    admitted = sum(1 for t in times if 0.0 <= t - start < windows * window) - limited
    return {
        "wall_s": round(sample.wall, 3),
        "requests": stats["requests"],
        "answered_429": limited,
        "share_429": limited / stats["requests"],
        "windows": windows,
        "admitted_in_windows": admitted,
        "achieved_ratio": admitted / (windows * capacity),
        "rows_per_wall_ratio": len(df) / sample.wall / (rpm / 60.0),
        "retries": int(out["attempts"].sum()) - len(df),
    }


def provider_limit(ctx: Context) -> list[Figure]:
    """Case 8: the server enforces 3,000 rpm over a 2 s sliding window, 429 beyond it.

    The work is 13 windows' worth of requests at the allowed rate (quick: 12,000 rpm over 0.5 s,
    4 windows), sent by a client told ``requests_per_minute`` and by one not told.

    A sliding window lets a fresh client take a whole window's capacity at once, so rows over
    wall time would flatter a client that is not told the limit (by one window in the run).
    The achieved rate is read off the server's arrival times instead, over the steady part:
    the requests admitted in the 10 whole windows (1 quick) that follow the first, over what
    the limit allows in them (10 x capacity). No client can exceed 1.0 that way, and one that
    keeps the window full reaches it; the first window, where a client that is not told
    learns the limit, neither flatters nor penalises it. The server does not say which
    arrivals it refused, so every 429 of the run is taken off: a lower bound.
    """
    rpm, window, windows = PROVIDER[ctx.pick("full", "quick")]
    rate = rpm / 60.0
    df = frame(prompts(int(rate * window * (windows + 3))))
    with server(rpm=rpm, limit_window=window, record_times=True) as process:
        told = _provider_run(process, df, True, rpm, window, windows)
        untold = _provider_run(process, df, False, rpm, window, windows)
    ctx.details.update(rows=len(df), rpm=rpm, limit_window_s=window, told=told, not_told=untold)
    return [
        Figure(
            "provider limit, told: achieved / allowed",
            told["achieved_ratio"],
            at_least(0.99),
            note=f"{told['admitted_in_windows']} in {windows} windows; {told['wall_s']:.1f} s",
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
            untold["achieved_ratio"],
            at_least(0.95),
            note=f"{untold['admitted_in_windows']} in {windows} windows; {untold['wall_s']:.1f} s",
        ),
        Figure(
            "provider limit, not told: share answered 429",
            untold["share_429"],
            at_most(0.02),
            unit="",
            note=f"{untold['answered_429']} of {untold['requests']} requests",
        ),
    ]
