"""The request side of the chat-completions wire format: messages, bodies, token estimates.

What comes back is read in ``answers``.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # the JSON string of a str (C)
from typing import Any

#: Body keys the engine owns; passing them as extra parameters is a mistake. (``stream`` is
#: allowed: a streamed answer is read as a whole one.)
RESERVED_PARAMS = frozenset({"model", "messages", "n"})


class EncodedParams(dict[str, Any]):
    """A run's body parameters, with what every request of the run shares encoded once.

    A ``json_schema`` ``response_format`` can be kilobytes; encoding it again for each row
    cost ``extract()`` a sixth of its throughput. The model and the system message are the
    run's too: a row's body is the run's frame around the row's prompt.
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

    def frame(
        self, model: str, messages: Sequence[Mapping[str, Any]], structured: bool
    ) -> tuple[bytes, bytes] | None:
        """The body around the prompt, encoded once for the run: ``(before, after)`` such
        that ``before + <the prompt as a JSON string> + after`` is the body, for messages
        that end with a plain user message (``{"role": "user", "content": "..."}``) after
        at most a system message; None for messages of another shape (few-shot turns,
        images), whose body is encoded whole."""
        count = len(messages)
        if count == 1:
            key: tuple[object, ...] = (structured, model)
        elif count == 2 and messages[0].get("role") == "system":
            key = (structured, model, *messages[0].items())
        else:
            return None
        last = messages[-1]
        if len(last) != 2 or last.get("role") != "user" or last.get("content").__class__ is not str:
            return None
        frames: dict[tuple[object, ...], tuple[bytes, bytes]] | None = self.__dict__.get("_frames")
        if frames is None:
            frames = self.__dict__["_frames"] = {}
        found = frames.get(key)
        if found is None:
            leading = b"".join(_dumps(dict(message)) + b"," for message in messages[:-1])
            found = frames[key] = (
                b'{"model":%b,"messages":[%b{"role":"user","content":' % (_dumps(model), leading),
                b"}]%b}" % self.fragment(structured=structured),
            )
        return found


@dataclass(slots=True)
class ChatRequest:
    """One row's request: its messages, extra body parameters and a token estimate (a
    value but for ``followers``; not frozen only for the cost of building one per row, as
    ``RowOutcome``).

    A request asks for structured output when its ``params`` hold a ``response_format``.
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

    def body(self, model: str, *, structured: bool = True) -> bytes:
        """The JSON body for ``model``; with ``structured=False``, the variant without
        ``response_format`` (and with ``unstructured_system``, when there is one)."""
        params = self.params
        structured = structured or "response_format" not in params
        messages = self.messages
        if not structured and self.unstructured_system is not None:
            messages = with_system(messages, self.unstructured_system)
        if not isinstance(params, EncodedParams):
            params = EncodedParams(params)
        frame = params.frame(model, messages, structured)
        if frame is None:
            encoded = _dumps(list(messages))
            fragment = params.fragment(structured=structured)
            return b'{"model":%b,"messages":%b%b}' % (_dumps(model), encoded, fragment)
        return frame[0] + encode_basestring(messages[-1]["content"]).encode() + frame[1]


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
