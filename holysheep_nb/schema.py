"""A schema for ``extract()``: a pydantic model, a dict of field types, or a JSON Schema.

``Schema.of`` turns any of the three into one pydantic model (``Schema.model``), which gives
everything else: the validator (strict: nothing is coerced, ``"5"`` is not an integer), the
strict ``json_schema`` ``response_format`` (every property required, no additional
properties, Optional as a union with null), and the dtype of each top-level field's result
column (``Schema.dtypes``).

A JSON Schema is translated into a pydantic model keyword by keyword; a keyword outside the
subset below raises ``ConfigError`` rather than being silently ignored:

- ``type`` (one or a list), ``properties``, ``required`` (a property not in it may be left
  out of an answer or be null, see below), ``additionalProperties`` (``false`` forbids extra
  keys; otherwise they are ignored), ``items``, ``enum``, ``const``, ``anyOf`` / ``oneOf``,
  ``$ref`` into ``$defs`` / ``definitions`` (not recursive);
- bounds: ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``,
  ``multipleOf``, ``minLength``, ``maxLength``, ``pattern``, ``minItems``, ``maxItems``;
- annotations, which change nothing: ``title``, ``description``, ``default``,
  ``examples``, ``$schema``, ``$id``, ``$comment``, ``format`` (not checked).

OpenAI's strict mode has no optional properties, so a property not in ``required`` is asked
for as required with null allowed, and null is how a strict answer leaves it out: an answer
may give null there even when the property's own type does not allow it (reading it as
JSON Schema would have it refused every answer that did as the request said). Left out or
null, its column is missing; a value that is there and not null must fit the type. A
property in ``required`` is null only where its type allows null.

Length: the JSON Schema keywords it honours are translated one by one, each with the
error that names a keyword it cannot honour; splitting them apart would scatter one table.
"""

from __future__ import annotations

import enum
import json
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from pydantic import ValidationError as PydanticValidationError
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError
from pydantic_core import SchemaError

from holysheep_nb.errors import ConfigError

#: The JSON Schema keywords translated into the model (see the module docstring).
_CONSTRAINTS = {
    "minimum": "ge",
    "maximum": "le",
    "exclusiveMinimum": "gt",
    "exclusiveMaximum": "lt",
    "multipleOf": "multiple_of",
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
    "minItems": "min_length",
    "maxItems": "max_length",
}
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "format"}
)
_STRUCTURE = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "$ref",
        "$defs",
        "definitions",
    }
)
_KNOWN = _STRUCTURE | _ANNOTATIONS | frozenset(_CONSTRAINTS)
_SCALARS: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
}
#: The names JSON Schema gives its types: a dict whose ``type`` is one of them (or a list of
#: them) is a JSON Schema, not a dict of field types.
_JSON_TYPES = frozenset({*_SCALARS, "object", "array"})
#: Keywords that make a dict a JSON Schema when their value is a dict or a bool (``$schema`` /
#: ``$ref`` / ``$id``: a string), as a Python type never is.
_JSON_NODES = ("properties", "items", "additionalProperties", "$defs", "definitions")
_JSON_NAMES = ("$schema", "$ref", "$id")
_NAME = re.compile(r"[^a-zA-Z0-9_-]+")
#: The dtype of a column of Python objects (lists, dicts, anything without a better dtype).
OBJECT = np.dtype(object)
#: Keys dropped from the ``response_format`` schema: OpenAI's strict mode rejects ``default``,
#: and titles only cost tokens.
_DROPPED = frozenset({"default", "title"})


@dataclass(frozen=True)
class Schema:
    """One extraction schema: the pydantic model behind it and what follows from it.

    ``fields`` are the top-level keys of an answer (aliases where the model has them), in
    order; ``dtypes`` maps each to the pandas dtype of its result column.
    """

    model: type[BaseModel]
    fields: tuple[str, ...]
    dtypes: Mapping[str, Any]

    @classmethod
    def of(cls, schema: object) -> Schema:
        """The schema of a pydantic model class, a dict of field types, or a JSON Schema dict.

        A dict is a JSON Schema when its ``type`` is a JSON Schema type name (``"object"``,
        ``"array"``, ``"string"``, ...), or it has ``properties``, ``items``, ``$defs`` ... as
        dicts or ``$schema`` as a string; its top level must then be an object with
        ``properties``. Otherwise it maps field names to Python types (``str``, ``int | None``,
        ``Literal["a", "b"]``, ``list[str]``, a nested model, ...); an ``Optional`` field may be
        left out of an answer (it is then missing). Raises ``ConfigError`` for anything else.

        Keys of an answer that the schema does not name (the request says
        ``additionalProperties: false``, but a server that ignores it, or an answer asked for in
        words, may have some): a dict of types refuses them, since a misspelt ``Optional``
        field would otherwise vanish without a word; a JSON Schema refuses them where it says
        ``additionalProperties: false`` and drops them otherwise (its own default allows
        them); a pydantic model, and each model nested in one, does what its own
        ``model_config["extra"]`` says, as ``Model.model_validate_json(answer, strict=True)``
        would: pydantic's default ``"ignore"`` drops them, ``"forbid"`` refuses them,
        ``"allow"`` keeps them in the answer's dict (``flatten=False``) but makes no column of
        them. A refused key is the row's ``INVALID`` error (``extra: not a field of the schema
        (1)``).
        """
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            model = schema
        elif isinstance(schema, Mapping) and looks_like_json_schema(schema):
            model = _model_from_json_schema(schema)
        elif isinstance(schema, Mapping) and schema:
            model = _model_from_types(schema)
        else:
            raise ConfigError(
                "schema must be a pydantic model class, a dict of field name to type "
                "(e.g. {'product': str, 'stars': int}) or a JSON Schema with "
                f"'type': 'object' at the top, got {_shown_type(schema)}"
            )
        try:
            model.model_json_schema()
        except (PydanticSchemaGenerationError, PydanticUserError) as exc:
            raise ConfigError(
                f"schema cannot be written as a JSON Schema: {_one_line(exc)}"
            ) from None
        fields = tuple(info.alias or name for name, info in model.model_fields.items())
        if not fields:
            raise ConfigError("schema has no fields: give it at least one")
        dtypes = {
            info.alias or name: column_dtype(info.annotation)
            for name, info in model.model_fields.items()
        }
        return cls(model, fields, dtypes)

    def json_schema(self) -> dict[str, Any]:
        """The model's JSON Schema in OpenAI's strict form.

        Every object lists all its properties as required and has ``additionalProperties:
        false``; an Optional field stays a union with null; ``$defs`` are kept, and a
        ``$ref`` never has a keyword beside it (``_strict``).
        """
        schema = self.model.model_json_schema()
        strict = _strict(schema, schema)
        assert isinstance(strict, dict)
        return strict

    def written_schema(self) -> dict[str, Any]:
        """The strict JSON Schema as written into a system message: each ``$ref`` replaced by
        its definition, so nested objects, their fields' types and allowed values read in
        place (a recursive model keeps its ``$ref`` and its ``$defs``)."""
        strict = self.json_schema()
        written = _inline(strict, strict, ())
        assert isinstance(written, dict)
        if "$ref" not in json.dumps(written):
            written.pop("$defs", None)
            written.pop("definitions", None)
        return written

    def response_format(self) -> dict[str, Any]:
        """An OpenAI ``response_format`` of type ``json_schema`` with ``strict: true``."""
        name = _NAME.sub("_", self.model.__name__).strip("_")[:64] or "extracted"
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "strict": True, "schema": self.json_schema()},
        }

    def validate_json(self, text: str) -> None:
        """Check a JSON document against the schema in strict mode (nothing is kept).

        Raises pydantic's ``ValidationError``; ``describe_errors`` words it for a row.
        """
        self.model.__pydantic_validator__.validate_json(text, strict=True)

    def read_json(self, text: str) -> dict[str, Any]:
        """A JSON document validated in strict mode, as ``{key: value}`` (nested models as
        dicts, keys by alias).

        Raises pydantic's ``ValidationError``; ``describe_errors`` words it for a row. Calls
        pydantic-core directly: this runs once per row, and the wrappers cost a third of it.
        """
        model = self.model
        instance = model.__pydantic_validator__.validate_json(text, strict=True)
        values: dict[str, Any] = model.__pydantic_serializer__.to_python(instance, by_alias=True)
        return values


def column_dtype(annotation: Any) -> Any:
    """The pandas dtype of a result column for a field of this type.

    ``str`` -> ``string``; ``int`` -> ``Int64``; ``float`` -> ``Float64``; ``bool`` ->
    ``boolean``; a ``Literal`` or ``Enum`` -> ``category`` over its values, in order; anything
    else (lists, dicts, nested models, unions of types, dates) -> ``object``. ``Optional``
    changes nothing: every column is nullable, a failed row has every field missing.
    """
    annotation = _without_none(annotation)
    if annotation is str:
        return pd.StringDtype()
    if annotation is bool:
        return pd.BooleanDtype()
    if annotation is int:
        return pd.Int64Dtype()
    if annotation is float:
        return pd.Float64Dtype()
    if get_origin(annotation) is Literal:
        values = [value for value in dict.fromkeys(get_args(annotation)) if value is not None]
        return pd.CategoricalDtype(values)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return pd.CategoricalDtype([member.value for member in annotation])
    return OBJECT


def _without_none(annotation: Any) -> Any:
    """``X`` for ``X | None`` / ``Optional[X]`` / ``Annotated[X, ...]``; else unchanged."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return _without_none(members[0])
    return annotation


def describe_errors(error: PydanticValidationError) -> tuple[str, tuple[str, ...]]:
    """A validation error as one line per field, and the fields that failed.

    The line reads ``stars: not an integer ('five'); sentiment: missing``: one reason per
    top-level field, in the order pydantic reports them. The fields are dotted paths
    without list positions (``items.price`` for ``items[3].price``), for counting failures
    per field.
    """
    parts: list[str] = []
    fields: list[str] = []
    seen: set[object] = set()
    for item in error.errors(include_url=False):
        loc = item["loc"]
        top = loc[0] if loc else ""
        if top in seen:
            continue
        seen.add(top)
        path = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" if index else str(part)
            for index, part in enumerate(loc)
        )
        reason = _REASONS.get(item["type"]) or _lowered(item["msg"])
        if item["type"] in ("literal_error", "enum"):
            reason = f"not one of {item.get('ctx', {}).get('expected', '')}"
        if item["type"] != "missing":
            reason += f" ({_shown(item.get('input'))})"
        parts.append(f"{path or '(answer)'}: {reason}")
        fields.append(".".join(str(part) for part in loc if isinstance(part, str)) or "(answer)")
    return "; ".join(parts), tuple(dict.fromkeys(fields))


_REASONS = {
    "int_type": "not an integer",
    "int_parsing": "not an integer",
    "int_from_float": "not an integer",
    "float_type": "not a number",
    "float_parsing": "not a number",
    "string_type": "not a string",
    "bool_type": "not true or false",
    "bool_parsing": "not true or false",
    "missing": "missing",
    "extra_forbidden": "not a field of the schema",
    "list_type": "not a list",
    "dict_type": "not an object",
    "model_type": "not an object",
    "model_attributes_type": "not an object",
    "none_required": "not null",
}
_MAX_SHOWN = 40


def _lowered(message: str) -> str:
    return message[:1].lower() + message[1:]


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def _one_line(error: Exception) -> str:
    """An error's text up to its first blank line (pydantic's link to its docs comes after),
    on one line."""
    return " ".join(str(error).split("\n\n", 1)[0].split())


def _shown_type(value: object) -> str:
    if isinstance(value, Mapping) and not value:
        return "an empty dict"
    return repr(value) if isinstance(value, (str, int, float)) else type(value).__name__


# --- dict of types ---------------------------------------------------------------------------


def _model_from_types(fields: Mapping[Any, Any]) -> type[BaseModel]:
    definitions: dict[str, Any] = {}
    for name, annotation in fields.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"schema field names must be non-empty strings, got {name!r}")
        try:
            TypeAdapter(annotation)
        except (PydanticSchemaGenerationError, PydanticUserError, SchemaError, TypeError) as exc:
            raise ConfigError(_not_a_type(name, annotation, exc)) from None
        definitions[name] = (annotation, None if _admits_none(annotation) else ...)
    return _create("Extracted", definitions, extra="forbid")


def _not_a_type(name: str, annotation: object, error: Exception) -> str:
    """Why a field of a dict of types cannot be used, in one line.

    pydantic's words for a value that is no type at all are advice for a model's author
    (``arbitrary_types_allowed``, ``__get_pydantic_core_schema__``), so those are replaced; a
    dict (read by pydantic as a core schema) is most likely a JSON Schema without its
    ``properties``. Other errors (a bound that does not fit its type) keep pydantic's words.
    """
    if isinstance(error, PydanticSchemaGenerationError) or isinstance(annotation, Mapping):
        hint = (
            ' (a JSON Schema has its fields in "properties": {"type": "object", '
            '"properties": {...}})'
            if isinstance(annotation, Mapping)
            else ""
        )
        return (
            f"schema field {name!r}: {annotation!r} is not a type; give a Python type such as "
            f"str, int, list[str], a Literal or a pydantic model{hint}"
        )
    return f"schema field {name!r}: {annotation!r} cannot be used ({_one_line(error)})"


def _admits_none(annotation: Any) -> bool:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return type(None) in get_args(annotation)


def _create(
    title: str, definitions: Mapping[str, Any], *, extra: Literal["ignore", "forbid"]
) -> type[BaseModel]:
    """A model with fields named by position and aliased to the real keys, so any key works
    (``first name``, ``class``, ``model_config``)."""
    fields: dict[str, Any] = {}
    for index, (key, (annotation, default)) in enumerate(definitions.items()):
        fields[f"field_{index}"] = (annotation, Field(default, alias=key))
    config = ConfigDict(extra=extra, title=title)
    model: type[BaseModel] = create_model(
        _NAME.sub("_", title) or "Extracted", __config__=config, **fields
    )
    return model


# --- JSON Schema -----------------------------------------------------------------------------


def looks_like_json_schema(schema: Mapping[Any, Any]) -> bool:
    """True when a dict is a JSON Schema rather than field names mapped to Python types (the
    rule ``Schema.of`` reads a dict by)."""
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if kinds and all(isinstance(k, str) and k in _JSON_TYPES for k in kinds):
        return True
    return any(isinstance(schema.get(key), (Mapping, bool)) for key in _JSON_NODES) or any(
        isinstance(schema.get(key), str) for key in _JSON_NAMES
    )


def _model_from_json_schema(schema: Mapping[str, Any]) -> type[BaseModel]:
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"schema is not a JSON Schema (not JSON: {exc})") from None
    top = (
        'the top level of a JSON Schema for extract() must be an object ("type": "object" '
        'with "properties"), got '
    )
    if "type" in schema and schema["type"] != "object":
        raise ConfigError(f'{top}"type": {json.dumps(schema["type"])}')
    model = _Translator(schema).annotation(schema, "", title="Extracted")
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ConfigError(f'{top}no "properties"')
    return model


class _Translator:
    """JSON Schema -> pydantic types, one node at a time.

    ``path`` names a node in errors, as ``_at`` words it: ``""`` for the top, then property
    names joined by dots, ``[]`` for an array's items, ``{}`` for a map's values,
    ``anyOf[1]`` for an option, and ``$defs.Name`` inside a definition.
    """

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.resolving: list[str] = []

    def annotation(self, node: object, path: str, *, title: str | None = None) -> Any:
        if node is True or node == {}:
            return Any
        if not isinstance(node, Mapping):
            raise ConfigError(f"{_at(path)}: expected a JSON Schema object, got {node!r}")
        unknown = sorted(set(node) - _KNOWN)
        if unknown:
            raise ConfigError(
                f"{_at(path)}: {', '.join(map(repr, unknown))} "
                f"{'is' if len(unknown) == 1 else 'are'} not supported in a JSON Schema here; "
                "pass a pydantic model for that"
            )
        base = self.base(node, path, title)
        bounds = {_CONSTRAINTS[key]: node[key] for key in _CONSTRAINTS if key in node}
        return Annotated[base, Field(**bounds)] if bounds else base

    def base(self, node: Mapping[str, Any], path: str, title: str | None) -> Any:
        if "$ref" in node:
            return self.reference(str(node["$ref"]), path)
        if "const" in node:
            return Literal[node["const"]]
        if "enum" in node:
            values = node["enum"]
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{_at(path)}: enum must be a non-empty list")
            return Literal[tuple(values)]
        for key in ("anyOf", "oneOf"):
            if key in node:
                options = node[key]
                if not isinstance(options, list) or not options:
                    raise ConfigError(f"{_at(path)}: {key} must be a non-empty list")
                members = [
                    self.annotation(option, _join(path, f"{key}[{i}]"))
                    for i, option in enumerate(options)
                ]
                return Union[tuple(members)]  # noqa: UP007 - built at run time
        kind = node.get("type")
        if isinstance(kind, list):
            members = [self.typed(node, str(k), path, title) for k in kind]
            return Union[tuple(members)] if members else Any  # noqa: UP007
        if kind is None:
            kind = "object" if "properties" in node else "array" if "items" in node else None
        return Any if kind is None else self.typed(node, str(kind), path, title)

    def typed(self, node: Mapping[str, Any], kind: str, path: str, title: str | None) -> Any:
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            return list[self.annotation(node.get("items", True), f"{path}[]")]  # type: ignore[misc]
        if kind != "object":
            raise ConfigError(f"{_at(path)}: unknown type {kind!r}")
        properties = node.get("properties")
        closed = node.get("additionalProperties") is False
        if properties is None and not closed:
            values = node.get("additionalProperties", True)
            return dict[str, self.annotation(values, f"{path}{{}}")]  # type: ignore[misc]
        properties = {} if properties is None else properties
        if not isinstance(properties, Mapping):
            raise ConfigError(f"{_at(path)}: properties must be an object")
        required = node.get("required", [])
        if not isinstance(required, list) or not set(required) <= set(properties):
            raise ConfigError(f"{_at(path)}: required must list names of its properties")
        definitions: dict[str, Any] = {}
        for name, sub in properties.items():
            annotation = self.annotation(sub, _join(path, name))
            if name in required:
                definitions[name] = (annotation, ...)
            else:  # asked for with null allowed, strict mode's "left out" (module docstring)
                definitions[name] = (Optional[annotation], None)  # noqa: UP045
        extra: Literal["ignore", "forbid"] = "forbid" if closed else "ignore"
        name = title or node.get("title") or path.rsplit(".", 1)[-1].strip("[]") or "Object"
        return _create(str(name), definitions, extra=extra)

    def reference(self, ref: str, path: str) -> Any:
        prefix, _, name = ref.rpartition("/")
        table = (
            self.root.get(prefix.removeprefix("#/"))
            if prefix in ("#/$defs", "#/definitions")
            else None
        )
        if not isinstance(table, Mapping) or name not in table:
            raise ConfigError(f"{_at(path)}: $ref {ref!r} does not point into $defs")
        if ref in self.resolving:
            raise ConfigError(
                f"{_at(path)}: $ref {ref!r} is recursive; pass a pydantic model for that"
            )
        self.resolving.append(ref)
        try:
            return self.annotation(table[name], f"{prefix[2:]}.{name}", title=name)
        finally:
            self.resolving.pop()


def _at(path: str) -> str:
    """Where in a JSON Schema an error is: ``schema``, or ``schema at items[].price``."""
    return f"schema at {path}" if path else "schema"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --- strict response_format ------------------------------------------------------------------


def _strict(node: object, root: Mapping[str, Any]) -> object:
    """A JSON Schema node in OpenAI's strict form (see ``Schema.json_schema``).

    The rules are strict mode's (OpenAI's Structured Outputs guide, "Supported schemas"),
    applied as openai-python's ``to_strict_json_schema`` applies them: every object lists all
    its properties in ``required`` and has ``additionalProperties: false``; a ``$ref`` with
    keywords beside it (pydantic writes ``{"$ref": ..., "description": ...}`` for a nested
    model field with a description) is replaced by its definition with those keywords
    merged in, since strict mode refuses any keyword beside ``$ref``; an ``allOf`` of one
    schema is that schema.
    """
    if isinstance(node, list):
        return [_strict(item, root) for item in node]
    if not isinstance(node, Mapping):
        return node
    if "$ref" in node and len(node) > 1:
        merged = {**_resolve(str(node["$ref"]), root), **node}
        del merged["$ref"]
        return _strict(merged, root)
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1:
        rest = {key: value for key, value in node.items() if key != "allOf"}
        return _strict({**rest, **all_of[0]} if rest else all_of[0], root)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key in ("properties", "$defs", "definitions") and isinstance(value, Mapping):
            out[key] = {name: _strict(sub, root) for name, sub in value.items()}
        else:
            out[key] = _strict(value, root)
    if isinstance(out.get("properties"), Mapping):
        out["type"] = "object"
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out


def _inline(node: object, root: Mapping[str, Any], resolving: tuple[str, ...]) -> object:
    """``node`` with every ``$ref`` replaced by its definition, but one that refers back to a
    definition being inlined (a recursive model), which stays a ``$ref``."""
    if isinstance(node, list):
        return [_inline(item, root, resolving) for item in node]
    if not isinstance(node, Mapping):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref not in resolving:
        merged = {**_resolve(ref, root), **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, root, (*resolving, ref))
    return {
        key: _inline(value, root, resolving) if key not in ("$defs", "definitions") else value
        for key, value in node.items()
    }


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """The definition a local ``$ref`` (``#/$defs/Name``) points to."""
    target: Any = root
    for part in ref.removeprefix("#/").split("/"):
        target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
        if not isinstance(target, Mapping):
            return {}
    found: Mapping[str, Any] = target
    return found
