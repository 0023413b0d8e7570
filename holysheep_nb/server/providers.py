"""Provider personalities: the quirks of real chat-completions providers, one table entry each.

A personality changes how the server wraps what it says, and which request options it takes
(a ``json_schema`` it refuses or ignores): otherwise the same request gets the same answer,
wrapped the way that provider wraps it. Shapes were rebuilt from each provider's
public documentation (cited per function) and from public bug reports of their users;
``docs/server.md`` describes them for users of the server.

Length: one short function per thing a provider says (a 404, a 401, a 429, a filter, ...),
each with the source of its wording; split by provider they would repeat the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from holysheep_nb.server.replies import error_response

__all__ = [
    "PERSONALITIES",
    "PROVIDERS",
    "Personality",
    "azure_choice_filter",
    "azure_prompt_filter",
    "missing_model",
    "model_load_failed",
    "model_not_found",
    "moderation",
    "payment_required",
    "quota_exceeded",
    "rate_limited",
    "route_not_found",
    "too_many_in_flight",
    "unauthorized",
]


@dataclass(frozen=True)
class Personality:
    """How one provider dresses its answers.

    ``reasoning_field``: the message field that carries the model's reasoning text
    (``reasoning_content`` on DeepSeek, ``reasoning`` on OpenRouter), or None.
    ``think``: reasoning inline in ``content`` as ``<think>...</think>`` (``paired``) or with
    only the closing tag (``closing``, when the chat template opened it), or None.
    ``response_format``: what it does with a ``json_schema`` response format: ``strict``
    (honours it, and refuses a ``strict: true`` schema that breaks strict mode's rules:
    ``checks``), ``honoured`` (honours it, no checks), ``refused`` (a 400, DeepSeek),
    ``ignored`` (accepts it and answers as the messages ask: Anthropic's OpenAI SDK
    compatibility) or ``response_schema`` (a gateway that translates it into a Gemini-style
    ``response_schema`` and refuses any ``additionalProperties`` in it).
    """

    name: str
    summary: str
    reasoning_field: str | None = None
    think: Literal["paired", "closing"] | None = None
    response_format: Literal["strict", "honoured", "refused", "ignored", "response_schema"] = (
        "honoured"
    )


PERSONALITIES: dict[str, Personality] = {
    p.name: p
    for p in (
        Personality(
            "openai",
            "OpenAI's API: the default; refuses a strict schema that breaks strict mode's rules",
            response_format="strict",
        ),
        Personality(
            "azure",
            "Azure OpenAI: deployment path, ?api-version=, api-key header, Azure errors",
            response_format="strict",
        ),
        Personality(
            "openrouter",
            "OpenRouter: {code, message, metadata} errors, 'reasoning' on messages",
            reasoning_field="reasoning",
        ),
        Personality(
            "deepseek",
            "DeepSeek: 'reasoning_content' on messages, 400 for a json_schema response_format",
            reasoning_field="reasoning_content",
            response_format="refused",
        ),
        Personality(
            "ollama", "Ollama: <think>...</think> inline before the answer", think="paired"
        ),
        Personality(
            "vllm",
            "vLLM without a reasoning parser: only the closing </think> inline; top-level "
            "{object: error, message} errors",
            think="closing",
        ),
        Personality(
            "gemini",
            "Gemini's OpenAI-compatible endpoint: errors as a JSON list of Google error "
            "objects; its rate-limit 429 is RESOURCE_EXHAUSTED with a RetryInfo retryDelay",
        ),
        Personality(
            "anthropic",
            "Claude's OpenAI SDK compatibility: response_format accepted and ignored",
            response_format="ignored",
        ),
        Personality(
            "gateway",
            "a gateway before a Gemini-style backend: a json_schema with additionalProperties "
            "is a 400 about generation_config.response_schema",
            response_format="response_schema",
        ),
    )
}
PROVIDERS: tuple[str, ...] = tuple(PERSONALITIES)


def route_not_found(provider: str, request: web.Request) -> web.Response:
    """404 for a path the server does not serve: OpenAI's "Invalid URL", Azure's gateway
    "Resource not found"."""
    if provider == "azure":
        return error_response(404, "Resource not found", provider=provider)
    message = f"Invalid URL ({request.method} {request.path})"
    return error_response(404, message, provider=provider)


def missing_model(provider: str) -> web.Response:
    """400 for a request without ``model`` (OpenAI's wording)."""
    return error_response(400, "you must provide a model parameter", provider=provider)


def model_not_found(provider: str, model: str) -> web.Response:
    """A model (or Azure deployment) outside the configured list, as each provider says it.

    OpenAI: 404 ``model_not_found``; Azure: 404 ``DeploymentNotFound``; OpenRouter: 400
    "is not a valid model ID"; DeepSeek: 400 "Model Not Exist"; Ollama and vLLM: 404.
    """
    if provider == "azure":
        message = (
            "The API deployment for this resource does not exist. If you created the deployment "
            "within the last 5 minutes, please wait a moment and try again."
        )
        return error_response(404, message, provider=provider, code="DeploymentNotFound")
    if provider == "openrouter":
        return error_response(400, f"{model} is not a valid model ID", provider=provider)
    if provider == "deepseek":
        return error_response(
            400, "Model Not Exist", provider=provider, code="invalid_request_error"
        )
    if provider == "ollama":
        message = f'model "{model}" not found, try pulling it first'
        return error_response(404, message, provider=provider, type_="api_error")
    message = f"The model `{model}` does not exist or you do not have access to it."
    return error_response(404, message, provider=provider, code="model_not_found")


def model_load_failed(provider: str, model: str) -> web.Response:
    """500 from a local server that cannot load its model, to every request.

    Ollama (users' reports of a model bigger than the machine): "model requires more system
    memory ... than is available"; vLLM: its top-level error; others: a server error naming
    the model.
    """
    if provider == "ollama":
        message = "model requires more system memory (9.2 GiB) than is available (3.8 GiB)"
        return error_response(500, message, provider=provider, type_="api_error")
    message = f"The model {model} could not be loaded: CUDA out of memory."
    return error_response(500, message, provider=provider, type_="InternalServerError")


def unauthorized(provider: str, sent: str | None) -> web.Response:
    """401 for a wrong or missing key.

    OpenAI echoes the key it refused (the client must redact it); Azure answers its gateway's
    "Access denied" without the key.
    """
    if provider == "azure":
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
            "provide a valid key for an active subscription and use a correct regional API "
            "endpoint for your resource."
        )
        return error_response(401, message, provider=provider, code="401")
    key = (sent or "").removeprefix("Bearer ").strip()
    if not key:
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    else:
        message = f"Incorrect API key provided: {key}."
    return error_response(401, message, provider=provider, code="invalid_api_key")


def quota_exceeded(provider: str) -> web.Response:
    """429 ``insufficient_quota``: out of money, not out of rate; no Retry-After, never clears."""
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors."
    )
    return error_response(
        429, message, provider=provider, type_="insufficient_quota", code="insufficient_quota"
    )


def rate_limited(
    provider: str, message: str, wait: float, headers: dict[str, str], kind: str = "requests"
) -> web.Response:
    """A rate-limit 429: ``rate_limit_exceeded`` of type ``kind`` (``requests`` or ``tokens``)
    with ``headers`` (Retry-After, the ``x-ratelimit-*`` budget) in OpenAI's shape.

    Gemini (its OpenAI-compatible endpoint, as users' bug reports show it) sends no header:
    a list-shaped ``RESOURCE_EXHAUSTED`` error worded as a spent quota ("You exceeded your
    current quota, please check your plan and billing details"), whose ``details`` name the
    per-minute quota (``QuotaFailure``) and the wait (``RetryInfo`` ``retryDelay``, a
    protobuf duration such as ``"7s"``). A minute's wait clears it.
    """
    if provider == "gemini":
        delay = f"{max(0.001, wait):.3f}".rstrip("0").rstrip(".") + "s"
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/"
                        "generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    }
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
        ]
        gemini = (
            "You exceeded your current quota, please check your plan and billing details. "
            "For more information on this error, head to: https://ai.google.dev/gemini-api/"
            "docs/rate-limits."
        )
        return error_response(429, gemini, provider=provider, extra={"details": details})
    return error_response(
        429,
        message,
        provider=provider,
        type_=kind,
        code="rate_limit_exceeded",
        headers=headers,
    )


def too_many_in_flight(provider: str) -> web.Response:
    """429 from a provider that caps the requests it answers at once, with no header to say
    how many or for how long (``ServerConfig.max_in_flight``)."""
    return error_response(
        429,
        "Too many concurrent requests for this model. Please retry after a short wait.",
        provider=provider,
        type_="requests",
        code="rate_limit_exceeded",
    )


def payment_required(provider: str) -> web.Response:
    """402 out of credits (OpenRouter's wording, from its error docs)."""
    message = (
        "Insufficient credits. Add more using https://openrouter.ai/settings/credits"
        if provider == "openrouter"
        else "Insufficient credits: add credits to your account and retry."
    )
    return error_response(
        402, message, provider=provider, type_="insufficient_credits", code="insufficient_credits"
    )


def moderation(provider: str, model: str, text: str) -> web.Response:
    """The input was flagged by moderation.

    OpenRouter (error docs, "Moderation Errors"): 403 with ``metadata`` ``reasons``,
    ``flagged_input`` (the flagged text, cut to 100 characters), ``provider_name`` and
    ``model_slug``. Azure: 400 ``content_filter`` with an ``innererror`` naming the
    ``ResponsibleAIPolicyViolation`` and its ``content_filter_result``: every category with
    ``filtered`` and ``severity``, the one the prompt names (else ``violence``) filtered at
    ``medium``. Others: 403 in
    OpenAI's shape with code ``content_policy_violation``.
    """
    reasons = ["harassment"]
    if provider == "azure":
        # The category the prompt names ("hate", "self_harm", ...), else violence, at medium
        # severity, as in the Azure content filtering reference.
        words = text.lower().replace("-", "_").split()
        category = next((name for name in _CATEGORIES if name in words), "violence")
        message = (
            "The response was filtered due to the prompt triggering Azure OpenAI's content "
            "management policy. Please modify your prompt and retry."
        )
        extra = {
            "param": "prompt",
            "type": None,
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": _filter_results(category, "medium"),
            },
        }
        return error_response(400, message, provider=provider, code="content_filter", extra=extra)
    flagged = text if len(text) <= 100 else text[:100] + "..."
    message = (
        f"{model} requires moderation on OpenAI. Your input was flagged for "
        f'"{reasons[0]}". No credits were charged.'
    )
    metadata = {
        "reasons": reasons,
        "flagged_input": flagged,
        "provider_name": "OpenAI",
        "model_slug": model,
    }
    if provider == "openrouter":
        return error_response(403, message, provider=provider, extra=metadata)
    return error_response(
        403, message, provider=provider, code="content_policy_violation", param="messages"
    )


_CATEGORIES = ("hate", "self_harm", "sexual", "violence")


def _filter_results(flagged: str | None, severity: str = "high") -> dict[str, Any]:
    return {
        name: {"filtered": name == flagged, "severity": severity if name == flagged else "safe"}
        for name in _CATEGORIES
    }


def azure_prompt_filter() -> list[dict[str, Any]]:
    """Azure's ``prompt_filter_results``: every category safe, no jailbreak detected."""
    results: dict[str, Any] = _filter_results(None)
    results["jailbreak"] = {"filtered": False, "detected": False}
    return [{"prompt_index": 0, "content_filter_results": results}]


def azure_choice_filter(filtered: bool) -> dict[str, Any]:
    """A choice's ``content_filter_results``; ``filtered``: the answer was withheld (violence)."""
    return _filter_results("violence" if filtered else None)
