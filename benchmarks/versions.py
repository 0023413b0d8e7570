"""Case 1 across releases: raw aiohttp, ``complete()`` of this tree and of another commit.

Case 1 of ``run.py`` compares ``complete()`` with raw aiohttp in one process, so it can only
measure the code it was started from. This script compares releases: it checks the other
commit out into a temporary ``git worktree``, and runs each contender in its own process
(``PYTHONPATH`` picks which package it imports) against one server started here, in
rounds, the order rotated every round. Each process makes one warm run, then times one run
of ``--rows`` rows (``time.process_time``: its CPU; the wall clock: its rows/s). Each
figure is the median of the rounds' ratios, with its 95% confidence interval, as case 1.

    python benchmarks/versions.py                      # against the first release, a159a79
    python benchmarks/versions.py --commit HEAD~5 --rounds 15 --rows 4000

The other commit's ``complete()`` must take the options case 1 passes (every release
does). The progress bar is on, as in case 1, drawn to nowhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from analysis import median_interval

#: The first release (the commit whose README first printed case 1's figures).
FIRST_RELEASE = "a159a79"
CONCURRENCY = 64
HERE = Path(__file__).resolve().parent
TREE = HERE.parent


def _time(run: Callable[[], None], rows: int) -> dict[str, float]:
    """One untimed warm run, then one timed: CPU microseconds a row and rows a second."""
    run()
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"cpu_us": cpu / rows * 1e6, "rows_per_second": rows / wall}


def contender(kind: str, base_url: str, job: dict[str, Any]) -> dict[str, float]:
    """The run of one contender, in this process (started by ``round_of``). ``job`` holds
    the prompts, model and system message: this process imports nothing of the benchmarks'
    harness, which imports this tree's package, unless it is raw aiohttp's."""
    texts, model, system, column = job["texts"], job["model"], job["system"], job["column"]
    rows = len(texts)
    if kind == "raw":
        from baseline import raw_aiohttp

        def run_raw() -> None:
            if raw_aiohttp(base_url, texts, CONCURRENCY) != texts:
                raise SystemExit("raw aiohttp: answers do not match their rows")

        return _time(run_raw, rows)
    import pandas as pd

    import holysheep_nb  # noqa: F401 - whichever release PYTHONPATH picks

    frame = pd.DataFrame({column: texts})

    def run_complete() -> None:
        with open(os.devnull, "w") as nowhere, contextlib.redirect_stderr(nowhere):  # the bar
            out = frame.holysheep.complete(
                column, model=model, system=system, base_url=base_url,
                api_key="sk-bench", cache=False, max_concurrent=CONCURRENCY,
            )  # fmt: skip
        if out["response"].tolist() != texts:
            raise SystemExit(f"{kind}: answers do not match their rows")

    return _time(run_complete, rows)


def round_of(kind: str, package: Path, base_url: str, job: Path) -> dict[str, float]:
    """``contender`` in a fresh process importing holysheep_nb from ``package``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package), str(HERE)])}
    done = subprocess.run(
        [sys.executable, __file__, "--contender", kind, base_url, str(job)],
        capture_output=True, text=True, env=env, cwd=HERE, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """``commit`` checked out in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="holysheep-release-") as folder:
        path = Path(folder) / "tree"
        subprocess.run(
            ["git", "-C", str(TREE), "worktree", "add", "--detach", "-q", str(path), commit],
            check=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(TREE), "worktree", "remove", "--force", str(path)], check=True
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default=FIRST_RELEASE, help="the other release")
    parser.add_argument("--rows", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--contender", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        kind, base_url, job = args.contender
        print(json.dumps(contender(kind, base_url, json.loads(Path(job).read_text()))))
        return
    from harness import MODEL, PROMPT_COLUMN, SYSTEM, prompts, server, warm_up

    with worktree(args.commit) as other, server() as process:
        warm_up(process)
        job = other.parent / "job.json"
        job.write_text(
            json.dumps(
                {
                    "texts": prompts(args.rows),
                    "model": MODEL,
                    "system": SYSTEM,
                    "column": PROMPT_COLUMN,
                }
            )
        )
        packages = {"raw": TREE, "this tree": TREE, args.commit: other}
        names = list(packages)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for index in range(args.rounds):
            turn = index % len(names)
            for name in names[turn:] + names[:turn]:
                results[name].append(round_of(name, packages[name], process.base_url, job))
    raw = results["raw"]
    print(f"{args.rounds} rounds of {args.rows:,} rows, each contender in its own process")
    for name in names[1:]:
        pairs = list(zip(raw, results[name], strict=True))
        speed = median_interval([b["rows_per_second"] / a["rows_per_second"] for a, b in pairs])
        cpu = median_interval([b["cpu_us"] / a["cpu_us"] for a, b in pairs])
        print(f"{name:>10}: throughput vs raw aiohttp {speed}; client CPU per row {cpu}")
    mine, theirs = results["this tree"], results[args.commit]
    cpu = median_interval([a["cpu_us"] / b["cpu_us"] for a, b in zip(mine, theirs, strict=True)])
    print(f"this tree's client CPU per row vs {args.commit}'s: {cpu}")


if __name__ == "__main__":
    main()
