"""Test doubles: a virtual clock that records sleeps, and scripted jitter."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class FakeClock:
    """A clock whose ``sleep`` jumps virtual time instead of waiting, and records each wait.

    Waiters in the throttle queue behind one lock, so only one of them sleeps at a time and
    the virtual time they see is exact.
    """

    def __init__(self, start: float = 1000.0, wall_start: float = 1_700_000_000.0) -> None:
        self.start = start
        self.t = start
        self.wall_start = wall_start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.wall_start + (self.t - self.start)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class ScriptedJitter:
    """Returns the given draws in order, then repeats the last one."""

    def __init__(self, draws: Iterable[float]) -> None:
        self.draws = list(draws)
        self.calls = 0

    def __call__(self) -> float:
        value = self.draws[min(self.calls, len(self.draws) - 1)]
        self.calls += 1
        return value


class SteppedClock(FakeClock):
    """A fake clock whose sleeps end only when the test moves it past their end (``advance``).

    For code that waits on the clock while something else may come first (an ask waiting
    for a slot or its poll): nothing there ends on the real clock, however busy the machine.
    """

    def __init__(self, start: float = 1000.0) -> None:
        super().__init__(start)
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.t + max(0.0, seconds), future))
        self._wake()
        await future

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self._wake()

    def _wake(self) -> None:
        for entry in [entry for entry in self._sleepers if entry[0] <= self.t]:
            self._sleepers.remove(entry)
            if not entry[1].done():
                entry[1].set_result(None)
