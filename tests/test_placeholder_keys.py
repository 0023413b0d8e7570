"""Answers are the user's data: a key never rewrites them (docs/guide.md, "Keys").

Local servers document placeholder keys (Ollama ``"ollama"``, vLLM ``"EMPTY"``, LM Studio
``"lm-studio"``). Such a key must not blank words out of answers, usage or error lines; a real
key is still hidden from every line the package prints (tests/test_security.py).
"""

from __future__ import annotations

import secrets

import pandas as pd
import pytest

from holysheep_nb.errors import MIN_SECRET_LENGTH, is_secret, redact
from holysheep_nb.server import ServerConfig, start_server


@pytest.mark.parametrize("key", ["ollama", "EMPTY", "lm-studio", "sk-no-key-required", "o"])
async def test_a_placeholder_key_leaves_answers_as_they_came(key: str) -> None:
    texts = [f"Is {key} a good local server?", "Is ollama fast? EMPTY lm-studio o"]
    async with await start_server(ServerConfig(echo=True, api_key=key)) as server:
        out = await pd.DataFrame({"text": texts}).holysheep.acomplete(
            "text", base_url=server.base_url, api_key=key, cache=False, progress=False
        )
    assert out["error"].isna().all(), out["error"].tolist()
    assert out["response"].tolist() == texts


async def test_a_real_key_echoed_in_an_answer_stays_in_the_answer() -> None:
    """The answer is the user's data even when it quotes the key; only what the package
    prints is redacted (error lines, reprs, logs: tests/test_security.py)."""
    key = "sk-" + secrets.token_hex(24)
    text = f"my key is {key}"
    async with await start_server(ServerConfig(echo=True, api_key=key)) as server:
        out = await pd.DataFrame({"text": [text]}).holysheep.acomplete(
            "text", base_url=server.base_url, api_key=key, cache=False, progress=False
        )
    assert out["response"].iat[0] == text


def test_redact_hides_secrets_only() -> None:
    real = "sk-" + secrets.token_hex(24)
    assert redact(f"Incorrect API key provided: {real}", real) == (
        "Incorrect API key provided: ***"
    )
    assert redact("model 'ollama' not found", "ollama") == "model 'ollama' not found"
    assert not is_secret("x" * (MIN_SECRET_LENGTH - 1))
    assert is_secret("x" * MIN_SECRET_LENGTH)
    assert not is_secret(None)
