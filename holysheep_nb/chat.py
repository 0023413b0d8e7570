"""The request side of the chat-completions wire format: messages, bodies, token estimates.

What comes back is read in ``answers``.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Body keys the engine owns; passing them as extra parameters is a mistake. (``stream`` is
#: allowed: a streamed answer is read as a whole one.)
RESERVED_PARAMS = frozenset({"model", "messages", "n"})


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One row's request: its messages, extra body parameters and a token estimate.

    ``unstructured_messages`` are the messages to send instead, without ``response_format``,
    once the server has said it does not support structured output (the label set or the
    schema is then described in the system message); None when there is no such variant.
    ``followers`` are rows that share this exact request (see the engine).
    """

    messages: Sequence[Mapping[str, str]]
    params: Mapping[str, Any] = field(default_factory=dict)
    estimated_tokens: int = 0
    unstructured_messages: Sequence[Mapping[str, str]] | None = None
    #: Rows whose request is identical to this one: they get its outcome when it comes back,
    #: and are never sent themselves. The caller may add to it until then.
    followers: list[Hashable] = field(default_factory=list, compare=False)

    @property
    def structured(self) -> bool:
        """True when the request asks for structured output (``response_format``)."""
        return "response_format" in self.params

    def body(self, model: str, *, structured: bool = True) -> bytes:
        """The JSON body for ``model``; with ``structured=False``, the variant without
        ``response_format``."""
        if structured or not self.structured:
            payload: dict[str, Any] = {"model": model, "messages": list(self.messages)}
            payload.update(self.params)
        else:
            messages = self.unstructured_messages or self.messages
            payload = {"model": model, "messages": list(messages)}
            payload.update((k, v) for k, v in self.params.items() if k != "response_format")
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
