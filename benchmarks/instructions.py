"""Client instructions per row under Valgrind: the product's own work, counted exactly.

    python benchmarks/instructions.py --only own         # complete() without the network
    python benchmarks/instructions.py --repeat 3         # every contender, medians
    python benchmarks/instructions.py --only raw complete --slow-server   # client vs raw
    python benchmarks/instructions.py --only raw complete --slow-server --simulate

Each contender's client runs alone under Valgrind's callgrind (which counts the
instructions it executes, however busy the machine is) at two row counts; the difference
divided by the difference in rows is the cost of a row, with the interpreter's start and
the imports taken out. Every count runs in a steady environment (``_STEADY``) and against a
server started for it (not counted). Needs ``valgrind`` (``apt-get install valgrind``); each count
takes a minute or so.

``own`` is ``df.holysheep.complete`` with every request answered at once by a canned
completion, read as any answer is read: the product's own work per row, the same to 0.5%
run after run, on a busy machine too. Compare the product with itself by it.

The network contenders are not a measure of CPU against each other: under Valgrind the
client runs fifty times slower than the server, so each turn of its event loop reads far
more answers than in real time, and the counts do not follow CPU seconds (they put
``complete`` at 0.90x ``raw`` while its CPU seconds were 1.15x raw's; with one server for
the whole run the same code counted 572,000 a row when measured first and 626,000 after
two others). Case 1 of ``run.py`` compares CPU seconds with raw aiohttp. With
``--slow-server`` the server runs under callgrind too (its count is not kept), so both sides
are slowed alike and the client meets its answers at about the pace it does in real time:
the network contenders can then be compared with each other. On 2026-12-07, ``raw`` counted
573,796 a row; ``complete`` 578,790 (1.009x) at the start of that day's last session and
553,888 (0.965x) at its end (a run-level deadline in place of aiohttp's per-request timer).
``raw`` is ``baseline.raw_aiohttp`` (a task per row, a semaphore); ``workers`` is the least
an aiohttp client can do: 64 coroutines pulling rows from one iterator, the same body and
the same read of the answer; ``complete`` is ``df.holysheep.complete`` with the progress
bar off (it draws on a timer, which under Valgrind's slowdown would be charged to the
rows); ``polars`` is the same call on a polars frame (the ``polars`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from baseline import raw_aiohttp, request_body
from harness import MODEL, PROMPT_COLUMN, SYSTEM, frame, prompts, server, warm_up

import holysheep_nb  # noqa: F401 - registers df.holysheep

CONCURRENCY = 64
CONTENDERS = ("raw", "workers", "complete", "polars", "own")
#: What ``own`` answers every request with, as a server would.
_CANNED = json.dumps(
    {
        "id": "chatcmpl-own",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21},
    }
).encode()
_COLLECTED = re.compile(r"Collected : (\d+)")
T = TypeVar("T")
#: The counted client's environment: the same dict layouts in every count, and no threads
#: that work on a timer (numpy's BLAS pool, pyarrow's jemalloc pool), which Valgrind's
#: slowdown and a busy machine would stretch. Two counts of ``own`` under two busy loops and
#: a test suite: 131,171 and 131,154 with these, 130,261 and 125,464 without.
_STEADY = {
    "PYTHONHASHSEED": "0",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
}


async def _workers(base_url: str, texts: list[str]) -> list[str]:
    """The fewest steps that answer every row: a fixed pool of coroutines, no task per row."""
    url = f"{base_url}/chat/completions"
    answers = [""] * len(texts)
    rows = iter(enumerate(texts))
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def work() -> None:
            for position, prompt in rows:
                async with session.post(url, data=request_body(prompt)) as response:
                    raw = await response.read()
                answers[position] = json.loads(raw)["choices"][0]["message"]["content"]

        await asyncio.gather(*(work() for _ in range(CONCURRENCY)))
    return answers


def _answer_without_network() -> None:
    """Make every request of ``complete()`` come back at once with ``_CANNED``, read as an
    answer is read: what is left is the product's own work per row (the ``own`` contender).
    No event loop turn depends on a server, so the count is the same run after run."""
    from holysheep_nb.attempt import Attempt, Sender

    async def send(self: Sender, body: bytes, *, structured: bool) -> Attempt:
        self.stats.requests_sent += 1
        return self._answered(_CANNED, 200, None)  # type: ignore[arg-type]

    Sender.send = send  # type: ignore[method-assign]


def client(contender: str, rows: int, base_url: str) -> None:
    """One contender's run, in the process Valgrind counts; every answer is checked."""
    texts = prompts(rows)
    if contender == "raw":
        answers = raw_aiohttp(base_url, texts, CONCURRENCY)
    elif contender == "workers":
        answers = asyncio.run(_workers(base_url, texts))
    else:
        if contender == "own":
            _answer_without_network()
        df: Any = frame(texts)
        if contender == "polars":
            import polars as pl

            df = pl.DataFrame({PROMPT_COLUMN: texts})
        out = df.holysheep.complete(
            PROMPT_COLUMN, model=MODEL, system=SYSTEM, base_url=base_url, api_key="sk-bench",
            cache=False, progress=False, max_concurrent=CONCURRENCY,
        )  # fmt: skip
        errors = [error for error in out["error"].to_list() if isinstance(error, str)]
        if errors:
            raise SystemExit(f"rows failed: {errors[:3]}")
        answers = out["response"].to_list()
        if contender == "own":
            answers = texts if answers == ["ok"] * rows else answers
    if answers != texts:  # the server echoes each prompt: a lost or mixed-up row shows
        raise SystemExit(f"{contender}: answers do not match their rows")


def instructions(contender: str, rows: int, base_url: str) -> int:
    """Instructions callgrind counted for one whole client process."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--client", contender, str(rows), base_url],
        capture_output=True, text=True, timeout=3600, check=False,
        env={**os.environ, **_STEADY},
    )  # fmt: skip
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{contender} at {rows} rows failed:\n{done.stderr[-2000:]}")
    return int(found[1])


def simulated(contender: str, rows: int, base_url: str) -> dict[str, int]:
    """Callgrind's event counts for one whole client process with its cache and branch
    simulation on: instructions (``Ir``), data reads and writes, L1 and last-level misses,
    conditional and indirect branches and their mispredictions (``Bcm``, ``Bim``)."""
    with tempfile.TemporaryDirectory(prefix="holysheep-callgrind-") as folder:
        out = Path(folder) / "callgrind.out"
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--cache-sim=yes", "--branch-sim=yes",
             f"--callgrind-out-file={out}", sys.executable, __file__, "--client", contender,
             str(rows), base_url],
            capture_output=True, text=True, timeout=7200, check=False,
            env={**os.environ, **_STEADY},
        )  # fmt: skip
        if done.returncode != 0 or not out.exists():
            raise SystemExit(f"{contender} at {rows} rows failed:\n{done.stderr[-2000:]}")
        lines = dict(
            line.split(":", 1) for line in out.read_text().splitlines() if ":" in line[:12]
        )
    return dict(zip(lines["events"].split(), map(int, lines["summary"].split()), strict=True))


def fresh_count(contender: str, rows: int, slow_server: bool = False) -> int:
    """``instructions`` against a server started (and warmed up) for this count alone; with
    ``slow_server``, a server that runs under callgrind too."""
    return fresh(instructions, contender, rows, slow_server)


def fresh(count: Callable[[str, int, str], T], contender: str, rows: int, slow_server: bool) -> T:
    """``count(contender, rows, base_url)`` against a server started for it (see
    ``fresh_count``)."""
    if slow_server:
        with server_under_valgrind() as base_url:
            raw_aiohttp(base_url, prompts(200, "warm-up "), 16)
            return count(contender, rows, base_url)
    with server() as process:
        warm_up(process)
        return count(contender, rows, process.base_url)


def simulate(contenders: list[str], few: int, many: int, slow_server: bool) -> None:
    """Print each contender's simulated events a row (the difference of two row counts),
    and their ratio to raw aiohttp's when it is among them."""
    per_row: dict[str, dict[str, float]] = {}
    for contender in contenders:
        low, high = (fresh(simulated, contender, rows, slow_server) for rows in (few, many))
        per_row[contender] = {name: (high[name] - low[name]) / (many - few) for name in high}
    names = list(next(iter(per_row.values())))
    print(f"{'events a row':12s} " + " ".join(f"{name:>9s}" for name in names))
    for contender, counts in per_row.items():
        print(f"{contender:12s} " + " ".join(f"{counts[name]:>9,.0f}" for name in names))
    raw = per_row.get("raw")
    for contender, counts in per_row.items():
        if raw is not None and contender != "raw":
            ratios = (counts[n] / raw[n] if raw[n] else float("nan") for n in names)
            print(f"{contender + '/raw':12s} " + " ".join(f"{r:>9.3f}" for r in ratios))


@contextlib.contextmanager
def server_under_valgrind() -> Iterator[str]:
    """The local server (``python -m holysheep_nb serve``) under callgrind, on a free port;
    yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         "-m", "holysheep_nb", "serve", "--port", str(port), "--echo"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **_STEADY},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600  # a start guard: it takes 10-30 s under Valgrind
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server under valgrind did not start")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", nargs=2, type=int, default=(500, 1500), metavar="N")
    parser.add_argument("--only", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--repeat", type=int, default=1, metavar="N")
    parser.add_argument(
        "--slow-server", action="store_true", help="run the server under callgrind too"
    )
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="count simulated cache misses and branch mispredictions too (one run each)",
    )
    parser.add_argument("--client", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        contender, rows, base_url = args.client
        client(contender, int(rows), base_url)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    few, many = sorted(args.rows)
    if args.simulate:
        simulate(args.only, few, many, args.slow_server)
        return 0
    estimates: dict[str, list[float]] = {contender: [] for contender in args.only}
    for _ in range(args.repeat):
        for contender in args.only:
            counts = [fresh_count(contender, rows, args.slow_server) for rows in (few, many)]
            estimates[contender].append((counts[1] - counts[0]) / (many - few))
    per_row = {contender: statistics.median(values) for contender, values in estimates.items()}
    for contender, value in per_row.items():
        runs = ", ".join(f"{v:,.0f}" for v in estimates[contender])
        print(f"{contender:9s} {value:>11,.0f} instructions a row (median of {runs})")
    if "raw" in per_row:
        for contender, value in per_row.items():
            print(f"{contender:9s} {value / per_row['raw']:.3f}x raw aiohttp")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
