"""The scheduler side: a scheduler plugin that answers the workers' asks for every run.

Registered by the first partition of a run that starts (idempotent: later registrations are
no-ops), it adds ``holysheep_*`` handlers to the scheduler, as distributed's own semaphore
extension does, and keeps one ``RunLimits`` per run key. The scheduler is the one process
every worker already talks to and whose loss ends the computation anyway, so the shared
state lives exactly as long as the run can; ``remove_worker`` frees a lost worker's slots
at once. The scheduler must be able to import ``holysheep_nb`` (the same environment as the
workers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distributed.diagnostics.plugin import SchedulerPlugin

from holysheep_nb.clock import Clock, SystemClock
from holysheep_nb.dask.limits import LimitConfig, RunLimits

if TYPE_CHECKING:
    from distributed import Scheduler

PLUGIN_NAME = "holysheep_nb-limits"
#: Runs whose state (reports included) the scheduler keeps; older idle ones are dropped.
KEPT_RUNS = 64


class LimitsPlugin(SchedulerPlugin):  # type: ignore[misc]
    """Holds the shared limit, progress and reports of every holysheep_nb run.

    ``clock`` is the time every run's limit is kept on (the system clock unless a test
    injects one; it is pickled with the plugin, as the scheduler receives it).
    """

    idempotent = True
    name = PLUGIN_NAME

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = SystemClock() if clock is None else clock
        self.runs: dict[str, RunLimits] = {}

    async def start(self, scheduler: Scheduler) -> None:
        """Add the handlers the workers and the client call."""
        scheduler.handlers.update(
            {
                "holysheep_begin": self.begin,
                "holysheep_admit": self.admit,
                "holysheep_release": self.release,
                "holysheep_hold": self.hold,
                "holysheep_stop": self.stop,
                "holysheep_progress": self.progress,
                "holysheep_finish": self.finish,
                "holysheep_status": self.status,
            }
        )

    def remove_worker(
        self, scheduler: Scheduler, worker: str, *, stimulus_id: str, **kwargs: Any
    ) -> None:
        """A worker left: its slots in flight are free for the others."""
        for run in self.runs.values():
            run.worker_lost(worker)

    def _run(self, run: str, config: dict[str, Any] | None = None) -> RunLimits:
        limits = self.runs.get(run)
        if limits is None:
            if config is None:
                raise KeyError(f"holysheep_nb run {run!r} has not started on this scheduler")
            self._forget_old_runs()
            limits = self.runs[run] = RunLimits(LimitConfig.from_dict(config), self.clock)
        return limits

    def _forget_old_runs(self) -> None:
        """Keep at most ``KEPT_RUNS``: the oldest idle runs (none in flight, some partition
        finished) go first, so a long-lived scheduler does not grow without end."""
        idle = [run for run, limits in self.runs.items() if limits.idle]
        for run in idle[: max(0, len(self.runs) - KEPT_RUNS + 1)]:
            del self.runs[run]

    def begin(
        self, run: str, config: dict[str, Any], partition: int, worker: str, rows: int
    ) -> None:
        """A partition starts on ``worker`` (the first one creates the run's state)."""
        self._run(run, config).begin(partition, worker, rows)

    async def admit(self, run: str, lease: str, worker: str, tokens: float) -> dict[str, Any]:
        """One send's turn (see ``RunLimits.admit``)."""
        return await self._run(run).admit(lease, worker, tokens)

    def release(
        self, run: str, lease: str, tokens: float = 0.0, headers: dict[str, str] | None = None
    ) -> None:
        """A send is over (see ``RunLimits.release``)."""
        self._run(run).release(lease, tokens, headers)

    def hold(self, run: str, seconds: float, reason: str) -> None:
        """Hold every new send of the run."""
        self._run(run).hold(seconds, reason)

    def stop(self, run: str, cause: str, advice: str) -> None:
        """Stop the run everywhere."""
        self._run(run).stop_run(cause, advice)

    def progress(self, run: str, partition: int, tally: list[int]) -> None:
        """A partition's counts so far (see ``RunLimits.progress``)."""
        self._run(run).progress(partition, tally)

    def finish(self, run: str, partition: int, report: dict[str, Any]) -> None:
        """A partition's final report."""
        self._run(run).finish(partition, report)

    def status(self, run: str) -> dict[str, Any] | None:
        """What the client's bar and report read; None before any partition started."""
        limits = self.runs.get(run)
        return None if limits is None else limits.status()
