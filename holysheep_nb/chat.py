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


class EncodedParams(dict[str, Any]):
    """A run's body parameters, with their JSON encoded once for every request of the run.

    A ``json_schema`` ``response_format`` can be kilobytes; encoding it again for each row
    cost ``extract()`` a sixth of its throughput.
    """

    def fragment(self, *, structured: bool) -> bytes:
        """``,"key":value,...`` for the body (without ``response_format`` unless
        ``structured``), or ``b""`` when there is nothing to add."""
        cache: dict[bool, bytes] = self.__dict__.setdefault("_fragments", {})
        encoded = cache.get(structured)
        if encoded is None:
            params = {k: v for k, v in self.items() if structured or k != "response_format"}
            text = _dumps(params)[1:-1]
            encoded = cache[structured] = (b"," + text) if text else b""
        return encoded


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One row's request: its messages, extra body parameters and a token estimate.

    ``unstructured_system`` is the system message to send instead, without
    ``response_format``, once the server has said it does not support structured output (the
    label set or the schema is then described in it); None to keep the usual one.
    ``followers`` are rows that share this exact request (see the engine).
    """

    messages: Sequence[Mapping[str, str]]
    params: Mapping[str, Any] = field(default_factory=dict)
    estimated_tokens: int = 0
    unstructured_system: str | None = None
    #: Rows whose request is identical to this one: they get its outcome when it comes back,
    #: and are never sent themselves. The caller may add to it until then.
    followers: list[Hashable] = field(default_factory=list, compare=False)

    @property
    def structured(self) -> bool:
        """True when the request asks for structured output (``response_format``)."""
        return "response_format" in self.params

    def body(self, model: str, *, structured: bool = True) -> bytes:
        """The JSON body for ``model``; with ``structured=False``, the variant without
        ``response_format`` (and with ``unstructured_system``, when there is one)."""
        structured = structured or not self.structured
        messages = self.messages
        if not structured and self.unstructured_system is not None:
            messages = build_messages(messages[-1]["content"], self.unstructured_system)
        params = self.params
        if isinstance(params, EncodedParams):
            fragment = params.fragment(structured=structured)
        else:
            fragment = EncodedParams(params).fragment(structured=structured)
        return b'{"model":%b,"messages":%b%b}' % (_dumps(model), _dumps(list(messages)), fragment)


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


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
