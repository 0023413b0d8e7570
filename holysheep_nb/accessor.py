"""The ``holysheep`` accessor on DataFrame and Series: what the user types in a cell.

The calls themselves (``complete``, ``label``, ``extract`` and their ``await``-able twins)
are typed once in ``namespace``; here they are run on a pandas frame: validate the input,
build a ``CompletionJob`` and run it, natively (``acomplete`` ...) or from synchronous code
(``complete`` ...), online or through the Batch API (``batch=True`` waits for it;
``df.holysheep.batch.label(...)`` submits and returns a ``BatchHandle``). It keeps no
state: pandas builds a new accessor object on every attribute access. ``FrameCalls`` is
generic in the kind of frame: the polars namespace (``polars_accessor``) is the same calls
on a polars frame.

Importing this module registers the accessors, and may happen in the middle of another
module's ``import pandas`` (see ``holysheep_nb/__init__.py``). So at import it loads only
modules that never import pandas themselves; the job, labels, prompts and report modules
are loaded on first use.

Length: the two accessors, the batch namespace and ``estimate``/``escalate`` share one way
of building and running a call; the steps around a job for few-shot examples, votes and
escalation live in ``call_steps``, so only their calls are here.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pandas as pd

from holysheep_nb.errors import ConfigError, HolySheepError
from holysheep_nb.estimate import Estimate
from holysheep_nb.job_options import JobOptions
from holysheep_nb.namespace import AsyncCalls, Call, Calls, Estimates
from holysheep_nb.runner import run_sync

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from holysheep_nb.batch import BatchHandle, BatchJob, BatchLimits
    from holysheep_nb.extract import ExtractFormat
    from holysheep_nb.formats import AnswerFormat
    from holysheep_nb.job import CompletionJob
    from holysheep_nb.labels import ConfidentLabels, LabelSet
    from holysheep_nb.prompts import PromptSource
    from holysheep_nb.quality.compare import VariantRuns
    from holysheep_nb.quality.comparison import Comparison
    from holysheep_nb.report import RunReport
    from holysheep_nb.run_options import RunOptions

_SERIES_COLUMN = "prompt"

#: The kind of frame a namespace returns (pandas here, polars in ``polars_accessor``).
Frame = TypeVar("Frame")


class FrameCalls(Calls[Frame], AsyncCalls[Frame], Estimates):
    """What the namespaces of eager frames share: how a call runs. The run takes the
    frame as it is (``PromptSource`` reads it through its ``frames`` adapter) and returns a
    frame of the same kind."""

    @property
    def batch(self) -> BatchCalls:
        """The calls through the provider's Batch API, returning at once:
        ``handle = df.holysheep.batch.label("text", labels=L)``, then ``handle.collect()``
        (``await handle.acollect()``) for the usual frame. See ``docs/contract.md``, "Batch"."""
        return BatchCalls(self)

    def _source(self, column: Hashable | None, template: str | None) -> tuple[Any, Hashable | None]:
        """The frame to run on and its prompt column (None with a template)."""
        raise NotImplementedError

    def _job(self, call: Call, options: dict[str, Any], *, sending: bool = True) -> CompletionJob:
        """The job, with few-shot examples chosen locally (nothing sent: ``similar`` by the
        TF-IDF); ``_ajob`` asks the provider's embeddings when the call names a model."""
        from holysheep_nb.call_steps import local_examples
        from holysheep_nb.fewshot.options import Shots

        shots = Shots.take(options)
        return local_examples(self._bare_job(call, options, sending=sending), shots)

    async def _ajob(self, call: Call, options: dict[str, Any]) -> CompletionJob:
        from holysheep_nb.call_steps import examples
        from holysheep_nb.fewshot.options import Shots

        shots = Shots.take(options)
        return await examples(self._bare_job(call, options), shots)

    def _bare_job(
        self, call: Call, options: dict[str, Any], *, sending: bool = True
    ) -> CompletionJob:
        from holysheep_nb.sampling import Votes

        frame, column = self._source(call.column, call.template)
        votes = Votes.take(options)
        answer_format = _answer_format(call, options)
        if votes is None:
            return _job(frame, column, call.template, options, answer_format, sending=sending)
        from holysheep_nb.call_steps import with_n
        from holysheep_nb.votes import voted

        answer_format = voted(answer_format, votes)
        return with_n(
            _job(frame, column, call.template, options, answer_format, sending=sending), votes
        )

    def _call(self, call: Call, options: dict[str, Any]) -> Frame:
        if _submit_only(options):
            # The deprecated form keeps its old result; typed code calls ``.batch``.
            batch = options.pop("batch", False)
            return cast(Frame, self.batch._call(call, {**options, "batch": batch or True}))
        return run_sync(lambda: self._acall(call, options))

    async def _acall(self, call: Call, options: dict[str, Any]) -> Frame:
        from holysheep_nb import call_steps

        given = dict(options)
        batch = options.pop("batch", False)
        if _submit_only(options):
            handle = await self.batch._acall(call, {**options, "batch": batch or True})
            return cast(Frame, handle)
        job = await self._ajob(call, options)
        out = await (_batch_job(job, batch).run() if batch else job.run())
        if getattr(job.answer_format, "ignored_n", False):
            out = await call_steps.votes_apart(job, out, given, lambda more: self._run(call, more))
        return cast(Frame, call_steps.recorded(out, call, given, job))

    async def _run(self, call: Call, options: dict[str, Any]) -> Any:
        """One more run of ``call`` (the votes fallback), without the steps around it."""
        batch = options.pop("batch", False)
        job = await self._ajob(call, options)
        return await (_batch_job(job, batch).run() if batch else job.run())

    def _estimate(
        self, call: Call, options: dict[str, Any], *, latency: float, output_tokens: int | None
    ) -> Estimate:
        given = dict(options)
        batch = bool(given.pop("batch", False))
        job = self._job(call, given, sending=False)
        per_row = output_tokens
        if per_row is None:
            answer_format = job.answer_format
            per_row = answer_format.answer_tokens() if answer_format else job.options.max_tokens
        return Estimate.of(
            job.plan(),
            job.options.settings,
            latency=latency,
            output_tokens_per_row=per_row,
            prices=job.options.prices,
            batch=batch,
        )


class ResultCalls(FrameCalls[Frame]):
    """The calls on a result frame, shared by every frame kind: ``escalate``, ``evaluate``
    and ``compare``. Their merge and statistics are pandas code: a frame of another kind
    is read as pandas (``_as_pandas``, and ``_pandas_value`` for what the caller passes) and a
    frame they return is given back in its kind (``_from_pandas``)."""

    _frame: Frame

    def _as_pandas(self) -> pd.DataFrame:
        return self._frame  # type: ignore[return-value]

    def _from_pandas(self, frame: pd.DataFrame) -> Frame:
        return frame  # type: ignore[return-value]

    def _pandas_value(self, value: Any) -> Any:
        return value

    def escalate(self, *, below: float | None = None, **options: Unpack[RunOptions]) -> Frame:
        """Ask the doubtful rows of this result again with ``model=...``, keep the rest.

        Doubtful: failed, votes disagreeing (``votes`` below 1), or ``confidence`` below
        ``below`` (a share in [0, 1], e.g. ``evaluate(...).threshold_for(accuracy=0.95)``).
        The rows go through the call that made this frame, with ``options`` over its own
        (pass ``api_key`` again if it was given; ``prices`` only when the model is the
        same: pass ``prices=`` for another model); the same engine, cache, limits, and
        ``batch=True``. Returns a new frame with a ``model`` column (which model answered
        each row) and a report of both runs: rows escalated, tokens and cost per model.
        Raises ``HolySheepError`` for a frame no call made, ``ConfigError`` for a ``below``
        without a confidence column. See ``docs/examples.md``, "Escalation".
        """
        return run_sync(lambda: self.aescalate(below=below, **options))

    async def aescalate(
        self, *, below: float | None = None, **options: Unpack[RunOptions]
    ) -> Frame:
        """``escalate`` for ``await``."""
        from holysheep_nb.escalate import escalate_frame

        return self._from_pandas(await escalate_frame(self._as_pandas(), below, dict(options)))

    def evaluate(self, gold: Any = None, *, against: Any = None, **options: Any) -> Any:
        """Judge this result frame against ``gold`` (a column, a Series aligned by index, or
        for ``extract()`` a dict of field to gold column), or its labels' agreement with the
        ``against`` column(s). Every figure has an interval. Options and results:
        ``holysheep_nb.quality.evaluate`` and docs/evaluate.md (the ``eval`` extra)."""
        from holysheep_nb.quality import evaluate

        gold, against = self._pandas_value(gold), self._pandas_value(against)
        return evaluate(self._as_pandas(), gold, against=against, **options)

    def compare(
        self, column: Hashable | None = None, *, variants: Mapping[str, Any], **options: Any
    ) -> Comparison:
        """``label()`` this frame once per variant (``variants``: name -> the label()
        arguments and run options it changes), on one bar, and compare the results against
        ``gold=``, projecting the cost to ``project_to=``: holysheep_nb.quality.compare and
        docs/evaluate.md (the ``eval`` extra)."""
        return run_sync(self._variant_runs(column, variants, options).run)

    async def acompare(
        self, column: Hashable | None = None, *, variants: Mapping[str, Any], **options: Any
    ) -> Comparison:
        """``compare`` for ``await``."""
        return await self._variant_runs(column, variants, options).run()

    def _variant_runs(
        self, column: Hashable | None, variants: Mapping[str, Any], options: dict[str, Any]
    ) -> VariantRuns:
        from holysheep_nb.quality.compare import VariantRuns

        given = {name: self._pandas_value(value) for name, value in options.items()}
        frame = self._as_pandas()
        return VariantRuns.plan(frame, column, variants, given, make_job=_frame_job)


@pd.api.extensions.register_dataframe_accessor("holysheep")
class HolySheepFrameAccessor(ResultCalls[pd.DataFrame]):
    """``df.holysheep``: send every row to a chat-completions API and collect the answers."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def _source(
        self, column: Hashable | None, template: str | None
    ) -> tuple[pd.DataFrame, Hashable | None]:
        return self._frame, column

    def report(self) -> RunReport:
        """The report of the run that produced this frame (counts, failures, latency)."""
        from holysheep_nb.report import attached

        report = attached(self._frame.attrs)  # a frame from Parquet too
        if report is None:
            raise HolySheepError(
                "this DataFrame has no run report: call report() on the frame that complete(), "
                "label() or extract() returned. Joining the frames of several runs (pd.concat, "
                "merge) drops their reports; combine them with holysheep_nb.RunReport.combine("
                "[out1.holysheep.report(), out2.holysheep.report()])"
            )
        return report.for_frame(len(self._frame))

    def review(self, labels: Sequence[str] | None = None, **options: Any) -> Any:
        """Open a panel to label this frame's rows by hand, least sure first: keys 1-9,
        Enter accepts the model's label, Backspace goes back, s skips. Each answer goes at
        once into the ``gold`` column of THIS frame and the gold store (read it back with
        ``holysheep_nb.gold()``). ``labels``: the label set (default: the label column's).
        Options (``text``, ``against``, ``order``, ``gold``, ``task``, ``store``, ...):
        ``holysheep_nb.review.start`` and docs/review.md (the ``notebook`` extra)."""
        from holysheep_nb.review import review

        return review(self._frame, labels=labels, **options)


@pd.api.extensions.register_series_accessor("holysheep")
class HolySheepSeriesAccessor(FrameCalls[pd.DataFrame]):
    """``series.holysheep``: the same for a Series of prompts (or a Series named in a
    template); the result is a frame with the Series as its first column."""

    def __init__(self, series: pd.Series) -> None:
        self._series = series

    def _source(
        self, column: Hashable | None, template: str | None
    ) -> tuple[pd.DataFrame, Hashable | None]:
        if column is not None:
            raise ConfigError(
                f"a Series has no columns to choose from (got column={column!r}): its values "
                "are the prompts; call s.holysheep.complete(), or template='... {name} ...'"
            )
        name = self._series.name if self._series.name is not None else _SERIES_COLUMN
        return self._series.to_frame(name=name), None if template else name


class BatchCalls(Calls["BatchHandle"], AsyncCalls["BatchHandle"]):
    """``df.holysheep.batch``: the calls through the provider's Batch API, submitted and
    returned at once as a ``BatchHandle`` (``batch_ids``, ``status()``, ``collect()``,
    ``await acollect()``, ``cancel()``). ``batch=BatchLimits(...)`` for a provider with
    smaller per-batch limits. Running the same call again re-attaches to its batches."""

    def __init__(self, calls: FrameCalls[Any]) -> None:
        self._calls = calls

    def _call(self, call: Call, options: dict[str, Any]) -> BatchHandle:
        return run_sync(lambda: self._acall(call, options))

    async def _acall(self, call: Call, options: dict[str, Any]) -> BatchHandle:
        batch = options.pop("batch", True)
        job = await self._calls._ajob(call, options)
        return await _batch_job(job, batch or True).submit()


def _frame_job(
    frame: pd.DataFrame, call: Call, options: dict[str, Any], sending: bool
) -> CompletionJob:
    """The job of ``call`` on ``frame`` (``compare()`` builds its variants' jobs with it)."""
    return HolySheepFrameAccessor(frame)._job(call, options, sending=sending)


def _submit_only(options: dict[str, Any]) -> bool:
    """Take the deprecated ``submit_only`` out of ``options``; True when it asks for it."""
    submit_only = options.pop("submit_only", False)
    if submit_only:
        warnings.warn(
            "submit_only=True is deprecated: call df.holysheep.batch.label(...) (or "
            ".complete, .extract) for the BatchHandle",
            DeprecationWarning,
            stacklevel=4,
        )
    return bool(submit_only)


def _answer_format(call: Call, options: dict[str, Any]) -> AnswerFormat | None:
    """The label set or schema that reads the answers of ``call`` (None for ``complete``)."""
    if call.method == "label":
        return _label_set(options, **call.arguments)
    if call.method == "extract":
        return _extract_format(**call.arguments)
    return None


def _job(
    frame: Any,
    column: Hashable | None,
    template: str | None,
    options: dict[str, Any],
    answer_format: AnswerFormat | None = None,
    *,
    sending: bool = True,
) -> CompletionJob:
    from holysheep_nb.job import CompletionJob
    from holysheep_nb.prompts import PromptSource

    source = _image_source(frame, column, template, options) or PromptSource(
        frame, column, template
    )
    unstructured = None
    if answer_format is not None:
        unstructured = answer_format.unstructured_system(options.get("system"))
        options = answer_format.request_options(options)
    return CompletionJob(
        source,
        JobOptions.from_kwargs(**options, key_required=sending),
        answer_format=answer_format,
        unstructured_system=unstructured,
    )


def _image_source(
    frame: pd.DataFrame, column: Hashable | None, template: str | None, options: dict[str, Any]
) -> PromptSource | None:
    """The prompts with their images when the call names image columns (``images=``)."""
    from holysheep_nb.image_options import IMAGE_CHUNK_SIZE, ImageOptions
    from holysheep_nb.images import ImagePromptSource

    images = ImageOptions.take(options)
    if images is None:
        return None
    options.setdefault("chunk_size", IMAGE_CHUNK_SIZE)
    return ImagePromptSource(frame, column, template, images)


def _batch_job(job: CompletionJob, batch: bool | BatchLimits) -> BatchJob:
    from holysheep_nb.batch import BatchJob, BatchLimits

    if not isinstance(batch, (bool, BatchLimits)):
        raise ConfigError(f"batch must be True, False or a BatchLimits, got {type(batch).__name__}")
    limits = batch if isinstance(batch, BatchLimits) else None
    return BatchJob(job.source, job.options, answer_format=job.answer_format, limits=limits)


def _label_set(
    options: dict[str, Any],
    *,
    labels: Sequence[str],
    instructions: str | None,
    multi: bool,
    structured: bool,
) -> LabelSet | ConfidentLabels:
    """The label set, with a ``confidence`` column when the caller asks for ``logprobs``."""
    from holysheep_nb.labels import ConfidentLabels, LabelSet

    label_set = LabelSet(labels, multi=multi, instructions=instructions, structured=structured)
    return ConfidentLabels(label_set) if options.get("logprobs") is True else label_set


def _extract_format(
    *, schema: object, instructions: str | None, flatten: bool, structured: bool
) -> ExtractFormat:
    # Loaded on first use like the others; pydantic alone would double the import time.
    from holysheep_nb.extract import ExtractFormat
    from holysheep_nb.schema import Schema

    return ExtractFormat(
        Schema.of(schema), instructions=instructions, flatten=flatten, structured=structured
    )
