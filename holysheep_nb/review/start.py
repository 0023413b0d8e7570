"""``out.holysheep.review(...)``: the checks and column choices before a panel opens.

Every mistake is a ``ConfigError`` before anything is shown or stored. Without ipywidgets
and anywidget (the ``notebook`` extra) the call raises an ``ImportError`` naming the extra.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from holysheep_nb.columns import free_name
from holysheep_nb.errors import ConfigError
from holysheep_nb.quality.frames import aligned, confidence_column, label_column
from holysheep_nb.review.reading import Text, text_columns
from holysheep_nb.review.session import Columns, ReviewSession
from holysheep_nb.review.store import GoldStore, task_name

if TYPE_CHECKING:
    from holysheep_nb.review.panel import ReviewPanel

#: ``frame.attrs`` key listing the gold columns a review made (reused, never replaced).
GOLD_COLUMNS_ATTR = "holysheep_gold_columns"
_EXTRA = "pip install 'holysheep_nb[notebook]'"


def review(
    frame: pd.DataFrame,
    *,
    text: Text = "text",
    labels: Sequence[str] | None = None,
    column: Hashable | None = None,
    confidence: Hashable | bool | None = None,
    against: Hashable | pd.Series | None = None,
    order: str | Sequence[Hashable] | pd.Index | None = None,
    gold: str = "gold",
    task: str | None = None,
    store: str | os.PathLike[str] | None = None,
) -> ReviewPanel:
    """Open the review panel on ``frame``; see ``HolySheepFrameAccessor.review``."""
    try:  # before anything is checked, added or opened
        from holysheep_nb.review.panel import ReviewPanel
    except ImportError as exc:
        raise ImportError(
            f"review() draws its panel with ipywidgets and anywidget ({exc.name} is missing): "
            f"{_EXTRA}"
        ) from exc
    session = start(
        frame,
        text=text,
        labels=labels,
        column=column,
        confidence=confidence,
        against=against,
        order=order,
        gold=gold,
        task=task,
        store=store,
    )
    return ReviewPanel(session)


def start(
    frame: pd.DataFrame,
    *,
    text: Text = "text",
    labels: Sequence[str] | None = None,
    column: Hashable | None = None,
    confidence: Hashable | bool | None = None,
    against: Hashable | pd.Series | None = None,
    order: str | Sequence[Hashable] | pd.Index | None = None,
    gold: str = "gold",
    task: str | None = None,
    store: str | os.PathLike[str] | None = None,
) -> ReviewSession:
    """The session ``review`` draws: columns checked, gold column added, store opened."""
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"review needs a DataFrame, got {type(frame).__name__}")
    text_columns(frame, text)
    predicted = _predicted(frame, column)
    label_set = _labels(frame, labels, predicted)
    other = None if against is None else aligned(frame, against, "against")
    if not isinstance(gold, str) or not gold:
        raise ConfigError(f"gold= names the gold column to write: a non-empty str, got {gold!r}")
    if task is not None and (not isinstance(task, str) or not task):
        raise ConfigError(f"task= must be a non-empty str, got {task!r}")
    positions = _order(frame, order)
    columns = Columns(
        text=text,
        predicted=predicted,
        confidence=confidence_column(frame, confidence) if predicted is not None else None,
        against=_other_name(against),
        other=other,
        response=_newest(frame, "response"),
        reasoning=_newest(frame, "reasoning"),
        error=_newest(frame, "error"),
        gold=_gold_column(frame, gold),
    )
    return ReviewSession(
        frame,
        labels=label_set,
        columns=columns,
        task=task if task is not None else task_name(label_set),
        store=GoldStore(store),
        order=positions,
    )


def _predicted(frame: pd.DataFrame, column: Hashable | None) -> Hashable | None:
    """The model's label column, or None on unlabelled rows (gold from scratch)."""
    try:
        name = label_column(frame, column)
    except ConfigError:
        if column is not None:
            raise
        return None
    values = frame[name]
    if values.dtype == object and any(isinstance(v, (list, tuple, set)) for v in values):
        raise ConfigError(
            f"{name!r} holds several labels a row (multi=True): review() takes one label a "
            "row for now; review a single-label run"
        )
    return name


def _labels(
    frame: pd.DataFrame, labels: Sequence[str] | None, predicted: Hashable | None
) -> list[str]:
    if labels is None:
        if predicted is None:
            raise ConfigError(
                "these rows have no label column: give the label set, review(labels=[...])"
            )
        values = frame[predicted]
        if isinstance(values.dtype, pd.CategoricalDtype):
            labels = [str(label) for label in values.cat.categories]
        else:
            labels = sorted({str(value) for value in values.dropna()})
    if isinstance(labels, str) or not all(isinstance(label, str) for label in labels):
        raise ConfigError(f"labels= must be a list of str, got {labels!r}")
    found = list(labels)
    if not found or any(not label.strip() for label in found):
        raise ConfigError("labels= needs at least one non-empty label")
    if len(set(found)) != len(found):
        raise ConfigError(f"labels= repeats a label: {found}")
    return found


def _order(
    frame: pd.DataFrame, order: str | Sequence[Hashable] | pd.Index | None
) -> list[int] | None:
    if order is None:
        return None
    if isinstance(order, str):
        if order == "frame":
            return list(range(len(frame)))
        raise ConfigError(
            f"order={order!r}: use None (least sure first), 'frame', or a list of index labels"
        )
    if not frame.index.is_unique:
        raise ConfigError("order= lists index labels, but this frame's index has duplicates")
    wanted = list(order)
    positions = frame.index.get_indexer(pd.Index(wanted))
    unknown = [label for label, position in zip(wanted, positions, strict=True) if position < 0]
    if unknown:
        raise ConfigError(f"order= names rows not in the frame: {unknown[:5]}")
    return [int(position) for position in positions]


def _other_name(against: Hashable | pd.Series | None) -> Hashable | None:
    if isinstance(against, pd.Series):
        return against.name if against.name is not None else "other"
    return against


def _newest(frame: pd.DataFrame, name: str) -> Hashable | None:
    pattern = re.compile(rf"^{name}(?:_\d+)?$")
    found = [c for c in frame.columns if isinstance(c, str) and pattern.match(c)]
    return found[-1] if found else None


def _gold_column(frame: pd.DataFrame, wanted: str) -> str:
    """The gold column: one an earlier review made, else a new free name (never the user's)."""
    ours: list[Any] = list(frame.attrs.get(GOLD_COLUMNS_ATTR, ()))
    family = re.compile(rf"^{re.escape(wanted)}(?:_\d+)?$")
    earlier = [name for name in ours if name in frame.columns and family.match(str(name))]
    if earlier:
        return str(earlier[-1])
    name = free_name(wanted, frame.columns)
    frame[name] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    frame.attrs[GOLD_COLUMNS_ATTR] = [*ours, name]
    return name
