"""Answers and failures as real providers send them, through the engine (scripted server).

Shapes are rebuilt from the providers' public docs and bug reports: OpenAI's refusal and
tool-call messages, Azure's content filter, DeepSeek's ``reasoning_content`` and its 400 on
``json_schema``, OpenRouter's ``reasoning`` field and moderation 403, vLLM / Ollama's inline
``<think>`` blocks, and servers that stream when not asked. Each kind is also run end to end
against the local server's provider personalities in ``test_providers_end_to_end``.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from holysheep_nb.answers import MalformedAnswer, parse_answer, split_reasoning
from holysheep_nb.chat import ChatRequest, build_messages
from holysheep_nb.errors import HolySheepWarning
from holysheep_nb.labels import LabelSet
from holysheep_nb.outcome import OutcomeKind, RowOutcome
from holysheep_nb.policies import RetryPolicy
from tests.fakes import FakeClock
from tests.scripted import Reply, error_body, scripted
from tests.test_engine import engine, run_all

K = OutcomeKind


def completion(message: dict[str, Any], finish_reason: str = "stop", **extra: Any) -> str:
    choice = {
        "index": 0,
        "message": {"role": "assistant", **message},
        "finish_reason": finish_reason,
    }
    return json.dumps(
        {
            "object": "chat.completion",
            "choices": [{**choice, **extra}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4},
        }
    )


def sse(*chunks: dict[str, Any]) -> str:
    return "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"


def delta(finish_reason: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": fields, "finish_reason": finish_reason}],
    }


# --- reading answers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reasoning", "answer"),
    [
        ("<think>hmm, praise</think>positive", "hmm, praise", "positive"),
        ("\n<think>\nhmm\n</think>\n\npositive", "hmm", "positive"),
        ("hmm, praise</think>positive", "hmm, praise", "positive"),  # opening tag in the template
        ("positive", None, "positive"),
        ("<think></think>positive", None, "positive"),
        ("a <think> in the middle</think> stays", None, "a <think> in the middle</think> stays"),
    ],
)
def test_reasoning_is_set_apart_from_the_answer(
    text: str, reasoning: str | None, answer: str
) -> None:
    assert split_reasoning(text) == (reasoning, answer)


def test_reasoning_fields_of_deepseek_and_openrouter_are_kept() -> None:
    deepseek = parse_answer(
        completion({"content": "positive", "reasoning_content": "it praises"}).encode()
    )
    openrouter = parse_answer(
        completion({"content": "positive", "reasoning": "it praises"}).encode()
    )
    assert (deepseek.text, deepseek.reasoning) == ("positive", "it praises")
    assert (openrouter.text, openrouter.reasoning) == ("positive", "it praises")


def test_an_sse_answer_is_read_as_one_answer() -> None:
    raw = sse(
        delta(role="assistant", content=""),
        delta(reasoning_content="short "),
        delta(reasoning_content="thought"),
        delta(content="posi"),
        delta(content="tive"),
        delta("stop"),
        {
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2},
        },
    )
    answer = parse_answer(raw.encode())
    assert (answer.text, answer.reasoning, answer.finish_reason) == (
        "positive",
        "short thought",
        "stop",
    )
    assert (answer.prompt_tokens, answer.completion_tokens) == (5, 2)


def test_streamed_tool_calls_are_joined() -> None:
    raw = sse(
        delta(
            tool_calls=[
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lab", "arguments": ""},
                }
            ]
        ),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '{"label": '}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '"positive"}'}}]),
        delta("tool_calls"),
    )
    answer = parse_answer(raw.encode())
    assert answer.text is None
    assert answer.finish_reason == "tool_calls"
    assert json.loads(answer.tool_calls or "") == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "lab", "arguments": '{"label": "positive"}'},
        }
    ]


# --- well-formed answers that are not plain text: answered once, explained -------------------


async def one_row(
    clock: FakeClock, *replies: Reply, reader: Any = None, **settings: Any
) -> tuple[RowOutcome, int]:
    with scripted(clock) as server:
        server.script("p", *replies)
        eng = engine(clock, **settings)
        results: dict[int, RowOutcome] = {}
        await eng.run(
            [(0, ChatRequest(build_messages("p", None)))],
            lambda o: results.setdefault(0, o),
            reader=reader,
        )
    return results[0], server.count("p")


async def test_a_refusal_is_answered_once_and_quotes_the_model(clock: FakeClock) -> None:
    body = completion({"content": None, "refusal": "I can't help with that request."})
    outcome, sent = await one_row(clock, Reply(body=body))
    assert sent == 1
    assert outcome.kind is K.REFUSED
    assert outcome.error == "refused by the model: I can't help with that request."


async def test_a_filtered_answer_is_answered_once_and_names_the_categories(
    clock: FakeClock,
) -> None:
    azure = {
        "hate": {"filtered": False, "severity": "safe"},
        "violence": {"filtered": True, "severity": "high"},
    }
    body = completion({"content": None}, "content_filter", content_filter_results=azure)
    outcome, sent = await one_row(clock, Reply(body=body))
    assert sent == 1
    assert (outcome.kind, outcome.finish_reason) == (K.FILTERED, "content_filter")
    assert outcome.error == "withheld by the content filter: violence (high)"


async def test_a_tool_call_answer_is_a_valid_answer_with_its_calls_kept(clock: FakeClock) -> None:
    calls = [
        {"id": "call_9", "type": "function", "function": {"name": "label", "arguments": '{"x": 1}'}}
    ]
    outcome, sent = await one_row(
        clock, Reply(body=completion({"content": None, "tool_calls": calls}, "tool_calls"))
    )
    assert sent == 1
    assert (outcome.kind, outcome.response, outcome.finish_reason) == (K.OK, None, "tool_calls")
    assert json.loads(outcome.tool_calls or "") == calls


@pytest.mark.parametrize("content", ["", None])
async def test_an_empty_truncated_answer_is_the_rows_error_and_not_retried(
    clock: FakeClock, content: str | None
) -> None:
    outcome, sent = await one_row(clock, Reply(body=completion({"content": content}, "length")))
    assert sent == 1
    assert outcome.kind is K.TRUNCATED
    assert (
        outcome.error
        == "truncated at the token limit: raise max_tokens (or max_completion_tokens) and run again"
    )


async def test_a_truncated_answer_with_text_is_kept_but_never_read_as_a_label(
    clock: FakeClock,
) -> None:
    body = Reply(body=completion({"content": "positive"}, "length"))
    plain, _ = await one_row(clock, body)
    assert (plain.kind, plain.response, plain.finish_reason) == (K.OK, "positive", "length")
    labelled, _ = await one_row(clock, body, reader=LabelSet(["positive", "negative"]).read)
    assert (labelled.kind, labelled.response) == (K.TRUNCATED, "positive")


async def test_think_blocks_never_make_a_label_off_the_set(clock: FakeClock) -> None:
    reader = LabelSet(["positive", "negative"]).read
    for text in (
        "<think>The buyer is happy.</think>\npositive",
        "The buyer is happy.</think>positive",
    ):
        outcome, _ = await one_row(clock, Reply(body=completion({"content": text})), reader=reader)
        assert (outcome.kind, outcome.value, outcome.response) == (K.OK, "positive", "positive")
        assert outcome.reasoning == "The buyer is happy."


async def test_a_server_that_streams_unasked_is_read(clock: FakeClock) -> None:
    body = sse(delta(content="posi"), delta(content="tive"), delta("stop"))
    outcome, sent = await one_row(
        clock, Reply(body=body, headers={"Content-Type": "text/event-stream"})
    )
    assert (outcome.kind, outcome.response, sent) == (K.OK, "positive", 1)


# --- failures that concern the whole run: stop at once, say why ------------------------------


QUOTA = json.dumps(
    {
        "error": {
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
    }
)
CREDITS = json.dumps(
    {
        "error": {
            "code": 402,
            "message": "Insufficient credits. Add more using https://openrouter.ai/credits",
        }
    }
)
NO_MODEL = json.dumps(
    {
        "error": {
            "message": "The model `gpt-9` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "code": "model_not_found",
        }
    }
)
FLAGGED = json.dumps(
    {
        "error": {
            "code": 403,
            "message": "Input flagged by moderation",
            "metadata": {"reasons": ["harassment"], "flagged_input": "..."},
        }
    }
)


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        (Reply(429, QUOTA), "quota exhausted (HTTP 429 insufficient_quota)"),
        (Reply(402, CREDITS), "out of credits (HTTP 402)"),
        (
            Reply(404, NO_MODEL),
            "model not found (HTTP 404): The model `gpt-9` does not exist or you do not have access to it.",
        ),
        (
            Reply(403, error_body("Project does not have access")),
            "authentication failed (HTTP 403)",
        ),
    ],
)
async def test_run_wide_failures_stop_at_the_first_answer(
    clock: FakeClock, reply: Reply, cause: str
) -> None:
    prompts = [f"row{i}" for i in range(20)]
    with scripted(clock) as server:
        server.script("row0", reply)
        with pytest.warns(HolySheepWarning, match="stopped the run"):
            results, stats = await run_all(engine(clock, max_concurrent=1), prompts)
    assert len(server.bodies) == 1  # nothing more is sent
    assert clock.sleeps == []
    assert stats.stop is not None
    assert stats.stop.cause == cause
    assert all(results[i].error == f"not sent: {cause}" for i in range(1, 20))
    assert results[0].error is not None
    assert results[0].attempts == 1


async def test_a_flagged_input_is_that_rows_error_and_the_run_goes_on(clock: FakeClock) -> None:
    prompts = [f"row{i}" for i in range(40)]
    with scripted(clock) as server:
        server.script("row3", Reply(403, FLAGGED))
        results, stats = await run_all(engine(clock, max_concurrent=4), prompts)
    assert stats.stop is None
    assert results[3].kind is K.FILTERED
    assert results[3].error == "withheld by the content filter: harassment"
    assert results[3].attempts == 1
    assert all(results[i].response == f"answer:row{i}" for i in range(40) if i != 3)


async def test_a_rejected_response_format_falls_back_once_for_the_run(clock: FakeClock) -> None:
    """DeepSeek answers 400 to a json_schema response_format: ask without it, once, with a notice."""
    labels = LabelSet(["positive", "negative"])
    system = labels.system_prompt()
    fallback = build_messages(
        "row", LabelSet(["positive", "negative"], structured=False).system_prompt()
    )
    rejection = json.dumps(
        {
            "error": {
                "message": "This response_format type is unavailable now",
                "type": "invalid_request_error",
            }
        }
    )

    def request(i: int) -> tuple[int, ChatRequest]:
        messages = build_messages(f"row{i}", system)
        return i, ChatRequest(
            messages, {"response_format": labels.response_format()}, 0, fallback[0]["content"]
        )

    with scripted(clock) as server:
        server.script("row0", Reply(400, rejection))
        results: dict[int, RowOutcome] = {}
        with pytest.warns(HolySheepWarning, match="rejected response_format") as notices:
            await engine(clock, max_concurrent=1).run(
                [request(i) for i in range(5)],
                lambda o: results.setdefault(o.row_id, o),  # type: ignore[arg-type]
            )
    assert len(notices) == 1
    assert [results[i].response for i in range(5)] == [f"answer:row{i}" for i in range(5)]
    assert results[0].attempts == 1  # the refused form did not cost the row an attempt
    assert "response_format" in server.bodies[0]
    assert all("response_format" not in body for body in server.bodies[1:])
    assert server.bodies[1]["messages"][0]["content"] == fallback[0]["content"]


async def test_connection_failures_count_only_before_any_answer(clock: FakeClock) -> None:
    """A server that answered once is there: a later refused connection is retried as usual."""
    key = ConnectionKey("127.0.0.1", 9, False, True, None, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    with scripted(clock) as server:
        server.script("row1", *[Reply(raises=refused)] * 3)
        results, stats = await run_all(
            engine(clock, max_concurrent=1, retry=RetryPolicy(max_retries=3)), ["row0", "row1"]
        )
    assert stats.stop is None
    assert results[1].response == "answer:row1"
    assert results[1].attempts == 4


# --- a request the server never read ---------------------------------------------------------


async def test_a_request_on_a_dropped_keep_alive_connection_is_resent_free() -> None:
    """A server that closes each kept-alive connection instead of reading its next request
    (as servers with short idle timeouts do): that request was never read, so it is resent
    without spending an attempt. Before, with max_retries=0, half the rows failed."""
    import asyncio

    import pandas as pd

    read = 0

    async def one_answer_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal read
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        prompt = json.loads(await reader.readexactly(length))["messages"][-1]["content"]
        read += 1
        body = completion({"content": f"answer:{prompt}"}).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        await reader.read(1)  # the client's next request on this connection arrives...
        writer.transport.abort()  # ...and is dropped unread

    server = await asyncio.start_server(one_answer_per_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        frame = pd.DataFrame({"text": [f"r{i}" for i in range(30)]})
        out = await frame.holysheep.acomplete(
            "text", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, max_concurrent=1,
            cache=False, progress=False,
        )  # fmt: skip
    assert out["error"].isna().all(), out["error"].dropna().tolist()
    assert out["response"].tolist() == [f"answer:r{i}" for i in range(30)]
    assert out["attempts"].tolist() == [1] * 30
    report = out.holysheep.report()
    assert read == 30
    assert report.resent == report.requests_sent - 30 >= 20


async def test_the_connector_marks_reused_connections_and_forgets_closed_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the free resend above rests on: a connection handed out again marks the
    sending task's request as reused; connections the server closed are dropped from what
    the connector remembers, so a long run against a server that closes every connection
    does not keep them all."""
    from holysheep_nb import sending as sending_module

    class Protocol:
        def __init__(self) -> None:
            self.open = True

        def is_connected(self) -> bool:
            return self.open

    handed: list[Protocol] = []

    async def pooled(self: object, req: object, traces: object, timeout: object) -> object:
        return type("Connection", (), {"protocol": handed[-1]})()

    monkeypatch.setattr(aiohttp.TCPConnector, "connect", pooled)
    connector = sending_module.ReuseTrackingConnector(limit=4)
    mark = sending_module.enlist()
    kept = Protocol()
    handed.append(kept)
    await connector.connect(None, [], None)  # type: ignore[arg-type]
    assert not mark.reused
    await connector.connect(None, [], None)  # type: ignore[arg-type]
    assert mark.reused
    for _ in range(500):  # each answered once, then closed by the server
        mark.reused = False
        handed.append(Protocol())
        await connector.connect(None, [], None)  # type: ignore[arg-type]
        assert not mark.reused
        handed[-1].open = False
    assert len(connector._seen) <= 4 * 16 + 1
    assert kept in connector._seen  # the open one is still known
    await connector.close()


@pytest.mark.parametrize(
    "wrap",
    [
        lambda body: body.encode(),
        lambda body: (" \n" + body + "\n\n").encode(),  # white space around the JSON
        lambda body: codecs.BOM_UTF8 + body.encode(),
        lambda body: body.encode("utf-16"),
        lambda body: (body + "\n\ndata: [DONE]\n\n").encode(),  # a stream's end appended
    ],
    ids=["plain", "white space", "UTF-8 BOM", "UTF-16", "then [DONE]"],
)
def test_one_answer_however_its_json_is_wrapped(wrap: Callable[[str], bytes]) -> None:
    """The usual body is read at once; what that fast read cannot (white space before the
    JSON, a byte order mark, UTF-16, more after it) is read the long way, to the same answer."""
    answer = parse_answer(wrap(completion({"content": "naïve, “quoted”"})))
    assert (answer.text, answer.finish_reason) == ("naïve, “quoted”", "stop")


def test_json_followed_by_anything_else_is_malformed() -> None:
    with pytest.raises(MalformedAnswer, match="not JSON"):
        parse_answer((completion({"content": "ok"}) + " trailing words").encode())


def test_half_an_emoji_escaped_in_json_becomes_a_replacement_character() -> None:
    """A model cut mid-emoji can send ``"\\ud83d"``: no UTF-8 store takes a lone surrogate."""
    raw = '{"choices": [{"message": {"content": "great \\ud83d", "reasoning_content": "ok \\ud83d\\ude0d"}, "finish_reason": "length"}]}'
    answer = parse_answer(raw.encode())
    assert answer.text == "great \ufffd"
    assert answer.reasoning == "ok \U0001f60d"  # a whole pair stays the emoji


async def test_a_lone_surrogate_in_an_answer_never_loses_the_frame(clock: FakeClock) -> None:
    import pandas as pd

    body = '{"choices": [{"message": {"content": "good \\ud83d"}, "finish_reason": "stop"}]}'
    with scripted(clock) as server:
        server.script("p", Reply(body=body))
        out = await pd.DataFrame({"text": ["p"]}).holysheep.acomplete(
            "text", base_url="http://127.0.0.1:9/v1", cache=False, progress=False
        )
    assert out["response"].tolist() == ["good \ufffd"]
    assert len(server.bodies) == 1
