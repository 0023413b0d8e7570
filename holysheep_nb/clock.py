"""The one seam through which the engine reads time and sleeps.

Backoff and rate-limit code never calls ``time`` or ``asyncio.sleep`` directly, so tests swap
in ``FakeClock`` (in ``tests/fakes.py``) and assert exact waits without waiting.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time for intervals, wall time for HTTP dates, and an async sleep."""

    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch (to read ``Retry-After`` HTTP dates)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time`` and ``asyncio.sleep``."""

    def now(self) -> float:
        """Seconds on the monotonic clock."""
        return time.monotonic()

    def wall(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Sleep without blocking the loop."""
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"
