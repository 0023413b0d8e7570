"""One ``batch=True`` call: rows -> distinct requests -> provider batches -> the result frame.

The rows are walked as the online run walks them (prompt, fingerprint, cache lookup): rows
answered from the cache or without a prompt are settled at once; every other distinct
request becomes one JSONL line whose ``custom_id`` is its fingerprint. The lines are split
by the provider's limits, uploaded and batched (``client``), or, when the same set of
requests was submitted before and not yet collected (a kernel restart), the stored batches
are found (``records``) and nothing is uploaded. Waiting polls the batches with a progress
bar of the provider's completed / failed counts; collecting downloads the output and error
files, reads each line as the online path reads an answer (``results``), writes answers to
the cache under the same keys, and builds the same frame, with a ``batch`` line in the
report and the cost at the batch price. Interrupting stops the waiting, never the batch.

Length: submit, re-attach, wait and collect are one life cycle over the same plan; the
provider calls are in ``client``, the lines in ``lines``, reading them in ``results``.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from holysheep_nb.batch.client import BatchClient, BatchError, BatchUnavailableError
from holysheep_nb.batch.lines import BatchLimits, request_line, request_set, split
from holysheep_nb.batch.records import BatchRecord, BatchRecords, records_path
from holysheep_nb.batch.results import read_lines
from holysheep_nb.cache import Fingerprinter, ResponseCache
from holysheep_nb.chat import Messages
from holysheep_nb.clock import Clock, SystemClock
from holysheep_nb.errors import ConfigError, HolySheepWarning
from holysheep_nb.formats import AnswerFormat
from holysheep_nb.job import REPORT_ATTR
from holysheep_nb.job_options import JobOptions
from holysheep_nb.outcome import OutcomeKind, RowOutcome, RunStats, read_answer
from holysheep_nb.progress import RunProgress
from holysheep_nb.prompts import MISSING_PROMPT, PromptSource
from holysheep_nb.report import RunReport
from holysheep_nb.results import ResultColumns
from holysheep_nb.runner import run_sync
from holysheep_nb.stored import known_outcome, to_cached, worth_keeping

#: A batch in one of these states will not change any more.
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
#: Seconds between polls: the first, and the most (the wait doubles up to it).
FIRST_POLL = 1.0
MAX_POLL = 60.0
#: Seconds of waiting after which the run gives up: the 24 h window and an hour for the
#: provider to finalise. Past it the batch is the provider's problem, not the cell's.
MAX_WAIT = 25 * 3600.0


@dataclass
class _Plan:
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
        self._plan: _Plan | None = None

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

        The bar shows the provider's ``request_counts``. Interrupting (or cancelling the
        task) stops the waiting with a warning that says how to collect or cancel; the
        batches go on at the provider.
        """
        progress = _BatchProgress(total, enabled=self.options.progress, now=self.clock.now)
        started = self.clock.now()
        delay = FIRST_POLL
        try:
            async with self._client() as client:
                while True:
                    batches = [await self._retrieve(client, batch_id) for batch_id in batch_ids]
                    progress.show(batches)
                    if all(b.get("status") in TERMINAL for b in batches):
                        return batches
                    if self.clock.now() - started > MAX_WAIT:
                        raise BatchError(
                            f"the batches {', '.join(batch_ids)} have not ended after "
                            f"{MAX_WAIT / 3600:g} h; run the cell again later to collect them"
                        )
                    await self.clock.sleep(delay)
                    delay = min(delay * 2, MAX_POLL)
        except (asyncio.CancelledError, KeyboardInterrupt):
            warnings.warn(
                f"stopped waiting for {', '.join(batch_ids)}; the provider keeps running "
                "(and charging for) the batch. Run the same cell again to collect it without "
                "paying twice, or cancel it: python -m holysheep_nb batches cancel "
                f"{batch_ids[0]}",
                HolySheepWarning,
                stacklevel=2,
            )
            raise
        finally:
            progress.close()

    async def collect(
        self, plan: _Plan, batches: list[dict[str, Any]], started: float
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
        columns = ResultColumns(len(self.source), keep_values=self.answer_format is not None)
        cache = ResponseCache.open(self.options.cache, clock=self.clock)
        try:

            def record(position: int, outcome: RowOutcome, ran: bool) -> RowOutcome:
                outcome = read_answer(replace(outcome, row_id=position), reader)
                # The tally counts a row the batch ran as sent (it has a latency); the
                # provider does not say how long it took, so the column stays NaN.
                stats.record(replace(outcome, latency=0.0) if ran else outcome)
                columns.record(position, outcome)
                return outcome

            for position, outcome in plan.known.items():
                record(position, outcome, ran=False)
            for request_key, positions in plan.positions.items():
                found = results.get(request_key)
                if found is None:
                    found = RowOutcome(request_key, OutcomeKind.NOT_SENT, detail=why_missing)
                ran = found.kind is not OutcomeKind.NOT_SENT
                leader, *followers = positions
                outcome = record(leader, found, ran)
                if cache is not None and worth_keeping(outcome):
                    cache.put(request_key, to_cached(outcome))
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
        return self._frame(columns, stats, tuple(ids))

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
        return BatchClient(
            self.options.endpoint, timeout=self.options.settings.timeout, clock=self.clock
        )

    def _prepare(self) -> _Plan:
        """Walk the rows once (as the online run does): settle what is known, and make one
        line per distinct request still to answer."""
        if self._plan is not None:
            return self._plan
        options = self.options
        endpoint = options.endpoint
        key_of = Fingerprinter(
            base_url=endpoint.base_url, model=endpoint.model, params=options.params
        )
        plan = _Plan()
        cache = ResponseCache.open(options.cache, clock=self.clock)
        try:
            rows = len(self.source)
            for start in range(0, rows, options.chunk_size):
                stop = min(rows, start + options.chunk_size)
                asks: list[tuple[int, Messages, str]] = []
                for position, prompt in enumerate(self.source.chunk(start, stop), start):
                    if prompt.text is None:
                        reason = prompt.error or MISSING_PROMPT
                        plan.known[position] = RowOutcome(
                            position, OutcomeKind.MISSING_PROMPT, detail=reason
                        )
                        continue
                    messages = options.messages(prompt.text)
                    asks.append((position, messages, key_of(messages)))
                hits = cache.get_many([k for _, _, k in asks]) if cache is not None else {}
                for position, messages, request_key in asks:
                    hit = hits.get(request_key)
                    if hit is not None:
                        plan.known[position] = known_outcome(position, hit, cached=True)
                        continue
                    if request_key not in plan.lines:
                        plan.lines[request_key] = request_line(
                            request_key, endpoint.model, messages, options.params
                        )
                    plan.positions.setdefault(request_key, []).append(position)
        finally:
            if cache is not None:
                cache.close()
        self._plan = plan
        return plan

    def _frame(
        self, columns: ResultColumns, stats: RunStats, batch_ids: tuple[str, ...]
    ) -> pd.DataFrame:
        out, response = columns.to_frame(self.source.frame)
        labels = None
        if self.answer_format is not None:
            assert columns.values is not None
            out = self.answer_format.add_columns(out, columns.values, before=response)
            labels = self.answer_format.counts(columns.values)
        prices = self.options.prices
        report = RunReport.from_run(
            stats,
            latency=columns.latency,
            elapsed=(stats.finished or stats.started) - stats.started,
            prices=prices.for_batch() if prices is not None and batch_ids else prices,
            labels=labels,
        )
        out.attrs[REPORT_ATTR] = replace(report, batch_ids=batch_ids)
        return out


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


class BatchHandle:
    """Batches submitted for one call, to collect later: ``handle.collect()`` (or ``await
    handle.acollect()``) waits for them and returns the result frame; ``cancel()`` cancels
    them at the provider. After a kernel restart, run the same cell again instead: it finds
    these batches in the cache file and uploads nothing.
    """

    def __init__(
        self, job: BatchJob, plan: _Plan, batch_ids: tuple[str, ...], *, reattached: bool = False
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


class _BatchProgress:
    """The run's bar (``RunProgress``) over the batch's requests, fed the provider's
    ``request_counts``: ok is its completed count, failed its failed count."""

    def __init__(self, total: int, *, enabled: bool, now: Callable[[], float]) -> None:
        self._bar = RunProgress(
            total, enabled=enabled, description="holysheep batch requests", now=now
        )
        self._stats = RunStats()

    def show(self, batches: list[dict[str, Any]]) -> None:
        """Show the counts of the latest poll of every batch."""
        completed = failed = 0
        for batch in batches:
            counts = batch.get("request_counts") or {}
            completed += int(counts.get("completed") or 0)
            failed += int(counts.get("failed") or 0)
        self._stats.succeeded, self._stats.failed = completed, failed
        self._bar.refresh(self._stats)

    def close(self) -> None:
        """Draw the last counts and close the bar."""
        self._bar.close(self._stats)
