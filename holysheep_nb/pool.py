"""A run's workers and its stop: who takes the next row, and how every wait ends at once.

``Halt`` is the run's stop (the first reason wins) and the sleep every wait of the run uses:
it wakes with ``Stopped`` the moment the run stops. ``WorkerPool`` counts the workers on the
run's shared rows: ``max_concurrent`` awake, and one more standing in for each that rests
through a backoff, up to twice as many (the engine's ``_Run.work`` is the worker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterator

from holysheep_nb.admission import Stopped
from holysheep_nb.chat import ChatRequest
from holysheep_nb.clock import Clock
from holysheep_nb.outcome import RowOutcome, RunStop

#: What a run's iterable yields: a request to send, or a row whose outcome is already known.
RowWork = tuple[Hashable, ChatRequest | RowOutcome]


class Halt:
    """The run's stop: the first reason wins; its sleeps wake at once (with ``Stopped``)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.reason: RunStop | None = None
        self.event = asyncio.Event()

    async def sleep(self, delay: float) -> None:
        """Sleep on the run's clock; raise ``Stopped`` if the run stops before or meanwhile."""
        if self.event.is_set():
            raise Stopped
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        stopped = asyncio.ensure_future(self.event.wait())
        try:
            await asyncio.wait((sleeper, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopped.cancel()
        if self.event.is_set():
            raise Stopped


class WorkerPool:
    """The run's workers on the shared rows, and how many rest through a backoff."""

    def __init__(self, size: int) -> None:
        self.size = size  # max_concurrent: workers awake; up to twice as many in all
        self.rows: Iterator[RowWork] = iter(())
        self.workers: set[asyncio.Future[None]] = set()
        self.resting = 0  # workers whose row is waiting out a backoff
        self.idle = asyncio.Event()  # set when the last worker ends, or one crashed
        self.crash: BaseException | None = None

    @property
    def surplus(self) -> bool:
        """More workers awake than the run's width: one stood in for a resting one."""
        return len(self.workers) - self.resting > self.size

    @property
    def short(self) -> bool:
        """Fewer workers awake than the width, and room for one more."""
        awake = len(self.workers) - self.resting
        return awake < self.size and len(self.workers) < 2 * self.size

    def retire(self, worker: asyncio.Future[None]) -> None:
        """Forget a finished worker; the run is over when the last one ends or one crashes."""
        self.workers.discard(worker)
        if not worker.cancelled() and worker.exception() is not None and self.crash is None:
            self.crash = worker.exception()
            self.idle.set()
        if not self.workers:
            self.idle.set()

    async def finish(self) -> None:
        """Wait until the last worker ends (re-raise a worker's crash); cancel any left."""
        try:
            await self.idle.wait()
            if self.crash is not None:
                raise self.crash
        finally:
            workers = list(self.workers)
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
