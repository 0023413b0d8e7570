"""Escalation: ask only the doubtful rows of a result again, with another model (or other
settings), and keep everything else.

``out.holysheep.escalate(model="sim-large", below=0.8)`` re-asks the rows of ``out``:

- whose confidence is below ``below`` (``confidence`` from ``logprobs=True``, or the vote
  share when there are no logprobs; ``below`` can be what
  ``evaluate(...).threshold_for(accuracy=...)`` or ``cascade_threshold`` chose on gold rows);
- without ``below``, whose votes disagree (a ``votes`` share below 1);
- that failed.

The rows go through the very call that made ``out`` (kept in ``out.attrs`` by the accessor:
method, prompt column or template, labels or schema, options; never the key or headers,
which are given again when needed), so the same engine, cache, limits and ``batch=True``
apply. The answers replace the rows' result columns, but for a row the new model failed
(an error where the row had an answer): it keeps its answer. A run that stops as a whole
(an unknown model, a refused key) raises ``RunStoppedError`` and changes nothing. A
``model`` column says which model answered each row, and the report adds up both runs:
rows escalated, tokens and cost per model and in total. A chain of more models is one call
per step.

Length: which rows are doubtful, how their new answers merge, and how the merged report is
counted again from the merged frame are one contract (about 330 lines); the call the frame
keeps is ``call_record``'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import replace
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from holysheep_nb.call_record import CallRecord, call_of, check_not_arguments, keep_call
from holysheep_nb.errors import ConfigError, RunStoppedError, warn
from holysheep_nb.outcome import cause_of_error
from holysheep_nb.usage import ModelUsage

if TYPE_CHECKING:
    from holysheep_nb.report import RunReport

#: The column naming the model that answered each row.
MODEL_COLUMN = "model"


def with_usage(report: RunReport, model: str) -> RunReport:
    """``report`` with its one line of tokens and cost per model: the rows asked of it are
    those sent or answered from the cache, not those never sent (no prompt, a bad image, a
    stopped run)."""
    asked = report.rows - report.not_sent
    usage = ModelUsage(model, asked, report.prompt_tokens, report.completion_tokens, report.cost)
    return replace(report, models=(usage,))


def doubtful(frame: pd.DataFrame, below: float | None, inputs: Sequence[Hashable]) -> np.ndarray:
    """Which rows to ask again (a boolean array): failed, and without ``below`` votes
    disagreeing (a share below 1), with it a confidence below ``below`` (the vote share is
    the confidence when there are no logprobs). Raises ``ConfigError`` for a ``below`` without a
    confidence column to compare it with."""
    mask = np.zeros(len(frame), bool)
    if "error" in frame.columns:
        mask |= frame["error"].notna().to_numpy()
    results = [name for name in frame.columns if name not in inputs]
    if below is None:  # no threshold: any disagreement among the votes is doubtful
        votes = _result_column(results, "votes")
        if votes is not None:
            mask |= frame[votes].to_numpy(dtype=float, na_value=np.nan) < 1.0
        return mask
    if isinstance(below, bool) or not isinstance(below, (int, float)) or not 0 <= below <= 1:
        raise ConfigError(
            f"below must be a confidence between 0 and 1 (e.g. what "
            f"evaluate(...).threshold_for(accuracy=0.95) chose), got {below!r}"
        )
    confidence = _result_column(results, "confidence")
    if confidence is None:
        raise ConfigError(
            "below= compares each row's confidence, and this result has none: label with "
            "logprobs=True or votes=k"
        )
    mask |= frame[confidence].to_numpy(dtype=float, na_value=np.nan) < below
    return mask


def _result_column(results: Sequence[Hashable], name: str) -> Hashable | None:
    for column in results:
        if column == name or (isinstance(column, str) and column.startswith(f"{name}_")):
            return column
    return None


def merge(
    frame: pd.DataFrame, asked: pd.DataFrame, positions: np.ndarray, inputs: Sequence[Hashable]
) -> pd.DataFrame:
    """``frame`` with the result columns of ``asked`` (the rows at ``positions``) written in;
    a result column only ``asked`` has is added (missing elsewhere), and one only ``frame``
    has (``votes`` of a first step that voted) is made missing on those rows."""
    out = frame.copy()
    for column in out.columns:
        if column not in inputs and column not in asked.columns:
            at = out.columns.get_loc(column)
            out.iloc[positions, at] = pd.NA if out[column].dtype == object else np.nan
    for column in asked.columns:
        if column in inputs:
            continue
        values = asked[column]
        if column not in out.columns:
            out[column] = pd.Series(pd.NA if values.dtype == object else np.nan, index=out.index)
            out[column] = out[column].astype(values.dtype if values.dtype.kind == "f" else object)
        target = out[column]
        if isinstance(target.dtype, pd.CategoricalDtype):
            categories = target.cat.categories.union(
                pd.Index(values.dropna().astype(str).unique()), sort=False
            )
            target = target.cat.set_categories(categories)
            out[column] = target
        column_at = out.columns.get_loc(column)
        out.iloc[positions, column_at] = (
            values.to_numpy(dtype=object) if target.dtype == object else values.to_numpy()
        )
    return cast(pd.DataFrame, out)


def _improves(frame: pd.DataFrame, asked: pd.DataFrame, positions: np.ndarray) -> np.ndarray:
    """Which of the rows asked again take the new answer (a boolean mask over ``positions``):
    all but those the new model failed while the row had an answer before, which keep it."""
    if "error" not in asked.columns or "error" not in frame.columns:
        return np.ones(positions.size, dtype=bool)
    failed_now = asked["error"].notna().to_numpy()
    failed_before = frame["error"].iloc[positions].notna().to_numpy()
    return cast(np.ndarray, ~failed_now | failed_before)


def _count(out: pd.DataFrame, column: str, otherwise: int) -> int:
    """Rows of the merged frame whose ``column`` (``cached``, ``shared``) is true: a row asked
    again is counted as its new answer came, not also as the old one did."""
    if column not in out.columns:
        return otherwise
    return int(out[column].fillna(False).astype(bool).sum())


def _options(made: CallRecord, options: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The options of the escalation: ``options`` over those of the call, but for the call's
    ``prices``, which are its model's: another model is priced only by ``prices=`` given to
    ``escalate()`` (else its cost is n/a, not the first model's rates)."""
    inherited = dict(made.options)
    if model != made.model:
        inherited.pop("prices", None)
    return {**inherited, **options}


def _truncated(out: pd.DataFrame, otherwise: int) -> int:
    """Rows of the merged frame whose answer was cut at the token limit (``finish_reason``
    ``length``), as ``RunStats`` counts them."""
    if "finish_reason" not in out.columns:
        return otherwise
    return int((out["finish_reason"] == "length").fillna(False).sum())


def check_model(model: object) -> str:
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(
            f"escalate needs the model to ask the doubtful rows, e.g. model='sim-large', got "
            f"{model!r}"
        )
    return model


async def escalate_frame(
    frame: pd.DataFrame, below: float | None, options: dict[str, Any]
) -> pd.DataFrame:
    """``frame`` with its doubtful rows asked of ``options["model"]`` (see the module
    docstring)."""
    from holysheep_nb.job_options import check_names
    from holysheep_nb.report import RunReport, attach, attached

    made = call_of(frame)
    check_not_arguments(options, made)
    check_names(options, ["below"], "escalate()")  # a misspelt model= is named, not missing
    model = check_model(options.get("model"))
    inputs = made.input_columns
    positions = np.flatnonzero(doubtful(frame, below, inputs))
    before = attached(frame.attrs)
    reports = [before] if before is not None else []
    answered_by = _answered_by(frame, made)
    out = frame.copy()
    recounted: dict[str, Any] = {}  # the failures of the merged frame, when rows were asked
    if positions.size:
        rows = frame.iloc[positions][list(inputs)]
        asked = await rows.holysheep._acall(made.call, _options(made, options, model))
        kept = attached(asked.attrs)
        if kept is not None and kept.stop is not None:
            raise RunStoppedError(
                f"escalate() asked {positions.size:,} rows of {model!r} and its run stopped: "
                f"{kept.stop}. The frame it was called on is unchanged."
            )
        taken = _improves(frame, asked, positions)
        failed_anew = _failed_anew(asked, taken)
        _tell_kept(failed_anew, taken.size, model)
        if kept is not None:
            reports.append(kept)
            recounted = _failures(kept, failed_anew)
        out = merge(frame, asked.iloc[taken], positions[taken], inputs)
        answered_by[positions[taken]] = model
    column = _model_column(frame, inputs)
    out[column] = pd.Categorical(answered_by)
    report = RunReport.combine(reports) if reports else None
    if report is not None:
        failed = int(out["error"].notna().sum()) if "error" in out.columns else report.failed
        attach(
            out.attrs,
            replace(
                report,
                **recounted,
                rows=len(out),
                succeeded=len(out) - failed,
                failed=failed,
                cached=_count(out, "cached", report.cached),
                truncated=_truncated(out, report.truncated),
                deduplicated=_count(out, "shared", report.deduplicated),
                frame_rows=len(out),
                labels=_label_counts(out, inputs) or report.labels,
                escalated=(before.escalated if before is not None else 0) + int(positions.size),
            ),
        )
    keep_call(out.attrs, made)
    return cast(pd.DataFrame, out)


def _failed_anew(asked: pd.DataFrame, taken: np.ndarray) -> Counter[str]:
    """The causes of the rows the new model failed that keep their earlier answer (those
    not ``taken``), read back from their error cells."""
    if "error" not in asked.columns:
        return Counter()
    errors = asked["error"].to_numpy(dtype=object)[~taken]
    return Counter(cause_of_error(error) for error in errors if isinstance(error, str))


def _tell_kept(failed_anew: Counter[str], asked: int, model: str) -> None:
    """Warn when rows the new model failed kept their earlier answer: the report counts them
    as escalated, and the frame still has the first model's answers for them."""
    if not failed_anew:
        return
    said = ", ".join(f"{cause} {n:,}" for cause, n in failed_anew.most_common())
    warn(
        f"{failed_anew.total():,} of the {asked:,} rows asked of {model!r} failed there "
        f"({said}) and kept the answer they had; their model column still names the model "
        "that gave it"
    )


def _failures(kept: RunReport, failed_anew: Counter[str]) -> dict[str, Any]:
    """The merged frame's failures by cause: the new run's, less those of the rows that keep
    their earlier answer. Every row that had failed was asked again (``doubtful``), so none of
    the first run's failures is left."""
    from holysheep_nb.report import most_frequent

    causes = Counter(dict(kept.failures))
    causes.subtract(failed_anew)
    left = Counter({cause: n for cause, n in causes.items() if n > 0})
    return {
        "failures": most_frequent(left),
        "failure_examples": tuple(
            (cause, shown) for cause, shown in kept.failure_examples if cause in left
        ),
    }


def _label_counts(out: pd.DataFrame, inputs: Sequence[Hashable]) -> tuple[tuple[str, int], ...]:
    """Rows per label of the merged frame (one label a row), most frequent first; empty
    when there is no such column."""
    for name in ("label", "predicted_label"):
        if name in out.columns and name not in inputs:
            counts = out[name].dropna().astype(str).value_counts()
            return tuple((str(label), int(n)) for label, n in counts.items() if n)
    return ()


def _answered_by(frame: pd.DataFrame, made: CallRecord) -> np.ndarray:
    """Each row's model so far: the model column of an earlier step, else the call's."""
    column = _model_column(frame, made.input_columns)
    if column in frame.columns:
        return cast(np.ndarray, frame[column].astype(object).to_numpy().copy())
    return np.full(len(frame), made.model, dtype=object)


def _model_column(frame: pd.DataFrame, inputs: Sequence[Hashable]) -> Hashable:
    from holysheep_nb.columns import free_name

    return MODEL_COLUMN if MODEL_COLUMN not in inputs else free_name(MODEL_COLUMN, inputs)


def cascade_threshold(
    first: pd.DataFrame,
    second: pd.DataFrame,
    gold: Hashable,
    *,
    tolerance: float = 0.01,
    level: float = 0.9,
    label: Hashable = "label",
    confidence: Hashable = "confidence",
) -> float:
    """The ``below`` that escalates the fewest gold rows while the cascade stays within
    ``tolerance`` of ``second``'s accuracy, with one-sided confidence ``level``.

    ``first`` and ``second`` are the two models' results on the same gold rows (same
    index), ``gold`` the column of ``first`` holding the truth. The cascade keeps
    ``first``'s label where its confidence is at least the threshold and ``second``'s
    elsewhere, so on each gold row it loses (1), gains (-1) or ties (0) against ``second``.
    A threshold is accepted when the upper ``level`` bound of the mean of these (normal
    approximation of a paired difference) is at most ``tolerance``: the point estimate
    alone picks too few escalations on 300 rows about a third of the time
    (``benchmarks/cascade.py``). With every row escalated the cascade is ``second``, so a
    threshold always exists (``inf``: escalate all). Raises ``ConfigError`` for frames
    that do not match.
    """
    if not first.index.equals(second.index):
        raise ConfigError("cascade_threshold needs both models' results on the same gold rows")
    truth = first[gold].astype(str).to_numpy()
    first_right = first[label].astype(str).to_numpy() == truth
    second_right = second[label].astype(str).to_numpy() == truth
    sure = first[confidence].to_numpy(dtype=float, na_value=np.nan)
    z = NormalDist().inv_cdf(level)
    for threshold in np.unique(sure[~np.isnan(sure)]):  # lowest first: fewest escalated
        kept = sure >= threshold
        loss = second_right.astype(float) - np.where(kept, first_right, second_right)
        upper = loss.mean() + z * loss.std(ddof=1) / np.sqrt(loss.size) if loss.size > 1 else 1
        if upper <= tolerance:
            return float(threshold)
    return float("inf")
