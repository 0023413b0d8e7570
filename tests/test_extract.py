"""extract() / aextract(): a schema in, typed columns out, every bad answer its row's error."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, Optional

import numpy as np
import pandas as pd
import pytest
from aioresponses import CallbackResult, aioresponses
from pydantic import BaseModel, ConfigDict, Field

from holysheep_nb.errors import ConfigError, HolySheepWarning
from holysheep_nb.extract import ExtractFormat
from holysheep_nb.outcome import AnswerRejected, OutcomeKind, RowOutcome, read_answer
from holysheep_nb.schema import Schema
from holysheep_nb.server import RunningServer, ServerConfig, start_server
from tests.scripted import BASE_URL, URL, ok_body


class Review(BaseModel):
    product: str
    stars: int | None
    sentiment: Literal["positive", "negative", "neutral"]
    reasons: list[str]


REVIEW_TYPES: dict[str, Any] = {
    "product": str,
    "stars": Optional[int],  # noqa: UP045 - the spelling users write
    "sentiment": Literal["positive", "negative", "neutral"],
    "reasons": list[str],
}
REVIEW_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "product": {"type": "string"},
        "stars": {"type": ["integer", "null"]},
        "sentiment": {"enum": ["positive", "negative", "neutral"]},
        "reasons": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["product", "stars", "sentiment", "reasons"],
    "additionalProperties": False,
}
GOOD = {"product": "kettle", "stars": 4, "sentiment": "positive", "reasons": ["fast", "quiet"]}
GOOD_JSON = json.dumps(GOOD)


def review_format(**kwargs: Any) -> ExtractFormat:
    return ExtractFormat(Schema.of(Review), **kwargs)


# --- schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", [Review, REVIEW_TYPES, REVIEW_JSON_SCHEMA])
def test_three_ways_to_give_a_schema_mean_the_same_columns(schema: object) -> None:
    parsed = Schema.of(schema)
    assert parsed.fields == ("product", "stars", "sentiment", "reasons")
    assert {name: str(dtype) for name, dtype in parsed.dtypes.items()} == {
        "product": "string",
        "stars": "Int64",
        "sentiment": "category",
        "reasons": "object",
    }
    assert list(parsed.dtypes["sentiment"].categories) == ["positive", "negative", "neutral"]
    assert ExtractFormat(parsed).parse(GOOD_JSON) == GOOD


def test_column_dtypes_follow_the_field_types() -> None:
    class Colour(enum.Enum):
        RED = "red"
        BLUE = "blue"

    class Part(BaseModel):
        name: str

    parsed = Schema.of(
        {
            "price": float,
            "in_stock": bool | None,
            "colour": Colour,
            "part": Part,
            "tags": dict[str, int],
            "either": int | str,
        }
    )
    assert {name: str(dtype) for name, dtype in parsed.dtypes.items()} == {
        "price": "Float64",
        "in_stock": "boolean",
        "colour": "category",
        "part": "object",
        "tags": "object",
        "either": "object",
    }
    assert list(parsed.dtypes["colour"].categories) == ["red", "blue"]


def test_enum_and_nullable_literal_fields_become_categories_of_their_values() -> None:
    class Colour(enum.Enum):
        RED = "red"
        BLUE = "blue"

    reader = ExtractFormat(Schema.of({"colour": Colour, "size": Literal["S", "M", None]}))
    assert list(reader.schema.dtypes["size"].categories) == ["S", "M"]
    values = [reader.read('{"colour": "red", "size": null}'), None]
    out = reader.add_columns(pd.DataFrame({"response": ["a", "b"]}), values, before="response")
    assert out["colour"].tolist()[0] == "red"
    assert out["colour"].isna().tolist() == [False, True]
    assert out["size"].isna().all()
    with pytest.raises(AnswerRejected) as rejected:
        reader.read('{"colour": "green", "size": "XL"}')
    assert rejected.value.detail == (
        "colour: not one of 'red' or 'blue' ('green'); size: not one of 'S', 'M' or None ('XL')"
    )


def test_json_schema_maps_and_closed_objects() -> None:
    reader = ExtractFormat(
        Schema.of(
            {
                "type": "object",
                "properties": {
                    "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "empty": {"type": "object", "additionalProperties": False},
                },
                "required": ["counts"],
            }
        )
    )
    assert reader.parse('{"counts": {"a": 1}, "empty": {}}') == {"counts": {"a": 1}, "empty": {}}
    with pytest.raises(AnswerRejected) as rejected:
        reader.read('{"counts": {"a": "1"}, "empty": {"b": 2}}')
    assert rejected.value.detail == (
        "counts.a: not an integer ('1'); empty.b: not a field of the schema (2)"
    )


def test_the_response_format_is_openai_strict_json_schema() -> None:
    class Address(BaseModel):
        city: str
        zip: str | None = None

    class Customer(BaseModel):
        title: str  # a field named like a JSON Schema keyword stays
        age: int = 30
        address: Address
        tags: list[Literal["new", "vip"]]

    response_format = Schema.of(Customer).response_format()
    assert response_format["type"] == "json_schema"
    spec = response_format["json_schema"]
    assert (spec["name"], spec["strict"]) == ("Customer", True)
    schema = spec["schema"]
    assert schema["required"] == ["title", "age", "address", "tags"]  # all, defaults or not
    assert schema["additionalProperties"] is False
    assert schema["properties"]["title"] == {"type": "string"}
    assert "default" not in schema["properties"]["age"]
    nested = schema["$defs"]["Address"]
    assert nested["required"] == ["city", "zip"]
    assert nested["additionalProperties"] is False
    assert nested["properties"]["zip"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert schema["properties"]["tags"]["items"]["enum"] == ["new", "vip"]
    assert "title" not in json.dumps(nested)


def test_a_json_schema_keeps_its_bounds_refs_and_closed_objects() -> None:
    schema = Schema.of(
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 5, "description": "short"},
                "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 1},
            },
            "required": ["name", "items"],
            "additionalProperties": False,
            "$defs": {
                "Item": {
                    "type": "object",
                    "properties": {"price": {"type": "number", "minimum": 0}},
                    "required": ["price"],
                }
            },
        }
    )
    reader = ExtractFormat(schema)
    assert reader.parse('{"name": "ab", "items": [{"price": 1}]}') == {
        "name": "ab",
        "items": [{"price": 1.0}],
    }
    with pytest.raises(AnswerRejected) as rejected:
        reader.read('{"name": "abcdef", "items": [{"price": -1}], "note": 1}')
    assert rejected.value.detail == (
        "name: string should have at most 5 characters ('abcdef'); "
        "items[0].price: input should be greater than or equal to 0 (-1); "
        "note: not a field of the schema (1)"
    )
    assert rejected.value.fields == ("name", "items.price", "note")


def test_a_json_schema_property_not_required_may_be_null_as_strict_mode_asks() -> None:
    """OpenAI's strict mode has no optional properties: the request lists ``tone`` as required
    with null allowed, so null is how a strict answer leaves it out, and it must be read. (A
    reader that held null to the enum would refuse every answer that did as it was asked.)"""
    tone = {"type": "string", "enum": ["a", "b"]}
    optional = Schema.of({"type": "object", "properties": {"tone": tone}})
    sent = optional.response_format()["json_schema"]["schema"]
    assert sent["required"] == ["tone"]
    assert sent["additionalProperties"] is False
    assert sent["properties"]["tone"] == {"anyOf": [tone, {"type": "null"}]}
    reader = ExtractFormat(optional)
    answers = ['{"tone": null}', "{}", '{"tone": "b"}']
    assert [reader.parse(answer) for answer in answers] == [
        {"tone": None},
        {"tone": None},
        {"tone": "b"},
    ]
    values = [reader.read(answer) for answer in answers]
    out = reader.add_columns(pd.DataFrame({"response": answers}), values, before="response")
    assert out["tone"].isna().tolist() == [True, True, False]
    for answer, detail in [
        ('{"tone": "c"}', "tone: not one of 'a' or 'b' ('c')"),
        ('{"tone": 5}', "tone: not one of 'a' or 'b' (5)"),
    ]:  # a value that is there and not null must fit
        with pytest.raises(AnswerRejected) as rejected:
            reader.read(answer)
        assert rejected.value.detail == detail
    required = ExtractFormat(
        Schema.of({"type": "object", "properties": {"tone": tone}, "required": ["tone"]})
    )
    assert required.schema.json_schema()["properties"]["tone"] == tone  # null not offered
    with pytest.raises(AnswerRejected) as rejected:
        required.read('{"tone": null}')
    assert rejected.value.detail == "tone: not one of 'a' or 'b' (None)"
    nullable = {"type": ["string", "null"]}
    for properties in ({"tone": nullable}, {"tone": {"anyOf": [tone, {"type": "null"}]}}):
        schema = {"type": "object", "properties": properties, "required": ["tone"]}
        assert ExtractFormat(Schema.of(schema)).parse('{"tone": null}') == {"tone": None}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (None, "schema must be a pydantic model class"),
        ({}, "got an empty dict"),
        ("product: str", "got 'product: str'"),
        ({"stars": 5}, "schema field 'stars': 5 is not a type"),
        ({"stars": {"type": "integer"}}, "schema field 'stars': {'type': 'integer'} is not a type"),
        (
            {"type": "object", "properties": {"a": {"type": "string", "if": {}}}},
            "'if' is not supported",
        ),
        ({"type": "object", "properties": {"a": {"type": "text"}}}, "unknown type 'text'"),
        ({"type": "object", "properties": {}}, "schema has no fields"),
        (
            {
                "type": "object",
                "properties": {"a": {"$ref": "#/$defs/A"}},
                "$defs": {"A": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}},
            },
            "is recursive",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/B"}}},
            "does not point into $defs",
        ),
        ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "required must list"),
    ],
)
def test_a_schema_that_cannot_be_used_is_refused_before_anything_is_sent(
    schema: object, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Schema.of(schema)
    assert message in str(info.value)


TOP_LEVEL = 'the top level of a JSON Schema for extract() must be an object ("type": "object"'


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "array", "items": {"type": "string"}},
            f'{TOP_LEVEL} with "properties"), got "type": "array"',
        ),
        ({"type": "string"}, f'{TOP_LEVEL} with "properties"), got "type": "string"'),
        (
            {"type": ["object", "null"], "properties": {"a": {}}},
            f'{TOP_LEVEL} with "properties"), got "type": ["object", "null"]',
        ),
        ({"type": "object"}, f'{TOP_LEVEL} with "properties"), got no "properties"'),
        ({"items": {"type": "string"}}, f'{TOP_LEVEL} with "properties"), got no "properties"'),
        (
            {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": {}},
            f'{TOP_LEVEL} with "properties"), got no "properties"',
        ),
    ],
)
def test_a_json_schema_whose_top_is_not_an_object_says_so(schema: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Schema.of(schema)
    assert str(info.value) == message


GIVE_A_TYPE = "give a Python type such as str, int, list[str], a Literal or a pydantic model"


class Unfinished(BaseModel):
    part: Undefined  # type: ignore[name-defined]  # noqa: F821 - never defined: never complete


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"a": 5}, f"schema field 'a': 5 is not a type; {GIVE_A_TYPE}"),
        ({"a": [str]}, f"schema field 'a': [<class 'str'>] is not a type; {GIVE_A_TYPE}"),
        (
            {"stars": {"type": "integer"}},
            f"schema field 'stars': {{'type': 'integer'}} is not a type; {GIVE_A_TYPE} (a JSON "
            'Schema has its fields in "properties": {"type": "object", "properties": {...}})',
        ),
        (
            {"a": Annotated[int, Field(gt="x")]},  # a type, with a bound that does not fit it
            "cannot be used (Error building",
        ),
        (
            Unfinished,
            "schema cannot be written as a JSON Schema: `Unfinished` is not fully defined; you "
            "should define `Undefined`",
        ),
    ],
)
def test_a_field_that_is_not_a_type_is_one_line_saying_what_to_give(
    schema: object, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Schema.of(schema)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert "errors.pydantic.dev" not in str(info.value)


NOT_SUPPORTED = "is not supported in a JSON Schema here; pass a pydantic model for that"


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "if": {}},
            f"schema: 'if' {NOT_SUPPORTED}",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "if": {}}}},
            f"schema at a: 'if' {NOT_SUPPORTED}",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "if": {}, "then": {}},
            "schema: 'if', 'then' are not supported in a JSON Schema here; pass a pydantic model "
            "for that",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"anyOf": [{"type": "string"}, {"patternProperties": {}}]}},
            },
            f"schema at a.anyOf[1]: 'patternProperties' {NOT_SUPPORTED}",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "items": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"price": {"type": "text"}}},
                    }
                },
            },
            "schema at items[].price: unknown type 'text'",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"$ref": "#/$defs/A"}},
                "$defs": {"A": {"type": "object", "properties": {"b": {"enum": []}}}},
            },
            "schema at $defs.A.b: enum must be a non-empty list",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/B"}}},
            "schema at a: $ref '#/$defs/B' does not point into $defs",
        ),
    ],
)
def test_a_json_schema_error_names_where_in_the_schema_it_is(
    schema: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Schema.of(schema)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "schema",
    [
        {"type": str, "items": list[str]},  # fields named like JSON Schema keywords
        {"type": "str", "format": "int"},  # written as strings, as annotations may be
        {"properties": dict[str, int]},
    ],
)
def test_a_dict_of_types_with_fields_named_like_keywords_stays_a_dict_of_types(
    schema: dict[str, Any],
) -> None:
    assert Schema.of(schema).fields == tuple(schema)


# --- reading answers -------------------------------------------------------------------------


class Item(BaseModel):
    product: str


class ClosedItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product: str


class KeepingItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    product: str


OPEN_ITEM: dict[str, Any] = {"type": "object", "properties": {"product": {"type": "string"}}}
CLOSED_ITEM: dict[str, Any] = {**OPEN_ITEM, "additionalProperties": False}


@pytest.mark.parametrize(
    ("schema", "parsed"),
    [
        ({"product": str}, None),  # our own model, closed as the request says
        (CLOSED_ITEM, None),
        (ClosedItem, None),
        (OPEN_ITEM, {"product": "kettle"}),  # JSON Schema's default: other keys allowed
        (Item, {"product": "kettle"}),  # pydantic's default: other keys ignored
        (KeepingItem, {"product": "kettle", "extra": 1}),
    ],
    ids=["dict of types", "closed JSON Schema", "forbid", "open JSON Schema", "model", "allow"],
)
def test_a_key_the_schema_does_not_name_is_refused_unless_the_schema_allows_it(
    schema: object, parsed: dict[str, Any] | None
) -> None:
    reader = ExtractFormat(Schema.of(schema))
    answer = '{"product": "kettle", "extra": 1}'
    assert reader.schema.json_schema()["additionalProperties"] is False  # asked for none
    if parsed is not None:
        assert reader.parse(answer) == parsed
        out = reader.add_columns(pd.DataFrame({"response": [answer]}), [answer], before="response")
        assert list(out.columns) == ["product", "response"]  # never a column of its own
        return
    with pytest.raises(AnswerRejected) as rejected:
        reader.read(answer)
    assert rejected.value.detail == "extra: not a field of the schema (1)"
    assert rejected.value.fields == ("extra",)


def test_a_model_nested_in_a_dict_of_types_keeps_its_own_word_on_extra_keys() -> None:
    reader = ExtractFormat(Schema.of({"loose": Item | None, "closed": ClosedItem | None}))
    assert reader.parse('{"loose": {"product": "a", "colour": "red"}}') == {
        "loose": {"product": "a"},
        "closed": None,
    }
    with pytest.raises(AnswerRejected) as rejected:
        reader.read('{"closed": {"product": "a", "colour": "red"}, "note": 1}')
    assert rejected.value.detail == (
        "closed.colour: not a field of the schema ('red'); note: not a field of the schema (1)"
    )
    assert rejected.value.fields == ("closed.colour", "note")


@pytest.mark.parametrize(
    "answer",
    [
        GOOD_JSON,
        f"  {GOOD_JSON}\n",
        f"```json\n{GOOD_JSON}\n```",
        f"```\n{GOOD_JSON}\n```",
        f"Here is what I found in the review:\n\n{GOOD_JSON}\n\nHope it helps!",
        f"Sure {{as asked}}: {GOOD_JSON}",
        f'<think>The user wants JSON like {{"product": 1}}.</think>\n{GOOD_JSON}',
        f"I should say positive.</think>{GOOD_JSON}",  # the closing-tag-only form
        f"<think>hm</think>```json\n{GOOD_JSON}\n```",
    ],
)
def test_the_json_object_is_found_in_plain_fenced_prose_and_reasoning_answers(
    answer: str,
) -> None:
    assert review_format().parse(answer) == GOOD


@pytest.mark.parametrize(
    ("answer", "detail", "fields"),
    [
        (
            json.dumps({**GOOD, "stars": "five"}),
            "stars: not an integer ('five')",
            ("stars",),
        ),
        (json.dumps({**GOOD, "stars": 4.0}), "stars: not an integer (4.0)", ("stars",)),
        (json.dumps({**GOOD, "stars": "4"}), "stars: not an integer ('4')", ("stars",)),
        (json.dumps({**GOOD, "stars": True}), "stars: not an integer (True)", ("stars",)),
        (
            json.dumps({k: v for k, v in GOOD.items() if k != "sentiment"}),
            "sentiment: missing",
            ("sentiment",),
        ),
        (
            json.dumps({**GOOD, "sentiment": "mixed"}),
            "sentiment: not one of 'positive', 'negative' or 'neutral' ('mixed')",
            ("sentiment",),
        ),
        (
            json.dumps({**GOOD, "reasons": ["ok", 3], "product": None}),
            "product: not a string (None); reasons[1]: not a string (3)",
            ("product", "reasons"),
        ),
        (json.dumps({**GOOD, "reasons": "fast"}), "reasons: not a list ('fast')", ("reasons",)),
        ("The review is positive.", "no JSON object in the answer: 'The review is positive.'", ()),
        ("", "no JSON object in the answer: ''", ()),
        (
            '{"product": "kettle", "stars": 4',
            'no JSON object in the answer: \'{"product": "kettle", "stars": 4\'',
            (),
        ),
        (f"[{GOOD_JSON}]", "the answer is a JSON array, not an object", ()),
        (f"<think>{GOOD_JSON}", "the answer is all reasoning: <think> is never closed", ()),
    ],
)
def test_an_answer_that_does_not_fit_names_each_field_and_why(
    answer: str, detail: str, fields: tuple[str, ...]
) -> None:
    with pytest.raises(AnswerRejected) as rejected:
        review_format().read(answer)
    assert rejected.value.kind is OutcomeKind.INVALID
    assert rejected.value.detail == detail
    assert rejected.value.fields == fields
    outcome = read_answer(
        RowOutcome(0, OutcomeKind.OK, response=answer, latency=0.1), review_format().read
    )
    assert outcome.error == f"answer does not fit the schema: {detail}"
    assert outcome.value is None
    assert outcome.cause == "answer does not fit the schema"


def test_a_truncated_answer_is_never_read() -> None:
    cut = RowOutcome(0, OutcomeKind.OK, response=GOOD_JSON, latency=0.1, finish_reason="length")
    outcome = read_answer(cut, review_format().read)
    assert outcome.kind is OutcomeKind.TRUNCATED
    assert outcome.value is None
    assert outcome.response == GOOD_JSON


def test_the_system_prompt_names_the_fields_or_carries_the_schema() -> None:
    structured = review_format(instructions="Kitchen reviews.").request_options({"system": "Hi."})
    assert structured["system"].splitlines() == [
        "Hi.",
        "You are extracting data from text.",
        "Kitchen reviews.",
        "Reply with one JSON object with the fields product, stars, sentiment, reasons.",
    ]
    assert structured["response_format"] == Schema.of(Review).response_format()
    plain = review_format(structured=False).request_options({})
    assert "response_format" not in plain
    schema_line = plain["system"].splitlines()[-1]
    assert json.loads(schema_line.removeprefix("JSON Schema: ")) == Schema.of(Review).json_schema()
    assert review_format().unstructured_system("Hi.") == review_format(
        structured=False
    ).system_prompt("Hi.")
    assert review_format(structured=False).unstructured_system("Hi.") is None
    own = review_format().request_options({"response_format": {"type": "json_object"}})
    assert own["response_format"] == {"type": "json_object"}  # the caller's own wins


# --- extract() end to end with scripted answers ---------------------------------------------


def completion(
    text: str, *, finish_reason: str = "stop", logprobs: object = None, completion_tokens: int = 9
) -> str:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": finish_reason,
    }
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return json.dumps(
        {
            "choices": [choice],
            "usage": {"prompt_tokens": 20, "completion_tokens": completion_tokens},
        }
    )


class ByPrompt:
    """Answers each prompt with the body scripted for it; counts the requests."""

    def __init__(self, bodies: dict[str, str]) -> None:
        self.bodies = bodies
        self.requests: list[dict[str, Any]] = []

    async def handle(self, url: Any, **kwargs: Any) -> CallbackResult:
        body = json.loads(kwargs["data"])
        self.requests.append(body)
        prompt = body["messages"][-1]["content"]
        return CallbackResult(status=200, body=self.bodies.get(prompt) or ok_body(prompt))


SCRIPTED = {
    "good": completion(GOOD_JSON),
    "fenced": completion(f"```json\n{json.dumps({**GOOD, 'product': 'toaster'})}\n```"),
    "prose": completion(f"Here you go: {json.dumps({**GOOD, 'stars': None})} Anything else?"),
    "think": completion(f"<think>Four stars.</think>{json.dumps({**GOOD, 'stars': 5})}"),
    "wrong type": completion(json.dumps({**GOOD, "stars": "five"})),
    "missing": completion(json.dumps({k: v for k, v in GOOD.items() if k != "reasons"})),
    "truncated": completion('{"product": "kett', finish_reason="length"),
    "not json": completion("I cannot tell."),
}


@pytest.fixture
def scripted_answers() -> Any:
    server = ByPrompt(SCRIPTED)
    with aioresponses() as mocked:
        mocked.post(URL, callback=server.handle, repeat=True)
        yield server


async def test_every_kind_of_answer_gets_its_outcome(scripted_answers: ByPrompt) -> None:
    frame = pd.DataFrame({"text": list(SCRIPTED), "id": range(len(SCRIPTED))})
    out = await frame.holysheep.aextract(
        "text", schema=Review, base_url=BASE_URL, cache=False, progress=False, max_retries=0
    )
    assert list(out.columns[:7]) == [
        "text", "id", "product", "stars", "sentiment", "reasons", "response",
    ]  # fmt: skip
    assert out.columns[7] == "error"
    assert str(out["product"].dtype) == "string"
    assert str(out["stars"].dtype) == "Int64"
    assert list(out["sentiment"].cat.categories) == ["positive", "negative", "neutral"]
    assert out["reasons"].dtype == object
    by_text = out.set_index("text")
    assert by_text.loc["good", "product"] == "kettle"
    assert by_text.loc["fenced", "product"] == "toaster"
    assert by_text.loc["prose", "stars"] is pd.NA
    assert by_text.loc["think", "stars"] == 5
    assert by_text.loc["good", "reasons"] == ["fast", "quiet"]
    ok = ["good", "fenced", "prose", "think"]
    assert by_text.loc[ok, "error"].isna().all()
    assert by_text.loc[ok, "sentiment"].tolist() == ["positive"] * 4
    assert by_text.loc["wrong type", "error"] == (
        "answer does not fit the schema: stars: not an integer ('five')"
    )
    assert by_text.loc["missing", "error"] == "answer does not fit the schema: reasons: missing"
    assert by_text.loc["truncated", "error"].startswith("truncated at the token limit")
    assert by_text.loc["not json", "error"] == (
        "answer does not fit the schema: no JSON object in the answer: 'I cannot tell.'"
    )
    failed = ["wrong type", "missing", "truncated", "not json"]
    for column in ("product", "stars", "sentiment", "reasons"):
        assert by_text.loc[failed, column].isna().all(), column  # nothing of a failed row kept
    assert by_text.loc["wrong type", "response"] == json.dumps({**GOOD, "stars": "five"})
    report = out.holysheep.report()
    assert (report.succeeded, report.failed) == (4, 4)
    assert dict(report.failures) == {
        "answer does not fit the schema": 3,
        "truncated at the token limit": 1,
    }
    assert dict(report.failed_fields) == {"stars": 1, "reasons": 1}
    assert "failures by field" in str(report)
    assert report.to_dict()["failed_fields"] == {"stars": 1, "reasons": 1}
    sent = scripted_answers.requests[0]
    assert sent["response_format"]["json_schema"]["schema"]["required"] == list(Review.model_fields)
    assert sent["messages"][0]["role"] == "system"


async def test_unstructured_requests_describe_the_schema_instead(
    scripted_answers: ByPrompt,
) -> None:
    out = await pd.Series(["good"]).holysheep.aextract(
        schema=REVIEW_TYPES, structured=False, base_url=BASE_URL, cache=False, progress=False
    )
    assert out.loc[0, "product"] == "kettle"
    sent = scripted_answers.requests[0]
    assert "response_format" not in sent
    assert "JSON Schema: " in sent["messages"][0]["content"]


async def test_a_server_that_refuses_response_format_gets_the_schema_in_words() -> None:
    requests: list[dict[str, Any]] = []

    async def no_structured_output(url: Any, **kwargs: Any) -> CallbackResult:
        body = json.loads(kwargs["data"])
        requests.append(body)
        if "response_format" in body:
            message = "This response_format type is unavailable now"
            return CallbackResult(status=400, body=json.dumps({"error": {"message": message}}))
        return CallbackResult(status=200, body=completion(GOOD_JSON))

    with aioresponses() as mocked:
        mocked.post(URL, callback=no_structured_output, repeat=True)
        with pytest.warns(HolySheepWarning, match="rejected response_format"):
            out = await pd.DataFrame({"text": ["a", "b", "c"]}).holysheep.aextract(
                "text", schema=Review, base_url=BASE_URL, cache=False, progress=False,
                max_concurrent=1,
            )  # fmt: skip
    assert out["error"].isna().all(), out["error"].tolist()
    assert out["product"].tolist() == ["kettle"] * 3
    assert "response_format" in requests[0]
    later = [body for body in requests if "response_format" not in body]
    assert len(later) == 3
    assert all("JSON Schema: " in body["messages"][0]["content"] for body in later)


def test_field_names_never_replace_a_column(scripted_answers: ByPrompt) -> None:
    frame = pd.DataFrame({"text": ["good", "wrong type"], "product": ["gold", "gold"]})
    out = frame.holysheep.extract(
        "text", schema=Review, base_url=BASE_URL, cache=False, progress=False, max_retries=0
    )
    assert out["product"].tolist() == ["gold", "gold"]
    assert out["product_2"].tolist() == ["kettle", pd.NA]
    collide = {"error": str, "response": int}
    out = pd.DataFrame({"text": ["x"]}).holysheep.extract(
        "text", schema=collide, base_url=BASE_URL, cache=False, progress=False, max_retries=0
    )
    assert list(out.columns[:4]) == ["text", "error_2", "response_2", "response"]


def test_flatten_false_gives_one_column_of_dicts(scripted_answers: ByPrompt) -> None:
    frame = pd.DataFrame({"text": ["good", "missing"]})
    out = frame.holysheep.extract(
        "text",
        schema=Review,
        flatten=False,
        base_url=BASE_URL,
        cache=False,
        progress=False,
        max_retries=0,
    )
    assert list(out.columns[:3]) == ["text", "extracted", "response"]
    assert out.loc[0, "extracted"] == GOOD
    assert out.loc[1, "extracted"] is None


async def test_answers_come_back_from_the_cache_and_are_read_again(
    scripted_answers: ByPrompt, tmp_path: Any
) -> None:
    frame = pd.DataFrame({"text": ["good", "wrong type", "good"]})
    options: dict[str, Any] = {
        "schema": Review,
        "base_url": BASE_URL,
        "cache": str(tmp_path / "cache.sqlite"),
        "progress": False,
    }
    first = await frame.holysheep.aextract("text", **options)
    sent = len(scripted_answers.requests)
    again = await frame.holysheep.aextract("text", **options)
    assert len(scripted_answers.requests) == sent  # nothing sent twice
    assert again["cached"].all()
    assert first["shared"].tolist() == [False, False, True]  # the repeat was asked once
    pd.testing.assert_frame_equal(
        first.drop(columns=["latency", "cached", "shared", "attempts"]),
        again.drop(columns=["latency", "cached", "shared", "attempts"]),
    )
    assert again.holysheep.report().failed_fields == (("stars", 1),)


def test_estimate_counts_the_answer_tokens_of_the_schema() -> None:
    frame = pd.DataFrame({"text": ["a", "b", None]})
    plain = frame.holysheep.estimate("text", cache=False, base_url=BASE_URL)
    estimate = frame.holysheep.estimate("text", schema=Review, cache=False, base_url=BASE_URL)
    assert (estimate.to_send, estimate.missing) == (2, 1)
    assert estimate.output_tokens is not None
    assert 10 <= estimate.output_tokens / 2 <= 60
    assert estimate.input_tokens > plain.input_tokens  # the system prompt is counted
    series = pd.Series(["a"]).holysheep.estimate(schema=REVIEW_TYPES, base_url=BASE_URL)
    assert series.to_send == 1
    with pytest.raises(ConfigError, match="not both"):
        frame.holysheep.estimate("text", labels=["a"], schema=Review, base_url=BASE_URL)


def test_a_bad_schema_sends_nothing() -> None:
    with pytest.raises(ConfigError, match="schema must be"):
        pd.DataFrame({"text": ["a"]}).holysheep.extract("text", schema=[str], base_url=BASE_URL)


# --- 2,000 rows on the local server ----------------------------------------------------------


class Line(BaseModel):
    sku: str
    quantity: int
    price: float | None


class Order(BaseModel):
    customer: str
    priority: Literal["low", "normal", "high"]
    paid: bool
    total: float
    items: list[Line]
    shipping: Optional[Line]  # noqa: UP045 - nested and optional


def order_text(row: int) -> str:
    items = [
        {"sku": f"SKU-{row}-{i}", "quantity": i + 1, "price": None if i == 1 else row + i / 4}
        for i in range(row % 3 + 1)
    ]
    return json.dumps(
        {
            "customer": f"customer {row}",
            "priority": ("low", "normal", "high")[row % 3],
            "paid": row % 2 == 0,
            "total": row * 1.5,
            "items": items,
            "shipping": None if row % 4 else {"sku": "SHIP", "quantity": 1, "price": 4.5},
        }
    )


@pytest.fixture
async def echo_server() -> AsyncIterator[RunningServer]:
    async with await start_server(ServerConfig(echo=True)) as server:
        yield server


@pytest.fixture
async def schema_server() -> AsyncIterator[RunningServer]:
    async with await start_server(ServerConfig()) as server:
        yield server


def assert_order_columns(out: pd.DataFrame) -> None:
    assert list(out.columns[1:8]) == [
        "customer", "priority", "paid", "total", "items", "shipping", "response",
    ]  # fmt: skip
    assert [str(out[c].dtype) for c in ("customer", "priority", "paid", "total")] == [
        "string", "category", "boolean", "Float64",
    ]  # fmt: skip
    assert out["items"].dtype == object
    assert out["shipping"].dtype == object
    assert list(out["priority"].cat.categories) == ["low", "normal", "high"]


async def test_two_thousand_nested_rows_on_the_local_server_echoing_json(
    echo_server: RunningServer,
) -> None:
    frame = pd.DataFrame({"text": [order_text(row) for row in range(2000)]})
    out = await frame.holysheep.aextract(
        "text", schema=Order, base_url=echo_server.base_url, cache=False, progress=False
    )
    assert out["error"].isna().all(), out["error"].dropna().head()
    assert_order_columns(out)
    expected = [Order.model_validate_json(text).model_dump() for text in frame["text"]]
    assert out["customer"].tolist() == [row["customer"] for row in expected]
    assert out["priority"].tolist() == [row["priority"] for row in expected]
    assert out["paid"].tolist() == [row["paid"] for row in expected]
    assert out["total"].tolist() == [row["total"] for row in expected]
    assert out["items"].tolist() == [row["items"] for row in expected]
    assert out["shipping"].tolist() == [row["shipping"] for row in expected]
    assert out.loc[4, "shipping"] == {"sku": "SHIP", "quantity": 1, "price": 4.5}
    assert out.loc[1, "items"][1]["price"] is None
    assert out.holysheep.report().succeeded == 2000


async def test_two_thousand_nested_rows_answered_by_the_server_from_the_schema(
    schema_server: RunningServer,
) -> None:
    """The server writes JSON that fits the request's schema; every row must read back."""
    frame = pd.DataFrame({"text": [f"Order number {row} for a customer" for row in range(2000)]})
    out = await frame.holysheep.aextract(
        "text", schema=Order, base_url=schema_server.base_url, cache=False, progress=False
    )
    assert out["error"].isna().all(), out["error"].dropna().head()
    assert_order_columns(out)
    for row in range(0, 2000, 97):  # the columns hold exactly what each answer says
        answer = Order.model_validate_json(out.loc[row, "response"]).model_dump()
        assert out.loc[row, "customer"] == answer["customer"]
        assert out.loc[row, "priority"] == answer["priority"]
        assert bool(out.loc[row, "paid"]) is answer["paid"]
        assert math.isclose(out.loc[row, "total"], answer["total"])
        assert out.loc[row, "items"] == answer["items"]
        assert out.loc[row, "shipping"] == answer["shipping"]
    assert not np.isnan(out["latency"]).any()
