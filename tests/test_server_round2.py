"""The local server's round-two reproductions, as a client library sees them: the shapes and
knobs that the later items of "Real providers, round two" are tested against (a dead local
server, a concurrency cap, the Batch API's enqueued-token limit, Gemini's list errors)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import pytest

from holysheep_nb.server import (
    Latency,
    LocalServer,
    ServerConfig,
    config_args,
    parse_cli,
    start_server,
)
from tests.openai_clients import connect

MODEL = "gpt-4o-mini"


def say(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def ollama() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig(provider="ollama")) as running:
        yield running


def test_an_ollama_that_cannot_load_its_model_answers_500_to_every_request(
    ollama: LocalServer,
) -> None:
    with connect(ollama.base_url) as client:
        for _ in range(3):
            with pytest.raises(openai.InternalServerError) as raised:
                client.chat.completions.create(model=MODEL, messages=say("hi {{fault:500-load}}"))
            assert "requires more system memory" in raised.value.message
    assert ollama.stats()["by_status"] == {"500": 3}


def test_vllm_errors_are_top_level_and_the_openai_client_reads_them() -> None:
    with (
        LocalServer(ServerConfig(provider="vllm")) as server,
        connect(server.base_url) as client,
        pytest.raises(openai.BadRequestError) as raised,
    ):
        client.chat.completions.create(model=MODEL, messages=say("hi {{fault:400}}"))
    body = raised.value.body
    assert isinstance(body, dict)
    assert body["object"] == "error"
    assert body["message"] == "Invalid request (injected fault)."
    assert body["code"] == 400


def test_geminis_errors_are_a_list_with_google_status_and_retry_info() -> None:
    with (
        LocalServer(ServerConfig(provider="gemini", retry_after=7.0)) as server,
        connect(server.base_url) as client,
        pytest.raises(openai.RateLimitError) as raised,
    ):
        client.chat.completions.create(model=MODEL, messages=say("hi {{fault:429}}"))
    assert "retry-after" not in raised.value.response.headers
    (item,) = raised.value.response.json()
    error = item["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    retry_info = [d for d in error["details"] if d["@type"].endswith("RetryInfo")]
    assert retry_info == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]


async def test_a_concurrency_cap_answers_429_without_headers_beyond_it() -> None:
    config = ServerConfig(max_in_flight=8, latency=Latency.fixed(0.3))
    body = {"model": MODEL, "messages": say("fine")}
    async with await start_server(config) as server, aiohttp.ClientSession() as session:

        async def one() -> tuple[int, bool]:
            async with session.post(f"{server.base_url}/chat/completions", json=body) as reply:
                await reply.read()
                headers = {name.lower() for name in reply.headers}
                return reply.status, any(
                    h.startswith(("retry-after", "x-ratelimit")) for h in headers
                )

        answers = await asyncio.gather(*(one() for _ in range(12)))
    assert sorted(status for status, _ in answers) == [200] * 8 + [429] * 4
    assert not any(hinted for _, hinted in answers)


def test_the_enqueued_token_limit_fails_a_batch_beyond_it_until_one_completes() -> None:
    config = ServerConfig(batch_token_limit=60, batch_polls=2)
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": say("a review of twenty characters")},
        }
        for i in range(4)
    ]  # 4 lines x (8 + 4) tokens = 48 tokens a batch
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    with LocalServer(config) as server, connect(server.base_url) as client:

        def create() -> openai.types.Batch:
            upload = client.files.create(file=("in.jsonl", data), purpose="batch")
            return client.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )

        first = create()
        assert first.status == "in_progress"
        second = create()
        assert second.status == "failed"
        assert second.errors is not None
        assert second.errors.data is not None
        (error,) = second.errors.data
        assert error.code == "token_limit_exceeded"
        assert error.message is not None
        assert error.message.startswith(f"Enqueued token limit reached for {MODEL}")
        statuses = [client.batches.retrieve(first.id).status for _ in range(2)]
        assert statuses == ["in_progress", "completed"]  # the second poll finishes it
        assert create().status == "in_progress"  # the completed batch no longer counts


def test_the_round_two_knobs_round_trip_through_the_command_line() -> None:
    config = ServerConfig(provider="gemini", max_in_flight=8, batch_token_limit=90_000)
    assert parse_cli(config_args(config))[0] == config
