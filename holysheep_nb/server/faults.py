"""Faults for the local server (``holysheep_nb.server``).

Everything here decides *how a request fails*: the fault kinds and their probabilities,
the ``{{fault:KIND*N}}`` prompt markers, the error responses (in the shape of the server's
provider personality, ``providers``) and the forms of ``Retry-After``. The rpm / tpm limits
of a real provider are in ``limits``; the faults that change an answer's shape rather than
its status (``SHAPE_FAULTS``) are applied by ``completion``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from random import Random

from aiohttp import web

from holysheep_nb.errors import ConfigError
from holysheep_nb.server.providers import (
    model_load_failed,
    moderation,
    payment_required,
    quota_exceeded,
    rate_limited,
    unauthorized,
)
from holysheep_nb.server.replies import error_response, json_response

LONG_RETRY_AFTER = 3600.0
"""Seconds a ``429-long`` fault asks the client to wait."""

FAULT_HELP: dict[str, str] = {
    "429": "429 rate_limit_exceeded with Retry-After in seconds (retry_after)",
    "429-date": "429 with Retry-After as an HTTP date",
    "429-ms": "429 with retry-after-ms",
    "429-long": f"429 with Retry-After: {LONG_RETRY_AFTER:g}, far beyond any sane wait",
    "429-quota": "429 insufficient_quota without Retry-After: out of money, never clears",
    "402": "402 out of credits",
    "moderation": "the input is flagged: 403 with the flagged input (Azure: 400 content_filter)",
    "500": "500 server_error",
    "500-load": "500 as a local server that cannot load its model says it (Ollama, vLLM)",
    "502": "502 server_error",
    "503": "503 server_error (overloaded)",
    "504": "504 server_error",
    "501": "501 server_error",
    "400": "400 invalid_request_error",
    "401": "401 invalid_api_key, echoing the key sent",
    "403": "403 permission_denied",
    "408": "408 timeout",
    "drop": "the connection closes without a response",
    "hang": "silent for hang_seconds, then a normal answer (dropped at shutdown)",
    "html": "200 with an HTML error page",
    "badjson": "200 application/json that is not JSON",
    "nochoices": "200 JSON without choices",
    "refusal": "200, content null and message.refusal set",
    "content-filter": "200, content null and finish_reason content_filter",
    "length": "200, the answer cut short and finish_reason length",
    "length-empty": 'like length, with content ""',
    "length-null": "like length, with content null (the budget went on reasoning)",
    "tools": "200, a tool call (finish_reason tool_calls) even if no tool was offered",
    "think": "200, <think>reasoning</think> inline before the answer",
    "think-closing": "200, reasoning and only the closing </think> before the answer",
    "sse": "200 as a server-sent event stream although stream was not asked",
    "json-done": "200 JSON answer followed by the stream terminator data: [DONE]",
    "stream-error": "200 stream (asked or not) that breaks off halfway with an error event",
    "stale": "200, then the next request on that keep-alive connection is dropped unread",
}
"""Every fault the server can inject, by ``{{fault:KIND*N}}`` marker or by rate, and what it does.

The error bodies follow the server's provider personality (``providers``). The kinds from
``refusal`` on still answer 200: they change the shape of the answer, not its status.
"""
FAULT_KINDS: tuple[str, ...] = tuple(FAULT_HELP)
SHAPE_FAULTS: frozenset[str] = frozenset(list(FAULT_KINDS)[FAULT_KINDS.index("refusal") :])
"""The kinds that change the answer rather than replace it with an error."""

_MARKER = re.compile(r"\{\{fault:([a-z0-9-]+)(?:\*(\d+))?\}\}")

_STATUS_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_request_error", "Invalid request (injected fault).", None),
    403: ("permission_denied", "You are not allowed to sample from this model.", None),
    408: ("timeout", "Request timed out.", None),
    500: ("server_error", "The server had an error while processing your request.", None),
    501: ("server_error", "Not implemented.", None),
    502: ("server_error", "Bad gateway.", None),
    503: ("server_error", "The engine is currently overloaded, please try again later.", None),
    504: ("server_error", "Gateway timeout.", None),
}

_HTML_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


@dataclass(frozen=True)
class Faults:
    """Probability of injecting each fault kind into a request, e.g. ``Faults({"429": 0.02})``.

    At most one fault is drawn per request, so the probabilities must sum to at most 1.
    """

    rates: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.rates) - set(FAULT_KINDS))
        if unknown:
            raise ConfigError(f"unknown fault kind(s) {unknown}; known: {', '.join(FAULT_KINDS)}")
        for kind, rate in self.rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"fault rate for {kind!r} must be in [0, 1], got {rate!r}")
        if sum(self.rates.values()) > 1.0 + 1e-9:
            raise ConfigError(
                f"fault rates sum to {sum(self.rates.values()):g}; at most one fault is drawn "
                "per request, so they must sum to at most 1"
            )
        ordered = {k: float(self.rates[k]) for k in FAULT_KINDS if self.rates.get(k)}
        object.__setattr__(self, "rates", ordered)

    def __hash__(self) -> int:
        return hash(tuple(self.rates.items()))

    def draw(self, rng: Random) -> str | None:
        """Pick the fault for one request (or None) with one draw from ``rng``."""
        if not self.rates:
            return None
        point = rng.random()
        for kind, rate in self.rates.items():
            point -= rate
            if point < 0.0:
                return kind
        return None


def parse_marker(text: str) -> tuple[str, str | None, int | None]:
    """Split ``text`` into (text without markers, fault kind, attempts to fail or None=all)."""
    match = _MARKER.search(text)
    if match is None:
        return text, None, None
    times = int(match.group(2)) if match.group(2) is not None else None
    return _MARKER.sub("", text).strip(), match.group(1), times


def decimal_string(seconds: float) -> str:
    """Format a delay as a header value: ``"1"`` when whole, else a decimal like ``"0.05"``."""
    if float(seconds).is_integer():
        return str(int(seconds))
    return f"{seconds:.6f}".rstrip("0").rstrip(".")


def fault_response(
    kind: str,
    *,
    provider: str,
    retry_after: float,
    authorization: str | None,
    model: str,
    text: str,
) -> web.Response:
    """The response for an injected error fault (every kind but ``drop``, ``hang`` and the
    ``SHAPE_FAULTS``); ``text`` is the prompt, quoted by a moderation error."""
    if kind == "429-quota":
        return quota_exceeded(provider)
    if kind.startswith("429"):
        wait = LONG_RETRY_AFTER if kind == "429-long" else retry_after
        return rate_limited(
            provider,
            f"Rate limit reached for {model}. Please try again in {decimal_string(wait)}s.",
            wait,
            _retry_after_headers(kind, wait),
        )
    if kind == "401":
        return unauthorized(provider, authorization)
    if kind == "402":
        return payment_required(provider)
    if kind == "moderation":
        return moderation(provider, model, text)
    if kind == "500-load":
        return model_load_failed(provider, model)
    if kind == "html":
        return web.Response(status=200, body=_HTML_PAGE, content_type="text/html", charset="utf-8")
    if kind == "badjson":
        body = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"ind'
        return web.Response(status=200, body=body, content_type="application/json")
    if kind == "nochoices":
        return json_response(
            200,
            {"id": "chatcmpl-nochoices", "object": "chat.completion", "model": model},
        )
    status = int(kind)
    type_, message, code = _STATUS_ERRORS[status]
    return error_response(status, message, provider=provider, type_=type_, code=code)


def _retry_after_headers(kind: str, seconds: float) -> dict[str, str]:
    if kind == "429-ms":
        return {"retry-after-ms": decimal_string(seconds * 1000.0)}
    if kind == "429-date":
        # HTTP dates have whole seconds: round the deadline up so the client never retries early.
        return {"Retry-After": formatdate(math.ceil(time.time() + seconds), usegmt=True)}
    return {"Retry-After": decimal_string(seconds)}
