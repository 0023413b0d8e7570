"""The steps of a call around its job, for issue 30's options: the few-shot turns
(``examples=``), the ``n`` of ``votes=`` and its fallback, and what a result frame keeps
for ``escalate`` (the call, tokens and cost per model). The accessor calls these; the job
itself only sees ``JobOptions.turns`` and ``params["n"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from holysheep_nb.fewshot.options import Shots
from holysheep_nb.namespace import Call

if TYPE_CHECKING:
    from holysheep_nb.job import CompletionJob
    from holysheep_nb.report import RunReport


def local_examples(job: CompletionJob, shots: Shots) -> CompletionJob:
    """``job`` with its few-shot turns chosen without sending anything (``similar`` by the
    TF-IDF): the dry-run estimate counts their tokens."""
    from holysheep_nb.fewshot.build import local_turns

    if shots.wanted:
        turns = local_turns(shots, job.answer_format, job.source)
        job.options = dataclasses.replace(job.options, turns=turns)
    return job


async def examples(job: CompletionJob, shots: Shots) -> CompletionJob:
    """``job`` with its few-shot turns, ``similar`` by the provider's embeddings when
    ``embedding_model`` is given (cached in the call's cache)."""
    from holysheep_nb.fewshot.build import turns_for

    if not shots.wanted:
        return job
    cache = job.open_cache()
    try:
        options = job.options
        turns = await turns_for(
            shots,
            job.answer_format,
            job.source,
            options.endpoint,
            cache,
            timeout=options.settings.timeout,
        )
    finally:
        if cache is not None:
            cache.close()
    job.options = dataclasses.replace(job.options, turns=turns)
    return job


def with_n(job: CompletionJob, votes: int) -> CompletionJob:
    """``job`` asking ``n=votes`` choices a request."""
    job.options = dataclasses.replace(job.options, params={**job.options.params, "n": votes})
    return job


async def votes_apart(
    job: CompletionJob,
    first: Any,
    given: dict[str, Any],
    run: Callable[[dict[str, Any]], Awaitable[Any]],
) -> Any:
    """``votes=`` where the provider ignored ``n``: ``run`` the call k - 1 more times, one
    ``seed`` each (the given one, or 0, plus 1, 2, ...), and keep the majority of each
    row's k answers (``votes.combine_runs``); the report adds up the k runs. The runs are
    combined as pandas frames (``FrameAdapter.to_pandas``: the same frames for pandas)."""
    from holysheep_nb.report import RunReport, attach
    from holysheep_nb.votes import VotedFormat, combine_runs

    answer_format = cast(VotedFormat, job.answer_format)
    seed = given.get("seed") or 0
    adapter = job.source.adapter
    frames: list[pd.DataFrame] = [adapter.to_pandas(first)]
    for number in range(1, answer_format.votes):
        frames.append(adapter.to_pandas(await run({**given, "seed": seed + number})))
    out = combine_runs(frames, answer_format, list(job.source.frame.columns))
    report = RunReport.combine(_report(frame.attrs) for frame in frames)
    failed = int(out["error"].notna().sum())
    attach(
        out.attrs,
        dataclasses.replace(
            report, rows=len(out), succeeded=len(out) - failed, failed=failed, frame_rows=len(out)
        ),
    )
    return adapter.from_pandas(out)


def recorded(out: Any, call: Call, options: dict[str, Any], job: CompletionJob) -> Any:
    """``out`` with the call that made it (for ``escalate``), its report's tokens and cost
    per model, and the samples read (``votes``)."""
    from holysheep_nb.call_record import keep_call, record
    from holysheep_nb.escalate import with_usage
    from holysheep_nb.report import attach

    model = job.options.endpoint.model
    made = Call(call.method, job.source.column, call.template, call.arguments)
    attrs = job.source.adapter.attrs(out)
    keep_call(attrs, record(made, options, list(job.source.frame.columns), model))
    report = with_usage(_report(attrs), model)
    samples = getattr(job.answer_format, "samples", None)
    if isinstance(samples, int):
        report = dataclasses.replace(report, samples=samples)
    attach(attrs, report)
    return out


def _report(attrs: Mapping[Any, Any]) -> RunReport:
    """The report a run just kept in its frame's ``attrs``."""
    from holysheep_nb.report import attached

    report = attached(attrs)
    assert report is not None, "a run's frame has its report"
    return report
