"""A JSON value that validates against a JSON schema, derived deterministically from the prompt.

Used for ``response_format`` ``json_schema`` answers and for tool-call arguments. It covers the
schemas pydantic and the openai client emit (``to_strict_json_schema``): objects with
``properties`` / ``required`` / ``additionalProperties``, nested objects, arrays
(``items``, ``prefixItems``, ``minItems`` / ``maxItems``), ``enum`` and ``const``, strings
(``minLength`` / ``maxLength`` and the common ``format`` values), numbers and integers
(``minimum`` / ``maximum`` / exclusive bounds / ``multipleOf``), booleans, null, ``anyOf`` /
``oneOf`` (Optional is ``anyOf`` with null), ``allOf`` and ``$ref`` into ``$defs`` /
``definitions``, recursive models included.

A request may also ask for JSON in words (``prompted_schema``): a JSON Schema written into a
message after ``JSON Schema:``, or only the names of the fields ("one JSON object with the
fields a, b, c"), which a model can only guess the shape of: strings.

Enums of strings are label sets: ``pick_labels`` (the rule-based labeller in ``answers``)
chooses from them, one label for a string, several for an array of them. Every other value
is a stable hash of the prompt and the value's path, so the same request gets the same JSON.

Length: one builder walks every JSON Schema keyword it honours; split by keyword, the
walk and its recursion (``$ref``, ``anyOf``) would be spread over modules that call each other.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from holysheep_nb.errors import HolySheepError

__all__ = ["LabelPicker", "SchemaError", "prompted_schema", "value_for"]

#: A known field's answer when the text has no value for it and the schema wants a string.
UNKNOWN = "unknown"

LabelPicker = Callable[[list[str], bool], list[str]]
"""``pick(labels, multi)``: the labels (one, or several when ``multi``) that suit the prompt."""

_MAX_DEPTH = 6  # beyond this a recursive schema takes its smallest value (no items, null)
_MAX_NESTING = 40  # a schema that still nests here has no finite value
_WORDS = 8
_SCHEMA_MARK = "JSON Schema:"
_FIELDS_ASKED = re.compile(r"JSON object with the fields ([^\n]+?)\.?$", re.MULTILINE)
_DECODER = json.JSONDecoder()


class _Builder:
    def __init__(
        self,
        root: Mapping[str, Any],
        text: str,
        pick: LabelPicker,
        known: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.text = text
        self.words = text.split()
        self.pick = pick
        self.known = known or {}

    def number(self, path: str) -> int:
        digest = hashlib.sha256(f"{path}\x00{self.text}".encode()).digest()
        return int.from_bytes(digest[:8], "big")

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 32:
            target: Any = self.root
            for part in str(schema["$ref"]).removeprefix("#/").split("/"):
                if part:
                    target = target[part.replace("~1", "/").replace("~0", "~")]
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest}
            seen += 1
        return schema

    def value(self, schema: object, path: str, depth: int) -> Any:
        if depth > _MAX_NESTING:
            raise ValueError(f"{path} must nest deeper than {_MAX_NESTING} levels")
        if not isinstance(schema, Mapping):
            return self.string({}, path)  # `true` / `{}`: anything goes, a string will do
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            if all(isinstance(v, str) for v in enum):
                return self.pick(list(enum), False)[0]
            return enum[self.number(path) % len(enum)]
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                return self.value(self.choose(options, depth), path, depth)
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in all_of:
                if isinstance(part, Mapping):
                    _merge(merged, self.resolve(part))
            return self.value(merged, path, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else None
        if kind == "object":
            return self.object(schema, path, depth)
        if kind == "array":
            return self.array(schema, path, depth)
        if kind == "integer":
            return self.integer(schema, path)
        if kind == "number":
            return self.float(schema, path)
        if kind == "boolean":
            return self.number(path) % 2 == 0
        if kind == "null":
            return None
        return self.string(schema, path)

    def choose(self, options: list[Any], depth: int) -> Any:
        """The first option that is not null; null itself when the nesting is too deep."""
        non_null = [o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")]
        if (depth >= _MAX_DEPTH and len(non_null) < len(options)) or not non_null:
            return {"type": "null"}
        return non_null[0]

    def object(self, schema: Mapping[str, Any], path: str, depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        required = set(schema.get("required") or ())
        out: dict[str, Any] = {}
        for name, sub in properties.items():
            if depth >= _MAX_DEPTH and name not in required:
                continue
            key = name.lower()
            if key in self.known and self.fits(self.known[key], sub):
                out[name] = self.known[key]
            elif key in self.known and self.known[key] is None and self.fits(UNKNOWN, sub):
                # Known to be absent (a review that names no product) where the schema wants a
                # string: what a model writes then, not words of the text.
                out[name] = UNKNOWN
            else:
                out[name] = self.value(sub, f"{path}.{name}", depth + 1)
        return out

    def fits(self, value: Any, schema: Any) -> bool:
        """Whether a known ``value`` (a string, an integer or None) is valid for ``schema``:
        its enum, or one of its types (directly or in an ``anyOf`` / ``oneOf``)."""
        if not isinstance(schema, Mapping):
            return True
        schema = self.resolve(schema)
        if "enum" in schema:
            return value in schema["enum"]
        options = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(options, list):
            return any(self.fits(value, option) for option in options)
        kind = schema.get("type")
        kinds = set(kind) if isinstance(kind, list) else {kind}
        if value is None:
            return "null" in kinds
        if isinstance(value, bool):
            return "boolean" in kinds
        if isinstance(value, int):
            low, high = _bounds(schema, 1e9, 1.0)
            in_range = ("minimum" not in schema and "maximum" not in schema) or low <= value <= high
            return bool(kinds & {"integer", "number"}) and in_range
        if isinstance(value, str):
            high_length = schema.get("maxLength")
            short = high_length is None or len(value) <= high_length
            return "string" in kinds and len(value) >= schema.get("minLength", 0) and short
        return False

    def array(self, schema: Mapping[str, Any], path: str, depth: int) -> list[Any]:
        items = schema.get("items")
        if isinstance(items, Mapping):
            resolved = self.resolve(items)
            labels = resolved.get("enum")
            if isinstance(labels, list) and labels and all(isinstance(v, str) for v in labels):
                return self.sized(self.pick(list(labels), True), schema, labels)
        prefix = schema.get("prefixItems")
        out = [
            self.value(sub, f"{path}[{i}]", depth + 1)
            for i, sub in enumerate(prefix if isinstance(prefix, list) else [])
        ]
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        size = low if depth >= _MAX_DEPTH else max(low, 2)
        if high is not None:
            size = min(size, int(high))
        if items is False:
            return out
        while len(out) < size:
            out.append(self.value(items, f"{path}[{len(out)}]", depth + 1))
        return out

    @staticmethod
    def sized(chosen: list[str], schema: Mapping[str, Any], labels: list[str]) -> list[str]:
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        out = list(dict.fromkeys(chosen))
        out += [label for label in labels if label not in out][: max(0, low - len(out))]
        return out[: int(high)] if high is not None else out

    def integer(self, schema: Mapping[str, Any], path: str) -> int:
        low, high = _bounds(schema, 100.0, 1.0)
        low_i, high_i = math.ceil(low), math.floor(high)
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first = math.ceil(low_i / step)
            count = max(1, math.floor(high_i / step) - first + 1)
            return (first + self.number(path) % count) * step
        return low_i + self.number(path) % max(1, high_i - low_i + 1)

    def float(self, schema: Mapping[str, Any], path: str) -> float:
        if isinstance(schema.get("multipleOf"), (int, float)):
            return float(self.integer({**schema, "multipleOf": 1}, path))
        low, high = _bounds(schema, 10.0, 1e-3)
        fraction = (self.number(path) % 1000) / 1000.0
        return min(high, max(low, round(low + (high - low) * fraction, 3)))

    def string(self, schema: Mapping[str, Any], path: str) -> str:
        fmt = schema.get("format")
        n = self.number(path)
        if fmt == "date-time":
            return f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z"
        if fmt == "date":
            return f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}"
        if fmt == "time":
            return f"{n % 24:02d}:{n % 60:02d}:00"
        if fmt == "uuid":
            h = hashlib.sha256(f"{path}\x00{self.text}".encode()).hexdigest()
            return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"
        if fmt == "email":
            return f"user{n % 1000}@example.com"
        if fmt in ("uri", "url"):
            return f"https://example.com/{n % 1000}"
        name = path.rsplit(".", 1)[-1].split("[", 1)[0]
        start = n % (len(self.words) - _WORDS + 1) if len(self.words) > _WORDS else 0
        text = " ".join(self.words[start : start + _WORDS]) or name
        low = int(schema.get("minLength", 0))
        while len(text) < low:
            text += f" {name}"
        high = schema.get("maxLength")
        return text[: int(high)] if high is not None else text


def _merge(into: dict[str, Any], part: Mapping[str, Any]) -> None:
    """Add ``part`` of an ``allOf`` to ``into``: properties and required lists are united."""
    for key, value in part.items():
        if key == "properties" and isinstance(value, Mapping):
            into["properties"] = {**into.get("properties", {}), **value}
        elif key == "required" and isinstance(value, list):
            into["required"] = [*into.get("required", []), *value]
        else:
            into.setdefault(key, value)


def _bounds(schema: Mapping[str, Any], span: float, nudge: float) -> tuple[float, float]:
    """The inclusive range a number may take: exclusive bounds moved in by ``nudge``, and a
    missing bound ``span`` away from the other (0..``span`` when neither is given)."""
    low: float | None = schema.get("minimum")
    high: float | None = schema.get("maximum")
    if isinstance(schema.get("exclusiveMinimum"), (int, float)):
        bound = schema["exclusiveMinimum"] + nudge
        low = bound if low is None else max(low, bound)
    if isinstance(schema.get("exclusiveMaximum"), (int, float)):
        bound = schema["exclusiveMaximum"] - nudge
        high = bound if high is None else min(high, bound)
    if low is None:
        low = 0.0 if high is None else high - span
    if high is None:
        high = low + span
    return float(low), float(max(low, high))


class SchemaError(HolySheepError, ValueError):
    """The schema cannot be answered: a ``$ref`` to nowhere, a bound that is not a number,
    or a value that must nest forever."""


def value_for(
    schema: Mapping[str, Any],
    text: str,
    pick: LabelPicker,
    known: Mapping[str, Any] | None = None,
) -> Any:
    """The answer to ``text`` as a value of ``schema`` (the root, for ``$ref`` lookups).

    ``known``: values by lower-cased property name (a simulated model's extracted fields),
    used wherever a property of that name accepts them. Raises ``SchemaError`` for a schema
    no finite value satisfies or that is malformed.
    """
    try:
        return _Builder(schema, text, pick, known).value(schema, "$", 0)
    except (LookupError, TypeError, ValueError, RecursionError) as exc:
        raise SchemaError(f"{type(exc).__name__}: {exc}") from None


def prompted_schema(texts: list[str]) -> dict[str, Any] | None:
    """The schema the messages ask for in words, as a model would read it, or None.

    A JSON Schema after ``JSON Schema:`` is taken whole; "one JSON object with the fields
    a, b, c" gives an object of those fields as strings (the names say nothing of types or
    nesting, so that is a model's best guess).
    """
    for text in texts:
        start = text.find(_SCHEMA_MARK)
        if start >= 0:
            try:
                schema, _ = _DECODER.raw_decode(text[start + len(_SCHEMA_MARK) :].lstrip())
            except json.JSONDecodeError:
                continue
            if isinstance(schema, dict):
                return schema
    for text in texts:
        asked = _FIELDS_ASKED.search(text)
        if asked:
            names = [name.strip() for name in asked.group(1).split(",") if name.strip()]
            return {
                "type": "object",
                "properties": {name: {"type": "string"} for name in names},
                "required": names,
            }
    return None
