"""The merged report of a Dask run (``ClusterReport.merge``), from a scheduler status built
by hand: no cluster here (a real run's report is checked in ``test_dask.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from holysheep_nb.dask.report import ClusterReport
from holysheep_nb.outcome import RunStats
from holysheep_nb.report import RunReport


def _partition(worker: str, rows: int, paused: int, paused_seconds: float) -> dict[str, Any]:
    stats = RunStats(started=0.0, finished=1.0, succeeded=rows, requests_sent=rows)
    stats.paused, stats.paused_seconds = paused, paused_seconds
    report = RunReport.from_run(stats, latency=np.full(rows, 0.1), elapsed=1.0).to_dict(
        latency_sample=True
    )
    return {"worker": worker, "rows": rows, "tally": [rows, 0, 0, 0], "offset": 0.0,
            "report": report}  # fmt: skip


def test_the_holds_are_the_clusters_not_the_sum_of_the_partitions() -> None:
    # Both partitions saw the same spent budget (and one a hold the pace covered): the
    # cluster held once, for 2 s, as the scheduler kept it.
    status = {
        "partitions": {0: _partition("w1", 10, 3, 2.5), 1: _partition("w2", 10, 2, 2.0)},
        "stop": None,
        "elapsed": 3.0,
        "paused": 1,
        "paused_seconds": 2.0,
    }
    report = ClusterReport.merge(status, npartitions=2)
    assert (report.rows, report.succeeded, report.partitions) == (20, 20, 2)
    assert (report.paused, report.paused_seconds) == (1, 2.0)
