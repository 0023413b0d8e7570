"""The chat-completions wire format: request bodies in, answer text or a readable error out."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from holysheep_nb.validation import is_whole

#: Body keys the engine owns; passing them as extra parameters is a mistake.
RESERVED_PARAMS = frozenset({"model", "messages", "stream", "n"})

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")
_MAX_DETAIL = 200


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One row's request: its messages, extra body parameters and a token estimate."""

    messages: Sequence[Mapping[str, str]]
    params: Mapping[str, Any] = field(default_factory=dict)
    estimated_tokens: int = 0

    def body(self, model: str) -> bytes:
        """The JSON body for ``model``."""
        payload: dict[str, Any] = {"model": model, "messages": list(self.messages)}
        payload.update(self.params)
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def invalid_text(text: str) -> str | None:
    """Why ``text`` cannot be sent as UTF-8 (a lone surrogate from a bad decode), or None.

    A prompt row gets this as its error rather than a silently altered prompt; the cache
    skips answers that fail it (SQLite stores only valid UTF-8).
    """
    if text.isascii():  # O(1) in CPython: most prompts skip the encoding below
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode: lone surrogate {text[exc.start]!r} at position {exc.start}"
    return None


def build_messages(prompt: str, system: str | None) -> tuple[dict[str, str], ...]:
    """The message list for one prompt, with the system message first when given."""
    if system:
        return ({"role": "system", "content": system}, {"role": "user", "content": prompt})
    return ({"role": "user", "content": prompt},)


def estimate_tokens(messages: Sequence[Mapping[str, str]], max_tokens: int | None = None) -> int:
    """A cheap upper-ish estimate of a request's tokens (4 characters a token, 4 per message).

    Used before the call to charge the tokens-per-minute bucket; corrected from ``usage``.
    """
    prompt = sum((len(m.get("content") or "") + 3) // 4 + 4 for m in messages)
    return prompt + (max_tokens if max_tokens else 0)


@dataclass(frozen=True, slots=True)
class Answer:
    """A parsed successful completion."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None


class MalformedAnswer(Exception):
    """A 2xx body that is not a chat completion; the message says what was wrong."""


def parse_answer(raw: bytes) -> Answer:
    """Read the assistant text and usage from a 2xx body, or raise ``MalformedAnswer``."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedAnswer(f"not JSON: {summarise_body(raw)}") from None
    if not isinstance(data, dict):
        raise MalformedAnswer(f"expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        error = provider_message(data)
        raise MalformedAnswer(f"no choices in answer{': ' + error if error else ''}")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        reason = choices[0].get("finish_reason")
        raise MalformedAnswer(f"no message content (finish_reason={reason!r})")
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return Answer(
        content,
        _int_or_none(usage.get("prompt_tokens")),
        _int_or_none(usage.get("completion_tokens")),
    )


def provider_message(data: object) -> str:
    """The ``error.message`` of an OpenAI-style error object, or ''."""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return _one_line(error["message"])
        if isinstance(error, str):
            return _one_line(error)
    return ""


def error_detail(raw: bytes) -> str:
    """One short line saying what an error body said (provider message, HTML title, text)."""
    try:
        message = provider_message(json.loads(raw))
    except (UnicodeDecodeError, json.JSONDecodeError):
        message = ""
    return message or summarise_body(raw)


def summarise_body(raw: bytes) -> str:
    """A short description of a body that is not the JSON we wanted."""
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return "empty body"
    if text[:1] == "<":
        title = _TITLE.search(text)
        return f"HTML page{': ' + _one_line(title.group(1)) if title else ''}"
    return _one_line(text)


def _one_line(text: str) -> str:
    line = _SPACES.sub(" ", text).strip()
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 1] + "…"


def _int_or_none(value: object) -> int | None:
    return value if is_whole(value) else None
