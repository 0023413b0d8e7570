"""The accessor's keyword options, resolved and validated into one frozen ``JobOptions``.

Everything is checked here, before any request: a bad option raises ``ConfigError`` naming
the value and the fix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from holysheep_nb.chat import RESERVED_PARAMS, invalid_text
from holysheep_nb.endpoint import Endpoint
from holysheep_nb.errors import ConfigError
from holysheep_nb.policies import EngineSettings, RateLimits, RetryPolicy
from holysheep_nb.prices import Prices
from holysheep_nb.validation import is_whole, require_whole_at_least

CacheOption = bool | str | os.PathLike[str]


@dataclass(frozen=True)
class JobOptions:
    """Everything one ``complete()`` call needs besides the DataFrame."""

    endpoint: Endpoint
    settings: EngineSettings = field(default_factory=EngineSettings)
    system: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    chunk_size: int = 1000
    progress: bool = True
    cache: CacheOption = True
    prices: Prices | None = None

    @classmethod
    def from_kwargs(
        cls,
        *,
        model: str | None = None,
        system: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        max_concurrent: int = 16,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_retries: int = 5,
        timeout: float = 60.0,
        chunk_size: int = 1000,
        progress: bool = True,
        cache: CacheOption = True,
        prices: Prices | tuple[float, float] | None = None,
        verify: bool | str = True,
        api_version: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_retry_after: float = 120.0,
        key_required: bool = True,
        azure_ad_token: str | None = None,
        azure_ad_token_provider: Callable[[], str] | None = None,
        **params: Any,
    ) -> JobOptions:
        """Map the accessor's keyword options (``docs/contract.md``, "Options") onto the
        endpoint and the policies. ``key_required=False`` for a run that sends nothing (the
        dry-run estimate): a missing API key is then no error.

        The openai client's ``extra_headers``, ``extra_query`` and ``extra_body`` mean what
        they mean there (headers, URL query, body fields), so they never land in the body
        by mistake.
        """
        headers = {
            **_mapping("headers", headers),
            **_mapping("extra_headers", params.pop("extra_headers", None)),
        }
        query = _mapping("extra_query", params.pop("extra_query", None))
        params.update(_mapping("extra_body", params.pop("extra_body", None)))
        if system is not None and not isinstance(system, str):
            raise ConfigError(f"system must be a string or None, got {type(system).__name__}")
        if system is not None and (problem := invalid_text(system)):
            raise ConfigError(f"system {problem}")
        require_whole_at_least("chunk_size", chunk_size, 1, "chunk_size=1000")
        if not isinstance(progress, bool):
            raise ConfigError(f"progress must be True or False, got {progress!r}")
        if not isinstance(cache, (bool, str, os.PathLike)):
            raise ConfigError(
                f"cache must be True, False or a file path, got {type(cache).__name__}"
            )
        return cls(
            endpoint=Endpoint.resolve(
                base_url=base_url,
                model=model,
                api_key=api_key,
                verify=verify,
                api_version=api_version,
                headers=headers,
                query=query,
                key_required=key_required,
                azure_ad_token=azure_ad_token,
                azure_ad_token_provider=azure_ad_token_provider,
            ),
            settings=EngineSettings(
                max_concurrent=max_concurrent,
                timeout=timeout,
                retry=RetryPolicy(max_retries=max_retries, max_retry_after=max_retry_after),
                limits=RateLimits(
                    requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute
                ),
            ),
            system=system,
            params=_checked_params(params),
            chunk_size=chunk_size,
            progress=progress,
            cache=cache,
            prices=prices if prices is None or isinstance(prices, Prices) else Prices(*prices),
        )

    @property
    def max_tokens(self) -> int | None:
        """The completion budget the request asks for, if any (for the token estimate)."""
        value = self.params.get("max_tokens", self.params.get("max_completion_tokens"))
        return value if is_whole(value) else None


def _mapping(name: str, value: object) -> dict[str, Any]:
    """An optional dict option (None means empty), or a ``ConfigError`` naming it."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a dict, got {type(value).__name__}")
    return dict(value)


def _checked_params(params: dict[str, Any]) -> dict[str, Any]:
    reserved = sorted(RESERVED_PARAMS.intersection(params))
    if reserved:
        raise ConfigError(
            f"{', '.join(reserved)} cannot be passed through: holysheep_nb sets the model with "
            "model=..., builds the messages from the rows, and reads one answer per row"
        )
    try:
        encoded = json.dumps(params, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"extra request parameters must be JSON values: {exc}") from None
    if problem := invalid_text(encoded):  # the body is sent as UTF-8, as written
        raise ConfigError(f"extra request parameters: the text {problem}")
    return params
