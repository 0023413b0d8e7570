"""Issue 26 item 9: the first burst against a cap of 8 requests in flight (no headers).

The local server in its own process answers at most 8 requests at once (``max_in_flight``)
and 429s beyond, with no Retry-After and no ``x-ratelimit-*`` headers. 400 rows (the
issue's size) at ``max_concurrent=32`` and at ``max_concurrent=8`` run in turn, ``--rounds``
times each against the same server; the figures are medians over the rounds, measured in
the same run (the machine is shared: absolute rows/s mean little).

    python benchmarks/first_burst.py [--rows 400] [--rounds 7] [--latency 0.05]

Prints the share of requests answered 429 at 32 (target <= 5%) and the throughput at 32 over
the throughput at 8 (target >= 0.9x), one line per round and the medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import pandas as pd

import holysheep_nb  # noqa: F401  (registers df.holysheep)
from holysheep_nb.server import Latency, ServerConfig, ServerProcess

CAP = 8
WIDE = 32


def run(server: ServerProcess, frame: pd.DataFrame, width: int) -> tuple[float, int, int]:
    """(rows/s, requests, 429s) of one run at ``max_concurrent=width``."""
    server.reset()
    started = time.perf_counter()
    out = frame.holysheep.complete(
        "text", base_url=server.base_url, max_concurrent=width, cache=False, progress=False
    )
    wall = time.perf_counter() - started
    if out["error"].notna().any():
        raise AssertionError(f"{int(out['error'].notna().sum())} rows failed at {width}")
    stats = server.stats()
    return len(frame) / wall, int(stats["requests"]), int(stats["by_status"].get("429", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    frame = pd.DataFrame({"text": [f"row {i}: the kettle works" for i in range(args.rows)]})
    config = ServerConfig(echo=True, max_in_flight=CAP, latency=Latency.fixed(args.latency))
    shares, ratios = [], []
    warnings.simplefilter("ignore")
    with ServerProcess(config) as server:
        run(server, frame.head(50), CAP)  # warm both sides up
        for round_ in range(args.rounds):
            capped, _, refused_at_cap = run(server, frame, CAP)
            wide, requests, refused = run(server, frame, WIDE)
            assert refused_at_cap == 0, f"max_concurrent={CAP} was refused {refused_at_cap} times"
            shares.append(refused / requests)
            ratios.append(wide / capped)
            print(
                f"round {round_}: at {WIDE}: {refused} of {requests} answered 429 "
                f"({shares[-1]:.1%}); {wide:.0f} rows/s vs {capped:.0f} at {CAP} "
                f"({ratios[-1]:.2f}x)",
                flush=True,
            )
    print(
        f"median over {args.rounds} rounds, {args.rows} rows: 429 share at {WIDE} "
        f"{statistics.median(shares):.1%} (target <= 5%), throughput {WIDE}/{CAP} "
        f"{statistics.median(ratios):.2f}x (target >= 0.9x)"
    )


if __name__ == "__main__":
    main()
