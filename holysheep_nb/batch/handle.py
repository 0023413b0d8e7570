"""The handle on a call's submitted batches, and the progress bar while waiting for them.

``BatchHandle`` is what ``submit_only=True`` returns: collect, status and cancel, each
also from synchronous code. ``BatchProgress`` draws the run's bar over the provider's
``request_counts``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from holysheep_nb.outcome import RunStats
from holysheep_nb.progress import RunProgress
from holysheep_nb.runner import run_sync

if TYPE_CHECKING:
    from holysheep_nb.batch.job import BatchJob, BatchPlan

#: A batch in one of these states will not change any more.
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


class BatchHandle:
    """Batches submitted for one call, to collect later: ``handle.collect()`` (or ``await
    handle.acollect()``) waits for them and returns the result frame; ``cancel()`` cancels
    them at the provider. After a kernel restart, run the same cell again instead: it finds
    these batches in the cache file and uploads nothing.
    """

    def __init__(
        self,
        job: BatchJob,
        plan: BatchPlan,
        batch_ids: tuple[str, ...],
        *,
        reattached: bool = False,
    ) -> None:
        self._job = job
        self._plan = plan
        #: The provider's batch ids, in the order of the parts of the input.
        self.batch_ids = batch_ids
        #: True when an earlier run had submitted these batches (nothing was uploaded now).
        self.reattached = reattached
        self._started = job.clock.now()

    @property
    def requests(self) -> int:
        """Distinct requests in the batches (rows sharing a request share its answer)."""
        return len(self._plan.lines)

    async def acollect(self) -> pd.DataFrame:
        """Wait for the batches to end, then return the result frame (answers cached)."""
        job = self._job
        batches = await job.wait(self.batch_ids, self.requests) if self.batch_ids else []
        return await job.collect(self._plan, batches, self._started)

    def collect(self) -> pd.DataFrame:
        """``acollect`` from synchronous code (a script or a notebook cell)."""
        return run_sync(self.acollect)

    async def astatus(self) -> dict[str, str]:
        """Each batch's status now (``in_progress``, ``completed``, ...), by id."""
        async with self._job._client() as client:
            return {i: str((await client.retrieve(i)).get("status")) for i in self.batch_ids}

    def status(self) -> dict[str, str]:
        """``astatus`` from synchronous code."""
        return run_sync(self.astatus)

    async def acancel(self) -> None:
        """Ask the provider to cancel every batch that has not ended (requests already run
        are still charged and collected)."""
        async with self._job._client() as client:
            for batch_id in self.batch_ids:
                if (await client.retrieve(batch_id)).get("status") not in TERMINAL:
                    await client.cancel(batch_id)

    def cancel(self) -> None:
        """``acancel`` from synchronous code."""
        run_sync(self.acancel)

    def __repr__(self) -> str:
        how = "re-attached" if self.reattached else "submitted"
        ids = ", ".join(self.batch_ids) or "none: every row is answered"
        return (
            f"BatchHandle({self.requests:,} requests {how}: {ids}; "
            "out = handle.collect() when done)"
        )


class BatchProgress:
    """The run's bar (``RunProgress``) over the batch's requests, fed the provider's
    ``request_counts``: ok is its completed count, failed its failed count."""

    def __init__(self, total: int, *, enabled: bool, now: Callable[[], float]) -> None:
        self._bar = RunProgress(
            total, enabled=enabled, description="holysheep batch requests", now=now
        )
        self._stats = RunStats()

    def show(self, batches: list[dict[str, Any]], waiting: int = 0) -> None:
        """Show the counts of the latest poll of every batch, and the parts ``waiting`` for
        the enqueued-token limit (``capacity``)."""
        completed = failed = 0
        for batch in batches:
            counts = batch.get("request_counts") or {}
            completed += int(counts.get("completed") or 0)
            failed += int(counts.get("failed") or 0)
        self._stats.succeeded, self._stats.failed = completed, failed
        extra = {"waiting": f"{waiting} part{'s' if waiting > 1 else ''}"} if waiting else None
        self._bar.refresh(self._stats, extra)

    def close(self) -> None:
        """Draw the last counts and close the bar."""
        self._bar.close(self._stats)
