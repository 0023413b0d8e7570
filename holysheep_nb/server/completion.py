"""The body of a successful chat completion: choices, tool calls, reasoning, logprobs, usage.

``plan`` turns the composed answer (``answers``) into a ``Reply``: the request's ``tools``
and ``tool_choice``, ``max_tokens`` / ``max_completion_tokens``, the personality's reasoning
(a message field or ``<think>`` tags inline) and the answer-shaping faults (refusal,
content_filter, length, tools, think) all act here. ``completion_body`` renders a ``Reply``
as OpenAI's ``chat.completion`` object (openai-python's ``ChatCompletion`` type), ``n``
choices of it (``plain_body`` directly for the common case); ``stream`` renders the same
``Reply`` as chunks.

Tokens are the server's rough ones throughout: four characters each (``estimate_tokens``),
so ``usage``, truncation, stream pieces and logprob entries all agree.

Length: every field of a completion that the request or a fault shapes is decided here,
once, so the JSON body and the stream's chunks cannot disagree.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from holysheep_nb.server.answers import estimate_tokens, schema_answer
from holysheep_nb.server.config import ServerConfig
from holysheep_nb.server.logprobs import label_entries, logprobs, token_pieces
from holysheep_nb.server.providers import (
    PERSONALITIES,
    azure_choice_filter,
    azure_prompt_filter,
)
from holysheep_nb.server.simulate import Answer

__all__ = [
    "SHAPING_FIELDS",
    "Reply",
    "completion_body",
    "content_logprobs",
    "plain_body",
    "plan",
    "plan_choices",
]

REFUSAL = "I'm sorry, but I can't help with that request."
_NAME_WORD = re.compile(r"[a-z]+")
_THINK: dict[str, Literal["paired", "closing"]] = {"think": "paired", "think-closing": "closing"}
_DEFAULT_TOOL: dict[str, Any] = {
    "name": "lookup",
    "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
        "additionalProperties": False,
    },
}


@dataclass(slots=True)
class Reply:
    """One choice's worth of answer; ``tokens`` is its completion token count. ``label``
    and ``scores``: a simulated label (one token of the content) and the probabilities
    behind it, for its logprobs (``simulate.Answer``)."""

    content: str | None
    finish_reason: str = "stop"
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tokens: int = 0
    reasoning_tokens: int = 0
    label: str | None = None
    scores: tuple[tuple[str, float], ...] = ()

    def pieces(self) -> list[str]:
        """The content's tokens (the label whole, when it is still in the content)."""
        if self.content is None:
            return []
        label = self.label if self.label and self.label in self.content else None
        return token_pieces(self.content, label)


def content_logprobs(reply: Reply, top: int) -> list[dict[str, Any]] | None:
    """``logprobs.content`` of a reply with ``top`` alternatives per token (None: no content)."""
    if reply.content is None:
        return None
    if reply.label and reply.scores and reply.label in reply.content:
        return label_entries(reply.content, reply.label, reply.scores, top)
    return logprobs(reply.content, top)


def plan(
    config: ServerConfig,
    body: Mapping[str, Any],
    answer: str,
    fault: str | None,
    texts: list[str],
    raw: str,
    *,
    label: str | None = None,
    scores: tuple[tuple[str, float], ...] = (),
) -> Reply:
    """The answer to send, shaped by the request, the personality and an answer fault;
    ``label`` / ``scores``: a simulated label in ``answer`` and its probabilities."""
    personality = PERSONALITIES[config.provider]
    reply = Reply(answer, label=label, scores=scores)
    if body.get("tools") or fault == "tools":
        call = _tool_call(config, body, texts, raw, forced=fault == "tools")
        if call is not None:
            reply.content, reply.tool_calls, reply.finish_reason = None, [call], "tool_calls"
    if fault == "refusal":
        reply.content, reply.refusal = None, REFUSAL
    elif fault == "content-filter":
        reply.content, reply.finish_reason = None, "content_filter"
    think = personality.think if fault is None else _THINK.get(fault, personality.think)
    if personality.reasoning_field or think:
        reply.reasoning = _reasoning(raw, reply)
        reply.reasoning_tokens = estimate_tokens(reply.reasoning)
        if think and reply.content is not None:
            opening = "<think>\n" if think == "paired" else ""
            reply.content = f"{opening}{reply.reasoning}\n</think>\n\n{reply.content}"
            reply.reasoning = None
    reply.tokens = _count(reply)
    if fault in ("length", "length-empty", "length-null"):
        _cut_by_fault(reply, fault)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and reply.tokens > limit:
        _truncate(reply, limit, personality.name)
    return reply


def plan_choices(
    config: ServerConfig,
    body: Mapping[str, Any],
    answers: list[Answer],
    fault: str | None,
    texts: list[str],
    raw: str,
) -> Reply | list[Reply]:
    """The reply of each choice, or one reply for all when every choice has the same answer."""
    distinct = answers if len({id(a) for a in answers}) > 1 else answers[:1]
    replies = [
        plan(config, body, a.content, fault, texts, raw, label=a.label, scores=a.scores)
        for a in distinct
    ]
    return replies[0] if len(replies) == 1 else replies


def _count(reply: Reply) -> int:
    tokens = reply.reasoning_tokens if reply.reasoning is not None else 0
    tokens += len(reply.pieces())
    if reply.refusal is not None:
        tokens += estimate_tokens(reply.refusal)
    for call in reply.tool_calls or ():
        tokens += estimate_tokens(call["function"]["arguments"])
    return max(1, tokens)


def _cut_by_fault(reply: Reply, fault: str) -> None:
    reply.finish_reason = "length"
    reply.label, reply.scores = None, ()
    if fault == "length-null":
        reply.content = None
    elif fault == "length-empty" or reply.content is None:
        reply.content = ""
    else:
        pieces = token_pieces(reply.content)
        reply.content = "".join(pieces[: max(1, len(pieces) // 2)])
    reply.tokens = _count(reply)


def _truncate(reply: Reply, limit: int, provider: str) -> None:
    """Cut the answer at ``limit`` tokens, reasoning first, as a provider's budget does."""
    budget = limit
    reply.label, reply.scores = None, ()
    if reply.reasoning is not None:
        spent = min(budget, reply.reasoning_tokens)
        reply.reasoning = reply.reasoning[: spent * 4]
        reply.reasoning_tokens = spent
        budget -= spent
    if reply.content is not None:
        if budget == 0 and reply.reasoning is not None:
            # The whole budget went on thinking: DeepSeek sends "", OpenRouter null.
            reply.content = "" if provider == "deepseek" else None
        else:
            reply.content = reply.content[: budget * 4]
    for call in reply.tool_calls or ():
        call["function"]["arguments"] = call["function"]["arguments"][: budget * 4]
    reply.finish_reason = "length"
    reply.tokens = limit


def _reasoning(raw: str, reply: Reply) -> str:
    snippet = " ".join(raw.split()[:12])
    if reply.tool_calls:
        outcome = f"calling {reply.tool_calls[0]['function']['name']} will answer it"
    elif reply.content is None:
        outcome = "I should not answer this"
    else:
        outcome = f"the answer is {reply.content[:60]}"
    return f'The user wrote: "{snippet}". Weighing the wording and the options, {outcome}.'


def _tool_call(
    config: ServerConfig, body: Mapping[str, Any], texts: list[str], raw: str, *, forced: bool
) -> dict[str, Any] | None:
    """The tool call the request asks for, or None to answer in text.

    ``tool_choice`` ``none``: text; a named function or ``required``: a call; ``auto`` (the
    default): a call when the prompt mentions a tool's name, as a model would.
    """
    tools = body.get("tools")
    functions = [
        t["function"]
        for t in (tools if isinstance(tools, list) else [])
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("name")
    ]
    choice = body.get("tool_choice", "auto")
    chosen: Mapping[str, Any] | None = None
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        chosen = next((f for f in functions if f["name"] == wanted), None)
    elif choice != "none" and functions:
        words = set(_NAME_WORD.findall(raw.lower()))
        scores = [len(words & set(_NAME_WORD.findall(f["name"].lower()))) for f in functions]
        best = max(range(len(functions)), key=lambda i: scores[i])
        if scores[best] or choice == "required":
            chosen = functions[best]
    if chosen is None and forced:
        chosen = functions[0] if functions else _DEFAULT_TOOL
    if chosen is None:
        return None
    parameters = chosen.get("parameters")
    if not isinstance(parameters, dict):
        parameters = {"type": "object", "properties": {}}
    arguments = json.dumps(schema_answer(config, parameters, texts, raw), ensure_ascii=False)
    digest = hashlib.sha256(f"{chosen['name']}\x00{raw}".encode()).hexdigest()[:24]
    return {
        "id": f"call_{digest}",
        "type": "function",
        "function": {"name": chosen["name"], "arguments": arguments},
    }


SHAPING_FIELDS = frozenset((
    "tools", "n", "logprobs", "top_logprobs", "max_tokens", "max_completion_tokens", "stream",
    "stream_options",
))  # fmt: skip
"""Request fields that change the answer's shape: without them, no fault and the ``openai``
personality, ``plain_body`` gives the answer."""


def plain_body(
    answer: str,
    *,
    completion_id: str,
    created: int,
    model: str,
    prompt_tokens: int,
    tokens: int | None = None,
) -> dict[str, Any]:
    """The ``chat.completion`` for the common case, built directly because it is the hot path
    of every benchmark and labelling run: the same object ``completion_body`` gives for
    ``plan``'s reply to a request without ``SHAPING_FIELDS``, no fault, personality ``openai``
    (``tokens``: the answer's count when it is not the four-character one)."""
    tokens = max(1, estimate_tokens(answer)) if tokens is None else tokens
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": prompt_tokens + tokens,
        },
    }


def completion_body(
    config: ServerConfig,
    reply: Reply | Sequence[Reply],
    *,
    completion_id: str,
    created: int,
    model: str,
    choices: int,
    prompt_tokens: int,
    top_logprobs: int | None,
) -> dict[str, Any]:
    """The ``chat.completion`` object: ``choices`` copies of ``reply`` (or one choice per
    reply of a sequence), usage for all of them.

    ``top_logprobs`` None: no logprobs asked; otherwise each choice carries
    ``logprobs.content`` with that many alternatives per token.
    """
    replies = [reply] * choices if isinstance(reply, Reply) else list(reply)
    rendered = [_choice(config, one, top_logprobs) for one in replies]
    completion_tokens = sum(one.tokens for one in replies)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if replies[0].reasoning is not None:
        usage["completion_tokens_details"] = {
            "reasoning_tokens": sum(one.reasoning_tokens for one in replies)
        }
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": i, **choice} for i, choice in enumerate(rendered)],
        "usage": usage,
    }
    personality = PERSONALITIES[config.provider]
    if personality.name == "azure":
        body["prompt_filter_results"] = azure_prompt_filter()
    elif personality.name == "openrouter":
        body["provider"] = "OpenAI"
    return body


def _choice(config: ServerConfig, reply: Reply, top_logprobs: int | None) -> dict[str, Any]:
    personality = PERSONALITIES[config.provider]
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.refusal is not None:
        message["refusal"] = reply.refusal
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    if personality.reasoning_field:
        message[personality.reasoning_field] = reply.reasoning
    choice: dict[str, Any] = {"message": message, "finish_reason": reply.finish_reason}
    if top_logprobs is not None:
        choice["logprobs"] = {"content": content_logprobs(reply, top_logprobs), "refusal": None}
    if personality.name == "azure":
        choice["content_filter_results"] = azure_choice_filter(
            reply.finish_reason == "content_filter"
        )
    return choice
