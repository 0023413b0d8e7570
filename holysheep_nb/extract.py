"""Extraction: ask for JSON that fits a schema, read it back strictly, add typed columns.

``ExtractFormat`` is the answer format of ``extract()``. It asks with a strict
``json_schema`` ``response_format`` (or, with ``structured=False``, the schema written into
the system message, for servers that reject ``response_format``), and reads every answer
as it arrives: the JSON object is found in plain JSON, a fenced block, or after prose, with
reasoning (``<think>...</think>``) set aside, and validated with pydantic in strict mode. An
answer that does not fit is the row's ``INVALID`` failure, naming each field and why
(``stars: not an integer ('five')``); nothing is coerced and no field of it is kept.
"""

from __future__ import annotations

import enum
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError as PydanticValidationError

from holysheep_nb.columns import free_name
from holysheep_nb.errors import ConfigError
from holysheep_nb.logprobs import TokenLogprobs
from holysheep_nb.outcome import AnswerRejected, OutcomeKind
from holysheep_nb.schema import OBJECT, Schema, describe_errors

#: The column of whole answers (dicts) with ``flatten=False``.
EXTRACTED_COLUMN = "extracted"

_THINK_CLOSE = "</think>"
_THINK_OPEN = "<think>"
_MAX_SHOWN = 80
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class ExtractFormat:
    """What ``extract()`` asks for and how it reads answers back.

    ``schema`` is a ``Schema`` (see ``Schema.of``); ``instructions`` tell the model what the
    text is and what the fields mean; ``flatten`` gives one column per top-level field
    (else one ``extracted`` column of dicts); ``structured`` sends the strict
    ``response_format`` (``False``: the schema goes into the system message instead, as it
    does after a server refuses ``response_format``: see ``unstructured_system``).
    """

    schema: Schema
    instructions: str | None = None
    flatten: bool = True
    structured: bool = True

    def __post_init__(self) -> None:
        if self.instructions is not None and not isinstance(self.instructions, str):
            raise ConfigError(
                f"instructions must be a string, got {type(self.instructions).__name__}"
            )
        if not isinstance(self.flatten, bool) or not isinstance(self.structured, bool):
            raise ConfigError("flatten and structured must be True or False")

    # --- asking ---------------------------------------------------------------------------

    def unstructured_system(self, system: str | None) -> str | None:
        """The system message once a server has refused ``response_format``: the schema
        written out, as with ``structured=False`` (None when this format sends none anyway)."""
        return replace(self, structured=False).system_prompt(system) if self.structured else None

    def system_prompt(self, system: str | None = None) -> str:
        """The system message: the caller's own ``system`` first, then what to answer."""
        parts = [system.strip()] if system and system.strip() else []
        parts.append("You are extracting data from text.")
        if self.instructions and self.instructions.strip():
            parts.append(self.instructions.strip())
        if self.structured:
            parts.append(
                "Reply with one JSON object with the fields " + ", ".join(self.schema.fields) + "."
            )
        else:
            schema = json.dumps(self.schema.written_schema(), ensure_ascii=False)
            parts.append(
                "Reply with one JSON object that fits this JSON Schema, and nothing else; give "
                "every field, null where the schema allows it and the text does not say.\n"
                f"JSON Schema: {schema}"
            )
        return "\n".join(parts)

    def request_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The ``complete()`` options with this format's system prompt and response format."""
        merged = dict(options)
        merged["system"] = self.system_prompt(merged.get("system"))
        if self.structured and "response_format" not in merged:
            merged["response_format"] = self.schema.response_format()
        return merged

    def answer_tokens(self) -> int:
        """A rough count of the tokens an answer takes (for the dry-run estimate)."""
        return _answer_chars(self.schema.json_schema(), self.schema.json_schema()) // 4 + 1

    # --- reading --------------------------------------------------------------------------

    def read(self, answer: str, logprobs: TokenLogprobs | None = None) -> str:
        """The answer's JSON object, validated against the schema, as its text (``parse``
        gives its fields). ``logprobs`` are not used.

        A row keeps this text, not Python objects, until the run is over and its fields are
        read into the columns (``add_columns`` validates it once more there, about a
        microsecond): dicts and lists kept row after row through a run are what CPython's
        cycle collector walks again and again while requests are in flight, and they cost
        ``extract()`` a tenth of its throughput. A model whose validators have side effects
        sees each answer twice.

        Raises ``AnswerRejected`` (``INVALID``) when the answer holds no JSON object, or one
        that does not fit the schema (``fields`` names the fields at fault).
        """
        text = _without_reasoning(answer)
        stripped = text.strip()
        if stripped[:1] == "{" and stripped[-1:] == "}":
            if self._fits(stripped):
                return stripped
        elif stripped[:1] == "[" and _is_json(stripped):
            raise AnswerRejected(OutcomeKind.INVALID, "the answer is a JSON array, not an object")
        candidate = _first_object(text)
        if candidate is None or not self._fits(candidate):
            raise AnswerRejected(
                OutcomeKind.INVALID, f"no JSON object in the answer: {_shown(answer)}"
            )
        return candidate

    def parse(self, answer: str) -> dict[str, Any]:
        """The answer's fields, validated: ``{field: value}``, nested objects as dicts.

        Raises ``AnswerRejected`` as ``read`` does.
        """
        return self.schema.read_json(self.read(answer))

    def _fits(self, candidate: str) -> bool:
        """True when ``candidate`` fits the schema; False when it is not JSON at all."""
        try:
            self.schema.validate_json(candidate)
        except PydanticValidationError as error:
            if any(item["type"] == "json_invalid" for item in error.errors(include_url=False)):
                return False
            detail, fields = describe_errors(error)
            raise AnswerRejected(OutcomeKind.INVALID, detail, fields) from None
        return True

    def add_columns(self, out: pd.DataFrame, values: list[Any], *, before: str) -> pd.DataFrame:
        """Insert the result columns before the column ``before`` (the run's response
        column): one per top-level field, or one ``extracted`` column of dicts. ``values``
        are what ``read`` kept for each row (None for a failed row).

        A field's column is named after it, or ``<field>_2``, ``<field>_3``, ... when the
        frame already has that column (``columns.free_name``): a run never replaces a column
        of its input. A failed row has every field missing.
        """
        result: pd.DataFrame = out.copy(deep=False)
        position = list(out.columns).index(before)
        taken = set(out.columns)
        read_json = self.schema.read_json
        if not self.flatten:
            rows = [None if text is None else read_json(text) for text in values]
            result.insert(position, free_name(EXTRACTED_COLUMN, taken), _objects(rows))
            return result
        keys = self.schema.fields
        columns: dict[str, list[Any]] = {key: [None] * len(values) for key in keys}
        for index, text in enumerate(values):
            if text is not None:
                row = read_json(text)
                for key in keys:
                    columns[key][index] = row.get(key)
        for offset, key in enumerate(keys):
            name = free_name(key, taken)
            taken.add(name)
            result.insert(position + offset, name, _column(columns[key], self.schema.dtypes[key]))
        return result

    def counts(self, values: list[Any]) -> Counter[str] | None:
        """No per-value breakdown for extraction (the report counts failures per field)."""
        return None


def _without_reasoning(answer: str) -> str:
    """The answer after its reasoning: past the last ``</think>`` (paired or closing-only)."""
    if _THINK_CLOSE in answer:
        return answer.rsplit(_THINK_CLOSE, 1)[1]
    if answer.lstrip().startswith(_THINK_OPEN):
        raise AnswerRejected(
            OutcomeKind.INVALID, "the answer is all reasoning: <think> is never closed"
        )
    return answer


def _first_object(text: str) -> str | None:
    """The first JSON object in ``text`` (inside a fence or after prose), as its own text."""
    start = text.find("{")
    while start >= 0:
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return text[start:end]
        start = text.find("{", start + 1)
    return None


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _column(values: list[Any], dtype: Any) -> Any:
    """One field's values as a column of ``dtype`` (object when a value does not fit it)."""
    if dtype == OBJECT:
        return _objects(values)
    if isinstance(dtype, pd.CategoricalDtype):
        plain = [value.value if isinstance(value, enum.Enum) else value for value in values]
        return pd.Categorical(plain, dtype=dtype)
    try:
        return pd.array(values, dtype=dtype)
    except (OverflowError, TypeError, ValueError):  # e.g. an integer beyond 64 bits
        return _objects(values)


def _objects(values: list[Any]) -> np.ndarray:
    """An object array of ``values`` as they are (a list stays one cell, not a row of cells)."""
    column = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        column[index] = value
    return column


def _answer_chars(node: object, root: Mapping[str, Any]) -> int:
    """Roughly how many characters of JSON a value of this schema node takes."""
    if not isinstance(node, Mapping):
        return 8
    if "$ref" in node:
        target: Any = root
        for part in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return _answer_chars(target, root)
    if "enum" in node:
        return max(len(json.dumps(value)) for value in node["enum"])
    options = node.get("anyOf") or node.get("oneOf")
    if options:
        return max(_answer_chars(option, root) for option in options)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = node.get("properties") or {}
        return 2 + sum(len(k) + 4 + _answer_chars(v, root) for k, v in properties.items())
    if kind == "array":
        return 2 + 3 * (_answer_chars(node.get("items"), root) + 1)
    return {"string": 24, "integer": 4, "number": 6, "boolean": 5, "null": 4}.get(str(kind), 8)


def _shown(text: str) -> str:
    """An answer as quoted in an error: repr, cut short."""
    text = text.strip()
    return repr(text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…")
