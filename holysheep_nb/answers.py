"""Reading what a provider sends back: a chat completion (JSON or SSE) or an error body.

A 2xx body becomes an ``Answer``: the assistant text with reasoning set apart, the finish
reason, a refusal, tool calls and usage, whichever shape the provider used:

- JSON, as OpenAI documents ``chat.completion``;
- server-sent events (``data: {...}`` chunks of ``chat.completion.chunk`` deltas, then
  ``data: [DONE]``), which some servers send even when not asked to stream; the deltas are
  joined into one answer;
- JSON followed by ``data: [DONE]``, the stream's terminator that some servers append to an
  answer they did not stream;
- reasoning as a ``<think>...</think>`` block before the answer (vLLM and Ollama with
  reasoning models; also the form with only the closing tag, when the opening one was part
  of the prompt template), or as a ``reasoning_content`` (DeepSeek) or ``reasoning``
  (OpenRouter) field of the message.

A body that is none of these raises ``MalformedAnswer``. Error bodies are read in
``provider_errors``.

Length: one reader for every shape, since each shape's answer must come out the same; the
JSON shape is the hot path (one call per answer) and is read first, at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from holysheep_nb.errors import HolySheepError
from holysheep_nb.logprobs import TokenLogprobs, parse_logprobs
from holysheep_nb.outcome import TRUNCATED_HINT, OutcomeKind
from holysheep_nb.provider_errors import (
    filtered_categories,
    one_line,
    provider_message,
    summarise_body,
    valid_unicode,
)
from holysheep_nb.validation import is_whole

_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
_DECODER = json.JSONDecoder()
#: How a body of server-sent events starts: a data line, an event name, or a comment.
_EVENT_STARTS = (b"data:", b"event:", b":")
_DONE = re.compile(r"data:\s*\[DONE\]")


@dataclass(slots=True)
class Answer:
    """A parsed 2xx completion. ``text`` is None when the model gave no content (a refusal,
    a tool call, a filtered or cut answer); ``tool_calls`` is their JSON text; ``logprobs``
    are the answer's tokens (reasoning included) when the server sent them.

    A value, never changed once built; not frozen only for the cost of building one per
    answer (as ``RowOutcome``)."""

    text: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: str | None = None
    filter_reason: str = ""
    logprobs: TokenLogprobs | None = None


class MalformedAnswer(HolySheepError):
    """A 2xx body that is not a chat completion; the message says what was wrong."""


def parse_answer(raw: bytes) -> Answer:
    """Read a 2xx body (JSON or SSE) into an ``Answer``, or raise ``MalformedAnswer``."""
    if raw.startswith(_EVENT_STARTS):
        return _parse_events(raw)
    try:
        # UTF-8, as JSON is sent (RFC 8259, section 8.1), read at once; json.loads would sniff
        # every answer's encoding first, so it reads only what this cannot (a BOM, UTF-16,
        # white space before the JSON, or more after it).
        text = raw.decode("utf-8")
        data, end = _DECODER.raw_decode(text)
        if end != len(text) and not text[end:].isspace():
            data = _json_of_other_body(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = _json_of_other_body(raw)
    if not isinstance(data, dict):
        raise MalformedAnswer(f"expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices")
    if choices.__class__ is list and len(choices) == 1 and choices[0].__class__ is dict:
        return _answer_of(data, choices[0])  # the usual answer: one choice
    choice = _first_choice(data)
    if len(data["choices"]) > 1:
        return samples_answer(_answer_of(data, choice), data["choices"])
    return _answer_of(data, choice)


def _answer_of(data: dict[str, Any], choice: dict[str, Any]) -> Answer:
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    content = message.get("content")
    if (
        len(message) <= 2  # role and content: the common plain answer, read at once
        and isinstance(content, str)
        and content.isascii()
        and _THINK_CLOSE not in content
        and len(choice) <= 3  # index, message, finish_reason: no logprobs, no filter results
    ):
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        return Answer(  # the usual token counts read at once, too
            text=content,
            prompt_tokens=prompt if prompt.__class__ is int else _int_or_none(prompt),
            completion_tokens=(
                completion if completion.__class__ is int else _int_or_none(completion)
            ),
            finish_reason=_text(choice.get("finish_reason")),
        )
    return _answer(
        content=message.get("content"),
        reasoning=_text(message.get("reasoning_content")) or _text(message.get("reasoning")),
        refusal=_text(message.get("refusal")),
        tool_calls=message.get("tool_calls"),
        finish_reason=_text(choice.get("finish_reason")),
        usage=data.get("usage"),
        filter_results=choice.get("content_filter_results"),
        logprobs=choice.get("logprobs"),
    )


#: The key of the text that holds every choice of an ``n`` > 1 answer (votes).
SAMPLES_KEY = "holysheep_samples"


def samples_answer(first: Answer, choices: list[Any]) -> Answer:
    """The answer to a request for ``n`` choices (votes): its text is
    ``{"holysheep_samples": [text, ...]}``, one text per choice (None for a choice without
    one), so the row's response, the cache and the batch keep every sample; the rest
    (finish reason, logprobs) is the first choice's, the usage the whole request's."""
    texts: list[str | None] = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        texts.append(split_reasoning(content)[1] if isinstance(content, str) else None)
    text = json.dumps({SAMPLES_KEY: texts}, ensure_ascii=False)
    return replace(first, text=text)


def _json_of_other_body(raw: bytes) -> object:
    """The JSON of a body that is not plain UTF-8 JSON: one with a byte order mark or in
    UTF-16/32 (``json.loads`` detects them), or one that goes on with ``data: [DONE]``;
    ``MalformedAnswer`` for any other."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = _json_then_done(raw)
    if data is None:
        raise MalformedAnswer(f"not JSON: {summarise_body(raw)}") from None
    return data


def _json_then_done(raw: bytes) -> object | None:
    """The JSON object of a body that goes on with the stream terminator ``data: [DONE]``
    (some servers append it to an answer they did not stream), or None for any other body."""
    try:
        text = raw.decode("utf-8")
        data, end = _DECODER.raw_decode(text, len(text) - len(text.lstrip()))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    rest = [line.strip() for line in text[end:].splitlines() if line.strip()]
    return data if rest and all(_DONE.fullmatch(line) for line in rest) else None


def _first_choice(data: dict[str, Any]) -> dict[str, Any]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        error = provider_message(data)
        raise MalformedAnswer(f"no choices in answer{': ' + error if error else ''}")
    return choices[0]


def _parse_events(raw: bytes) -> Answer:
    """Join the deltas of an SSE stream of ``chat.completion.chunk`` objects."""
    content: list[str] = []
    reasoning: list[str] = []
    refusal: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    tokens: list[object] = []  # the logprobs.content entries of every chunk, in order
    finish_reason = None
    usage = filter_results = None
    seen = False
    for line in raw.decode("utf-8", errors="replace").splitlines():
        if not line.startswith("data:"):
            continue  # comments (": keep-alive"), event names, ids, blank separators
        payload = line[5:].strip()
        if payload == "[DONE]":
            break
        try:
            chunk = json.loads(payload)
        except json.JSONDecodeError:
            raise MalformedAnswer(f"bad event in stream: {one_line(payload)}") from None
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk or chunk.get("object") == "error":  # vLLM's is top-level
            raise MalformedAnswer(f"error in stream: {provider_message(chunk) or 'unknown'}")
        seen = True
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            delta = delta if isinstance(delta, dict) else {}
            for parts, key in ((content, "content"), (refusal, "refusal")):
                if isinstance(delta.get(key), str):
                    parts.append(delta[key])
            for key in ("reasoning_content", "reasoning"):
                if isinstance(delta.get(key), str):
                    reasoning.append(delta[key])
            for call in delta.get("tool_calls") or ():
                _merge_call(calls, call)
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
                tokens.extend(logprobs["content"])
            finish_reason = _text(choice.get("finish_reason")) or finish_reason
            filter_results = choice.get("content_filter_results") or filter_results
    if not seen:
        raise MalformedAnswer(f"a stream with no completion chunk: {summarise_body(raw)}")
    return _answer(
        content="".join(content) if content or finish_reason == "stop" else None,
        reasoning="".join(reasoning) or None,
        refusal="".join(refusal) or None,
        tool_calls=[calls[i] for i in sorted(calls)] or None,
        finish_reason=finish_reason,
        usage=usage,
        filter_results=filter_results,
        logprobs={"content": tokens},
    )


def _merge_call(calls: dict[int, dict[str, Any]], delta: object) -> None:
    """Fold one streamed tool-call delta into the call it continues (by ``index``)."""
    if not isinstance(delta, dict):
        return
    call = calls.setdefault(
        int(delta.get("index", 0)),
        {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
    )
    if delta.get("id"):
        call["id"] = delta["id"]
    function = delta.get("function")
    if isinstance(function, dict):
        for key in ("name", "arguments"):
            if isinstance(function.get(key), str):
                call["function"][key] += function[key]


def _answer(
    *,
    content: object,
    reasoning: str | None,
    refusal: str | None,
    tool_calls: object,
    finish_reason: str | None,
    usage: object,
    filter_results: object,
    logprobs: object,
) -> Answer:
    text = valid_unicode(content) if isinstance(content, str) else None
    if text is not None:
        inline, text = split_reasoning(text)
        reasoning = reasoning or inline
    calls = json.dumps(tool_calls, ensure_ascii=False) if tool_calls else None
    usage = usage if isinstance(usage, dict) else {}
    return Answer(
        text=text,
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        completion_tokens=_int_or_none(usage.get("completion_tokens")),
        finish_reason=finish_reason,
        reasoning=valid_unicode(reasoning),
        refusal=valid_unicode(refusal),
        tool_calls=valid_unicode(calls),
        filter_reason=filtered_categories(filter_results),
        logprobs=parse_logprobs(logprobs),
    )


def split_reasoning(text: str) -> tuple[str | None, str]:
    """``(reasoning, answer)`` of a text that may open with a ``<think>`` block.

    Handles ``<think>r</think>a`` and, for templates that put the opening tag in the prompt,
    ``r</think>a``. A text without a closing tag has no reasoning.
    """
    close = text.find(_THINK_CLOSE)
    if close < 0:
        return None, text
    head = text[:close]
    stripped = head.lstrip()
    if stripped.startswith(_THINK_OPEN):
        head = stripped[len(_THINK_OPEN) :]
    elif _THINK_OPEN in head:
        return None, text  # a think block in the middle of an answer is the answer's own text
    return head.strip() or None, text[close + len(_THINK_CLOSE) :].strip()


#: Finish reasons that explain an answer without content (it is not malformed).
_EXPLAINED = frozenset({"length", "content_filter", "tool_calls"})


def missing_content(answer: Answer) -> str | None:
    """Why a 2xx answer is malformed for having no content, or None: no text, and no
    refusal, tool call or finish reason that explains why (online and in a batch alike)."""
    if answer.text is not None:
        return None
    if answer.refusal or answer.tool_calls or answer.finish_reason in _EXPLAINED:
        return None
    return f"no message content (finish_reason={answer.finish_reason!r})"


def answer_kind(answer: Answer) -> tuple[OutcomeKind, str]:
    """The kind of a well-formed answer, and the detail of one that cannot be used.

    Never retried: a refusal or a filtered answer comes back the same, and was paid for.
    """
    if answer.refusal:
        return OutcomeKind.REFUSED, answer.refusal
    if answer.text is None and answer.finish_reason == "content_filter":
        return OutcomeKind.FILTERED, answer.filter_reason or "finish_reason content_filter"
    if not answer.text and not answer.tool_calls and answer.finish_reason == "length":
        return OutcomeKind.TRUNCATED, TRUNCATED_HINT
    return OutcomeKind.OK, ""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(value: object) -> int | None:
    return value if is_whole(value) else None
