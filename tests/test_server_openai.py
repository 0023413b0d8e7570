"""The local server through the official ``openai`` client: the contract and every personality.

A client nobody here wrote is the proof that the server speaks chat completions the way real
providers do (``docs/server.md``). Every client has ``max_retries=0`` and ignores proxy
variables, so each call is one request to 127.0.0.1.
"""

from __future__ import annotations

import json
import math
import urllib.request
from collections.abc import Iterator
from enum import Enum
from typing import Any, Literal

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel, Field

from holysheep_nb.server import (
    FAULT_KINDS,
    LocalServer,
    ServerConfig,
    ServerProcess,
    config_args,
    parse_cli,
    start_server,
)
from holysheep_nb.server.providers import PROVIDERS
from tests.fakes import FakeClock
from tests.openai_clients import connect

MODEL = "gpt-4o"
REVIEW = "The battery is excellent and the screen is lovely. I love it."


def say(text: str = REVIEW) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, LocalServer]]:
    """One server per personality (Azure with a key and one deployment), for the module."""
    started: dict[str, LocalServer] = {}
    try:
        for provider in PROVIDERS:
            config = ServerConfig(provider=provider)
            if provider == "azure":
                config = ServerConfig(provider="azure", api_key="az-key", models=("prod-4o",))
            started[provider] = LocalServer(config).start()
        yield started
    finally:
        for server in started.values():
            server.close()


@pytest.fixture
def client(servers: dict[str, LocalServer]) -> Iterator[openai.OpenAI]:
    with connect(servers["openai"].base_url) as opened:
        yield opened


def post_raw(server: LocalServer, body: object) -> tuple[str, str]:
    """(Content-Type, text) of one chat request sent without any client library."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        f"{server.base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with opener.open(request, timeout=5) as response:
        return response.headers["Content-Type"], response.read().decode()


def client_for(servers: dict[str, LocalServer], provider: str) -> openai.OpenAI:
    return connect(servers[provider].base_url)


# --- streaming ----------------------------------------------------------------------------


def test_stream_yields_token_chunks_then_the_usage(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=say())
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=say(), stream=True, stream_options={"include_usage": True}
        )
    )
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text == whole.choices[0].message.content == "positive"
    assert len(with_choices) >= 4  # role, two 4-character tokens, the finish
    assert with_choices[-1].choices[0].finish_reason == "stop"
    assert [c.usage for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].choices == []
    assert chunks[-1].usage == whole.usage
    assert len({c.id for c in chunks}) == 1


async def test_async_client_streams_and_answers() -> None:
    async with (
        await start_server() as server,
        openai.AsyncOpenAI(
            base_url=server.base_url,
            api_key="sk-test",
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(trust_env=False),
        ) as client,
    ):
        stream = await client.chat.completions.create(
            model=MODEL, messages=say("Awful. It broke."), stream=True
        )
        pieces = [c.choices[0].delta.content async for c in stream if c.choices]
        answer = await client.chat.completions.create(model=MODEL, messages=say("Awful."))
    assert "".join(p or "" for p in pieces) == "negative"
    assert answer.choices[0].message.content == "negative"


def test_server_that_streams_unasked(servers: dict[str, LocalServer]) -> None:
    with LocalServer(ServerConfig(always_stream=True)) as server:
        content_type, text = post_raw(server, {"model": MODEL, "messages": say()})
    assert content_type.startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(e) for e in events[:-1]]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "positive"
    marked = post_raw(servers["openai"], {"model": MODEL, "messages": say("fine {{fault:sse}}")})
    assert marked[1].endswith("data: [DONE]\n\n")


# --- n, logprobs, max_tokens --------------------------------------------------------------


def test_n_gives_that_many_choices_and_usage_counts_them(client: openai.OpenAI) -> None:
    one = client.chat.completions.create(model=MODEL, messages=say())
    two = client.chat.completions.create(model=MODEL, messages=say(), n=2)
    assert [c.index for c in two.choices] == [0, 1]
    assert {c.message.content for c in two.choices} == {"positive"}
    assert one.usage is not None
    assert two.usage is not None
    assert two.usage.completion_tokens == 2 * one.usage.completion_tokens


def test_logprobs_are_deterministic_and_sum_below_one(client: openai.OpenAI) -> None:
    def ask() -> Any:
        return client.chat.completions.create(
            model=MODEL, messages=say(), logprobs=True, top_logprobs=3
        )

    choice = ask().choices[0]
    assert choice.logprobs is not None
    assert choice.logprobs.content is not None
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content
    for entry in entries:
        assert entry.logprob < 0
        assert entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token
        assert [t.logprob for t in entry.top_logprobs] == sorted(
            (t.logprob for t in entry.top_logprobs), reverse=True
        )
        assert sum(math.exp(t.logprob) for t in entry.top_logprobs) <= 1.0
    assert ask().choices[0].logprobs == choice.logprobs
    plain = client.chat.completions.create(model=MODEL, messages=say())
    assert plain.choices[0].logprobs is None
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        client.chat.completions.create(model=MODEL, messages=say(), top_logprobs=2)


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_token_limit_cuts_the_answer_with_finish_reason_length(
    client: openai.OpenAI, limit: str
) -> None:
    cut = client.chat.completions.create(model=MODEL, messages=say(), **{limit: 1})
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content == "posi"
    assert cut.usage is not None
    assert cut.usage.completion_tokens == 1
    enough = client.chat.completions.create(model=MODEL, messages=say(), **{limit: 50})
    assert enough.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(model=MODEL, messages=say(), stream=True, max_tokens=1)
    assert [c.choices[0].finish_reason for c in stream][-1] == "length"


# --- tools --------------------------------------------------------------------------------

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


def test_required_tool_choice_gives_tool_calls(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=say("Is it cold in Oslo?"),
        tools=[WEATHER_TOOL],
        tool_choice="required",
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["city"], str)
    assert isinstance(arguments["days"], int)


def test_auto_calls_a_tool_the_prompt_names_and_none_answers_in_text(
    client: openai.OpenAI,
) -> None:
    named = client.chat.completions.create(
        model=MODEL, messages=say("What is the weather in Oslo?"), tools=[WEATHER_TOOL]
    )
    assert named.choices[0].finish_reason == "tool_calls"
    unrelated = client.chat.completions.create(model=MODEL, messages=say(), tools=[WEATHER_TOOL])
    assert unrelated.choices[0].message.content == "positive"
    refused = client.chat.completions.create(
        model=MODEL, messages=say("weather?"), tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert refused.choices[0].finish_reason == "stop"


class GetWeather(BaseModel):
    city: str
    unit: Literal["celsius", "fahrenheit"]
    days: int = Field(ge=1, le=7)


def test_strict_tool_arguments_parse_into_the_pydantic_model(client: openai.OpenAI) -> None:
    reply = client.chat.completions.parse(
        model=MODEL,
        messages=say("Weather in Lima for the week"),
        tools=[openai.pydantic_function_tool(GetWeather)],
        tool_choice="required",
    )
    calls = reply.choices[0].message.tool_calls
    assert calls is not None
    parsed = calls[0].function.parsed_arguments
    assert isinstance(parsed, GetWeather)
    assert 1 <= parsed.days <= 7


def test_the_stream_helper_rebuilds_tool_calls_and_choices(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=MODEL,
        messages=say("Weather in Lima"),
        tools=[openai.pydantic_function_tool(GetWeather)],
        tool_choice="required",
    ) as stream:
        called = stream.get_final_completion()
    calls = called.choices[0].message.tool_calls
    assert calls is not None
    assert isinstance(calls[0].function.parsed_arguments, GetWeather)
    with client.chat.completions.stream(
        model=MODEL, messages=say(), n=2, logprobs=True, top_logprobs=2
    ) as stream:
        both = stream.get_final_completion()
    assert [c.message.content for c in both.choices] == ["positive", "positive"]
    assert [len(c.logprobs.content or []) for c in both.choices if c.logprobs] == [2, 2]


# --- structured output --------------------------------------------------------------------


class Colour(str, Enum):
    RED = "red"
    BLUE = "blue"


class Part(BaseModel):
    name: str
    weight: float
    ok: bool


class Review(BaseModel):
    summary: str = Field(min_length=5, max_length=40)
    stars: int = Field(ge=1, le=5)
    price: float
    recommended: bool
    tags: list[str]
    nickname: str | None
    mood: Literal["happy", "sad", "meh"]
    colour: Colour
    main_part: Part
    parts: list[Part]
    spare: Part | None


class Tree(BaseModel):
    label: str
    children: list[Tree]


def test_parse_fills_a_nested_pydantic_schema(client: openai.OpenAI) -> None:
    def parse() -> Review:
        reply = client.chat.completions.parse(model=MODEL, messages=say(), response_format=Review)
        parsed = reply.choices[0].message.parsed
        assert parsed is not None
        return parsed

    review = parse()
    assert 5 <= len(review.summary) <= 40
    assert 1 <= review.stars <= 5
    assert len(review.parts) >= 1
    assert review.mood in ("happy", "sad", "meh")
    assert review == parse()
    tree = client.chat.completions.parse(model=MODEL, messages=say(), response_format=Tree)
    assert isinstance(tree.choices[0].message.parsed, Tree)


class Sentiment(BaseModel):
    reason: str
    label: Literal["positive", "negative", "neutral"]


def test_a_label_enum_in_a_schema_still_gets_the_rule_based_label(client: openai.OpenAI) -> None:
    for text, label in ((REVIEW, "positive"), ("Awful, it broke at once.", "negative")):
        reply = client.chat.completions.parse(
            model=MODEL, messages=say(text), response_format=Sentiment
        )
        parsed = reply.choices[0].message.parsed
        assert parsed is not None
        assert parsed.label == label
    plain = client.chat.completions.create(
        model=MODEL, messages=say(), response_format={"type": "json_object"}
    )
    assert json.loads(plain.choices[0].message.content or "") == {"label": "positive"}


# --- models, routes, ids, limits ----------------------------------------------------------


def test_a_request_without_a_model_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="model") as caught:
        client.post("/chat/completions", body={"messages": say()}, cast_to=ChatCompletion)
    assert caught.value.body == {
        "message": "you must provide a model parameter",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_a_model_outside_the_configured_list_is_not_found() -> None:
    with (
        LocalServer(ServerConfig(models=("gpt-4o", "gpt-4o-mini"))) as server,
        connect(server.base_url) as client,
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model="gpt-9", messages=say())
        assert caught.value.code == "model_not_found"
        assert client.chat.completions.create(model="gpt-4o-mini", messages=say()).model == (
            "gpt-4o-mini"
        )
        assert [m.id for m in client.models.list()] == ["gpt-4o", "gpt-4o-mini"]
        assert client.models.retrieve("gpt-4o").id == "gpt-4o"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("gpt-9")


def test_unknown_routes_and_wrong_methods_answer_json_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.moderations.create(input="hello")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == "Invalid URL (POST /v1/moderations)"
    assert caught.value.request_id is not None
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model=MODEL, prompt="hello")
    with pytest.raises(openai.APIStatusError) as wrong:
        client.get("/chat/completions", cast_to=ChatCompletion)
    assert wrong.value.status_code == 405
    assert wrong.value.response.headers["allow"] == "POST"
    assert isinstance(wrong.value.body, dict)
    assert "GET" in wrong.value.body["message"]


def test_every_answer_carries_a_request_id(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=say())
    completion = raw.parse()
    assert raw.headers["x-request-id"].startswith("req_")
    assert completion._request_id == raw.headers["x-request-id"]
    again = client.chat.completions.create(model=MODEL, messages=say())
    assert again._request_id not in (None, completion._request_id)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=MODEL, messages=say("x {{fault:500}}"))
    assert (caught.value.request_id or "").startswith("req_")


def test_rate_limit_headers_describe_the_window_really_enforced(limits_clock: FakeClock) -> None:
    # 30 rpm over a 10 s window holds 5 requests: the headers must say 5, not 30.
    with (
        LocalServer(ServerConfig(rpm=30, limit_window=10)) as server,
        connect(server.base_url) as client,
    ):
        seen = []
        for _ in range(5):
            raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=say())
            seen.append((raw.headers["x-ratelimit-limit-requests"],
                         raw.headers["x-ratelimit-remaining-requests"]))  # fmt: skip
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=say())
    assert seen == [("5", str(left)) for left in (4, 3, 2, 1, 0)]
    headers = caught.value.response.headers
    assert headers["x-ratelimit-limit-requests"] == "5"
    assert float(headers["retry-after"]) == 10  # nothing leaves the window: its clock stood still


# --- faults through the client ------------------------------------------------------------


def test_quota_429_never_clears_and_far_retry_after(client: openai.OpenAI) -> None:
    for _ in range(3):
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=say("q {{fault:429-quota}}"))
        assert caught.value.code == "insufficient_quota"
        assert "retry-after" not in caught.value.response.headers
    with pytest.raises(openai.RateLimitError) as far:
        client.chat.completions.create(model=MODEL, messages=say("f {{fault:429-long}}"))
    assert far.value.response.headers["retry-after"] == "3600"


def test_refusal_content_filter_and_length_faults(client: openai.OpenAI) -> None:
    refused = client.chat.completions.create(model=MODEL, messages=say("r {{fault:refusal}}"))
    assert refused.choices[0].message.content is None
    assert refused.choices[0].message.refusal
    parsed = client.chat.completions.parse(
        model=MODEL, messages=say("r2 {{fault:refusal}}"), response_format=Sentiment
    )
    assert parsed.choices[0].message.parsed is None
    assert parsed.choices[0].message.refusal
    filtered = client.chat.completions.create(
        model=MODEL, messages=say("c {{fault:content-filter}}")
    )
    assert filtered.choices[0].finish_reason == "content_filter"
    assert filtered.choices[0].message.content is None
    with pytest.raises(openai.ContentFilterFinishReasonError):
        client.chat.completions.parse(
            model=MODEL, messages=say("c2 {{fault:content-filter}}"), response_format=Sentiment
        )
    contents = []
    for kind in ("length", "length-empty", "length-null"):
        cut = client.chat.completions.create(
            model=MODEL, messages=say(f"{REVIEW} {{{{fault:{kind}}}}}")
        )
        assert cut.choices[0].finish_reason == "length"
        contents.append(cut.choices[0].message.content)
    assert contents == ["posi", "", None]
    with pytest.raises(openai.LengthFinishReasonError):
        client.chat.completions.parse(
            model=MODEL, messages=say("l {{fault:length}}"), response_format=Sentiment
        )


def test_tool_call_fault_and_think_markers(client: openai.OpenAI) -> None:
    called = client.chat.completions.create(model=MODEL, messages=say("t {{fault:tools}}"))
    assert called.choices[0].finish_reason == "tool_calls"
    calls = called.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].function.name == "lookup"
    paired = client.chat.completions.create(
        model=MODEL, messages=say(f"{REVIEW} {{{{fault:think}}}}")
    )
    closing = client.chat.completions.create(
        model=MODEL, messages=say(f"{REVIEW} {{{{fault:think-closing}}}}")
    )
    assert (paired.choices[0].message.content or "").startswith("<think>\n")
    assert "<think>" not in (closing.choices[0].message.content or "")
    for reply in (paired, closing):
        assert (reply.choices[0].message.content or "").split("</think>\n\n")[1] == "positive"


def test_a_stream_that_breaks_off_raises_in_the_client(client: openai.OpenAI) -> None:
    pieces = []
    stream = client.chat.completions.create(
        model=MODEL, messages=say("The battery is excellent {{fault:stream-error}}"), stream=True
    )
    with pytest.raises(openai.APIError, match="Provider disconnected"):
        pieces.extend(c.choices[0].delta.content or "" for c in stream)
    assert "".join(pieces) == "posi"  # the first of the two tokens of "positive"


async def test_stale_fault_drops_the_next_request_on_that_connection() -> None:
    body = {"model": MODEL, "messages": say("fine {{fault:stale}}")}
    async with (
        await start_server() as server,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session,
    ):
        url = f"{server.base_url}/chat/completions"
        async with session.post(url, json=body) as first:
            assert first.status == 200
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await session.post(url, json={"model": MODEL, "messages": say()})
        async with session.post(url, json={"model": MODEL, "messages": say()}) as third:
            assert third.status == 200
        stats = server.stats()
    assert stats["requests"] == 2  # the dropped request was never read
    assert stats["faults"] == {"stale": 1}


# --- personalities ------------------------------------------------------------------------


def test_azure_deployment_route_api_version_and_key(servers: dict[str, LocalServer]) -> None:
    endpoint = servers["azure"].base_url.removesuffix("/v1")

    def azure(key: str) -> openai.AzureOpenAI:
        return openai.AzureOpenAI(
            azure_endpoint=endpoint,
            api_version="2024-10-21",
            api_key=key,
            max_retries=0,
            http_client=openai.DefaultHttpxClient(trust_env=False),
        )

    with azure("az-key") as client:
        reply = client.chat.completions.create(model="prod-4o", messages=say())
        assert reply.choices[0].message.content == "positive"
        assert reply.model_extra is not None
        assert reply.model_extra["prompt_filter_results"][0]["prompt_index"] == 0
        results = (reply.choices[0].model_extra or {})["content_filter_results"]
        assert results["violence"] == {"filtered": False, "severity": "safe"}
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="other", messages=say())
        assert missing.value.code == "DeploymentNotFound"
        with pytest.raises(openai.BadRequestError) as flagged:
            client.chat.completions.create(model="prod-4o", messages=say("x {{fault:moderation}}"))
        assert flagged.value.code == "content_filter"
        assert isinstance(flagged.value.body, dict)
        assert flagged.value.body["innererror"]["code"] == "ResponsibleAIPolicyViolation"
        chunks = list(client.chat.completions.create(model="prod-4o", messages=say(), stream=True))
        assert chunks[0].choices == []  # Azure opens with the prompt filter results alone
        assert "".join(c.choices[0].delta.content or "" for c in chunks[1:]) == "positive"
        filtered = client.chat.completions.create(
            model="prod-4o", messages=say("y {{fault:content-filter}}")
        )
        assert filtered.choices[0].finish_reason == "content_filter"
        assert (filtered.choices[0].model_extra or {})["content_filter_results"]["violence"][
            "filtered"
        ]
    with azure("wrong") as client, pytest.raises(openai.AuthenticationError) as denied:
        client.chat.completions.create(model="prod-4o", messages=say())
    assert denied.value.code == "401"
    deployment = connect(
        f"{endpoint}/openai/deployments/prod-4o", default_headers={"api-key": "az-key"}
    )
    with deployment, pytest.raises(openai.BadRequestError, match="api-version"):
        deployment.chat.completions.create(model="prod-4o", messages=say())
    with client_for(servers, "azure") as plain, pytest.raises(openai.NotFoundError):
        plain.chat.completions.create(model="prod-4o", messages=say())


def test_openrouter_402_403_shapes_and_reasoning(servers: dict[str, LocalServer]) -> None:
    with client_for(servers, "openrouter") as client:
        with pytest.raises(openai.APIStatusError) as broke:
            client.chat.completions.create(model=MODEL, messages=say("x {{fault:402}}"))
        assert broke.value.status_code == 402
        assert isinstance(broke.value.body, dict)
        assert broke.value.body["code"] == 402
        with pytest.raises(openai.PermissionDeniedError) as flagged:
            client.chat.completions.create(
                model=MODEL, messages=say("Rude words {{fault:moderation}}")
            )
        body = flagged.value.body
        assert isinstance(body, dict)
        assert body["code"] == 403
        assert body["metadata"]["reasons"] == ["harassment"]
        assert body["metadata"]["flagged_input"] == "Rude words"
        assert body["metadata"]["model_slug"] == MODEL
        reply = client.chat.completions.create(model=MODEL, messages=say())
        assert reply.choices[0].message.content == "positive"
        assert "positive" in (reply.choices[0].message.model_extra or {})["reasoning"]
        stream = client.chat.completions.create(model=MODEL, messages=say(), stream=True)
        reasoning = "".join(
            (c.choices[0].delta.model_extra or {}).get("reasoning") or ""
            for c in stream
            if c.choices
        )
    assert reasoning == reply.choices[0].message.model_extra["reasoning"]  # type: ignore[index]
    events = post_raw(servers["openrouter"], {"model": MODEL, "messages": say(), "stream": True})[1]
    assert events.startswith(": OPENROUTER PROCESSING\n\n")


def test_deepseek_reasoning_content_and_no_json_schema(servers: dict[str, LocalServer]) -> None:
    with client_for(servers, "deepseek") as client:
        reply = client.chat.completions.create(model=MODEL, messages=say())
        message = reply.choices[0].message
        assert message.content == "positive"
        assert (message.model_extra or {})["reasoning_content"]
        assert reply.usage is not None
        assert reply.usage.completion_tokens_details is not None
        assert (reply.usage.completion_tokens_details.reasoning_tokens or 0) > 0
        with pytest.raises(openai.BadRequestError, match="response_format type is unavailable"):
            client.chat.completions.parse(model=MODEL, messages=say(), response_format=Sentiment)
        as_json = client.chat.completions.create(
            model=MODEL, messages=say(), response_format={"type": "json_object"}
        )
        assert json.loads(as_json.choices[0].message.content or "") == {"label": "positive"}
        spent = client.chat.completions.create(model=MODEL, messages=say(), max_tokens=2)
        assert (spent.choices[0].finish_reason, spent.choices[0].message.content) == ("length", "")


@pytest.mark.parametrize(("provider", "opening"), [("ollama", True), ("vllm", False)])
def test_local_runtimes_answer_with_think_tags_inline(
    servers: dict[str, LocalServer], provider: str, opening: bool
) -> None:
    with client_for(servers, provider) as client:
        content = client.chat.completions.create(model=MODEL, messages=say()).choices[0].message
    text = content.content or ""
    assert text.startswith("<think>\n") is opening
    assert text.count("</think>") == 1
    assert text.split("</think>\n\n")[1] == "positive"


# --- configuration and help ---------------------------------------------------------------


def test_serve_help_lists_every_fault_marker_and_provider(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse_cli(["--help"])
    shown = capsys.readouterr().out
    for name in (*FAULT_KINDS, *PROVIDERS, "{{fault:KIND}}", "{{fault:KIND*N}}"):
        assert f"  {name} " in shown or f"{name}  " in shown, name


def test_new_options_round_trip_through_the_cli() -> None:
    config = ServerConfig(provider="azure", models=("a", "b"), always_stream=True)
    assert parse_cli(config_args(config))[0] == config
    with pytest.raises(Exception, match="unknown provider"):
        ServerConfig(provider="acme")


def test_a_server_process_takes_the_new_options_at_start_and_over_http() -> None:
    with ServerProcess(ServerConfig(provider="deepseek")) as server:
        server.update(models=("deepseek-chat",))
        with connect(server.base_url) as client:
            with pytest.raises(openai.BadRequestError, match="Model Not Exist"):
                client.chat.completions.create(model=MODEL, messages=say())
            reply = client.chat.completions.create(model="deepseek-chat", messages=say())
    assert (reply.choices[0].message.model_extra or {})["reasoning_content"]


async def test_a_bug_in_the_server_is_still_a_json_500(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr("holysheep_nb.server.app.answers_for", broken)
    async with (
        await start_server() as server,
        openai.AsyncOpenAI(
            base_url=server.base_url,
            api_key="sk-test",
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(trust_env=False),
        ) as client,
    ):
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model=MODEL, messages=say())
    assert isinstance(caught.value.body, dict)
    assert "boom" in caught.value.body["message"]
    assert caught.value.request_id is not None
