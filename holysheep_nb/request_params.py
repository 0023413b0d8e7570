"""The chat-completions body parameters a run passes through by name, as OpenAI documents them.

``RequestParams`` declares each one (its type, one line of doc); a value of ``None`` in the
declaration means the parameter is not sent. Anything a provider adds of its own (vLLM's
``top_k``, OpenRouter's ``provider``) goes in ``extra_body={...}``, the openai client's name
for it, so that a misspelt option is an error and never a body field. Sources: OpenAI's API
reference, "Create chat completion", and the openai client's ``CompletionCreateParams``
(a test checks every name here is one of those). ``check_types`` holds each value to its
declared type before anything is sent.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Union, get_args, get_origin, get_type_hints

from holysheep_nb.errors import ConfigError
from holysheep_nb.option import NO_FLAG, PARAM, option


def _param(doc: str) -> Any:
    return option(None, doc, flags=(PARAM,))


@dataclass(frozen=True)
class RequestParams:
    """Body parameters of every request of a run, by OpenAI's names (None: not sent).

    ``model`` is the endpoint's option; ``messages`` are built from the rows; ``n`` is refused
    (one answer is read per row: more choices would be paid for and never read).
    """

    temperature: float | None = _param("sampling temperature, 0 to 2")
    top_p: float | None = _param("nucleus sampling: the probability mass sampled from")
    max_tokens: int | None = _param("the answer's token limit (older name)")
    max_completion_tokens: int | None = _param("the answer's token limit, reasoning included")
    seed: int | None = _param("best-effort deterministic sampling")
    stop: str | list[str] | None = _param("up to 4 sequences that end the answer")
    logprobs: bool | None = _param("token log-probabilities (label() adds a confidence column)")
    top_logprobs: int | None = _param("the most likely tokens returned at each position, 0 to 20")
    presence_penalty: float | None = _param("-2 to 2: penalise tokens already present")
    frequency_penalty: float | None = _param("-2 to 2: penalise tokens by their frequency")
    logit_bias: dict[str, int] | None = _param("token id to a bias from -100 to 100")
    reasoning_effort: str | None = _param("reasoning models: minimal, low, medium or high")
    service_tier: str | None = _param("the provider's processing tier: auto, default, flex ...")
    user: str | None = _param("an end-user id (OpenAI now prefers safety_identifier)")
    safety_identifier: str | None = _param("a stable id of the end user, for abuse detection")
    prompt_cache_key: str | None = _param("groups requests for the provider's prompt cache")
    metadata: dict[str, str] | None = _param("key-value pairs stored with the completion")
    store: bool | None = _param("let the provider store the completion")
    response_format: dict[str, Any] | None = _param("structured output (label/extract set it)")
    tools: list[dict[str, Any]] | None = _param("tools the model may call (see tool_calls)")
    tool_choice: str | dict[str, Any] | None = _param("none, auto, required, or one tool")
    parallel_tool_calls: bool | None = _param("allow several tool calls in one answer")
    stream: bool | None = _param("stream the answer (read as a whole; never in a batch)")
    stream_options: dict[str, Any] | None = _param("streaming options (include_usage)")
    modalities: list[str] | None = _param("output types, e.g. ['text']")
    audio: dict[str, Any] | None = _param("audio output parameters")
    prediction: dict[str, Any] | None = _param("predicted output, to speed up a regeneration")
    verbosity: str | None = _param("the answer's verbosity: low, medium or high")
    web_search_options: dict[str, Any] | None = _param("web search, for the search models")
    extra_body: Mapping[str, Any] | None = option(
        None, "provider-specific body fields, merged in as the openai client does", flags=NO_FLAG
    )
    extra_headers: Mapping[str, str] | None = option(
        None, "the same as headers, by the openai client's name", flags=NO_FLAG
    )
    extra_query: Mapping[str, str] | None = option(
        None, "URL query parameters for every request, as the openai client does", flags=NO_FLAG
    )


#: The openai client's names for what is not a body parameter (headers, URL query, extra body).
EXTRAS = ("extra_body", "extra_headers", "extra_query")

#: Parameters that some OpenAI-compatible servers take but OpenAI does not document: they go
#: in ``extra_body``. From the vLLM ("Extra parameters"), OpenRouter ("Parameters") and
#: Ollama ("OpenAI compatibility") references; a name not listed here gets the same advice
#: when nothing declared is close to it.
PROVIDER_PARAMS = frozenset(
    {
        "top_k",
        "min_p",
        "top_a",
        "typical_p",
        "repetition_penalty",
        "min_tokens",
        "best_of",
        "use_beam_search",
        "length_penalty",
        "ignore_eos",
        "skip_special_tokens",
        "guided_json",
        "guided_regex",
        "guided_choice",
        "guided_grammar",
        "chat_template_kwargs",
        "transforms",
        "models",
        "route",
        "provider",
        "reasoning",
        "include_reasoning",
        "usage",
        "num_ctx",
        "keep_alive",
        "think",
        "enable_thinking",
    }
)


def check_types(params: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` for a declared parameter whose value is not of its declared type
    (``temperature="hot"``), naming the parameter and the type, before anything is sent.
    A bool is not a number; ``None`` is allowed (not sent). Names not declared are not checked.
    """
    declared = _declared()
    for name, value in params.items():
        kind = declared.get(name)
        if kind is not None and not _matches(value, kind):
            shown = repr(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise ConfigError(
                f"{name} must be {_describe(kind)}, got {type(value).__name__} {shown}"
            )


@cache
def _declared() -> dict[str, Any]:
    return {
        name: kind for name, kind in get_type_hints(RequestParams).items() if name not in EXTRAS
    }


def _union_args(kind: Any) -> tuple[Any, ...] | None:
    return get_args(kind) if get_origin(kind) in (Union, types.UnionType) else None


def _matches(value: Any, kind: Any) -> bool:
    if kind is Any:
        return True
    if (members := _union_args(kind)) is not None:
        return any(_matches(value, member) for member in members)
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    origin, args = get_origin(kind), get_args(kind)
    if origin is list:
        return isinstance(value, list) and all(_matches(item, args[0]) for item in value)
    if origin in (dict, Mapping):
        return isinstance(value, Mapping) and all(
            _matches(key, args[0]) and _matches(item, args[1]) for key, item in value.items()
        )
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    if (members := _union_args(kind)) is not None:
        return " or ".join(_describe(member) for member in members)
    names = {type(None): "None", bool: "True or False", int: "a whole number", str: "a string"}
    if kind is float:
        return "a number"
    if kind in names:
        return names[kind]
    origin, args = get_origin(kind), get_args(kind)
    if origin is list:
        return f"a list of ({_describe(args[0])})"
    if origin in (dict, Mapping):
        return f"a dict of {_describe(args[0])} to ({_describe(args[1])})"
    return "any value" if kind is Any else getattr(kind, "__name__", str(kind))
