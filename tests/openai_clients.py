"""The official ``openai`` client pointed at a local server, as every compatibility test
makes it: no retries (a test sees each answer), no proxy from the environment."""

from __future__ import annotations

from typing import Any

import openai


def connect(base_url: str, **options: Any) -> openai.OpenAI:
    """An ``openai.OpenAI`` for ``base_url`` (``api_key`` defaults to a test key)."""
    return openai.OpenAI(
        base_url=base_url,
        api_key=options.pop("api_key", "sk-test"),
        max_retries=0,
        http_client=openai.DefaultHttpxClient(trust_env=False),
        **options,
    )
