"""The example pool: ``examples=`` read into (text, answer) pairs, checked before anything
is sent.

A list of pairs, or a frame whose ``example_columns`` (default ``text``, ``label``) hold the
text and the answer: a label (``label()``), a list of labels (``multi=True``), a dict of
fields (``extract()``) or a string (``complete()``). Rows with a missing text or answer are
left out (a gold store holds rows not yet labelled), and so is a text given again; none left
is a ``ConfigError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from holysheep_nb.errors import ConfigError


@dataclass(frozen=True)
class Example:
    """One example: the user turn (``text``) and the answer the assistant turn gives."""

    text: str
    answer: Any

    @property
    def key(self) -> str:
        """The answer as one string: what ``balanced`` groups by."""
        if isinstance(self.answer, str):
            return self.answer
        return json.dumps(self.answer, sort_keys=True, default=str)


def read_pool(examples: object, columns: tuple[str, str]) -> tuple[Example, ...]:
    """The pool from ``examples=`` (see the module docstring); raises ``ConfigError``."""
    if isinstance(examples, pd.DataFrame):
        text_column, answer_column = columns
        missing = [name for name in columns if name not in examples.columns]
        if missing:
            raise ConfigError(
                f"the examples frame has no column(s) {', '.join(map(repr, missing))}; its "
                f"columns are {list(examples.columns)[:20]}: name them with "
                "example_columns=('my_text', 'my_gold')"
            )
        pairs: list[tuple[object, object]] = list(
            zip(examples[text_column].tolist(), examples[answer_column].tolist(), strict=True)
        )
    elif isinstance(examples, Sequence) and not isinstance(examples, (str, bytes)):
        pairs = []
        for item in examples:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ConfigError(
                    "examples must be (text, answer) pairs, e.g. examples=[('Great!', "
                    f"'positive')], or a frame with text and label columns; got {item!r}"
                )
            pairs.append((item[0], item[1]))
    else:
        raise ConfigError(
            "examples must be a list of (text, answer) pairs or a DataFrame with text and "
            f"label columns, got {type(examples).__name__}"
        )
    kept: dict[str, Example] = {}  # one example a text (the first): a repeat adds nothing
    for given, answer in pairs:
        if isinstance(given, str) and given.strip() and not _missing(answer):
            kept.setdefault(given.strip(), Example(given.strip(), _answer(answer)))
    pool = tuple(kept.values())
    if not pool:
        raise ConfigError("examples holds no example with both a text and an answer")
    return pool


def _missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, (list, tuple, dict, Mapping)):
        return False
    try:
        return bool(pd.isna(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False


def _answer(value: object) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return value if isinstance(value, str) else str(value)
