"""The worker side: one partition through the pandas path, under the cluster's shared limit.

``run_partition`` is what ``map_partitions`` runs. It registers the scheduler plugin
(idempotent), tells the scheduler the partition has begun, then calls the pandas accessor
on the partition with a ``ClusterLimit`` in ``SHARED_LIMIT`` (the engine asks it before
every send) and the cache in write-through mode (a worker killed mid-partition has stored
every answer it received, so the retried partition pays for none of them again). At the
end it sends the partition's report.

A ``ClusterLimit`` talks to the scheduler over the worker's own connection pool, on the
worker's event loop; the run's engine runs on its own loop in the task's thread and awaits
the answers across threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import pickle
import uuid
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from distributed import get_worker

from holysheep_nb.cache.store import WRITE_THROUGH
from holysheep_nb.clock import Clock, SystemClock
from holysheep_nb.dask.budget import BUDGET_HEADERS
from holysheep_nb.dask.plugin import PLUGIN_NAME, LimitsPlugin
from holysheep_nb.errors import ConfigError
from holysheep_nb.outcome import RunStats, RunStop
from holysheep_nb.ratelimit import SHARED_LIMIT

if TYPE_CHECKING:
    from distributed import Worker

#: Seconds between two progress messages of a running partition.
PROGRESS_INTERVAL = 0.5
#: Latencies of one partition sent to the scheduler for the merged report, at most.
REPORT_SAMPLE = 2_000
#: Messages sent without waiting that are kept before the delivered ones are dropped.
SENT_KEPT = 1_000
#: Seconds the end of a partition waits for its last messages to reach the scheduler.
FLUSH_TIMEOUT = 30.0


class ClusterLimit:
    """The shared limit as a run's engine sees it (``holysheep_nb.ratelimit.SharedLimit``).

    Every ``admit`` is one round trip to the scheduler; ``release`` (with the answer's budget
    headers), ``hold``, ``stop`` and token corrections are sent without waiting for an answer.
    ``clock`` paces the progress messages (``PROGRESS_INTERVAL``); the send times are the
    scheduler's, and ``FLUSH_TIMEOUT`` bounds a wait on another thread, so on the real clock.
    """

    def __init__(
        self, worker: Worker, run: str, partition: int, clock: Clock | None = None
    ) -> None:
        self._scheduler = worker.scheduler
        self._loop: asyncio.AbstractEventLoop = worker.loop.asyncio_loop
        self._address: str = worker.address
        self.run = run
        self.partition = partition
        self._leases: deque[str] = deque()
        self._tokens = 0.0  # token corrections not yet sent
        self._sent: set[concurrent.futures.Future[Any]] = set()
        self._stats: RunStats | None = None
        self._publisher: concurrent.futures.Future[None] | None = None
        self._in_flight = 0
        self._clock: Clock = SystemClock() if clock is None else clock

    # -- SharedLimit ---------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """The cluster's sends in flight when this run was last let through."""
        return self._in_flight

    def track(self, stats: RunStats) -> None:
        """Publish the run's counts every ``PROGRESS_INTERVAL`` while it goes on."""
        self._stats = stats
        if self._publisher is None:
            self._publisher = asyncio.run_coroutine_threadsafe(self._publish(), self._loop)

    async def admit(self, tokens: float) -> float | RunStop:
        """Ask the scheduler for a slot and a send time (see ``RunLimits.admit``)."""
        lease = uuid.uuid4().hex
        while True:
            future = self._submit(
                "holysheep_admit", lease=lease, worker=self._address, tokens=float(tokens)
            )
            try:
                reply: dict[str, Any] = await asyncio.wrap_future(future)
            except BaseException:
                self._send("holysheep_release", lease=lease)  # a slot granted too late
                raise
            if "stop" in reply:
                return RunStop(*reply["stop"])
            if "wait" in reply:
                self._leases.append(lease)
                self._in_flight = int(reply["in_flight"])
                return float(reply["wait"])

    def release(self, headers: Mapping[str, str] | None = None) -> None:
        """Free one slot this run holds and send token corrections and the answer's budget
        headers. Slots are alike, so the oldest goes: the scheduler credits the headers to a
        send no later than theirs (see ``holysheep_nb.dask.budget``)."""
        lease = self._leases.popleft() if self._leases else ""
        tokens, self._tokens = self._tokens, 0.0
        budget = None
        if headers is not None and BUDGET_HEADERS[1] in headers:
            budget = {name: headers[name] for name in BUDGET_HEADERS if name in headers}
        self._send("holysheep_release", lease=lease, tokens=tokens, headers=budget)

    def settle(self, estimated: float, actual: float) -> None:
        """Keep the correction; it goes with the next release."""
        self._tokens += actual - estimated

    def hold(self, seconds: float, reason: str) -> None:
        """Hold every worker's new sends."""
        self._send("holysheep_hold", seconds=float(seconds), reason=reason)

    def stop(self, stop: RunStop) -> None:
        """Stop every worker's run."""
        self._send("holysheep_stop", cause=stop.cause, advice=stop.advice)

    # -- the partition's life ------------------------------------------------------------

    def begin(self, config: Mapping[str, Any], rows: int) -> None:
        """Register the plugin (a no-op once done) and say this partition starts."""
        self._call(
            self._scheduler.register_scheduler_plugin(
                plugin=pickle.dumps(LimitsPlugin()), name=PLUGIN_NAME, idempotent=True
            )
        )
        self._call(
            self._rpc(
                "holysheep_begin",
                config=dict(config),
                worker=self._address,
                rows=rows,
                partition=self.partition,
            )
        )

    def finish(self, report: dict[str, Any] | None) -> None:
        """Deliver what is still on its way, then the final count and report (if any)."""
        if self._publisher is not None:
            self._publisher.cancel()
        concurrent.futures.wait(list(self._sent), timeout=FLUSH_TIMEOUT)
        if report is not None:
            self._call(self._rpc("holysheep_finish", partition=self.partition, report=report))

    # -- messages ------------------------------------------------------------------------

    async def _rpc(self, op: str, **message: Any) -> Any:
        return await getattr(self._scheduler, op)(run=self.run, **message)

    def _submit(self, op: str, **message: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(self._rpc(op, **message), self._loop)

    def _send(self, op: str, **message: Any) -> None:
        """Send without waiting; kept (by the run's thread only) until ``finish`` waits."""
        if len(self._sent) >= SENT_KEPT:
            self._sent = {future for future in self._sent if not future.done()}
        self._sent.add(self._submit(op, **message))

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(FLUSH_TIMEOUT)

    async def _publish(self) -> None:
        last: list[int] = []
        while True:
            await self._clock.sleep(PROGRESS_INTERVAL)
            stats = self._stats
            if stats is None:
                continue
            tally = [stats.succeeded, stats.failed, stats.retries, stats.cached]
            if tally != last:
                last = tally
                with contextlib.suppress(OSError):
                    await self._rpc("holysheep_progress", partition=self.partition, tally=tally)


@dataclass(frozen=True)
class PartitionCall:
    """What every partition of a run does: ``part.holysheep.<method>(*args, **options)``,
    under the limits ``config`` (a ``LimitConfig`` as a dict) of run ``run``.

    Dask names its tasks by a deterministic token of their arguments, and the options may
    hold what has none (a schema class made in a notebook cell): the run key names it.
    """

    method: str
    args: tuple[Any, ...]
    options: Mapping[str, Any]
    run: str
    config: Mapping[str, Any]

    def __dask_tokenize__(self) -> str:
        return self.run


def run_partition(
    part: pd.DataFrame | pd.Series,
    call: PartitionCall,
    partition_info: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Run ``call`` on one partition under the cluster's shared limit.

    ``partition_info`` is Dask's (the partition's number). Returns the pandas path's frame
    for the partition.
    """
    try:
        worker = get_worker()
    except ValueError:
        raise ConfigError(
            "holysheep_nb.dask shares one provider limit through a distributed scheduler: "
            "start a client first (from distributed import Client; client = Client())"
        ) from None
    number = int(partition_info["number"]) if partition_info else 0
    limit = ClusterLimit(worker, call.run, number)
    limit.begin(call.config, len(part))
    shared = SHARED_LIMIT.set(limit)
    durable = WRITE_THROUGH.set(True)
    report = None
    try:
        out: pd.DataFrame = getattr(part.holysheep, call.method)(*call.args, **call.options)
        report = _report_dict(out)
    finally:
        WRITE_THROUGH.reset(durable)
        SHARED_LIMIT.reset(shared)
        limit.finish(report)
    return out


def _report_dict(out: pd.DataFrame) -> dict[str, Any]:
    """The partition's report as plain values, with its latency sample thinned."""
    report: dict[str, Any] = out.holysheep.report().to_dict(latency_sample=True)
    sample = report["latency_sample"]
    if len(sample) > REPORT_SAMPLE:
        step = len(sample) / REPORT_SAMPLE
        report["latency_sample"] = [sample[int(i * step)] for i in range(REPORT_SAMPLE)]
    return report
