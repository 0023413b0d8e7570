"""Whether a chat request is acceptable, as a provider would judge it before answering.

``check_request`` returns the error response a real provider would send, or None. The checks
follow OpenAI's chat-completions reference (``messages`` non-empty, ``model`` required, ``n``
1..128, ``top_logprobs`` 0..20 and only with ``logprobs``, ``max_tokens`` /
``max_completion_tokens`` at least 1, content arrays of text and image parts: ``images``),
the server's key and model list, and the personality's own rules (Azure's ``api-key``
header, DeepSeek's refusal of ``json_schema``, a gateway's refusal of ``additionalProperties``
in a Gemini-style ``response_schema``, and strict mode's schema rules on the ``openai`` and
``azure`` personalities). Only the fields a request carries are inspected, so a plain
request pays for a few dict lookups.

Strict mode's rules (OpenAI's Structured Outputs guide, "Supported schemas"; openai-python's
``to_strict_json_schema`` builds schemas that keep them): the root is an object; every
object has ``additionalProperties: false`` and lists every property in ``required``; a
``$ref`` stands alone (no ``description`` or other keyword beside it); at most 10 levels of
nesting. A ``strict: true`` schema that breaks one is a 400 naming where, as OpenAI words it
("Invalid schema for response_format 'name': In context=('properties', 'customer'), ...").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from holysheep_nb.server.config import ServerConfig
from holysheep_nb.server.images import content_problem
from holysheep_nb.server.providers import (
    PERSONALITIES,
    missing_model,
    model_not_found,
    unauthorized,
)
from holysheep_nb.server.replies import error_response

__all__ = ["check_request", "strict_problem"]

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
    problem = content_problem(messages)
    if problem is not None:
        return error_response(400, problem[0], provider=provider, param=problem[1], code=problem[2])
    model = deployment or body.get("model")
    if not model or not isinstance(model, str):
        return missing_model(provider)
    if config.models is not None and model not in config.models:
        return model_not_found(provider, model)
    if _unknown_sim_model(config, model):
        return model_not_found(provider, model)
    return _check_options(body, provider)


def _unknown_sim_model(config: ServerConfig, model: str) -> bool:
    """True for a ``sim-`` name the server does not simulate (``sim-lage``): answering it
    with the rule-based answers would pass a typo off as the model of known quality."""
    listed = config.models is not None and model in config.models
    return model.startswith("sim-") and config.sim_model(model) is None and not listed


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
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        return _check_schema(response_format, provider)
    return None


def _check_schema(response_format: Mapping[str, Any], provider: str) -> web.Response | None:
    """The personality's answer to a ``json_schema`` response format it will not take."""
    handling = PERSONALITIES[provider].response_format
    spec = response_format.get("json_schema")
    spec = spec if isinstance(spec, Mapping) else {}
    schema = spec.get("schema")
    if handling == "refused":
        # DeepSeek's API takes only "text" and "json_object" (its chat-completion reference).
        return error_response(
            400,
            "This response_format type is unavailable now",
            provider=provider,
            code="invalid_request_error",
        )
    if handling == "response_schema" and "additionalProperties" in json.dumps(schema):
        # The backend's schema type (an OpenAPI subset) has no such field, and its JSON
        # parser names the field as the gateway translated it.
        return error_response(
            400,
            'Invalid JSON payload received. Unknown name "additional_properties" at '
            "'generation_config.response_schema': Cannot find field.",
            provider=provider,
            type_=None,
            code="400",
        )
    if handling == "strict" and spec.get("strict") is True:
        problem = strict_problem(schema)
        if problem is not None:
            name = spec.get("name", "")
            return error_response(
                400,
                f"Invalid schema for response_format '{name}': {problem}",
                provider=provider,
                param="response_format",
            )
    return None


_MAX_DEPTH = 10


def strict_problem(schema: object) -> str | None:
    """Why strict mode refuses ``schema`` (the module docstring's rules), or None."""
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        kind = schema.get("type") if isinstance(schema, Mapping) else None
        return f"schema must be a JSON Schema of 'type: \"object\"', got 'type: {kind}'."
    return _node_problem(schema, (), 0)


def _node_problem(node: object, context: tuple[str, ...], depth: int) -> str | None:
    if not isinstance(node, Mapping):
        return None
    where = f"In context={context!r}, "
    if depth > _MAX_DEPTH:
        return f"{where}the schema exceeds the maximum nesting depth of {_MAX_DEPTH}."
    if "$ref" in node:
        others = sorted(key for key in node if key != "$ref")
        if others:
            keywords = "{" + ", ".join(repr(key) for key in others) + "}"
            return f"{where}$ref cannot have keywords {keywords}."
        return None
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    properties = node.get("properties")
    if "object" in kinds or isinstance(properties, Mapping):
        if node.get("additionalProperties") is not False:
            return f"{where}'additionalProperties' is required to be supplied and to be false."
        properties = properties if isinstance(properties, Mapping) else {}
        required = node.get("required")
        required = required if isinstance(required, list) else []
        missing = [name for name in properties if name not in required]
        if missing:
            return (
                f"{where}'required' is required to be supplied and to be an array including "
                f"every key in properties. Missing '{missing[0]}'."
            )
        for name, sub in properties.items():
            found = _node_problem(sub, (*context, "properties", name), depth + 1)
            if found:
                return found
    children: list[tuple[tuple[str, ...], object]] = []
    if "items" in node:
        children.append((("items",), node["items"]))
    for key in ("anyOf", "oneOf", "allOf"):
        options = node.get(key)
        for index, option in enumerate(options if isinstance(options, list) else ()):
            children.append(((key, str(index)), option))
    for key in ("$defs", "definitions"):
        table = node.get(key)
        for name, sub in table.items() if isinstance(table, Mapping) else ():
            children.append(((key, name), sub))
    for path, child in children:
        found = _node_problem(child, (*context, *path), depth + (path[0] == "items"))
        if found:
            return found
    return None


def _range_code(value: object, low: int) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return "invalid_type"
    return "integer_below_min_value" if value < low else "integer_above_max_value"
