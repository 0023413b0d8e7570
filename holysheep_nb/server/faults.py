"""Faults for the local server (``holysheep_nb.server``).

Everything here decides *how a request fails*: the fault kinds and their probabilities,
the ``{{fault:KIND*N}}`` prompt markers, the OpenAI-style error responses and the three
forms of ``Retry-After``. The rpm / tpm limits of a real provider are in ``limits``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from random import Random

from aiohttp import web

from holysheep_nb.errors import ConfigError

FAULT_KINDS: tuple[str, ...] = (
    "429", "429-date", "429-ms", "500", "502", "503", "504", "501", "400", "401", "403",
    "408", "drop", "hang", "html", "badjson", "nochoices",
)  # fmt: skip
"""Every fault the server can inject, by marker or by rate:

``429`` / ``429-date`` / ``429-ms``: 429 with ``Retry-After`` seconds / an HTTP date /
``retry-after-ms``;
``500 502 503 504 501 400 401 403 408``: that status with an OpenAI-style error body;
``drop``: the connection closes without a response; ``hang``: silent for ``hang_seconds``, then
a normal answer (dropped at once if the server shuts down); ``html``: 200 with an HTML error page;
``badjson``: 200 ``application/json`` that is not JSON; ``nochoices``: 200 JSON without ``choices``.
"""

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


def json_response(
    status: int, payload: object, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response, serialised once as UTF-8 (no ASCII escapes, so Unicode stays readable)."""
    return web.Response(
        status=status,
        body=json.dumps(payload, ensure_ascii=False).encode(),
        content_type="application/json",
        headers=headers,
    )


def error_response(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An error in the OpenAI shape: ``{"error": {"message", "type", "param", "code"}}``."""
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return json_response(status, body, headers)


def unauthorized(authorization: str | None) -> web.Response:
    """401 that echoes the key the client sent, as OpenAI does (the client must redact it)."""
    key = (authorization or "").removeprefix("Bearer ").strip()
    if not key:
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    else:
        message = f"Incorrect API key provided: {key}."
    return error_response(401, message, code="invalid_api_key")


def fault_response(
    kind: str, *, retry_after: float, authorization: str | None, model: str
) -> web.Response:
    """The response for an injected fault (every kind except ``drop`` and ``hang``)."""
    if kind.startswith("429"):
        return error_response(
            429,
            f"Rate limit reached for {model}. Please try again in {decimal_string(retry_after)}s.",
            type_="requests",
            code="rate_limit_exceeded",
            headers=_retry_after_headers(kind, retry_after),
        )
    if kind == "401":
        return unauthorized(authorization)
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
    return error_response(status, message, type_=type_, code=code)


def _retry_after_headers(kind: str, seconds: float) -> dict[str, str]:
    if kind == "429-ms":
        return {"retry-after-ms": decimal_string(seconds * 1000.0)}
    if kind == "429-date":
        # HTTP dates have whole seconds: round the deadline up so the client never retries early.
        return {"Retry-After": formatdate(math.ceil(time.time() + seconds), usegmt=True)}
    return {"Retry-After": decimal_string(seconds)}
