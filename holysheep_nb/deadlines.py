"""Every request of a run bounded by ``timeout`` seconds, with one timer for them all.

aiohttp's own per-request timeout (``ClientTimeout(total=...)``) arms a loop timer for each
request and cancels it when the answer is in: a heap push, a cancelled handle and a timer
context per request, about 5% of the client's CPU in the zero-latency case (py-spy, issue
25). Every request of a run has the same timeout, so their deadlines come in the order they
were sent: a queue in sending order and one timer, armed for the oldest request still out,
bound them all. A request that is past its deadline is cancelled the way aiohttp's timer
does it (``task.cancel()``), and ``Sender`` turns that cancellation into a timeout.

Each sending task has one ``Sending`` (made when it enlists, kept in a context variable:
``sending.enlist``): a request is watched as ``(deadline, sending, serial)``, and ending it
bumps the serial, so a finished request leaves the queue lazily, at no cost of its own.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from holysheep_nb.sending import Sending


class Deadlines:
    """The deadlines of one run's requests, in sending order, under one loop timer.

    ``watch`` a request when it goes out; bump its ``Sending.serial`` when it is over. A
    request still out ``timeout`` seconds after it was watched gets ``expired`` set and its
    task cancelled. ``close`` drops the timer at the end of the run.
    """

    __slots__ = ("_loop", "_timer", "_watched", "timeout")

    def __init__(self, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        self.timeout = timeout
        self._loop = loop
        self._watched: deque[tuple[float, Sending, int]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, sending: Sending) -> None:
        """Start the clock on ``sending``'s current request (its current serial)."""
        watched = self._watched
        while watched and watched[0][1].serial != watched[0][2]:
            watched.popleft()  # requests over since: the queue stays as long as the flight
        when = self._loop.time() + self.timeout
        watched.append((when, sending, sending.serial))
        if self._timer is None:
            self._timer = self._loop.call_at(when, self._expire)

    def _expire(self) -> None:
        """Cancel every request past its deadline; arm the timer for the oldest left."""
        self._timer = None
        now = self._loop.time()
        watched = self._watched
        while watched:
            when, sending, serial = watched[0]
            if sending.serial == serial:
                if when > now:
                    self._timer = self._loop.call_at(when, self._expire)
                    return
                sending.expired = True
                if sending.task is not None:
                    sending.task.cancel()
            watched.popleft()

    def close(self) -> None:
        """Stop the timer; nothing is watched any more."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._watched.clear()


def deadlines_for(timeout: float) -> Deadlines | None:
    """The run's deadlines on the running loop; None for an infinite ``timeout``."""
    if not math.isfinite(timeout):
        return None
    return Deadlines(timeout, asyncio.get_running_loop())
