"""The local server's ``/v1/files`` and ``/v1/batches`` through the official ``openai`` client.

A client nobody here wrote parses every object into its own types (``FileObject``,
``Batch``), which proves the shapes; the lines of the output and error files are checked
against OpenAI's documented batch output format.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from holysheep_nb.server import LocalServer, ServerConfig, config_args, parse_cli
from tests.openai_clients import connect

MODEL = "gpt-4o"


def line(custom_id: str, text: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": MODEL, "messages": [{"role": "user", "content": text}], **body},
    }


def jsonl(*lines: dict[str, Any]) -> bytes:
    return "".join(json.dumps(item) + "\n" for item in lines).encode()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig(batch_polls=2)) as running:
        yield running


@pytest.fixture
def client(server: LocalServer) -> Iterator[openai.OpenAI]:
    with connect(server.base_url) as opened:
        yield opened


def submit(client: openai.OpenAI, data: bytes) -> str:
    upload = client.files.create(file=("input.jsonl", data), purpose="batch")
    assert (upload.purpose, upload.bytes, upload.object) == ("batch", len(data), "file")
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "in_progress"
    assert batch.input_file_id == upload.id
    return batch.id


def test_the_openai_client_runs_a_batch_end_to_end(client: openai.OpenAI) -> None:
    data = jsonl(
        line("a", "I love it"),
        line("b", "awful, it broke {{fault:400}}"),
        line("c", "fine {{fault:refusal}}"),
        line("d", "meh", max_tokens=1),
    )
    batch_id = submit(client, data)
    first = client.batches.retrieve(batch_id)
    assert first.status == "in_progress"
    assert first.request_counts is not None
    assert (first.request_counts.total, first.request_counts.completed) == (4, 1)
    done = client.batches.retrieve(batch_id)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (3, 1)
    assert done.completed_at is not None
    assert done.output_file_id is not None
    assert done.error_file_id is not None
    output = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert [o["custom_id"] for o in output] == ["a", "c", "d"]
    assert all(o["error"] is None and o["response"]["status_code"] == 200 for o in output)
    answer = output[0]["response"]["body"]
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "positive"
    assert output[1]["response"]["body"]["choices"][0]["message"]["refusal"]
    assert output[2]["response"]["body"]["choices"][0]["finish_reason"] == "length"
    (error,) = errors
    assert error["custom_id"] == "b"
    assert error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["message"] == "Invalid request (injected fault)."
    listed = client.batches.list(limit=10)
    assert [b.id for b in listed.data] == [batch_id]


def test_cancel_expiry_and_file_routes(client: openai.OpenAI, server: LocalServer) -> None:
    batch_id = submit(client, jsonl(*(line(str(i), f"text {i}") for i in range(4))))
    cancelling = client.batches.cancel(batch_id)
    assert cancelling.status == "cancelling"
    cancelled = client.batches.retrieve(batch_id)
    assert cancelled.status == "cancelled"
    assert cancelled.error_file_id is not None
    never_run = client.files.content(cancelled.error_file_id).text.splitlines()
    assert {json.loads(x)["error"]["code"] for x in never_run} == {"batch_cancelled"}
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch_id)

    server.update(batch_expiry=0.0, batch_polls=4)
    expired = client.batches.retrieve(submit(client, jsonl(line("x", "a"), line("y", "b"))))
    assert expired.status == "expired"
    assert expired.request_counts is not None
    assert expired.request_counts.failed == 2
    assert expired.expired_at is not None

    upload = client.files.create(file=("x.jsonl", b"{}\n"), purpose="batch")
    assert client.files.retrieve(upload.id).filename == "x.jsonl"
    assert client.files.delete(upload.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(upload.id)
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_a_bad_input_file_fails_the_batch_with_line_errors(client: openai.OpenAI) -> None:
    data = jsonl(line("a", "x"), line("a", "y")) + b"not json\n"
    failed = client.batches.retrieve(submit_failed(client, data))
    assert failed.status == "failed"
    assert failed.errors is not None
    assert failed.errors.data is not None
    assert [(e.code, e.line) for e in failed.errors.data] == [
        ("duplicate_custom_id", 2),
        ("invalid_json_line", 3),
    ]


def submit_failed(client: openai.OpenAI, data: bytes) -> str:
    upload = client.files.create(file=("bad.jsonl", data), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "failed"
    return batch.id


def test_batches_switched_off_are_404s_like_a_provider_without() -> None:
    with (
        LocalServer(ServerConfig(batches=False)) as server,
        openai.OpenAI(
            base_url=server.base_url,
            api_key="sk-test",
            max_retries=0,
            http_client=openai.DefaultHttpxClient(trust_env=False),
        ) as client,
    ):
        with pytest.raises(openai.NotFoundError):
            client.files.create(file=("x.jsonl", b"{}\n"), purpose="batch")
        with pytest.raises(openai.NotFoundError):
            client.batches.list()


def test_the_batch_options_round_trip_through_the_command_line() -> None:
    config = ServerConfig(
        batches=False, batch_polls=3, batch_seconds=1.5, batch_expiry=60.0, batch_max_requests=9
    )
    assert parse_cli(config_args(config))[0] == config
