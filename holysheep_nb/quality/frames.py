"""Finding the columns to judge in a result frame, and lining gold up with its rows.

A ``label()`` result has its labels in ``label`` (``predicted_label`` when the input already
had a ``label`` column, ``predicted_label_2``, ... on a frame labelled twice: the rightmost is
the newest) and, with ``logprobs=True``, ``confidence`` (``confidence_2``, ...). Gold is a
column of the frame or a Series with the frame's index.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd

from holysheep_nb.errors import ConfigError

_LABEL = re.compile(r"^(?:predicted_label(?:_\d+)?|label)$")
_CONFIDENCE = re.compile(r"^confidence(?:_\d+)?$")


def column_of(frame: pd.DataFrame, name: Hashable, role: str) -> pd.Series:
    """The column ``name``, or a ``ConfigError`` naming the closest columns."""
    if name in frame.columns:
        if sum(1 for existing in frame.columns if existing == name) > 1:
            raise ConfigError(f"{role} {name!r} names more than one column of the frame")
        column: pd.Series = frame[name]
        return column
    close = difflib.get_close_matches(str(name), [str(c) for c in frame.columns], n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise ConfigError(f"{role} {name!r} is not a column of the frame{hint}")


def label_column(frame: pd.DataFrame, column: Hashable | None) -> Hashable:
    """The predicted-label column: ``column`` when given, else the newest ``label()`` one."""
    if column is not None:
        column_of(frame, column, "column")
        return column
    found = [name for name in frame.columns if isinstance(name, str) and _LABEL.match(name)]
    if not found:
        raise ConfigError(
            "no label column in this frame (label, predicted_label): evaluate the frame that "
            "label() returned, or name the predicted labels with column='...'"
        )
    return found[-1]


def confidence_column(frame: pd.DataFrame, confidence: Hashable | bool | None) -> Hashable | None:
    """The confidence column: ``confidence`` when named, the newest ``confidence*`` column
    when ``None`` (if any), no column when ``False``."""
    if confidence is False:
        return None
    if confidence is not None and confidence is not True:
        column = column_of(frame, confidence, "confidence")
        if not pd.api.types.is_numeric_dtype(column):
            raise ConfigError(f"confidence column {confidence!r} must hold numbers in 0..1")
        return confidence
    found = [
        name
        for name in frame.columns
        if isinstance(name, str)
        and _CONFIDENCE.match(name)
        and pd.api.types.is_numeric_dtype(frame[name])
    ]
    if not found and confidence is True:
        raise ConfigError("no confidence column: label with logprobs=True to get one")
    return found[-1] if found else None


def aligned(frame: pd.DataFrame, values: Hashable | pd.Series, role: str) -> pd.Series:
    """``values`` as a Series over the frame's rows: a column name, or a Series whose index
    is the frame's (same order, or both unique and reindexable)."""
    if not isinstance(values, pd.Series):
        return column_of(frame, values, role)
    if values.index.equals(frame.index):
        return values
    if not (values.index.is_unique and frame.index.is_unique):
        raise ConfigError(
            f"{role} is a Series whose index is not the frame's, and one of the two has "
            "duplicate labels so it cannot be lined up: pass a Series with the frame's index"
        )
    return values.reindex(frame.index)


def missing(values: pd.Series) -> np.ndarray:
    """Which cells hold no value (None, NaN, NA); a list or set is a value, even empty."""
    return np.array([_is_missing(value) for value in values], dtype=bool)


def _is_missing(value: Any) -> bool:
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, dict)):
        return False
    return bool(pd.isna(value))


def text_key(value: Any) -> str:
    """A value as compared: text with case folded and runs of whitespace made one space."""
    return " ".join(str(value).split()).casefold()
