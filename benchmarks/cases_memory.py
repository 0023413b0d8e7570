"""Case 6: memory and tasks stay flat on a million rows.

The run happens in a fresh child process (this file, run as a script), so that what earlier
cases allocated does not hide in the peak. The child builds the input frame, zeroes the
kernel's peak-RSS mark (``/proc/self/clear_refs``), and runs ``acomplete`` (so that a task on
the same loop can count live tasks) while a thread samples the RSS. Growth is the peak minus
the RSS just before the call; it includes the result frame, which is reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from harness import (
    MODEL,
    PROMPT_COLUMN,
    SYSTEM,
    Context,
    Figure,
    at_most,
    check_frame,
    frame,
    prompts,
    server,
)

CONCURRENCY = 64
#: Tasks allowed beyond ``max_concurrent``: the run's own (progress tick, the call itself) and
#: this benchmark's two (the main coroutine and the task counter).
SPARE_TASKS = 8
#: The task aiohttp starts for each request's body while it is in flight (on Python < 3.12,
#: where it cannot start it eagerly): one per open request, so bounded by ``max_concurrent``.
AIOHTTP_WRITER = "ClientRequest.write_bytes"
_MB = 1024 * 1024


def memory(ctx: Context) -> list[Figure]:
    """Case 6: 1,000,000 rows (10,000 quick), zero latency, C=64, cache and progress off."""
    rows = ctx.pick(1_000_000, 10_000)
    with server() as process:
        # A hang guard, in the quick run too: 300 s ran out there on a busy machine.
        result = _run_child(process.base_url, rows, timeout=3_600)
    ctx.details.update(result)
    writers = result["aiohttp_body_writers_at_peak"]
    return [
        Figure(
            "memory: peak RSS growth",
            result["growth_mb"],
            at_most(400),
            unit="MB",
            note=f"{rows:,} rows; result frame itself {result['result_frame_mb']:.0f} MB",
        ),
        Figure(
            "memory: live tasks beyond max_concurrent",
            result["max_tasks"] - CONCURRENCY,
            at_most(SPARE_TASKS),
            unit="",
            note=f"peak {result['max_tasks']} tasks at max_concurrent={CONCURRENCY}",
        ),
        Figure(
            "memory: same, less aiohttp's body writers",
            result["max_tasks"] - writers - CONCURRENCY,
            at_most(SPARE_TASKS),
            unit="",
            note=f"aiohttp had {writers} {AIOHTTP_WRITER} tasks (one per open request)",
        ),
    ]


def _run_child(base_url: str, rows: int, timeout: float) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), base_url, str(rows)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the child --------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in kB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    """Zero the peak-RSS mark (VmHWM) so that it measures from now; False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler(threading.Thread):
    """Samples VmRSS every ``interval`` seconds: the peak even where VmHWM cannot be reset."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_kb = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))

    def stop(self) -> None:
        """Take a last sample and end the thread."""
        self._stop_event.set()
        self.join()
        self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))


class TaskCounter:
    """Counts live tasks on the running loop every ``interval``; keeps the peak and its makeup."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self.makeup: dict[str, int] = {}

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            tasks = asyncio.all_tasks()
            if len(tasks) > self.peak:
                self.peak = len(tasks)
                self.makeup = dict(Counter(_task_name(task) for task in tasks).most_common())
            await asyncio.sleep(self.interval)


def _task_name(task: asyncio.Task[Any]) -> str:
    coroutine = task.get_coro()
    return str(getattr(coroutine, "__qualname__", type(coroutine).__name__))


async def _complete(df: pd.DataFrame, base_url: str) -> tuple[pd.DataFrame, TaskCounter]:
    tasks = TaskCounter()
    counter = asyncio.ensure_future(tasks.run())
    try:
        out: pd.DataFrame = await df.holysheep.acomplete(
            PROMPT_COLUMN,
            model=MODEL,
            system=SYSTEM,
            base_url=base_url,
            max_concurrent=CONCURRENCY,
            cache=False,
            progress=False,
        )
    finally:
        counter.cancel()
    return out, tasks


def child(base_url: str, rows: int) -> dict[str, Any]:
    """Run the million rows here and return what was measured."""
    df = frame(prompts(rows))
    gc.collect()
    before_kb = _status_kb("VmRSS")
    hwm_reset = _reset_peak()
    sampler = RssSampler()
    sampler.start()
    started = time.perf_counter()
    out, tasks = asyncio.run(_complete(df, base_url))
    wall = time.perf_counter() - started
    sampler.stop()
    peak_kb = max(sampler.peak_kb, _status_kb("VmHWM") if hwm_reset else 0)
    check_frame(out, df, "million-row complete()")
    frame_mb = (out.memory_usage(deep=True).sum() - df.memory_usage(deep=True).sum()) / _MB
    return {
        "rows": rows,
        "concurrency": CONCURRENCY,
        "rss_before_mb": round(before_kb / 1024, 1),
        "rss_peak_mb": round(peak_kb / 1024, 1),
        "growth_mb": round((peak_kb - before_kb) / 1024, 1),
        "result_frame_mb": round(float(frame_mb), 1),
        "peak_from": "VmHWM and sampled VmRSS" if hwm_reset else "sampled VmRSS",
        "max_tasks": tasks.peak,
        "tasks_at_peak": tasks.makeup,
        "aiohttp_body_writers_at_peak": tasks.makeup.get(AIOHTTP_WRITER, 0),
        "wall_s": round(wall, 2),
        "rows_per_second": round(rows / wall, 1),
    }


def _main() -> None:
    parser = argparse.ArgumentParser(description="memory benchmark child (run by run.py)")
    parser.add_argument("base_url")
    parser.add_argument("rows", type=int)
    args = parser.parse_args()
    print(json.dumps(child(args.base_url, args.rows)))


if __name__ == "__main__":
    _main()
