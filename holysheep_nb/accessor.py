"""The ``holysheep`` accessor on DataFrame and Series: what the user types in a cell.

It validates input, builds a ``CompletionJob`` and runs it, natively (``acomplete``,
``alabel``, ``aextract``) or from synchronous code (``complete``, ``label``, ``extract``). It
keeps no state: pandas builds a new accessor object on every attribute access.

Importing this module registers the accessors, and may happen in the middle of another
module's ``import pandas`` (see ``holysheep_nb/__init__.py``). So at import it loads only
modules that never import pandas themselves; the job, labels, prompts and report modules
are loaded on first use.

Length: every call spells out its keyword options (they are what an IDE shows a user) and
has sync, async and ``batch=`` overloads; each body is a line or two into ``job``/``batch``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

import pandas as pd

from holysheep_nb.errors import ConfigError, HolySheepError
from holysheep_nb.estimate import DEFAULT_LATENCY, Estimate
from holysheep_nb.job_options import JobOptions
from holysheep_nb.runner import run_sync

if TYPE_CHECKING:
    from holysheep_nb.batch import BatchHandle, BatchJob, BatchLimits
    from holysheep_nb.extract import ExtractFormat
    from holysheep_nb.formats import AnswerFormat
    from holysheep_nb.job import CompletionJob
    from holysheep_nb.labels import ConfidentLabels, LabelSet
    from holysheep_nb.report import RunReport

_SERIES_COLUMN = "prompt"


def _job(
    frame: pd.DataFrame,
    column: Hashable | None,
    template: str | None,
    options: dict[str, Any],
    answer_format: AnswerFormat | None = None,
    *,
    sending: bool = True,
) -> CompletionJob:
    from holysheep_nb.job import CompletionJob
    from holysheep_nb.prompts import PromptSource

    source = PromptSource(frame, column, template)
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


def _run(
    job: CompletionJob, batch: bool | BatchLimits, submit_only: bool
) -> pd.DataFrame | BatchHandle:
    """Run ``job`` online, or through the provider's Batch API (see ``holysheep_nb.batch``)."""
    if not batch and not submit_only:
        return run_sync(job.run)
    batch_job = _batch_job(job, batch)
    if submit_only:
        return run_sync(batch_job.submit)
    return run_sync(batch_job.run)


async def _arun(
    job: CompletionJob, batch: bool | BatchLimits, submit_only: bool
) -> pd.DataFrame | BatchHandle:
    """``_run`` for ``await``."""
    if not batch and not submit_only:
        return await job.run()
    batch_job = _batch_job(job, batch)
    if submit_only:
        return await batch_job.submit()
    return await batch_job.run()


def _batch_job(job: CompletionJob, batch: bool | BatchLimits) -> BatchJob:
    from holysheep_nb.batch import BatchJob, BatchLimits

    if not isinstance(batch, (bool, BatchLimits)):
        raise ConfigError(f"batch must be True, False or a BatchLimits, got {type(batch).__name__}")
    limits = batch if isinstance(batch, BatchLimits) else None
    return BatchJob(job.source, job.options, answer_format=job.answer_format, limits=limits)


def _label_set(
    labels: Sequence[str],
    instructions: str | None,
    multi: bool,
    structured: bool,
    options: dict[str, Any],
) -> LabelSet | ConfidentLabels:
    """The label set, with a ``confidence`` column when the caller asks for ``logprobs``."""
    from holysheep_nb.labels import ConfidentLabels, LabelSet

    label_set = LabelSet(labels, multi=multi, instructions=instructions, structured=structured)
    return ConfidentLabels(label_set) if options.get("logprobs") is True else label_set


def _extract_format(
    schema: object, instructions: str | None, flatten: bool, structured: bool
) -> ExtractFormat:
    # Loaded on first use like the others; pydantic alone would double the import time.
    from holysheep_nb.extract import ExtractFormat
    from holysheep_nb.schema import Schema

    return ExtractFormat(
        Schema.of(schema), instructions=instructions, flatten=flatten, structured=structured
    )


def _estimate(
    frame: pd.DataFrame,
    column: Hashable | None,
    template: str | None,
    options: dict[str, Any],
    *,
    answer_format: AnswerFormat | None,
    latency: float,
    output_tokens: int | None,
    batch: bool = False,
) -> Estimate:
    job = _job(frame, column, template, options, answer_format, sending=False)
    per_row = output_tokens
    if per_row is None:
        per_row = (
            answer_format.answer_tokens() if answer_format is not None else job.options.max_tokens
        )
    return Estimate.of(
        job.plan(),
        job.options.settings,
        latency=latency,
        output_tokens_per_row=per_row,
        prices=job.options.prices,
        batch=batch,
    )


def _report(frame: pd.DataFrame) -> RunReport:
    from holysheep_nb.job import REPORT_ATTR
    from holysheep_nb.report import RunReport

    report = frame.attrs.get(REPORT_ATTR)
    if not isinstance(report, RunReport):
        raise HolySheepError(
            "this DataFrame has no run report: call report() on the frame that complete() or "
            "label() returned"
        )
    return report


@pd.api.extensions.register_dataframe_accessor("holysheep")
class HolySheepFrameAccessor:
    """``df.holysheep``: send every row to a chat-completions API and collect the answers."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    @overload
    def complete(
        self,
        column: Hashable | None = None,
        *,
        template: str | None = None,
        batch: bool | BatchLimits = False,
        submit_only: Literal[False] = False,
        **options: Any,
    ) -> pd.DataFrame: ...
    @overload
    def complete(
        self,
        column: Hashable | None = None,
        *,
        template: str | None = None,
        batch: bool | BatchLimits = False,
        submit_only: Literal[True],
        **options: Any,
    ) -> BatchHandle: ...

    def complete(
        self,
        column: Hashable | None = None,
        *,
        template: str | None = None,
        batch: bool | BatchLimits = False,
        submit_only: bool = False,
        **options: Any,
    ) -> pd.DataFrame | BatchHandle:
        """Answer every row; return a new frame with ``response``, ``error``, ``latency``.

        ``column`` holds the prompts, or ``template="... {col} ..."`` builds them from
        columns. Options (``docs/contract.md``, "Options"): model, system, base_url, api_key,
        api_version, headers, max_concurrent, requests_per_minute, tokens_per_minute,
        max_retries, max_retry_after, timeout, chunk_size, progress, cache, prices, verify,
        and any chat-completions parameter (temperature, ...). Result columns and failure
        kinds: ``docs/contract.md``. Works in a script and in a Jupyter cell alike.

        ``batch=True`` sends the rows through the provider's Batch API instead (about half
        the price, answers within 24 hours; ``BatchLimits(...)`` for a provider with
        smaller per-batch limits) and waits for it; ``submit_only=True`` returns a
        ``BatchHandle`` at once, to ``collect()`` later. Raises ``BatchUnavailableError``
        when the provider has no Batch API (nothing charged). See ``docs/contract.md``,
        "Batch".
        """
        job = _job(self._frame, column, template, options)
        return _run(job, batch, submit_only)

    @overload
    async def acomplete(
        self,
        column: Hashable | None = None,
        *,
        template: str | None = None,
        batch: bool | BatchLimits = False,
        submit_only: Literal[False] = False,
        **options: Any,
    ) -> pd.DataFrame: ...
    @overload
    async def acomplete(
        self,
        column: Hashable | None = None,
        *,
        template: str | None = None,
        batch: bool | BatchLimits = False,
        submit_only: Literal[True],
        **options: Any,
    ) -> BatchHandle: ...

    async def acomplete(
        self,
        column: Hashable | None = None,
        *,
        template: str | None = None,
        batch: bool | BatchLimits = False,
        submit_only: bool = False,
        **options: Any,
    ) -> pd.DataFrame | BatchHandle:
        """``complete`` for ``await`` in a notebook cell or async code, without patching."""
        return await _arun(_job(self._frame, column, template, options), batch, submit_only)

    @overload
    def label(
        self,
        column: Hashable | None = None,
        *,
        labels: Sequence[str],
        instructions: str | None = None,
        multi: bool = False,
        structured: bool = True,
        template: str | None = None,
        batch: bool | BatchLimits = False,
        submit_only: Literal[False] = False,
        **options: Any,
    ) -> pd.DataFrame: ...
    @overload
    def label(
        self,
        column: Hashable | None = None,
        *,
        labels: Sequence[str],
        instructions: str | None = None,
        multi: bool = False,
        structured: bool = True,
        template: str | None = None,
        batch: bool | BatchLimits = False,
        submit_only: Literal[True],
        **options: Any,
    ) -> BatchHandle: ...

    def label(
        self,
        column: Hashable | None = None,
        *,
        labels: Sequence[str],
        instructions: str | None = None,
        multi: bool = False,
        structured: bool = True,
        template: str | None = None,
        batch: bool | BatchLimits = False,
        submit_only: bool = False,
        **options: Any,
    ) -> pd.DataFrame | BatchHandle:
        """Give every row one label of ``labels`` (several with ``multi=True``).

        Returns ``complete()``'s frame plus a ``label`` column (a Categorical over
        ``labels``; lists with ``multi=True``) before ``response``, the raw answer. An answer
        outside the set leaves the label missing and says ``not in label set: '...'`` in
        ``error``. ``instructions`` say what the labels mean; ``structured=False`` drops the
        JSON-schema ``response_format`` for servers that reject it. Options, ``batch`` and
        ``submit_only`` as ``complete``.

        With ``logprobs=True`` (a chat-completions parameter) a ``confidence`` column (float,
        0..1) follows the label: the probability the model gave its label, the product of
        ``exp(logprob)`` over the tokens that spell it (OpenAI's cookbook "Using logprobs").
        It is the model's own probability, not a calibrated accuracy, and NaN when the server
        sends no logprobs, for rows answered from the cache, and when the answer does not
        spell the label out (see ``ConfidentLabels``).
        """
        label_set = _label_set(labels, instructions, multi, structured, options)
        job = _job(self._frame, column, template, options, label_set)
        return _run(job, batch, submit_only)

    @overload
    async def alabel(
        self,
        column: Hashable | None = None,
        *,
        labels: Sequence[str],
        instructions: str | None = None,
        multi: bool = False,
        structured: bool = True,
        template: str | None = None,
        batch: bool | BatchLimits = False,
        submit_only: Literal[False] = False,
        **options: Any,
    ) -> pd.DataFrame: ...
    @overload
    async def alabel(
        self,
        column: Hashable | None = None,
        *,
        labels: Sequence[str],
        instructions: str | None = None,
        multi: bool = False,
        structured: bool = True,
        template: str | None = None,
        batch: bool | BatchLimits = False,
        submit_only: Literal[True],
        **options: Any,
    ) -> BatchHandle: ...

    async def alabel(
        self,
        column: Hashable | None = None,
        *,
        labels: Sequence[str],
        instructions: str | None = None,
        multi: bool = False,
        structured: bool = True,
        template: str | None = None,
        batch: bool | BatchLimits = False,
        submit_only: bool = False,
        **options: Any,
    ) -> pd.DataFrame | BatchHandle:
        """``label`` for ``await``."""
        label_set = _label_set(labels, instructions, multi, structured, options)
        job = _job(self._frame, column, template, options, label_set)
        return await _arun(job, batch, submit_only)

    @overload
    def extract(
        self,
        column: Hashable | None = None,
        *,
        schema: object,
        instructions: str | None = None,
        template: str | None = None,
        flatten: bool = True,
        structured: bool = True,
        batch: bool | BatchLimits = False,
        submit_only: Literal[False] = False,
        **options: Any,
    ) -> pd.DataFrame: ...
    @overload
    def extract(
        self,
        column: Hashable | None = None,
        *,
        schema: object,
        instructions: str | None = None,
        template: str | None = None,
        flatten: bool = True,
        structured: bool = True,
        batch: bool | BatchLimits = False,
        submit_only: Literal[True],
        **options: Any,
    ) -> BatchHandle: ...

    def extract(
        self,
        column: Hashable | None = None,
        *,
        schema: object,
        instructions: str | None = None,
        template: str | None = None,
        flatten: bool = True,
        structured: bool = True,
        batch: bool | BatchLimits = False,
        submit_only: bool = False,
        **options: Any,
    ) -> pd.DataFrame | BatchHandle:
        """Pull the fields of ``schema`` out of every row, into typed columns.

        ``schema`` is a pydantic model class, a dict of field name to type (``{"product":
        str, "stars": int | None, "tone": Literal["warm", "cold"]}``) or a JSON Schema with
        an object at the top. Returns ``complete()``'s frame with one column per top-level
        field before ``response`` (the raw answer): ``string``, ``Int64``, ``Float64``,
        ``boolean``, ``category`` for a Literal or Enum, ``object`` for lists and nested
        objects (as dicts). A field named like a column of the frame goes to ``<field>_2``
        (``_3``, ...), never over it. ``flatten=False`` gives one ``extracted`` column of
        dicts instead.

        Requests carry a strict ``json_schema`` ``response_format``; once a server rejects
        it, the rest of the run describes the schema in the system message instead (with a
        notice), and ``structured=False`` does so from the start. The JSON object is read
        from the answer as plain JSON, a fenced block or after prose, past any
        ``<think>...</think>``, and validated in pydantic's strict mode: nothing is coerced.
        A row whose answer does not fit has every field missing and ``error`` names each
        field and why (``answer does not fit the schema: stars: not an integer ('five')``);
        the report counts failures per field. A key the schema does not name is refused for
        a dict of types, follows ``additionalProperties`` for a JSON Schema and the model's
        own ``extra`` setting for a pydantic model (pydantic's default drops it); an
        optional field may be null or left out (strict mode has no optional properties,
        so the request asks for it as nullable). Raises ``ConfigError`` for a schema it cannot
        use. Options, ``batch`` and ``submit_only`` as ``complete``.
        """
        answer_format = _extract_format(schema, instructions, flatten, structured)
        job = _job(self._frame, column, template, options, answer_format)
        return _run(job, batch, submit_only)

    @overload
    async def aextract(
        self,
        column: Hashable | None = None,
        *,
        schema: object,
        instructions: str | None = None,
        template: str | None = None,
        flatten: bool = True,
        structured: bool = True,
        batch: bool | BatchLimits = False,
        submit_only: Literal[False] = False,
        **options: Any,
    ) -> pd.DataFrame: ...
    @overload
    async def aextract(
        self,
        column: Hashable | None = None,
        *,
        schema: object,
        instructions: str | None = None,
        template: str | None = None,
        flatten: bool = True,
        structured: bool = True,
        batch: bool | BatchLimits = False,
        submit_only: Literal[True],
        **options: Any,
    ) -> BatchHandle: ...

    async def aextract(
        self,
        column: Hashable | None = None,
        *,
        schema: object,
        instructions: str | None = None,
        template: str | None = None,
        flatten: bool = True,
        structured: bool = True,
        batch: bool | BatchLimits = False,
        submit_only: bool = False,
        **options: Any,
    ) -> pd.DataFrame | BatchHandle:
        """``extract`` for ``await``."""
        answer_format = _extract_format(schema, instructions, flatten, structured)
        job = _job(self._frame, column, template, options, answer_format)
        return await _arun(job, batch, submit_only)

    def estimate(
        self,
        column: Hashable | None = None,
        *,
        template: str | None = None,
        labels: Sequence[str] | None = None,
        schema: object = None,
        instructions: str | None = None,
        multi: bool = False,
        structured: bool = True,
        latency: float = DEFAULT_LATENCY,
        output_tokens: int | None = None,
        batch: bool = False,
        **options: Any,
    ) -> Estimate:
        """What ``complete()`` (``label()`` with ``labels=``, ``extract()`` with ``schema=``)
        would send, take and cost.

        Sends nothing. Counts rows to send after cache hits and missing prompts, estimates
        input tokens, the time under the given limits and concurrency (``latency`` seconds a
        request assumed), and the cost when ``prices`` are given. Output tokens come from
        ``output_tokens`` per row, the label set or schema, or ``max_tokens``.
        ``batch=True``: what ``batch=True`` would cost (the batch price,
        ``Prices.batch_discount``) and take (up to the Batch API's 24 h window).
        """
        answer_format: AnswerFormat | None = None
        if labels is not None and schema is not None:
            raise ConfigError("pass labels= (for label()) or schema= (for extract()), not both")
        if labels is not None:
            answer_format = _label_set(labels, instructions, multi, structured, options)
        elif schema is not None:
            answer_format = _extract_format(schema, instructions, True, structured)
        return _estimate(
            self._frame,
            column,
            template,
            options,
            answer_format=answer_format,
            latency=latency,
            output_tokens=output_tokens,
            batch=bool(batch),
        )

    def report(self) -> RunReport:
        """The report of the run that produced this frame (counts, failures, latency)."""
        return _report(self._frame)

    def evaluate(self, gold: Any = None, *, against: Any = None, **options: Any) -> Any:
        """Judge this result frame against ``gold`` (a column, a Series aligned by index, or
        for ``extract()`` a dict of field to gold column), or its labels' agreement with the
        ``against`` column(s). Every figure has an interval. Options and results:
        ``holysheep_nb.quality.evaluate`` and docs/evaluate.md (the ``eval`` extra)."""
        from holysheep_nb.quality import evaluate

        return evaluate(self._frame, gold, against=against, **options)

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
class HolySheepSeriesAccessor:
    """``series.holysheep``: the same for a Series of prompts (or a Series named in a template)."""

    def __init__(self, series: pd.Series) -> None:
        self._series = series

    def _frame(self, template: str | None) -> tuple[HolySheepFrameAccessor, Hashable | None]:
        """The Series as a one-column frame's accessor, and the prompt column (or None)."""
        name = self._series.name if self._series.name is not None else _SERIES_COLUMN
        frame = HolySheepFrameAccessor(self._series.to_frame(name=name))
        return frame, None if template else name

    # The frame's methods are overloaded on ``submit_only``; ``**options`` (which may hold
    # it) makes their result Any here, so it is named before it is returned.

    def complete(
        self, *, template: str | None = None, **options: Any
    ) -> pd.DataFrame | BatchHandle:
        """Answer every prompt of the Series; return a frame with the prompts and answers
        (a ``BatchHandle`` with ``submit_only=True``)."""
        frame, column = self._frame(template)
        out: pd.DataFrame | BatchHandle = frame.complete(column, template=template, **options)
        return out

    async def acomplete(
        self, *, template: str | None = None, **options: Any
    ) -> pd.DataFrame | BatchHandle:
        """``complete`` for ``await``."""
        frame, column = self._frame(template)
        out: pd.DataFrame | BatchHandle = await frame.acomplete(
            column, template=template, **options
        )
        return out

    def label(
        self, *, labels: Sequence[str], template: str | None = None, **options: Any
    ) -> pd.DataFrame | BatchHandle:
        """Label every value of the Series (see ``DataFrame.holysheep.label``)."""
        frame, column = self._frame(template)
        out: pd.DataFrame | BatchHandle = frame.label(
            column, labels=labels, template=template, **options
        )
        return out

    async def alabel(
        self, *, labels: Sequence[str], template: str | None = None, **options: Any
    ) -> pd.DataFrame | BatchHandle:
        """``label`` for ``await``."""
        frame, column = self._frame(template)
        out: pd.DataFrame | BatchHandle = await frame.alabel(
            column, labels=labels, template=template, **options
        )
        return out

    def extract(
        self, *, schema: object, template: str | None = None, **options: Any
    ) -> pd.DataFrame | BatchHandle:
        """Extract ``schema``'s fields from every value (see ``DataFrame.holysheep.extract``)."""
        frame, column = self._frame(template)
        out: pd.DataFrame | BatchHandle = frame.extract(
            column, schema=schema, template=template, **options
        )
        return out

    async def aextract(
        self, *, schema: object, template: str | None = None, **options: Any
    ) -> pd.DataFrame | BatchHandle:
        """``extract`` for ``await``."""
        frame, column = self._frame(template)
        out: pd.DataFrame | BatchHandle = await frame.aextract(
            column, schema=schema, template=template, **options
        )
        return out

    def estimate(self, *, template: str | None = None, **options: Any) -> Estimate:
        """The dry run of ``complete`` / ``label`` / ``extract`` on the Series (see the
        DataFrame form)."""
        frame, column = self._frame(template)
        return frame.estimate(column, template=template, **options)
