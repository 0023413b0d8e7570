"""The benchmarks: their arithmetic by hand, and ``benchmarks/run.py --quick`` as a smoke test.

The quick run takes under a minute against the embedded server in a subprocess (a few with
both cores busy: its timeout is a hang guard). It must exit 0 with every case run and no row
lost or mixed up; whether the targets are met is reported in its table, not asserted here
(timing on a shared CI machine is noise), and no case crashes on a timing figure: the checks
that can crash a case (rows, request counts, a refusal under the cap) hold at any speed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


analysis = _load("analysis")


@pytest.mark.parametrize(
    ("rows", "concurrency", "ideal"),
    [(2_000, 64, 3.2), (64, 64, 0.1), (65, 64, 0.2), (1, 64, 0.1)],
)
def test_batch_ideal_counts_waves(rows: int, concurrency: int, ideal: float) -> None:
    assert analysis.batch_ideal(rows, concurrency, 0.1) == pytest.approx(ideal)


@pytest.mark.parametrize(
    ("durations", "workers", "makespan"),
    [
        ([], 4, 0.0),
        ([1.0, 1.0, 1.0, 1.0], 2, 2.0),
        ([5.0, 1.0, 1.0, 1.0], 2, 5.0),  # the long job holds one worker; the rest share one
        ([1.0, 1.0, 1.0, 5.0], 2, 6.0),  # in arrival order: the long job comes last
        ([0.5, 0.2, 0.3], 8, 0.5),
    ],
)
def test_greedy_makespan(durations: list[float], workers: int, makespan: float) -> None:
    assert analysis.greedy_makespan(durations, workers) == pytest.approx(makespan)


def test_windows_are_half_open() -> None:
    times = [0.0, 0.5, 1.0, 1.0, 2.5]
    assert analysis.max_in_window(times, 1.0) == 3  # [0.5, 1.5); [0, 1) leaves 1.0 out
    assert analysis.max_in_window(times, 0.5) == 2
    assert analysis.max_in_window(times, 1.01) == 4
    assert analysis.max_in_window([], 1.0) == 0


def test_worst_window_ratio_names_the_window() -> None:
    # 20 at once, then one every 50 ms: exactly rate * T + burst in every window.
    times = [0.0] * 20 + [0.05 * i for i in range(1, 41)]
    worst, window = analysis.worst_window_ratio(times, 20.0, 20.0, [0.5, 1.0, 2.0])
    assert worst <= 1.0
    assert window in (0.5, 1.0, 2.0)
    assert analysis.worst_window_ratio(times * 2, 20.0, 20.0, [1.0])[0] > 1.0


def test_steady_rate_skips_the_burst() -> None:
    times = [0.0] * 20 + [0.05 * i for i in range(1, 101)]
    assert analysis.steady_rate(times, skip=20) == pytest.approx(20.0)
    assert analysis.steady_rate([0.0, 1.0, 2.0], skip=0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="arrivals"):
        analysis.steady_rate([0.0, 1.0], skip=5)


@pytest.mark.slow
def test_quick_run_completes_every_case(tmp_path: Path) -> None:
    results = tmp_path / "quick.json"
    # The timeout is a hang guard: the quick run takes 3-6 min on this shared machine, 5 with
    # both cores busy, and more than 20 with three test suites running at once.
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--json", str(results)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    document = json.loads(results.read_text())
    assert document["mode"] == "quick"
    crashed = {case["case"]: case["error"] for case in document["cases"] if case["error"]}
    assert not crashed
    names = {case["case"] for case in document["cases"]}
    assert names == {
        "throughput", "floor", "openai", "cache", "latency", "tail", "ratelimit", "memory", "import",
        "provider", "extract", "dask", "stray429", "cap", "sample", "coverage", "power",
        "threshold", "polars",
    }  # fmt: skip
    assert "met" in done.stdout.splitlines()[0]


def test_median_interval_is_two_order_statistics() -> None:
    # 30 values at 95%: P(Binomial(30, 1/2) <= 9) = 0.021 <= 0.025 < P(<= 10) = 0.049, so
    # the interval runs from the 10th smallest value to the 21st.
    values = [float(v) for v in range(30, 0, -1)]
    interval = analysis.median_interval(values)
    assert interval.median == pytest.approx(15.5)
    assert (interval.low, interval.high) == (10.0, 21.0)
    assert str(interval) == "15.500 (95% CI 10.000-21.000)"
    # At 90%: P(<= 10) = 0.049 <= 0.05 < P(<= 11) = 0.100, so the 11th to the 20th.
    wider = analysis.median_interval(values, confidence=0.90)
    assert (wider.low, wider.high) == (11.0, 20.0)
    assert str(wider) == "15.500 (90% CI 11.000-20.000)"


def test_median_interval_of_too_few_values_says_only_the_median() -> None:
    # Five values cannot hold a 95% interval: min to max covers 1 - 2 / 32 = 0.9375.
    interval = analysis.median_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert interval.median == 3.0
    assert str(interval) == "3.000"
