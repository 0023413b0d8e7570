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

    def head(self, model: str, messages: Sequence[Mapping[str, str]]) -> bytes | None:
        """``{"model":...,"messages":[`` with the messages before the prompt, encoded once
        for the run (its model and system message are the same in every request), or None
        for messages of another shape (then the whole body is encoded)."""
        if len(messages) == 1:
            key: tuple[object, ...] = (model,)
        elif len(messages) == 2 and messages[0].get("role") == "system":
            key = (model, *messages[0].items())
        else:
            return None
        heads: dict[tuple[object, ...], bytes] = self.__dict__.setdefault("_heads", {})
        encoded = heads.get(key)
        if encoded is None:
            leading = b"".join(_dumps(dict(message)) + b"," for message in messages[:-1])
            encoded = heads[key] = b'{"model":%b,"messages":[%b' % (_dumps(model), leading)
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
            messages = with_system(messages, self.unstructured_system)
        params = self.params
        if not isinstance(params, EncodedParams):
            params = EncodedParams(params)
        fragment = params.fragment(structured=structured)
        head = params.head(model, messages)
        if head is None:
            encoded = _dumps(list(messages))
            return b'{"model":%b,"messages":%b%b}' % (_dumps(model), encoded, fragment)
        return b"%b%b]%b}" % (head, _dumps(messages[-1]), fragment)


#: One encoder for every body: ``json.dumps`` with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(value: object) -> bytes:
    return _ENCODER.encode(value).encode()


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


#: A request's messages; a user message's ``content`` is a string, or a list of content parts
#: when it carries images (``holysheep_nb.images``).
Messages = tuple[Mapping[str, Any], ...]


def with_system(messages: Sequence[Mapping[str, str]], system: str) -> Messages:
    """``messages`` with ``system`` as their system message (the few-shot turns kept)."""
    rest = messages[1:] if messages and messages[0].get("role") == "system" else messages
    return ({"role": "system", "content": system}, *rest)


def build_messages(prompt: str, system: str | None) -> tuple[dict[str, str], ...]:
    """The message list for one prompt, with the system message first when given."""
    if system:
        return ({"role": "system", "content": system}, {"role": "user", "content": prompt})
    return ({"role": "user", "content": prompt},)


def estimate_tokens(messages: Sequence[Mapping[str, Any]], max_tokens: int | None = None) -> int:
    """A cheap upper-ish estimate of a request's tokens (4 characters a token, 4 per message).

    Used before the call to charge the tokens-per-minute bucket; corrected from ``usage``.
    """
    prompt = 0
    for message in messages:
        content = message.get("content") or ""
        length = len(content) if isinstance(content, str) else _parts_length(content)
        prompt += (length + 3) // 4 + 4
    return prompt + (max_tokens if max_tokens else 0)


def _parts_length(content: object) -> int:
    """Characters of a content array's text parts (an image part's tokens are counted by
    ``holysheep_nb.image_files``)."""
    if not isinstance(content, list):
        return 0
    return sum(len(part.get("text") or "") for part in content if isinstance(part, dict))
