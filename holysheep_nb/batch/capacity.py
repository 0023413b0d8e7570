"""The Batch API's enqueued-token limit: parts of a call that wait for room, resubmitted.

OpenAI counts the input tokens of every batch still validating or in progress against one
limit per model; a batch beyond it fails at once with ``token_limit_exceeded`` ("Enqueued
token limit reached ... try again once some in_progress batches have been completed", the
Batch API guide's rate limits). A call split into parts meets it when its parts together are
over the limit: the first parts run, the others fail.

``WaitingParts`` keeps such parts waiting instead of failing their rows: when another part
of the call completes, it submits the waiting parts again (their uploaded file and
metadata, nothing uploaded twice), in order, until one is refused again. When none of the
call's batches is in progress any more, a waiting part is tried once more, and refused
then it is given up: the room is taken by batches outside this call, or the part alone is
over the limit, and its rows say the provider's message. A resubmitted part replaces its
batch in the call's records (``records.BatchRecords.replace``), so a kernel restart
re-attaches to the new batch and goes on waiting the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from holysheep_nb.batch.client import BatchClient
from holysheep_nb.batch.handle import TERMINAL
from holysheep_nb.batch.records import BatchRecords

TOKEN_LIMIT = "token_limit_exceeded"


def over_token_limit(batch: dict[str, Any]) -> bool:
    """True when ``batch`` failed for the enqueued-token limit."""
    if batch.get("status") != "failed":
        return False
    errors = batch.get("errors")
    data = errors.get("data") if isinstance(errors, dict) else None
    return isinstance(data, list) and any(
        isinstance(error, dict) and error.get("code") == TOKEN_LIMIT for error in data
    )


class WaitingParts:
    """One call's parts that wait for the enqueued-token limit (see the module docstring)."""

    def __init__(self, records: BatchRecords, wall: Callable[[], float]) -> None:
        self.records = records
        self.wall = wall  # the clock a resubmission is recorded at (epoch seconds)
        self.completed = 0  # the call's completed batches at the last look
        self.given_up: set[int] = set()

    def waiting(self, batches: list[dict[str, Any]]) -> int:
        """Parts waiting for room now (not given up)."""
        return sum(
            over_token_limit(batch) and part not in self.given_up
            for part, batch in enumerate(batches)
        )

    async def resubmit(
        self, client: BatchClient, ids: list[str], batches: list[dict[str, Any]]
    ) -> None:
        """Submit waiting parts again when room may have freed; ``ids`` and ``batches`` are
        updated in place with the new batches."""
        waiting = [
            part
            for part, batch in enumerate(batches)
            if over_token_limit(batch) and part not in self.given_up
        ]
        completed = sum(batch.get("status") == "completed" for batch in batches)
        running = any(batch.get("status") not in TERMINAL for batch in batches)
        freed = completed > self.completed
        self.completed = completed
        if not waiting or (running and not freed):
            return
        for part in waiting:
            old = batches[part]
            metadata = old.get("metadata")
            new = await client.create(
                str(old.get("input_file_id")), metadata if isinstance(metadata, dict) else {}
            )
            self.records.replace(ids[part], str(new["id"]), self.wall())
            ids[part], batches[part] = str(new["id"]), new
            if over_token_limit(new):
                if not running:
                    self.given_up.add(part)  # nothing of this call holds the room
                return
            running = True
