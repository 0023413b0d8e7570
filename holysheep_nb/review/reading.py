"""Gold read back: ``holysheep_nb.gold(...)`` as a frame, or lined up with a result frame.

A row's key in the store is its text: the value of the ``text`` column, or, when the panel
showed several fields, a JSON object of those fields (``{"title": ..., "body": ...}``, in
the order given). The same ``text=`` gives the same keys, which is how gold finds its rows
again in another frame, another session or after a restart.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Sequence
from typing import Any, overload

import pandas as pd

from holysheep_nb.errors import ConfigError
from holysheep_nb.review.store import GoldStore, task_name

Text = Hashable | Sequence[Hashable]
"""The column holding a row's text, or several columns (the template's fields)."""


def text_columns(frame: pd.DataFrame, text: Text) -> list[Hashable]:
    """``text`` as a list of columns of ``frame``; ``ConfigError`` names a missing one."""
    columns = [text] if isinstance(text, str) or not isinstance(text, Sequence) else list(text)
    if not columns:
        raise ConfigError("text= names no column: give the column holding the row's text")
    for column in columns:
        if column not in frame.columns:
            shown = ", ".join(repr(c) for c in frame.columns[:12])
            raise ConfigError(
                f"text column {column!r} is not in the frame (its columns: {shown}); name the "
                "column holding each row's text with text='...'"
            )
    return columns


def row_keys(frame: pd.DataFrame, text: Text) -> list[str | None]:
    """Each row's key in the store, or None for a row whose text is missing."""
    columns = text_columns(frame, text)
    if len(columns) == 1:
        return [None if _missing(value) else str(value) for value in frame[columns[0]]]
    keys: list[str | None] = []
    for values in zip(*(frame[column] for column in columns), strict=True):
        if all(_missing(value) for value in values):
            keys.append(None)
            continue
        fields = {
            str(name): None if _missing(value) else str(value)
            for name, value in zip(columns, values, strict=True)
        }
        keys.append(json.dumps(fields, ensure_ascii=False))
    return keys


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, (list, tuple, dict)) and bool(pd.isna(value)))


@overload
def gold(
    task: str | None = None,
    *,
    labels: Sequence[str] | None = None,
    frame: None = None,
    text: Text = "text",
    path: str | os.PathLike[str] | None = None,
) -> pd.DataFrame: ...


@overload
def gold(
    task: str | None = None,
    *,
    labels: Sequence[str] | None = None,
    frame: pd.DataFrame,
    text: Text = "text",
    path: str | os.PathLike[str] | None = None,
) -> pd.Series: ...


def gold(
    task: str | None = None,
    *,
    labels: Sequence[str] | None = None,
    frame: pd.DataFrame | None = None,
    text: Text = "text",
    path: str | os.PathLike[str] | None = None,
) -> pd.DataFrame | pd.Series:
    """The gold labels ``review()`` kept, read back from the store.

    ``task``: the task's name (``review(task=...)``); or ``labels``: the label set, whose
    task is the default one; neither: every task, or the only one when ``frame`` is given.
    ``path``: the store (default ``gold.sqlite`` beside the cache).

    Without ``frame``: a DataFrame with one row per kept answer, oldest first, and columns
    ``text``, ``label`` (what the person chose), ``predicted`` (the model's label then, or
    None), ``task``, ``created`` (a UTC timestamp). It is an ``examples=`` frame as is
    (``text`` and ``label``).

    With ``frame``: a Series named ``gold`` with ``frame``'s index, the kept label of each
    row whose ``text`` (a column, or the list of fields the panel showed) has one, None
    elsewhere; pass it as ``out.holysheep.evaluate(gold=...)``.

    Raises ``ConfigError`` for both ``task`` and ``labels``, a missing text column, or, with
    ``frame`` and no task named, a store holding several tasks.
    """
    if task is not None and labels is not None:
        raise ConfigError("pass task= or labels= (whose task is the default name), not both")
    if labels is not None:
        task = task_name(labels)
    with GoldStore(path) as store:
        if frame is None:
            return _as_frame(store.rows(task))
        keys = row_keys(frame, text)
        if task is None:
            task = _only_task(store)
        found = store.labels_of(task, [key for key in keys if key is not None]) if task else {}
    values = [None if key is None else found.get(key) for key in keys]
    return pd.Series(values, index=frame.index, dtype=object, name="gold")


def _only_task(store: GoldStore) -> str | None:
    tasks = store.tasks()
    if len(tasks) > 1:
        shown = "; ".join(repr(task) for task in tasks)
        raise ConfigError(
            f"the gold store at {store.path} holds several tasks ({shown}): name one with "
            "task='...' or labels=[...]"
        )
    return tasks[0] if tasks else None


def _as_frame(rows: list[tuple[str, str, str, str | None, str, float]]) -> pd.DataFrame:
    # Annotated: pandas-stubs types this constructor as Any when mypy targets Python 3.10.
    frame: pd.DataFrame = pd.DataFrame(
        {
            "text": pd.Series([row[1] for row in rows], dtype=object),
            "label": pd.Series([row[2] for row in rows], dtype=object),
            "predicted": pd.Series([row[3] for row in rows], dtype=object),
            "task": pd.Series([row[0] for row in rows], dtype=object),
            "created": pd.to_datetime(
                pd.Series([row[5] for row in rows], dtype="float64"), unit="s", utc=True
            ),
        }
    )
    return frame
