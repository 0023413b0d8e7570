"""Run the holysheep_nb benchmarks and print a table of figures against their targets.

    python benchmarks/run.py [--quick] [--only NAME ...] [--json PATH]

Every figure is a ratio against a baseline or an ideal measured in the same run (the machine
is noisy), except where the issue sets an absolute bound (memory, tasks). The embedded server
runs in its own process. Targets are reported, not asserted: the exit status is non-zero only
when a case crashes or a row is lost, failed or mixed up. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# tqdm reads TQDM_* variables at import; the product passes ``disable=`` explicitly anyway,
# but the benchmark must measure the bar being drawn, so make sure nothing turns it off.
os.environ.pop("TQDM_DISABLE", None)

import cases_adaptive
import cases_dask
import cases_extract
import cases_import
import cases_latency
import cases_limits
import cases_memory
import cases_polars
import cases_quality
import cases_sample
import cases_throughput
from harness import Context, Figure, cpu_count

Case = Callable[[Context], list[Figure]]

#: Every case by its ``--only`` name, in the issue's order.
CASES: dict[str, Case] = {
    "throughput": cases_throughput.throughput,
    "floor": cases_throughput.floor,
    "openai": cases_throughput.openai_reference,
    "cache": cases_throughput.cache,
    "latency": cases_latency.latency_bound,
    "tail": cases_latency.heavy_tail,
    "ratelimit": cases_limits.rate_limit,
    "memory": cases_memory.memory,
    "import": cases_import.import_time,
    "provider": cases_limits.provider_limit,
    "extract": cases_extract.extract_vs_complete,
    "dask": cases_dask.dask_path,
    "stray429": cases_adaptive.stray_429,
    "cap": cases_adaptive.concurrency_cap,
    "sample": cases_sample.sample_reviews,
    "coverage": cases_quality.coverage,
    "power": cases_quality.power,
    "threshold": cases_quality.threshold,
    "polars": cases_polars.polars_vs_pandas,
}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass
class Outcome:
    """What one case produced: its figures, or the error it crashed with."""

    name: str
    seconds: float
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the outcome."""
        return {
            "case": self.name,
            "status": "crashed" if self.error else "ok",
            "error": self.error,
            "seconds": round(self.seconds, 2),
            "figures": [figure.to_json() for figure in self.figures],
            "details": self.details,
        }


def run_case(name: str, quick: bool) -> Outcome:
    """Run one case; any exception (a lost row included) is caught and kept as its error."""
    ctx = Context(quick=quick)
    started = time.perf_counter()
    print(f"-- {name} ...", file=sys.stderr, flush=True)
    try:
        figures = CASES[name](ctx)
    except Exception as exc:
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
        return Outcome(name, time.perf_counter() - started, details=ctx.details, error=error)
    return Outcome(name, time.perf_counter() - started, figures, ctx.details)


def _value(figure: Figure) -> str:
    if figure.value is None:
        return "-"
    if figure.unit == "x":
        return f"{figure.value:.3f}x"
    if figure.unit == "MB":
        return f"{figure.value:.1f} MB"
    if figure.unit == "ms":
        return f"{figure.value:.2f} ms"
    return f"{figure.value:.4g}"


def _met(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


def table(outcomes: list[Outcome]) -> str:
    """The results as a plain-text table: case, figure, value, target, met, note."""
    rows = [("case", "figure", "value", "target", "met", "note")]
    for outcome in outcomes:
        if outcome.error:
            rows.append((outcome.name, "CRASHED", "-", "-", "NO", outcome.error[:100]))
        for figure in outcome.figures:
            target = "-" if figure.target is None else f"{figure.target}{_unit(figure)}"
            rows.append(
                (outcome.name, figure.name, _value(figure), target, _met(figure.met), figure.note)
            )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[5]]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in [*widths, 4]))
    return "\n".join(lines)


def _unit(figure: Figure) -> str:
    return {"x": "x", "MB": " MB", "ms": " ms"}.get(figure.unit, "")


def write_json(path: Path, outcomes: list[Outcome], quick: bool, elapsed: float) -> None:
    """Write every figure and raw number to ``path`` (folders created)."""
    document = {
        "mode": "quick" if quick else "full",
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 1),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": cpu_count(),
        },
        "cases": [outcome.to_json() for outcome in outcomes],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every case at a small size (under a minute): a smoke test",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(CASES),
        metavar="NAME",
        help=f"run only these cases: {', '.join(CASES)}",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help="where to write the results (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen cases, print the table, write the JSON; 1 if any case crashed."""
    args = parse_args(argv)
    started = time.perf_counter()
    outcomes = [run_case(name, args.quick) for name in (args.only or CASES)]
    elapsed = time.perf_counter() - started
    write_json(args.json, outcomes, args.quick, elapsed)
    print(table(outcomes))
    mode = "quick" if args.quick else "full"
    print(f"\n{mode} run: {elapsed:.1f} s on {cpu_count()} CPUs; results in {args.json}")
    return 1 if any(outcome.error for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
