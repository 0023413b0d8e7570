"""Issue 26 item 0: runs that start on a budget the run before them spent.

The local server in its own process runs as the README shows it (lognormal latency with a
median of 0.2 s, 2% random 429s, 600 requests a minute over a 60 s sliding window). One
run labels 900 rows; right after it, three runs of 100 rows each, as cells run one after
another do. The client is not told the limit.

    python benchmarks/spent_budget.py [--first 900] [--then 100 100 100]

Prints, per run: rows lost (with an error), requests, 429s (the window's, and the random
ones the server injects, apart), their share of the answers, the time every send was held,
the wall time, and the report's "429s cost time" line when it has one. Targets: 0 rows
lost; at most 2% of answers 429 once the window is learnt (the injected 2% come on top).
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd

import holysheep_nb  # noqa: F401  (registers df.holysheep)
from holysheep_nb.server import Faults, Latency, ServerConfig, ServerProcess

LABELS = ["positive", "negative", "neutral"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=900)
    parser.add_argument("--then", type=int, nargs="*", default=[100, 100, 100])
    args = parser.parse_args()
    config = ServerConfig(
        latency=Latency.lognormal(0.2, 0.6), faults=Faults({"429": 0.02}), rpm=600
    )
    warnings.simplefilter("ignore")  # the notices of a stop are counted below, not printed
    with ServerProcess(config) as server:
        for name, rows in [("first", args.first)] + [
            (f"then {i + 1}", n) for i, n in enumerate(args.then)
        ]:
            frame = pd.DataFrame({"text": [f"{name}: review {i}, fine" for i in range(rows)]})
            before = server.stats()
            started = time.perf_counter()
            out = frame.holysheep.label("text", labels=LABELS, base_url=server.base_url,
                                        cache=False, progress=False)  # fmt: skip
            wall = time.perf_counter() - started
            after = server.stats()
            requests = after["requests"] - before["requests"]
            limited = after["rate_limited"] - before["rate_limited"]
            injected = after["faults"].get("429", 0) - before["faults"].get("429", 0)
            lost = int(out["error"].notna().sum())
            report = out.holysheep.report()
            print(
                f"{name}: {rows} rows, lost {lost}, {requests} requests, 429s {limited} from "
                f"the window + {injected} injected ({(limited + injected) / requests:.1%} of "
                f"answers; the window's {limited / requests:.1%}), held "
                f"{report.paused_seconds:.1f} s, {wall:.1f} s",
                flush=True,
            )
            if lost:
                print("   e.g.", out["error"].dropna().iloc[0][:200])
            if report.pace_advice:
                print("   to do:", report.pace_advice)


if __name__ == "__main__":
    main()
