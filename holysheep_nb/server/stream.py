"""Server-sent events: a ``Reply`` streamed as ``chat.completion.chunk`` objects.

The shape follows OpenAI's streaming guide and openai-python's ``ChatCompletionChunk``:
one ``data: {json}`` event per chunk, a blank line after each, ``data: [DONE]`` at the end.
Per choice: a first delta with the role, then the reasoning (in the personality's field),
the content (or refusal) token by token with its logprobs, the tool call (id and name
first, then the arguments), and a last chunk with an empty delta and the finish reason.
With ``stream_options.include_usage`` every chunk carries ``"usage": null`` and a final chunk
with no choices carries the usage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from aiohttp import web

from holysheep_nb.server.completion import Reply, content_logprobs
from holysheep_nb.server.logprobs import token_pieces
from holysheep_nb.server.providers import PERSONALITIES
from holysheep_nb.server.replies import error_body

__all__ = ["sse_events", "write_stream"]


def sse_events(
    reply: Reply | Sequence[Reply],
    body: Mapping[str, Any],
    *,
    provider: str,
    include_usage: bool,
    top_logprobs: int | None,
    broken: bool = False,
) -> Iterator[bytes]:
    """Every event of the stream, ``[DONE]`` included; ``body`` is the completion object that
    a non-streamed answer would have been (its id, model, choices and usage are reused);
    ``reply`` is every choice's (a sequence) or all choices' (one ``Reply``).

    OpenRouter opens with a ``: OPENROUTER PROCESSING`` comment (its streaming docs: comments
    keep the connection alive); Azure with a chunk that has no choices, only the
    ``prompt_filter_results`` (and empty id, model and object). ``broken``: the stream stops
    halfway with a chunk that carries an ``error`` object and ``finish_reason: "error"`` and
    no ``[DONE]``, as OpenRouter's streaming docs describe an error during generation.
    """
    reasoning_field = PERSONALITIES[provider].reasoning_field
    count = len(body["choices"])
    replies = [reply] * count if isinstance(reply, Reply) else list(reply)
    if provider == "openrouter":
        yield b": OPENROUTER PROCESSING\n\n"
    elif provider == "azure":
        filters = body.get("prompt_filter_results")
        blank = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
        yield _event({**blank, "prompt_filter_results": filters})
    head: dict[str, Any] = {
        "id": body["id"],
        "object": "chat.completion.chunk",
        "created": body["created"],
        "model": body["model"],
    }
    if include_usage:
        head["usage"] = None
    if broken:
        deltas = list(_deltas(replies[0], reasoning_field, top_logprobs))
        for delta, extra in deltas[: 1 + len(deltas) // 2]:  # the role and half the rest
            yield _event({**head, "choices": [{"index": 0, "delta": delta, **extra}]})
        failure = error_body(502, "Provider disconnected unexpectedly", provider=provider)
        stop = {"index": 0, "delta": {"content": ""}, "finish_reason": "error"}
        yield _event({**head, **failure, "choices": [stop]})
        return
    for index, one in enumerate(replies):
        for delta, extra in _deltas(one, reasoning_field, top_logprobs):
            choice = {"index": index, "delta": delta, "finish_reason": None, **extra}
            yield _event({**head, "choices": [choice]})
        last = {"index": index, "delta": {}, "finish_reason": one.finish_reason}
        yield _event({**head, "choices": [last]})
    if include_usage:
        yield _event({**head, "choices": [], "usage": body["usage"]})
    yield b"data: [DONE]\n\n"


def _deltas(
    reply: Reply, reasoning_field: str | None, top_logprobs: int | None
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(delta, extra choice fields) for each chunk of one choice, before the last."""
    first: dict[str, Any] = {"role": "assistant", "content": "" if reply.content else None}
    if reply.refusal is not None:
        first["refusal"] = None
    yield first, {}
    if reasoning_field and reply.reasoning:
        for piece in token_pieces(reply.reasoning):
            yield {reasoning_field: piece}, {}
    if reply.content:
        entries = content_logprobs(reply, top_logprobs) if top_logprobs is not None else None
        for position, piece in enumerate(reply.pieces()):
            extra = {}
            if entries is not None:
                extra["logprobs"] = {"content": [entries[position]], "refusal": None}
            yield {"content": piece}, extra
    if reply.refusal:
        for piece in token_pieces(reply.refusal):
            yield {"refusal": piece}, {}
    for number, call in enumerate(reply.tool_calls or ()):
        function = call["function"]
        opening = {"name": function["name"], "arguments": ""}
        yield {"tool_calls": [{"index": number, "id": call["id"], "type": "function",
                               "function": opening}]}, {}  # fmt: skip
        for piece in token_pieces(function["arguments"]):
            yield {"tool_calls": [{"index": number, "function": {"arguments": piece}}]}, {}


def _event(chunk: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"


async def write_stream(
    request: web.Request, events: Iterator[bytes], headers: Mapping[str, str]
) -> web.StreamResponse:
    """Send ``events`` as a ``text/event-stream`` response, one write per event."""
    response = web.StreamResponse(
        status=200,
        headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
    )
    await response.prepare(request)
    for event in events:
        await response.write(event)
    await response.write_eof()
    return response
