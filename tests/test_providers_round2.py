"""Real providers, round two: each case rebuilt from what the provider sends, on the local
server's personalities and faults (``docs/providers.md``), checked by what the user sees."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pandas as pd
import pytest
from pydantic import BaseModel, Field, field_validator

from holysheep_nb import retry
from holysheep_nb.answers import MalformedAnswer, parse_answer
from holysheep_nb.errors import HolySheepWarning
from holysheep_nb.extract import ExtractFormat
from holysheep_nb.form_watch import FormWatch
from holysheep_nb.outcome import NO_TEXT, OutcomeKind, RowOutcome
from holysheep_nb.provider_errors import parse_error
from holysheep_nb.schema import Schema
from holysheep_nb.server import RunningServer
from holysheep_nb.server.checks import strict_problem
from tests.helpers_reliability import bounded

SENTIMENT = ["positive", "negative", "neutral"]
DEADLINE = 60.0


def reviews(n: int, marker: str = "") -> pd.DataFrame:
    return pd.DataFrame({"text": [f"great kettle #{i} {marker}".strip() for i in range(n)]})


def options(server: RunningServer, **more: Any) -> dict[str, Any]:
    return {"base_url": server.base_url, "cache": False, "progress": False, **more}


def sent(server: RunningServer) -> int:
    return int(server.stats()["requests"])


async def post(server: RunningServer, body: dict[str, Any]) -> tuple[int, bytes, Any]:
    """(status, raw body, headers) of one chat request, straight to the server."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.base_url}/chat/completions", json=body) as response,
    ):
        return response.status, await response.read(), response.headers


def chat(text: str, **more: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **more}


# --- 1. Gemini's per-minute 429 ----------------------------------------------------------------


async def test_gemini_per_minute_429_is_a_rate_limit_read_from_its_list_body(
    serve: Callable[..., Any],
) -> None:
    """Gemini's 429 says "You exceeded your current quota" in a JSON list, with a RetryInfo:
    it used to stop the run as "quota exhausted" and show raw JSON."""
    server = await serve(provider="gemini", retry_after=0.25)
    status, raw, headers = await post(server, chat("hi {{fault:429}}"))
    assert status == 429
    assert "retry-after" not in headers
    error = parse_error(raw)
    assert error.message.startswith("You exceeded your current quota")
    assert error.status == "RESOURCE_EXHAUSTED"
    assert not error.quota_exhausted
    assert retry.retry_hint(headers, error, 0.0) == 0.25  # the body's retryDelay, no header
    assert retry.judge(429, error).verdict is retry.Verdict.RETRY

    frame = reviews(12)
    frame.loc[0, "text"] += " {{fault:429*3}}"  # three rate-limit 429s: no attempt spent
    out = await bounded(
        frame.holysheep.acomplete("text", **options(server, max_retries=1, max_concurrent=4)),
        DEADLINE,
        "the Gemini run",
    )
    assert out.holysheep.report().stop_cause is None
    assert out["error"].isna().all(), out["error"].dropna().tolist()
    assert server.stats()["by_status"]["429"] == 4  # the one above, and this row's three

    # Always 429: the row waits up to max_retry_after, and what it ends with quotes Gemini's
    # message (read from the list body), never "quota exhausted".
    always = reviews(1, "{{fault:429}}")
    out = await bounded(
        always.holysheep.acomplete("text", **options(server, max_retry_after=1.0)),
        DEADLINE,
        "the always-429 Gemini run",
    )
    error = out["error"].iat[0]
    assert "You exceeded your current quota" in error, error
    assert "quota exhausted" not in error
    assert "[{" not in error


async def test_gemini_per_minute_limit_holds_the_run_until_every_row_is_answered(
    serve: Callable[..., Any],
) -> None:
    """3 requests a window and 4 in flight, 12 rows: the run waits out each window's
    retryDelay (the first burst of 4 meets the limit)."""
    server = await serve(provider="gemini", rpm=180, limit_window=1.0)
    out = await bounded(
        reviews(12).holysheep.acomplete("text", **options(server, max_concurrent=4)),
        DEADLINE,
        "the Gemini run",
    )
    assert out["error"].isna().all(), out["error"].dropna().tolist()[:3]
    assert server.stats()["rate_limited"] > 0  # the limit was met, and waited out


# --- 2. a server that ignores response_format ---------------------------------------------------


class LineItem(BaseModel):
    description: str
    quantity: int
    unit: Literal["piece", "kg", "hour"]


class Invoice(BaseModel):
    number: str
    total: float
    items: list[LineItem]


async def test_a_server_ignoring_response_format_gets_the_schema_in_words_and_a_rerun_recovers(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    """Claude's OpenAI compatibility ignores response_format: every answer to the nested
    invoice used to fail the schema, and all were cached as paid, so a re-run could not
    recover."""
    server = await serve(provider="anthropic")
    frame = pd.DataFrame(
        {"text": [f"Invoice {i}: 3 kg of flour, 2 hours of work" for i in range(30)]}
    )
    run = options(server, cache=str(tmp_path / "cache.sqlite"), max_concurrent=4)
    with pytest.warns(HolySheepWarning, match="seems to ignore response_format") as notices:
        out = await bounded(frame.holysheep.aextract("text", schema=Invoice, **run), DEADLINE, "1")
    assert len(notices) == 1
    assert out["error"].isna().all(), out["error"].dropna().tolist()[:3]
    assert all(isinstance(items, list) and items for items in out["items"])
    assert sent(server) <= 30 + 4 + 2  # at most the rows in flight at the switch went twice
    first = sent(server)

    again = await bounded(frame.holysheep.aextract("text", schema=Invoice, **run), DEADLINE, "2")
    assert again["error"].isna().all()
    assert again["cached"].all()
    assert sent(server) == first


async def test_without_attempts_to_spare_the_run_still_switches_after_three_misses(
    serve: Callable[..., Any],
) -> None:
    server = await serve(provider="anthropic")
    frame = pd.DataFrame({"text": [f"Invoice {i}: 2 kg of rice" for i in range(10)]})
    run = options(server, max_concurrent=1, max_retries=0)
    with pytest.warns(HolySheepWarning, match="seems to ignore response_format") as notices:
        out = await bounded(frame.holysheep.aextract("text", schema=Invoice, **run), DEADLINE, "")
    assert len(notices) == 1
    assert out["error"].iloc[:3].str.startswith("answer does not fit the schema").all()
    assert out["error"].iloc[3:].isna().all(), out["error"].tolist()
    assert sent(server) == 10


@pytest.mark.parametrize(
    ("kinds", "resends", "switch"),
    [
        (["invalid", "invalid", "invalid"], [True, True, True], True),
        (["invalid", "ok", "invalid", "invalid"], [True, False, False, False], False),
        (["invalid", "off_label", "invalid"], [True, False, True], False),
        (["ok", "invalid"], [False, False], False),
        # A tool call in place of the answer is no evidence, neither a miss nor a fit.
        (["tool", "tool", "tool", "invalid"], [False, False, False, True], False),
        (["invalid", "tool", "invalid", "invalid"], [True, False, True, True], True),
    ],
)
def test_the_form_watch_resends_until_the_schema_is_heeded(
    kinds: list[str], resends: list[bool], switch: bool
) -> None:
    watch = FormWatch()

    def outcome(kind: str) -> RowOutcome:
        if kind == "tool":
            return RowOutcome(0, OutcomeKind.INVALID, detail=NO_TEXT)
        return RowOutcome(0, OutcomeKind(kind))

    assert [watch.resend(outcome(kind)) for kind in kinds] == resends
    assert watch.switch is switch


class Note(BaseModel):
    summary: str

    @field_validator("summary")
    @classmethod
    def _no_bad_words(cls, value: str) -> str:
        if "broken" in value:
            raise ValueError("mentions a broken thing")
        return value


async def test_a_server_that_heeds_the_schema_is_not_asked_twice(
    serve: Callable[..., Any],
) -> None:
    """Once an answer to the schema fitted, a later one that does not is the model's own."""
    server = await serve()
    texts = [f"fine kettle {i}" for i in range(3)] + [f"broken kettle {i}" for i in range(5)]
    frame = pd.DataFrame({"text": texts})
    out = await bounded(
        frame.holysheep.aextract("text", schema=Note, **options(server, max_concurrent=1)),
        DEADLINE,
        "the run",
    )
    assert out["error"].iloc[:3].isna().all()
    assert out["error"].iloc[3:].str.startswith("answer does not fit the schema").all()
    assert sent(server) == 8


def test_the_schema_in_words_describes_nested_objects_allowed_values_and_types() -> None:
    system = ExtractFormat(Schema.of(Invoice)).unstructured_system(None)
    assert system is not None
    written = json.loads(system.split("JSON Schema: ", 1)[1])
    item = written["properties"]["items"]["items"]  # in place, not behind a $ref
    assert item["properties"]["unit"]["enum"] == ["piece", "kg", "hour"]
    assert item["properties"]["quantity"]["type"] == "integer"
    assert item["required"] == ["description", "quantity", "unit"]
    assert written["properties"]["total"]["type"] == "number"
    assert "$defs" not in written


def test_a_recursive_schema_in_words_keeps_its_reference() -> None:
    system = ExtractFormat(Schema.of(Order)).unstructured_system(None)
    assert system is not None
    written = json.loads(system.split("JSON Schema: ", 1)[1])
    assert written["properties"]["customer"]["properties"]["country"]["enum"] == ["DE", "FR", "JP"]
    previous = written["properties"]["previous"]["anyOf"]
    assert {"$ref": "#/$defs/Order"} in previous[0]["properties"]["previous"]["anyOf"]
    assert "Order" in written["$defs"]


# --- 3. a gateway's 400 about response_schema ---------------------------------------------------


async def test_a_gateway_400_about_response_schema_falls_back_once(
    serve: Callable[..., Any],
) -> None:
    """'Unknown name "additional_properties" at generation_config.response_schema' never
    says response_format: 30 rows used to end as 30 identical 400s."""
    server = await serve(provider="gateway")
    with pytest.warns(HolySheepWarning, match="rejected response_format") as notices:
        out = await bounded(
            reviews(30).holysheep.alabel("text", labels=SENTIMENT, **options(server)),
            DEADLINE,
            "the label run",
        )
    assert len(notices) == 1
    assert out["error"].isna().all(), out["error"].dropna().tolist()[:3]
    assert (out["label"] == "positive").all()


@pytest.mark.parametrize(
    ("message", "param", "about"),
    [
        ("This response_format type is unavailable now", "", True),
        ("Invalid schema for response_format 'x': In context=(), ...", "response_format", True),
        ("Unknown name \"additional_properties\" at 'generation_config.response_schema'", "", True),
        ("Structured outputs are not supported by this model", "", True),
        ("Invalid schema for function 'lookup': ...", "tools[0].function.parameters", False),
        ("max_tokens is too large", "max_tokens", False),
    ],
)
def test_a_400_about_the_response_schema_in_its_usual_wordings(
    message: str, param: str, about: bool
) -> None:
    body = json.dumps({"error": {"message": message, "param": param}}).encode()
    assert parse_error(body).about_response_format is about


# --- 4. strict schemas OpenAI refuses ---------------------------------------------------------


class Customer(BaseModel):
    name: str
    country: Literal["DE", "FR", "JP"]


class Order(BaseModel):
    number: str
    customer: Customer = Field(description="who pays")
    lines: list[LineItem] = Field(description="what was bought")
    previous: Order | None = Field(None, description="the order this one replaces")


async def test_a_described_nested_model_is_sent_as_strict_mode_accepts_it(
    serve: Callable[..., Any],
) -> None:
    """pydantic writes {"$ref", "description"} for a described nested model; strict mode
    refuses keywords beside $ref, so 20 of 20 requests used to be refused."""
    server = await serve()
    frame = pd.DataFrame({"text": [f"order {i} from a customer in France" for i in range(20)]})
    out = await bounded(
        frame.holysheep.aextract("text", schema=Order, **options(server, max_concurrent=4)),
        DEADLINE,
        "the run",
    )
    assert out["error"].isna().all(), out["error"].dropna().tolist()[:3]
    assert server.stats()["by_status"] == {"200": 20}


@pytest.mark.parametrize("model", [Order, Invoice, Customer, Note])
def test_every_strict_schema_keeps_strict_modes_rules(model: type[BaseModel]) -> None:
    assert strict_problem(Schema.of(model).json_schema()) is None


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        (
            {
                "type": "object",
                "properties": {"a": {"$ref": "#/$defs/A", "description": "d"}},
                "required": ["a"],
                "additionalProperties": False,
                "$defs": {"A": {"type": "string"}},
            },
            "In context=('properties', 'a'), $ref cannot have keywords {'description'}.",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            "'additionalProperties' is required to be supplied and to be false.",
        ),
        (
            {"type": "object", "properties": {"a": {}}, "additionalProperties": False},
            "Missing 'a'.",
        ),
        ({"anyOf": [{"type": "object"}]}, "schema must be a JSON Schema of 'type: \"object\"'"),
    ],
)
def test_the_openai_personality_checks_strict_modes_rules(
    schema: dict[str, Any], problem: str
) -> None:
    found = strict_problem(schema)
    assert found is not None
    assert problem in found


# --- 5. vLLM's top-level error body -------------------------------------------------------------


async def test_vllms_top_level_error_message_is_shown_not_raw_json(
    serve: Callable[..., Any],
) -> None:
    server = await serve(provider="vllm")
    status, raw, _ = await post(server, chat("hi {{fault:400}}"))
    assert status == 400
    assert json.loads(raw)["object"] == "error"
    out = await bounded(
        reviews(2, "{{fault:400}}").holysheep.acomplete("text", **options(server)),
        DEADLINE,
        "the run",
    )
    assert out["error"].tolist() == ["HTTP 400: Invalid request (injected fault)."] * 2


def test_vllms_top_level_error_in_a_stream_is_named() -> None:
    raw = (
        b'data: {"choices": [{"index": 0, "delta": {"content": "pos"}}]}\n\n'
        b'data: {"object": "error", "message": "Engine loop has died", "code": 500}\n\n'
    )
    with pytest.raises(MalformedAnswer, match="error in stream: Engine loop has died"):
        parse_answer(raw)


# --- 7. JSON followed by data: [DONE] ----------------------------------------------------------


async def test_a_json_answer_followed_by_the_stream_terminator_is_read(
    serve: Callable[..., Any],
) -> None:
    server = await serve()
    status, raw, _ = await post(server, chat("I love it {{fault:json-done}}"))
    assert status == 200
    assert raw.rstrip().endswith(b"data: [DONE]")
    out = await bounded(
        reviews(5, "{{fault:json-done}}").holysheep.alabel(
            "text", labels=SENTIMENT, **options(server, max_retries=0)
        ),
        DEADLINE,
        "the run",
    )
    assert out["error"].isna().all(), out["error"].tolist()
    assert (out["label"] == "positive").all()


# --- 8. Azure's content filter on the prompt ---------------------------------------------------


async def test_azures_prompt_filter_names_the_filtered_category(
    serve: Callable[..., Any],
) -> None:
    key = "azure-key-0123456789abcdef"
    server = await serve(provider="azure", api_key=key)
    frame = pd.DataFrame(
        {
            "text": [
                "a story with violence {{fault:moderation}}",
                "a story full of hate {{fault:moderation}}",
                "a calm story",
            ]
        }
    )
    run = options(server, model="deploy", api_version="2024-10-21", api_key=key)
    run["base_url"] = server.base_url.removesuffix("/v1")
    out = await bounded(frame.holysheep.acomplete("text", **run), DEADLINE, "the Azure run")
    assert out["error"].tolist()[:2] == [
        "withheld by the content filter: violence (medium)",
        "withheld by the content filter: hate (medium)",
    ]
    assert pd.isna(out["error"].iat[2])
