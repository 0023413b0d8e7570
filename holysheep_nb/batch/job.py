"""One ``batch=True`` call: rows -> distinct requests -> provider batches -> the result frame.

The rows are walked by the online run's planner (``planning``: prompt, fingerprint, cache
lookup, repeats): rows answered from the cache or without a prompt are settled at once;
every other distinct request becomes one JSONL line whose ``custom_id`` is its fingerprint.
The lines are split by the provider's limits, uploaded and batched (``client``), or, when
the same set of requests was submitted before and not yet collected (a kernel restart), the
stored batches are found (``records``) and nothing is uploaded. Waiting polls the batches
with a progress bar of the provider's completed / failed counts; collecting downloads the
output and error files, reads each line as the online path reads an answer (``results``),
writes answers to the cache under the same keys, and builds the same frame through the
online run's sink (``sink``), with a ``batch`` line in the report and the cost at the batch
price. Interrupting stops the waiting, never the batch.

Length: submit, re-attach, wait and collect are one life cycle over the same plan; the
provider calls are in ``client``, the lines in ``lines``, reading them in ``results``, the
handle on submitted batches in ``handle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from holysheep_nb.batch.capacity import WaitingParts
from holysheep_nb.batch.client import BatchClient, BatchError, BatchUnavailableError
from holysheep_nb.batch.handle import TERMINAL, BatchHandle, BatchProgress
from holysheep_nb.batch.lines import BatchLimits, request_line, request_set, split
from holysheep_nb.batch.records import BatchRecord, BatchRecords, records_path
from holysheep_nb.batch.results import read_lines
from holysheep_nb.cache import ResponseCache
from holysheep_nb.clock import Clock, SystemClock
from holysheep_nb.errors import ConfigError, HolySheepWarning
from holysheep_nb.formats import AnswerFormat
from holysheep_nb.job_options import JobOptions
from holysheep_nb.outcome import OutcomeKind, RowOutcome, RunStats, read_answer
from holysheep_nb.planning import Known, RowPlanner
from holysheep_nb.prompts import PromptSource
from holysheep_nb.sink import ResultSink

#: Seconds between polls: the first, and the most (the wait doubles up to it).
FIRST_POLL = 1.0
MAX_POLL = 60.0
#: Seconds of waiting after which the run gives up: the 24 h window and an hour for the
#: provider to finalise. Past it the batch is the provider's problem, not the cell's.
MAX_WAIT = 25 * 3600.0


@dataclass
class BatchPlan:
    """The rows of a call: outcomes already known, and the distinct requests to batch."""

    known: dict[int, RowOutcome] = field(default_factory=dict)
    positions: dict[str, list[int]] = field(default_factory=dict)  # key -> rows asking it
    lines: dict[str, bytes] = field(default_factory=dict)  # key -> JSONL line


class BatchJob:
    """Runs a call through the provider's Batch API (see the module docstring).

    ``source``, ``options`` and ``answer_format`` are a ``CompletionJob``'s (any format: a
    label set, a schema); ``limits`` the provider's per-batch limits; ``clock`` paces the
    polls (tests pass a fake one).
    """

    def __init__(
        self,
        source: PromptSource,
        options: JobOptions,
        *,
        answer_format: AnswerFormat | None = None,
        limits: BatchLimits | None = None,
        clock: Clock | None = None,
    ) -> None:
        if options.endpoint.azure:
            raise ConfigError(
                "batch=True does not reach Azure OpenAI's Batch API yet (it needs a "
                "GlobalBatch deployment and its own routes); run without batch=True"
            )
        self.source = source
        self.options = options
        self.answer_format = answer_format
        self.limits = limits or BatchLimits()
        self.clock = clock or SystemClock()
        self._plan: BatchPlan | None = None

    # -- the three steps -----------------------------------------------------------------

    async def submit(self) -> BatchHandle:
        """Upload and create the batches of the rows not answered yet, or find the ones an
        earlier run of the same call created; return a handle on them.

        Raises ``BatchUnavailableError`` when the provider has no Batch API (nothing was
        charged) and ``BatchError`` when a call fails.
        """
        plan = self._prepare()
        if not plan.lines:
            return BatchHandle(self, plan, ())
        endpoint = self.options.endpoint
        name = request_set(plan.lines)
        files = split(plan.lines.values(), self.limits)
        with BatchRecords(records_path(self.options.cache)) as records:
            found = records.find(name, endpoint.base_url)
            if found and len(found) == next(iter(found.values())).parts:
                ids = tuple(found[part].batch_id for part in sorted(found))
                return BatchHandle(self, plan, ids, reattached=True)
            ids_by_part = {part: record.batch_id for part, record in found.items()}
            async with self._client() as client:
                for part, data in enumerate(files):
                    if part in ids_by_part:
                        continue
                    upload = await client.upload(data, f"holysheep_nb-{name[:12]}-{part}.jsonl")
                    metadata = {"holysheep_nb": name[:32], "part": f"{part + 1}/{len(files)}"}
                    try:
                        batch = await client.create(str(upload["id"]), metadata)
                    except BatchUnavailableError:
                        with contextlib.suppress(BatchError):  # tidy up; the error matters
                            await client.delete_file(str(upload["id"]))
                        raise
                    ids_by_part[part] = str(batch["id"])
                    records.add(
                        BatchRecord(
                            batch_id=ids_by_part[part],
                            request_set=name,
                            part=part,
                            parts=len(files),
                            base_url=endpoint.base_url,
                            model=endpoint.model,
                            requests=data.count(b"\n"),
                            created=self.clock.wall(),
                        )
                    )
        return BatchHandle(self, plan, tuple(ids_by_part[p] for p in sorted(ids_by_part)))

    async def run(self) -> pd.DataFrame:
        """Submit (or re-attach), wait for the batches, and return the result frame."""
        handle = await self.submit()
        return await handle.acollect()

    async def wait(self, batch_ids: tuple[str, ...], total: int) -> list[dict[str, Any]]:
        """Poll until every batch has ended; the final batch objects.

        The bar shows the provider's ``request_counts``, and the parts waiting for the
        enqueued-token limit, which are submitted again as room frees (``capacity``; the
        batches returned are then the new ones). Interrupting (or cancelling the
        task) stops the waiting with a warning that says how to collect or cancel; the
        batches go on at the provider.
        """
        progress = BatchProgress(total, enabled=self.options.progress, now=self.clock.now)
        started = self.clock.now()
        delay = FIRST_POLL
        ids = list(batch_ids)
        try:
            with BatchRecords(records_path(self.options.cache)) as records:
                parts = WaitingParts(records, self.clock.wall)
                async with self._client() as client:
                    while True:
                        batches = [await self._retrieve(client, batch_id) for batch_id in ids]
                        await parts.resubmit(client, ids, batches)
                        waiting = parts.waiting(batches)
                        progress.show(batches, waiting)
                        if not waiting and all(b.get("status") in TERMINAL for b in batches):
                            return batches
                        if self.clock.now() - started > MAX_WAIT:
                            raise BatchError(
                                f"the batches {', '.join(ids)} have not ended after "
                                f"{MAX_WAIT / 3600:g} h; run the cell again later to collect them"
                            )
                        await self.clock.sleep(delay)
                        delay = min(delay * 2, MAX_POLL)
        except (asyncio.CancelledError, KeyboardInterrupt):
            warnings.warn(
                f"stopped waiting for {', '.join(ids)}; the provider keeps running "
                "(and charging for) the batch. Run the same cell again to collect it without "
                "paying twice, or cancel it: python -m holysheep_nb batches cancel "
                f"{ids[0]}",
                HolySheepWarning,
                stacklevel=2,
            )
            raise
        finally:
            progress.close()

    async def collect(
        self, plan: BatchPlan, batches: list[dict[str, Any]], started: float
    ) -> pd.DataFrame:
        """Download the results of ended batches and build the frame (answers cached)."""
        results: dict[str, RowOutcome] = {}
        key = self.options.endpoint.api_key
        async with self._client() as client:
            for batch in batches:
                for file_field in ("output_file_id", "error_file_id"):
                    file_id = batch.get(file_field)
                    if isinstance(file_id, str) and file_id:
                        data = await client.content(file_id)
                        results.update(read_lines(data, key))
        why_missing = _why_missing(batches)
        reader = self.answer_format.read if self.answer_format is not None else None
        stats = RunStats(started=started, requests_sent=len(plan.lines))
        cache = ResponseCache.open(self.options.cache, clock=self.clock)
        sink = ResultSink(self.source, self.answer_format, stats, cache)
        try:

            def record(position: int, outcome: RowOutcome, ran: bool) -> RowOutcome:
                outcome = read_answer(replace(outcome, row_id=position), reader)
                # The tally counts a row the batch ran as sent (it has a latency); the
                # provider does not say how long it took, so the column stays NaN.
                stats.record(replace(outcome, latency=0.0) if ran else outcome)
                sink.record(position, outcome)
                return outcome

            for position, outcome in plan.known.items():
                record(position, outcome, ran=False)
            for request_key, positions in plan.positions.items():
                found = results.get(request_key)
                if found is None:
                    found = RowOutcome(request_key, OutcomeKind.NOT_SENT, detail=why_missing)
                ran = found.kind is not OutcomeKind.NOT_SENT
                leader, *followers = positions
                sink.keep(record(leader, found, ran), request_key)
                for follower in followers:  # asked once: as the online run marks its repeats
                    record(follower, replace(found, shared=True), ran=False)
        finally:
            if cache is not None:
                cache.close()
        ids = [str(b.get("id")) for b in batches]
        if ids:
            with BatchRecords(records_path(self.options.cache)) as records:
                records.collected(ids, self.clock.wall())
        stats.finished = self.clock.now()
        out: pd.DataFrame = sink.frame(self.options.prices, batch_ids=tuple(ids))  # or polars
        return out

    # -- helpers -------------------------------------------------------------------------

    async def _retrieve(self, client: BatchClient, batch_id: str) -> dict[str, Any]:
        """The batch now; a batch the provider does not know (404: deleted, another
        account) is forgotten, so that the next run submits anew instead of waiting on it."""
        try:
            return await client.retrieve(batch_id)
        except BatchError as exc:
            if exc.status != 404:
                raise
            with BatchRecords(records_path(self.options.cache)) as records:
                records.collected([batch_id], self.clock.wall())
            raise BatchError(
                f"{exc}; it is forgotten: run the cell again to submit the rows anew", 404
            ) from None

    def _client(self) -> BatchClient:
        settings = self.options.settings
        return BatchClient(
            self.options.endpoint, timeout=settings.timeout, clock=self.clock, retry=settings.retry
        )

    def _prepare(self) -> BatchPlan:
        """Walk the rows once with the online run's planner: settle what is known, and make
        one line per distinct request still to answer (its repeats share it)."""
        if self._plan is not None:
            return self._plan
        options = self.options
        model = options.endpoint.model
        plan = BatchPlan()
        cache = ResponseCache.open(options.cache, clock=self.clock)
        try:
            for item in RowPlanner(self.source, options, cache, fingerprint=True).walk():
                if isinstance(item, Known):
                    plan.known[item.position] = item.outcome
                    continue
                key = item.key
                assert key is not None  # the planner fingerprints every row asked
                if item.leader is None:
                    plan.lines[key] = request_line(key, model, item.messages, options.params)
                plan.positions.setdefault(key, []).append(item.position)
        finally:
            if cache is not None:
                cache.close()
        self._plan = plan
        return plan


def _why_missing(batches: list[dict[str, Any]]) -> str:
    """Why a request has no line in any result file: its batch ended without running it."""
    for batch in batches:
        status = batch.get("status")
        if status == "failed":
            errors = (batch.get("errors") or {}).get("data") or []
            said = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
            return f"batch {batch.get('id')} failed{': ' + said if said else ''}"
        if status in ("expired", "cancelled"):
            return f"batch {batch.get('id')} {status} before running this request"
    return "the batch results have no line for this request"
