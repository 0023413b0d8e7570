"""What one task has out: its ``Sending``, found by the connector and by the deadlines.

A worker sends one request at a time, so the state of its request lives in one object per
task, kept in a context variable: ``ReuseTrackingConnector`` marks it when the connection
came from the pool (a request on a keep-alive connection the server had closed can be sent
again for free), and ``Deadlines`` marks it late.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

import aiohttp
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace


class Sending:
    """The request one task has out: its serial, and whether it was found late.

    ``reused`` says its connection came from the pool (``ReuseTrackingConnector``).
    """

    __slots__ = ("expired", "reused", "serial", "task")

    def __init__(self, task: asyncio.Task[object] | None = None) -> None:
        self.task = task
        self.serial = 0
        self.expired = False
        self.reused = False


#: The sending task's request (``Sending``): ``Sender.send`` starts and ends it,
#: ``ReuseTrackingConnector`` marks it reused, ``Deadlines`` expires it. One per task (a task
#: sends one request at a time), so a request costs a lookup, not a new object.
SENDING: ContextVar[Sending | None] = ContextVar("holysheep_sending", default=None)


def enlist() -> Sending:
    """Make the current task a sender with a ``Sending`` of its own.

    A task started from another task's context inherits that task's ``Sending``: a task
    that sends (the engine's workers) enlists when it starts. A task that sends without
    having enlisted is enlisted at its first request.
    """
    sending = Sending(asyncio.current_task())
    SENDING.set(sending)
    return sending


class ReuseTrackingConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` that marks each request whose connection came from the pool.

    A request written on a pooled keep-alive connection that the server had already closed
    fails before any answer, and the server never read it: ``Sender`` resends it without
    spending an attempt. (aiohttp's tracing could tell the same, at ten signals per request
    on the hot path; this costs a set lookup.) The connections seen are kept in a plain set,
    pruned of closed ones as it grows past a few times the pool's size.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._seen: set[Any] = set()
        self._prune_at = 4 * max(self.limit, 16)

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        protocol = connection.protocol
        sending = SENDING.get()
        if sending is not None and protocol is not None:
            seen = self._seen
            if protocol in seen:
                sending.reused = True
            else:
                seen.add(protocol)
                if len(seen) > self._prune_at:
                    self._seen = {known for known in seen if known.is_connected()}
                    self._prune_at = 4 * max(self.limit, 16, len(self._seen))
        return connection
