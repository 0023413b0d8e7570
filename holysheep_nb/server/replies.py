"""JSON answers and error bodies in the shape of each provider personality.

Every error the server sends, on every route and status, is a JSON object under ``"error"``.
Its fields follow the personality (``docs/server.md`` lists them):

- ``openai``, ``deepseek``, ``ollama``, ``anthropic``, ``gateway``: ``{"error": {"message",
  "type", "param", "code"}}``, as in OpenAI's API reference (error codes page).
- ``vllm``: the same fields at the top level beside ``"object": "error"`` (vLLM's
  ``ErrorResponse``), with ``code`` the HTTP status.
- ``gemini``: Google's error object inside a JSON list, ``[{"error": {"code": <status>,
  "message", "status": <Google status name>, "details"?}}]``, as Gemini's OpenAI-compatible
  endpoint sends it (``details`` carries a ``google.rpc.RetryInfo`` on a 429).
- ``azure``: ``{"error": {"code", "message"}}`` as Azure's gateway sends for 401 / 404 / 429,
  plus whatever a fault adds (``innererror`` for a content filter), as in the Azure OpenAI
  REST reference.
- ``openrouter``: ``{"error": {"code": <HTTP status>, "message", "metadata"?}}``, as on
  OpenRouter's error docs page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

__all__ = ["GOOGLE_STATUS", "error_body", "error_response", "json_response"]

#: Google's status names for the HTTP statuses (google.rpc.Code, as Google's APIs map them).
GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


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


def error_body(
    status: int,
    message: str,
    *,
    provider: str = "openai",
    type_: str | None = "invalid_request_error",
    code: str | int | None = None,
    param: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Any:
    """The error document for one error, in ``provider``'s shape (module docstring).

    ``extra`` is merged into the error object (``innererror`` for Azure, ``details`` for
    Gemini); for OpenRouter it becomes ``metadata``, the only place OpenRouter puts details.
    """
    error: dict[str, Any]
    if provider == "gemini":
        error = {"code": status, "message": message, "status": GOOGLE_STATUS.get(status, "UNKNOWN")}
        if extra:
            error.update(extra)
        return [{"error": error}]
    if provider == "vllm":
        return {
            "object": "error",
            "message": message,
            "type": type_,
            "param": param,
            "code": status,
        }
    if provider == "openrouter":
        error = {"code": status, "message": message}
        if extra:
            error["metadata"] = dict(extra)
        return {"error": error}
    if provider == "azure":
        error = {"code": code if code is not None else str(status), "message": message}
    else:
        error = {"message": message, "type": type_, "param": param, "code": code}
    if extra:
        error.update(extra)
    return {"error": error}


def error_response(
    status: int,
    message: str,
    *,
    provider: str = "openai",
    type_: str | None = "invalid_request_error",
    code: str | int | None = None,
    param: str | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An error response: ``error_body`` with ``status`` and ``headers``."""
    body = error_body(
        status, message, provider=provider, type_=type_, code=code, param=param, extra=extra
    )
    return json_response(status, body, headers)
