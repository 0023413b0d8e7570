"""JSON-schema answers: every value the server builds validates against the schema it was asked.

Checked with the ``jsonschema`` validator (Draft 2020-12), on hand-written schemas that use
the keywords pydantic, the openai client and people writing schemas by hand use.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from holysheep_nb.server import ServerConfig, start_server
from holysheep_nb.server.schema_answers import SchemaError, value_for

jsonschema = pytest.importorskip("jsonschema")

TEXT = "The strap broke after two weeks, but the battery is excellent and shipping was quick."


def first_labels(labels: list[str], multi: bool) -> list[str]:
    return labels[:2] if multi else labels[:1]


SCHEMAS: dict[str, dict[str, Any]] = {
    "scalars": {
        "type": "object",
        "properties": {
            "summary": {"type": "string", "minLength": 3, "maxLength": 12},
            "score": {"type": "integer", "minimum": -3, "maximum": 3},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "even": {"type": "integer", "multipleOf": 2, "minimum": 1, "maximum": 9},
            "big": {"type": "integer", "minimum": 1000},
            "ok": {"type": "boolean"},
            "nothing": {"type": "null"},
            "fixed": {"const": "v1"},
            "numbered": {"enum": [1, 2, 3]},
            "either": {"type": ["string", "null"]},
        },
        "required": ["summary", "score", "ratio", "even", "ok"],
        "additionalProperties": False,
    },
    "formats": {
        "type": "object",
        "properties": {
            name: {"type": "string", "format": name}
            for name in ("date-time", "date", "time", "uuid", "email", "uri")
        },
    },
    "arrays": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 4},
            "none": {"type": "array", "items": {"type": "integer"}, "maxItems": 0},
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "items": False,
            },
            "labels": {
                "type": "array",
                "items": {"type": "string", "enum": ["a", "b", "c"]},
                "minItems": 3,
                "uniqueItems": True,
            },
        },
        "required": ["tags", "none", "pair", "labels"],
    },
    "refs_and_unions": {
        "$defs": {
            "Part": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "weight": {"type": "number"}},
                "required": ["name", "weight"],
                "additionalProperties": False,
            },
            "Colour": {"type": "string", "enum": ["red", "blue"]},
        },
        "type": "object",
        "properties": {
            "main": {"$ref": "#/$defs/Part"},
            "spare": {"anyOf": [{"$ref": "#/$defs/Part"}, {"type": "null"}]},
            "parts": {"type": "array", "items": {"$ref": "#/$defs/Part"}},
            "colour": {"$ref": "#/$defs/Colour"},
            "one": {
                "oneOf": [{"type": "integer", "minimum": 5}, {"type": "string", "maxLength": 0}]
            },
            "both": {
                "allOf": [
                    {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
                    {"properties": {"y": {"type": "boolean"}}, "required": ["y"]},
                ]
            },
        },
        "required": ["main", "spare", "parts", "colour", "one", "both"],
    },
    "draft7_definitions": {
        "definitions": {"Id": {"type": "integer", "minimum": 1}},
        "type": "object",
        "properties": {"id": {"$ref": "#/definitions/Id"}},
        "required": ["id"],
    },
    "recursive": {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                },
                "required": ["label", "children", "parent"],
            }
        },
        "$ref": "#/$defs/Node",
    },
}


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_value_validates_and_is_deterministic(name: str) -> None:
    schema = SCHEMAS[name]
    value = value_for(schema, TEXT, first_labels)
    jsonschema.Draft202012Validator(schema).validate(value)
    assert value == value_for(schema, TEXT, first_labels)
    json.dumps(value)  # plain JSON types only


def test_values_depend_on_the_prompt_and_string_enums_take_the_labeller() -> None:
    schema = SCHEMAS["scalars"]
    assert value_for(schema, TEXT, first_labels) != value_for(schema, "Other text.", first_labels)
    arrays = value_for(SCHEMAS["arrays"], TEXT, first_labels)
    assert arrays["labels"][:2] == ["a", "b"]  # the labeller's choice first, padded to minItems
    chosen = value_for(SCHEMAS["refs_and_unions"], TEXT, lambda labels, multi: labels[-1:])
    assert chosen["colour"] == "blue"


async def test_the_server_answers_a_schema_without_an_enum() -> None:
    schema = {
        "type": "object",
        "properties": {"summary": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["summary", "score"],
        "additionalProperties": False,
    }
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": TEXT}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "review", "schema": schema, "strict": True},
        },
    }
    async with (
        await start_server(ServerConfig()) as server,
        aiohttp.ClientSession() as session,
        session.post(f"{server.base_url}/chat/completions", json=body) as response,
    ):
        reply = await response.json()
    answer = json.loads(reply["choices"][0]["message"]["content"])
    jsonschema.Draft202012Validator(schema).validate(answer)


ENDLESS = {
    "$defs": {
        "Link": {
            "type": "object",
            "properties": {"next": {"$ref": "#/$defs/Link"}},
            "required": ["next"],
        }
    },
    "$ref": "#/$defs/Link",
}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}},
        {"type": "array", "items": {"type": "string"}, "minItems": "three"},
        ENDLESS,
    ],
    ids=["ref to nowhere", "bound not a number", "no finite value"],
)
async def test_a_schema_that_cannot_be_answered_is_a_json_400(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        value_for(schema, TEXT, first_labels)
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": TEXT}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    async with (
        await start_server(ServerConfig()) as server,
        aiohttp.ClientSession() as session,
        session.post(f"{server.base_url}/chat/completions", json=body) as response,
    ):
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["code"] == "invalid_schema"
    assert error["message"].startswith("Invalid schema: ")
