"""One review: which rows to show in which order, what each key does, what has been answered.

No widget here: the panel (``panel``) draws a ``ReviewSession`` and sends it the keys pressed,
so every rule below is tested without a browser.

- Rows with the same text are one item (the store is keyed by text): answering it fills the
  gold column of every such row. Rows with no text are left out.
- Order, unless the user gives one: rows with a confidence, lowest first; then rows whose label
  differs from the ``against`` column; then failed rows (an ``error``, or no label); then the
  rest, in the frame's order. Items already in the store for this task are filled in and
  counted as done, and the panel starts at the first item not done.
- Keys: ``1``-``9`` choose that label, ``Enter`` accepts the model's label, ``Backspace``
  goes back to the item shown before, ``s`` skips. Each answer is written at once to the
  store and to the frame's gold column.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from holysheep_nb.review.reading import Text, row_keys, text_columns
from holysheep_nb.review.store import GoldStore


@dataclass(frozen=True)
class Item:
    """What the panel shows for one row: its fields, the model's label and the other one."""

    position: int  # of the row in the frame
    key: str  # the row's text (its key in the store)
    fields: tuple[tuple[str, str], ...]  # (column, value) of each text column
    predicted: str | None
    confidence: float | None
    other: str | None  # the ``against`` column's label
    response: str | None  # the raw answer
    reasoning: str | None
    error: str | None


@dataclass(frozen=True)
class Columns:
    """The frame's columns a review reads (None: the frame has no such column)."""

    text: Text
    predicted: Hashable | None
    confidence: Hashable | None
    against: Hashable | None  # the other labels' name (a column, or the Series' name)
    other: pd.Series | None  # the other labels, lined up with the frame's rows
    response: Hashable | None
    reasoning: Hashable | None
    error: Hashable | None
    gold: Hashable


class ReviewSession:
    """The state of one review of ``frame`` (its gold column is written in place).

    ``labels``: the label set, in the order of the keys 1-9. ``order``: positions of the
    rows to show, in order (None: the default order above). ``task``: the store's task.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        labels: Sequence[str],
        columns: Columns,
        task: str,
        store: GoldStore,
        order: Sequence[int] | None = None,
    ) -> None:
        self.frame = frame
        self.labels = list(labels)
        self.columns = columns
        self.task = task
        self.store = store
        keys = row_keys(frame, columns.text)
        self._rows_of: dict[str, list[int]] = {}
        for position, key in enumerate(keys):
            if key is not None:
                self._rows_of.setdefault(key, []).append(position)
        positions = default_order(frame, columns) if order is None else list(order)
        self.queue: list[str] = []
        self._first_row: dict[str, int] = {}
        for position in positions:
            key = keys[position]
            if key is not None and key not in self._first_row:
                self._first_row[key] = position
                self.queue.append(key)
        self.answers: dict[str, str] = store.labels_of(task, self.queue)
        for key, label in self.answers.items():
            self._fill(key, label)
        self.cursor = self._next_open(0)
        self._history: list[int] = []

    # --- what is shown ---------------------------------------------------------------------

    @property
    def total(self) -> int:
        """Items in the review (distinct texts)."""
        return len(self.queue)

    @property
    def done(self) -> int:
        """Items with an answer (this session's or kept from an earlier one)."""
        return len(self.answers)

    @property
    def agreement(self) -> tuple[int, int]:
        """(answers equal to the model's label, answers to items the model labelled)."""
        same = compared = 0
        for key, label in self.answers.items():
            predicted = self.item(key).predicted
            if predicted is not None:
                compared += 1
                same += predicted == label
        return same, compared

    def current(self) -> Item | None:
        """The item shown now, or None when every item has been seen."""
        return self.item(self.queue[self.cursor]) if self.cursor < len(self.queue) else None

    def answer_of(self, key: str) -> str | None:
        """The gold label given to ``key``, if any."""
        return self.answers.get(key)

    def item(self, key: str) -> Item:
        """The item of ``key``, as its first row in the queue's order shows it."""
        position = self._first_row[key]
        columns = self.columns

        def cell(name: Hashable | None) -> Any:
            if name is None:
                return None
            return self.frame.iat[position, self.frame.columns.get_loc(name)]  # type: ignore[index]

        return Item(
            position=position,
            key=key,
            fields=tuple(
                (str(name), _text(cell(name)) or "")
                for name in text_columns(self.frame, columns.text)
            ),
            predicted=_text(cell(columns.predicted)),
            confidence=_number(cell(columns.confidence)),
            other=None if columns.other is None else _text(columns.other.iat[position]),
            response=_text(cell(columns.response)),
            reasoning=_text(cell(columns.reasoning)),
            error=_text(cell(columns.error)),
        )

    # --- what the keys do ------------------------------------------------------------------

    def press(self, key: str) -> bool:
        """Act on a key as the panel names it (``"1"``, ``"Enter"``, ``"Backspace"``, ``"s"``);
        False when the key means nothing here (no such label, no prediction to accept)."""
        if key == "Backspace":
            return self.back()
        if self.current() is None:
            return False
        if key in ("s", "S"):
            self.skip()
            return True
        if key == "Enter":
            return self.accept()
        if len(key) == 1 and key.isdigit() and 1 <= int(key) <= min(9, len(self.labels)):
            self.answer(self.labels[int(key) - 1])
            return True
        return False

    def answer(self, label: str) -> None:
        """Give the shown item the gold ``label``: stored (committed) first, then the frame."""
        item = self.current()
        if item is None:
            raise IndexError("every item has been seen: nothing to answer")
        if label not in self.labels:
            raise ValueError(f"{label!r} is not one of the labels {self.labels}")
        self.store.put(self.task, item.key, label, labels=self.labels, predicted=item.predicted)
        self.answers[item.key] = label
        self._fill(item.key, label)
        self._advance()

    def accept(self) -> bool:
        """Answer with the model's label; False when the item has none in the label set."""
        item = self.current()
        if item is None or item.predicted not in self.labels:
            return False
        assert item.predicted is not None
        self.answer(item.predicted)
        return True

    def skip(self) -> None:
        """Leave the shown item without an answer and show the next."""
        self._advance()

    def back(self) -> bool:
        """Show the item shown before this one again (its answer stays until replaced)."""
        if not self._history:
            return False
        self.cursor = self._history.pop()
        return True

    def _advance(self) -> None:
        self._history.append(self.cursor)
        self.cursor = self._next_open(self.cursor + 1)

    def _next_open(self, start: int) -> int:
        """The first position from ``start`` whose item has no answer (or the end)."""
        for index in range(start, len(self.queue)):
            if self.queue[index] not in self.answers:
                return index
        return len(self.queue)

    def _fill(self, key: str, label: str) -> None:
        column = self.frame.columns.get_loc(self.columns.gold)
        for position in self._rows_of[key]:
            self.frame.iat[position, column] = label  # type: ignore[index]


def default_order(frame: pd.DataFrame, columns: Columns) -> list[int]:
    """Row positions, most worth a look first (see the module docstring)."""
    count = len(frame)
    confidence = (
        pd.to_numeric(frame[columns.confidence], errors="coerce").to_numpy(dtype=float)
        if columns.confidence is not None
        else np.full(count, np.nan)
    )
    failed = np.zeros(count, dtype=bool)
    if columns.error is not None:
        failed |= frame[columns.error].notna().to_numpy()
    if columns.predicted is not None:
        failed |= frame[columns.predicted].isna().to_numpy()
    disagrees = np.zeros(count, dtype=bool)
    if columns.other is not None and columns.predicted is not None:
        mine = frame[columns.predicted].astype(object).to_numpy()
        other = columns.other.astype(object).to_numpy()
        disagrees = pd.notna(mine) & pd.notna(other) & (mine != other)
    has_confidence = ~np.isnan(confidence)
    group = np.select([has_confidence, disagrees, failed], [0, 1, 2], default=3)
    ranks = np.where(has_confidence, confidence, 0.0)
    return [int(position) for position in np.lexsort((np.arange(count), ranks, group))]


def _text(value: Any) -> str | None:
    if value is None or (not isinstance(value, (list, tuple)) and bool(pd.isna(value))):
        return None
    return str(value)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
