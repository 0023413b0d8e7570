"""One report for a whole Dask run, merged from the partitions' reports on the scheduler.

Each partition's worker sends its pandas-path report (``RunReport.to_dict()``, its latency
sample thinned to ``REPORT_SAMPLE``) to the scheduler when it finishes; a partition retried
after a lost worker sends the report of its last run only. ``ClusterReport`` adds them up:
counts, failures by cause, labels, tokens and cost are exact sums; latency percentiles are
read from the merged samples (exact while no partition sent more than ``REPORT_SAMPLE`` rows,
a sample otherwise); ``elapsed`` is the scheduler's time from the first partition's start to
the last one's end; the timeline is the partitions' per-second counts, each shifted by its
start; holds (how many, how long) are the scheduler's run-wide ones, not the partitions'
sum. Per worker: partitions, rows and requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from holysheep_nb._render import Sections
from holysheep_nb.errors import HolySheepError
from holysheep_nb.outcome import RunStats, RunStop
from holysheep_nb.report import RunReport

if TYPE_CHECKING:
    import dask.dataframe as dd

#: The per-partition counts that add up.
_SUMS = (
    "succeeded", "failed", "cached", "not_sent", "deduplicated", "retries", "rate_limited",
    "requests_sent", "resent", "truncated", "prompt_tokens", "completion_tokens",
)  # fmt: skip


@dataclass(frozen=True)
class WorkerShare:
    """What one worker did in the run (partitions it finished last, their rows and requests)."""

    worker: str
    partitions: int
    rows: int
    succeeded: int
    failed: int
    cached: int
    requests_sent: int
    rate_limited: int


@dataclass(frozen=True, kw_only=True)
class ClusterReport(RunReport):
    """A ``RunReport`` over every partition of a Dask run, plus what each worker did.

    ``partitions`` counts the partitions that reported, of ``npartitions`` in the frame.
    """

    partitions: int = 0
    npartitions: int = 0
    workers: tuple[WorkerShare, ...] = ()

    @classmethod
    def merge(cls, status: Mapping[str, Any], npartitions: int) -> ClusterReport:
        """Merge the scheduler's ``holysheep_status`` of a run (see the module docstring)."""
        parts = [p for p in status["partitions"].values() if p["report"] is not None]
        reports = [p["report"] for p in parts]
        stats = RunStats()
        failures: Counter[str] = Counter()
        failed_fields: Counter[str] = Counter()
        labels: Counter[str] = Counter()
        cost: float | None = None
        for report in reports:
            for name in _SUMS:
                setattr(stats, name, getattr(stats, name) + int(report[name]))
            failures.update(report["failures"])
            failed_fields.update(report["failed_fields"])
            labels.update(report["labels"])
            if report["cost"] is not None:
                cost = (cost or 0.0) + float(report["cost"])
        stats.failures = failures
        stats.failed_fields = failed_fields
        # Holds are the cluster's, as the scheduler kept them: the partitions' own overlap,
        # and some of them held nothing the shared pace did not hold already.
        stats.paused = int(status["paused"])
        stats.paused_seconds = float(status["paused_seconds"])
        stop = status.get("stop")
        stats.stop = RunStop(*stop) if stop else None
        latency = np.array([t for report in reports for t in report["latency_sample"]], float)
        base = RunReport.from_run(
            stats,
            latency=latency,
            elapsed=float(status["elapsed"]),
            labels=labels,
            timeline=_timeline(parts),
        )
        fields = {name: getattr(base, name) for name in base.__dataclass_fields__}
        fields["cost"] = cost
        return cls(
            **fields,
            partitions=len(parts),
            npartitions=npartitions,
            workers=_workers(parts),
        )

    def to_dict(self, *, latency_sample: bool = False) -> dict[str, Any]:
        """The report as a plain JSON-able dict, with ``partitions`` and ``workers``."""
        return {
            **super().to_dict(latency_sample=latency_sample),
            "partitions": self.partitions,
            "npartitions": self.npartitions,
            "workers": [vars(share) for share in self.workers],
        }

    def __repr__(self) -> str:
        return (
            f"ClusterReport(rows={self.rows}, succeeded={self.succeeded}, failed={self.failed}, "
            f"cached={self.cached}, partitions={self.partitions}/{self.npartitions}, "
            f"workers={len(self.workers)}, elapsed={self.elapsed:.3f})"
        )

    def _sections(self) -> tuple[str, Sections]:
        title, sections = super()._sections()
        title += f", {self.partitions} of {self.npartitions} partitions"
        per_worker = [
            (
                share.worker,
                f"{share.rows:,} rows",
                f"{share.partitions} partitions, {share.requests_sent:,} requests, "
                f"{share.rate_limited:,} 429s, {share.cached:,} cached, {share.failed:,} failed",
            )
            for share in self.workers
        ]
        return title, [*sections, ("by worker", per_worker)]


def _timeline(parts: list[dict[str, Any]]) -> list[tuple[float, int, int, int]]:
    """The partitions' (second, requests, retries, 429s), each shifted by its start."""
    seconds: dict[int, list[int]] = {}
    for part in parts:
        offset = int(part["offset"])
        for second, requests, retries, limited in part["report"]["timeline"]:
            counts = seconds.setdefault(offset + int(second), [0, 0, 0])
            counts[0] += requests
            counts[1] += retries
            counts[2] += limited
    return [(float(second), n, r, k) for second, (n, r, k) in sorted(seconds.items())]


def _workers(parts: list[dict[str, Any]]) -> tuple[WorkerShare, ...]:
    totals: dict[str, Counter[str]] = {}
    for part in parts:
        report = part["report"]
        counts = totals.setdefault(part["worker"], Counter())
        counts["partitions"] += 1
        for name in ("rows", "succeeded", "failed", "cached", "requests_sent", "rate_limited"):
            counts[name] += int(report[name])
    return tuple(
        WorkerShare(
            worker,
            counts["partitions"],
            counts["rows"],
            counts["succeeded"],
            counts["failed"],
            counts["cached"],
            counts["requests_sent"],
            counts["rate_limited"],
        )
        for worker, counts in sorted(totals.items())
    )


def run_status(frame: dd.DataFrame) -> dict[str, Any]:
    """The scheduler's state of the run that makes ``frame``: a ``HolySheepError`` when the
    run has not started on the current client's scheduler."""
    from distributed import get_client

    from holysheep_nb.dask.accessor import run_key
    from holysheep_nb.dask.plugin import PLUGIN_NAME

    run = run_key(frame)
    client = get_client()
    if PLUGIN_NAME not in client.run_on_scheduler(_plugin_names):
        raise HolySheepError(f"run {run} has not started: compute the frame first")
    status: dict[str, Any] | None = client.sync(client.scheduler.holysheep_status, run=run)
    if status is None:
        raise HolySheepError(f"run {run} has not started: compute the frame first")
    return status


def _plugin_names(dask_scheduler: Any) -> list[str]:
    return list(dask_scheduler.plugins)


def fetch_report(frame: dd.DataFrame) -> ClusterReport:
    """The merged report of the run that makes ``frame`` (what its partitions reported)."""
    return ClusterReport.merge(run_status(frame), frame.npartitions)
