"""``ddf.holysheep`` on Dask DataFrames and Series: the pandas calls, lazily, per partition.

Each call runs the pandas path once on the collection's empty ``meta`` (nothing is sent: it
has no rows), which validates every option before anything is computed and gives the result's
columns and dtypes exactly as the pandas path builds them. The result is
``map_partitions(run_partition, ...)`` with that meta: lazy, the input's divisions kept, one
partition run by the pandas path on a worker at a time.

The meta also keeps the run's key and, when it is known without computing anything, how
many rows the run has (``run_rows``), for the progress bar's total.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask
import dask.dataframe as dd
import pandas as pd

from holysheep_nb.dask.limits import LimitConfig
from holysheep_nb.dask.worker import PartitionCall, run_partition
from holysheep_nb.errors import ConfigError
from holysheep_nb.estimate import Estimate
from holysheep_nb.job_options import JobOptions
from holysheep_nb.namespace import Call, Calls, Estimates

if TYPE_CHECKING:
    from holysheep_nb.dask.report import ClusterReport

#: Where a result's ``meta`` keeps the key of the run that makes it.
RUN_ATTR = "holysheep_dask_run"
#: Where it keeps the run's rows, when they were known at the call (``run_rows``).
ROWS_ATTR = "holysheep_dask_rows"


def _online(options: dict[str, Any]) -> None:
    """Refuse ``batch=True``: a Dask collection runs online only."""
    if options.get("batch"):
        raise ConfigError(
            "batch=True is not available on a Dask DataFrame: compute it first "
            "(ddf.compute().holysheep.label(..., batch=True)), or run without batch"
        )


def _lazy(
    collection: dd.DataFrame | dd.Series, call: Call, options: dict[str, Any]
) -> dd.DataFrame:
    """The lazy result of ``<partition>.holysheep.<call>(**options)``.

    The progress bar of the pandas path is off on the workers: the client draws one for the
    whole run (``holysheep_nb.dask.progress``).
    """
    _online(options)
    options = {**options, "progress": False}
    settings = JobOptions.from_kwargs(**options).settings
    config = LimitConfig(
        max_concurrent=settings.max_concurrent,
        requests_per_minute=settings.limits.requests_per_minute,
        tokens_per_minute=settings.limits.tokens_per_minute,
        timeout=settings.timeout,
    )
    empty = collection._meta
    keywords = call.keywords()
    meta: pd.DataFrame = getattr(empty.holysheep, call.method)(
        call.column, **keywords, **{**options, "cache": False}
    )
    run = f"{call.method}-{uuid.uuid4().hex}"
    meta.attrs = {RUN_ATTR: run, ROWS_ATTR: _known_rows(collection)}
    work = PartitionCall(
        call.method, (call.column,), {**keywords, **options}, run, config.to_dict()
    )
    result: dd.DataFrame = collection.map_partitions(
        run_partition, work, meta=meta, align_dataframes=False
    )
    return result


def _estimate(
    collection: dd.DataFrame | dd.Series,
    call: Call,
    options: dict[str, Any],
    *,
    latency: float,
    output_tokens: int | None,
) -> Estimate:
    """The estimate of ``call`` over every partition, each estimated where it lives by the
    pandas path, combined under the cluster's limits (``Estimate.combine``).

    The options are checked on the collection's empty ``meta`` first, so that a bad one is
    an error before any partition is read.
    """
    _online(options)
    on_meta = {**options, "cache": False}
    collection._meta.holysheep._estimate(
        call, on_meta, latency=latency, output_tokens=output_tokens
    )
    settings = JobOptions.from_kwargs(**options).settings
    work = PartitionEstimate(call, options, latency, output_tokens)
    estimate = dask.delayed(estimate_partition)
    parts = dask.compute(*(estimate(part, work) for part in collection.to_delayed()))
    return Estimate.combine(parts, settings)


@dataclass(frozen=True)
class PartitionEstimate:
    """What each partition's estimate needs (pickled to the workers)."""

    call: Call
    options: dict[str, Any]
    latency: float
    output_tokens: int | None


def estimate_partition(partition: pd.DataFrame | pd.Series, work: PartitionEstimate) -> Estimate:
    """One partition's estimate, by the pandas path (nothing sent)."""
    return partition.holysheep._estimate(  # type: ignore[no-any-return]
        work.call, dict(work.options), latency=work.latency, output_tokens=work.output_tokens
    )


def _known_rows(collection: dd.DataFrame | dd.Series) -> int | None:
    """The collection's rows when they are known without computing anything, else None.

    Known when its data is a pandas frame already in memory (``dd.from_pandas``), read
    through steps that keep every row (a column selection, ``assign``, ``fillna`` ...: the
    steps Dask itself sees through for ``len``): ``from_pandas`` split it at known positions.
    Anything else stays unknown, ``len(ddf)`` included: it can read every file again
    (``read_parquet``: every file's footer at the least, all the data after a filter), and
    the bar is not worth a pass over the data. Dask's expression classes are not public
    API: if they move, the total is just unknown.
    """
    try:
        from dask.dataframe.dask_expr._expr import Elemwise
        from dask.dataframe.dask_expr.io.io import FromPandas
    except ImportError:
        return None
    expr = getattr(collection, "expr", None)
    # How Dask's own ``Lengths`` walks down: an elementwise step has its widest input's rows.
    while isinstance(expr, Elemwise):
        expr = max(expr.dependencies(), key=lambda child: child.npartitions)
    if not isinstance(expr, FromPandas):
        return None
    try:
        lengths = expr._get_lengths()
    except AttributeError:
        return None
    if lengths is None or len(lengths) != collection.npartitions:
        return None
    return int(sum(lengths))


def run_rows(frame: dd.DataFrame) -> int | None:
    """The rows of the run that makes ``frame`` when they were known at the call, else None
    (then the partitions tell them as they start)."""
    rows = frame._meta.attrs.get(ROWS_ATTR)
    return rows if isinstance(rows, int) else None


def run_key(frame: dd.DataFrame) -> str:
    """The run that makes ``frame`` (a result of ``ddf.holysheep``), or a ``HolySheepError``."""
    from holysheep_nb.errors import HolySheepError

    run = frame._meta.attrs.get(RUN_ATTR)
    if not isinstance(run, str):
        raise HolySheepError(
            "this Dask DataFrame was not made by holysheep_nb: call report() on the frame "
            "that ddf.holysheep.complete() or label() returned"
        )
    return run


@dd.extensions.register_dataframe_accessor("holysheep")
class DaskFrameAccessor(Calls[dd.DataFrame], Estimates):
    """``ddf.holysheep``: the pandas accessor's calls on every partition, lazily, one limit
    shared by the cluster.

    Each call returns a Dask DataFrame with the pandas result's columns and dtypes; nothing
    is sent until it is computed. Options as the pandas calls (``batch`` excepted);
    ``max_concurrent``, ``requests_per_minute`` and ``tokens_per_minute`` hold for the whole
    cluster.
    """

    def __init__(self, frame: dd.DataFrame) -> None:
        self._frame = frame

    def _call(self, call: Call, options: dict[str, Any]) -> dd.DataFrame:
        return _lazy(self._frame, call, options)

    def _estimate(
        self, call: Call, options: dict[str, Any], *, latency: float, output_tokens: int | None
    ) -> Estimate:
        return _estimate(self._frame, call, options, latency=latency, output_tokens=output_tokens)

    def report(self) -> ClusterReport:
        """The merged report of the run that makes this frame (after it was computed)."""
        from holysheep_nb.dask.report import fetch_report

        return fetch_report(self._frame)


@dd.extensions.register_series_accessor("holysheep")
class DaskSeriesAccessor(Calls[dd.DataFrame], Estimates):
    """``series.holysheep``: the same for a Dask Series of prompts (no column to name)."""

    def __init__(self, series: dd.Series) -> None:
        self._series = series

    def _call(self, call: Call, options: dict[str, Any]) -> dd.DataFrame:
        return _lazy(self._series, call, options)

    def _estimate(
        self, call: Call, options: dict[str, Any], *, latency: float, output_tokens: int | None
    ) -> Estimate:
        return _estimate(self._series, call, options, latency=latency, output_tokens=output_tokens)
