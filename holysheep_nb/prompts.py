"""Turning DataFrame rows into prompts: a prompt column or a ``str.format`` template.

Validation happens up front (missing column, bad template) so misuse fails before anything
is sent; a row whose prompt is missing gets a row error instead of a request.
"""

from __future__ import annotations

import string
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from holysheep_nb.chat import invalid_text
from holysheep_nb.errors import ConfigError
from holysheep_nb.frames import adapter_for

if TYPE_CHECKING:
    from holysheep_nb.images import ImageParts

MISSING_PROMPT = "missing prompt"


@dataclass(slots=True)
class Prompt:
    """A row's prompt text, or the reason it has none (``error``); ``images``: the row's
    images, in a call with ``images=`` (``holysheep_nb.images``); ``image_problem``: when an
    image is why the row has none, the kind of problem without the file ("image file not
    found"), the report's group. A value (not frozen only for the cost of building one per
    row, as ``RowOutcome``)."""

    text: str | None
    error: str | None = None
    images: ImageParts | None = None
    image_problem: str | None = None


def _is_missing(value: object) -> bool:
    if value.__class__ is str:  # the common prompt: no pandas call per row
        return False
    if value is None:
        return True
    try:
        return bool(pd.isna(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):  # lists, arrays: not a scalar, so not missing
        return False


class PromptSource:
    """Where each row's prompt comes from: one column as is, or a template over columns.

    ``frame`` is a pandas or polars DataFrame; ``adapter`` (``frames``) reads its rows."""

    #: False for a source whose rows may have no text at all (images only).
    text_required = True

    def __init__(self, frame: Any, column: Hashable | None, template: str | None):
        if (column is None) == (template is None) and (self.text_required or column is not None):
            raise ConfigError(
                "pass exactly one of a prompt column (complete('text', ...)) or "
                "template='... {column} ...'"
            )
        self.adapter = adapter_for(frame)
        self.frame = frame
        self.column = column
        self.template = template
        self.fields: tuple[str, ...] = ()
        names = self.adapter.columns(frame)
        if column is not None:
            if column not in names:
                raise ConfigError(
                    f"no column {column!r} in the DataFrame; columns are {_names(names)}"
                )
        elif template is not None:
            self.fields = template_fields(template)
            missing = [name for name in self.fields if name not in names]
            if missing:
                raise ConfigError(
                    f"template refers to missing column(s) {', '.join(map(repr, missing))}; "
                    f"columns are {_names(names)}"
                )

    def __len__(self) -> int:
        return len(self.frame)

    def chunk(self, start: int, stop: int) -> Iterator[Prompt]:
        """The prompts of rows ``start:stop`` (positions), in order."""
        values = self.adapter.values
        if self.column is not None:
            for value in values(self.frame, self.column, start, stop):
                yield _prompt_from_value(value)
            return
        assert self.template is not None
        columns = [values(self.frame, name, start, stop) for name in self.fields]
        for row in zip(*columns, strict=True):
            yield self._format(dict(zip(self.fields, row, strict=True)))

    def _format(self, values: dict[str, Any]) -> Prompt:
        for name, value in values.items():
            if _is_missing(value):
                return Prompt(None, f"missing value for column {name!r}")
        assert self.template is not None
        try:
            text = self.template.format_map(values)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            return Prompt(None, f"template error: {exc}")
        return _prompt_from_text(text)


def _prompt_from_value(value: object) -> Prompt:
    if isinstance(value, str):  # the usual prompt: no pandas missing-value check
        return _prompt_from_text(value)
    if _is_missing(value):
        return Prompt(None, MISSING_PROMPT)
    return _prompt_from_text(str(value))


def _prompt_from_text(text: str) -> Prompt:
    if not text or text.isspace():
        return Prompt(None, MISSING_PROMPT)
    problem = invalid_text(text)
    return Prompt(None, f"prompt {problem}") if problem else Prompt(text)


def template_fields(template: str) -> tuple[str, ...]:
    """The column names a template refers to, in order of first use.

    ``{title}``, ``{price:.2f}`` and ``{meta[lang]}`` refer to columns ``title``, ``price``
    and ``meta``; positional fields (``{}``, ``{0}``) are rejected because rows have no order
    of columns a reader could rely on.
    """
    if not isinstance(template, str) or not template.strip():
        raise ConfigError(f"template must be a non-empty string, got {template!r}")
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"bad template {template!r}: {exc}") from None
    for _, field, _, _ in parsed:
        if field is None:
            continue
        name = field.split(".", 1)[0].split("[", 1)[0]
        if not name or name.isdigit():
            raise ConfigError(
                f"template {template!r} has a positional field {{{field}}}; name a column, "
                "e.g. 'Label: {title}'"
            )
        if name not in names:
            names.append(name)
    if not names:
        raise ConfigError(f"template {template!r} names no column, e.g. 'Label: {{title}}'")
    return tuple(names)


def _names(columns: Sequence[Hashable] | pd.Index) -> str:
    shown = [repr(c) for c in list(columns)[:20]]
    more = len(columns) - len(shown)
    return "[" + ", ".join(shown) + (f", ... {more} more" if more > 0 else "") + "]"
