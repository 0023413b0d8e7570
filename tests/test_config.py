"""Endpoint resolution, key handling and policy validation (docs/contract.md, "Options" and "Bad input")."""

from __future__ import annotations

import pytest

from holysheep_nb.endpoint import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    Endpoint,
    is_loopback,
    normalise_base_url,
)
from holysheep_nb.errors import ConfigError, HolySheepError, MissingAPIKeyError
from holysheep_nb.policies import EngineSettings, RateLimits, RetryPolicy

KEY = "sk-test-0123456789abcdef"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://api.holysheep.ai/v1", "https://api.holysheep.ai/v1"),
        ("https://api.holysheep.ai/v1/", "https://api.holysheep.ai/v1"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1"),
        ("http://localhost:11434/v1", "http://localhost:11434/v1"),
        ("https://proxy.example/openai/v1//", "https://proxy.example/openai/v1"),
        ("  http://[::1]:9000/v1  ", "http://[::1]:9000/v1"),
    ],
)
def test_base_url_is_normalised(given: str, expected: str) -> None:
    assert normalise_base_url(given) == expected


@pytest.mark.parametrize(
    "bad", ["", "api.holysheep.ai/v1", "ftp://host/v1", "http://", "http://host:99999/v1", None]
)
def test_invalid_base_url_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        normalise_base_url(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://localhost:8000/v1", True),
        ("http://127.0.0.1:8000/v1", True),
        ("http://127.8.9.10/v1", True),
        ("http://[::1]:8000/v1", True),
        ("https://api.holysheep.ai/v1", False),
        ("http://10.0.0.1/v1", False),
    ],
)
def test_loopback_detection(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback


@pytest.mark.parametrize("key", [None, "", "   ", "YOUR_HOLYSHEEP_API_KEY"])
def test_missing_or_placeholder_key_names_the_variable(key: str | None) -> None:
    with pytest.raises(MissingAPIKeyError, match="HOLYSHEEP_API_KEY") as info:
        Endpoint(api_key=key)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, HolySheepError)


def test_loopback_needs_no_key_and_sends_no_authorization() -> None:
    endpoint = Endpoint(base_url="http://127.0.0.1:1234", api_key="YOUR_HOLYSHEEP_API_KEY")
    assert endpoint.api_key is None
    assert "Authorization" not in endpoint.request_headers()


def test_key_is_sent_but_never_shown() -> None:
    endpoint = Endpoint(api_key=KEY)
    assert endpoint.request_headers()["Authorization"] == f"Bearer {KEY}"
    assert KEY not in str(endpoint.session_headers())  # defaults reach proxies: no key there
    assert KEY not in repr(endpoint)
    assert KEY not in str(endpoint)
    assert "api_key=<set>" in repr(endpoint)
    assert KEY not in repr(EngineSettings())


def test_precedence_argument_then_environment_then_default() -> None:
    env = {
        "HOLYSHEEP_API_KEY": KEY,
        "HOLYSHEEP_BASE_URL": "http://127.0.0.1:9/v1",
        "HOLYSHEEP_MODEL": "env-model",
    }
    from_env = Endpoint.resolve(environ=env)
    assert (from_env.base_url, from_env.model, from_env.api_key) == (
        "http://127.0.0.1:9/v1",
        "env-model",
        KEY,
    )
    from_args = Endpoint.resolve(
        base_url="http://localhost:7/v1", model="arg-model", api_key="sk-arg", environ=env
    )
    assert (from_args.base_url, from_args.model, from_args.api_key) == (
        "http://localhost:7/v1",
        "arg-model",
        "sk-arg",
    )
    defaults = Endpoint.resolve(environ={"HOLYSHEEP_API_KEY": KEY})
    assert (defaults.base_url, defaults.model) == (DEFAULT_BASE_URL, DEFAULT_MODEL)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (
            lambda: EngineSettings(max_concurrent=0),
            "max_concurrent must be a whole number >= 1, got 0",
        ),
        (lambda: EngineSettings(max_concurrent=2.5), "max_concurrent"),  # type: ignore[arg-type]
        (lambda: EngineSettings(max_concurrent=True), "max_concurrent"),
        (lambda: EngineSettings(timeout=0), "timeout must be a positive number, got 0"),
        (lambda: EngineSettings(timeout=-1.0), "timeout"),
        (lambda: EngineSettings(timeout=float("nan")), "timeout"),
        (lambda: RetryPolicy(max_retries=-1), "max_retries"),
        (lambda: RetryPolicy(initial_wait=0), "initial_wait"),
        (lambda: RetryPolicy(initial_wait=2.0, max_wait=1.0), "max_wait"),
        (lambda: RateLimits(requests_per_minute=0), "requests_per_minute must be a positive"),
        (lambda: RateLimits(tokens_per_minute=-5), "tokens_per_minute"),
        (lambda: RateLimits(requests_per_minute=60, request_burst=0), "request_burst"),
        (lambda: Endpoint(base_url="http://127.0.0.1/v1", model=""), "model"),
    ],
)
def test_bad_policy_values_name_the_value_and_the_fix(factory, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        factory()


def test_burst_defaults_to_one_plus_a_lateness_allowance() -> None:
    # One unit, plus 20 ms of the rate to make up a late wake-up: never a second's worth, so
    # a paced client does not overrun a provider's sliding window in its first window.
    assert RateLimits(requests_per_minute=600).request_capacity == pytest.approx(1.2)
    assert RateLimits(requests_per_minute=30).request_capacity == pytest.approx(1.01)
    assert RateLimits(requests_per_minute=600, request_burst=3).request_capacity == 3
    assert RateLimits().request_capacity is None
    assert RateLimits(tokens_per_minute=60_000).token_capacity == pytest.approx(21.0)
    assert RateLimits(tokens_per_minute=60_000, token_burst=500).token_capacity == 500
    assert RetryPolicy(max_retries=5).max_attempts == 6


@pytest.mark.parametrize(
    ("pasted", "chat_url"),
    [
        (
            "https://api.openai.com/v1/chat/completions",
            "https://api.openai.com/v1/chat/completions",
        ),
        (
            "https://api.openai.com/v1/chat/completions/",
            "https://api.openai.com/v1/chat/completions",
        ),
        ("http://localhost:11434/v1", "http://localhost:11434/v1/chat/completions"),
        ("http://localhost:8000", "http://localhost:8000/v1/chat/completions"),
        ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1/chat/completions"),
    ],
)
def test_a_pasted_endpoint_url_is_accepted(pasted: str, chat_url: str) -> None:
    assert Endpoint(base_url=pasted, api_key=KEY).chat_url == chat_url


@pytest.mark.parametrize(
    ("options", "chat_url"),
    [
        (
            {
                "base_url": "https://res.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21"
            },
            "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
        ),
        (
            {
                "base_url": "https://res.openai.azure.com",
                "model": "gpt4o",
                "api_version": "2024-10-21",
            },
            "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
        ),
        (
            {
                "base_url": "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
            },
            "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
        ),
    ],
)
def test_azure_endpoints_keep_api_version_and_send_the_key_as_api_key(
    options: dict[str, str], chat_url: str
) -> None:
    endpoint = Endpoint(api_key=KEY, **options)
    assert endpoint.chat_url == chat_url
    assert endpoint.request_headers() == {"api-key": KEY}


def test_an_azure_deployment_without_api_version_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="needs api_version="):
        Endpoint(base_url="https://res.openai.azure.com/openai/deployments/gpt4o", api_key=KEY)


def test_extra_headers_go_with_each_request_never_as_session_defaults() -> None:
    endpoint = Endpoint(
        api_key=KEY, headers={"HTTP-Referer": "https://example.org", "X-Title": "t"}
    )
    assert endpoint.request_headers() == {
        "HTTP-Referer": "https://example.org",
        "X-Title": "t",
        "Authorization": f"Bearer {KEY}",
    }
    assert "HTTP-Referer" not in endpoint.session_headers()
    with pytest.raises(ConfigError, match="line break"):
        Endpoint(api_key=KEY, headers={"X-Bad": "a\r\nInjected: 1"})
    with pytest.raises(ConfigError, match="dict of header name"):
        Endpoint(api_key=KEY, headers=[("X", "y")])  # type: ignore[arg-type]
