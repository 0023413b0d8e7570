"""Whether a chat request is acceptable, as a provider would judge it before answering.

``check_request`` returns the error response a real provider would send, or None. The checks
follow OpenAI's chat-completions reference (``messages`` non-empty, ``model`` required, ``n``
1..128, ``top_logprobs`` 0..20 and only with ``logprobs``, ``max_tokens`` /
``max_completion_tokens`` at least 1), the server's key and model list, and the personality's
own rules (Azure's ``api-key`` header, DeepSeek's refusal of ``json_schema``). Only the
fields a request carries are inspected, so a plain request pays for a few dict lookups.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from holysheep_nb.server.config import ServerConfig
from holysheep_nb.server.providers import missing_model, model_not_found, unauthorized
from holysheep_nb.server.replies import error_response

__all__ = ["check_request"]

# (field, lowest, highest) of the integer options OpenAI validates.
_INTEGER_RANGES = (
    ("n", 1, 128),
    ("top_logprobs", 0, 20),
    ("max_tokens", 1, None),
    ("max_completion_tokens", 1, None),
)

_CHECKED = frozenset(
    ("n", "top_logprobs", "max_tokens", "max_completion_tokens", "logprobs", "response_format")
)


def check_request(
    config: ServerConfig,
    body: object,
    headers: Mapping[str, str],
    deployment: str | None,
) -> web.Response | None:
    """The error for an unacceptable request (bad body, key, model or option), else None.

    ``deployment`` is the Azure deployment from the URL (Azure's model), else None.
    """
    provider = config.provider
    messages = body.get("messages") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) for m in messages)
    ):
        return error_response(
            400, "'messages' must be a non-empty array of message objects.", provider=provider
        )
    if config.api_key is not None or (provider == "azure" and config.azure_ad_token is not None):
        if provider == "azure":
            # Azure takes a resource key (api-key) or a Microsoft Entra ID token (Bearer).
            sent = headers.get("api-key")
            bearer = headers.get("Authorization")
            accepted = (config.api_key is not None and sent == config.api_key) or (
                config.azure_ad_token is not None and bearer == f"Bearer {config.azure_ad_token}"
            )
        else:
            sent = headers.get("Authorization")
            accepted = sent == f"Bearer {config.api_key}"
        if not accepted:
            return unauthorized(provider, sent)
    model = deployment or body.get("model")
    if not model or not isinstance(model, str):
        return missing_model(provider)
    if config.models is not None and model not in config.models:
        return model_not_found(provider, model)
    return _check_options(body, provider)


def _check_options(body: Mapping[str, Any], provider: str) -> web.Response | None:
    if _CHECKED.isdisjoint(body):
        return None
    for name, low, high in _INTEGER_RANGES:
        if name in body:
            value = body[name]
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or value < low
                or (high is not None and value > high)
            ):
                bound = f"between {low} and {high}" if high is not None else f"at least {low}"
                return error_response(
                    400,
                    f"Invalid '{name}': expected an integer {bound}, got {value!r}.",
                    provider=provider,
                    param=name,
                    code=_range_code(value, low),
                )
    if body.get("top_logprobs") and body.get("logprobs") is not True:
        return error_response(
            400,
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true to use it.",
            provider=provider,
            param="top_logprobs",
        )
    response_format = body.get("response_format")
    if (
        provider == "deepseek"
        and isinstance(response_format, dict)
        and response_format.get("type") == "json_schema"
    ):
        # DeepSeek's API takes only "text" and "json_object" (its chat-completion reference).
        return error_response(
            400,
            "This response_format type is unavailable now",
            provider=provider,
            code="invalid_request_error",
        )
    return None


def _range_code(value: object, low: int) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return "invalid_type"
    return "integer_below_min_value" if value < low else "integer_above_max_value"
