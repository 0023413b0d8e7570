"""Azure OpenAI for a newcomer (docs/guide.md, "Azure OpenAI"): what ``serve --provider
azure`` prints works as printed, a missing api_version is named as such, and Microsoft Entra
ID sign-in (``azure_ad_token`` / ``azure_ad_token_provider``) works against the local azure
personality, with holysheep_nb and with the official ``AzureOpenAI`` client."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pandas as pd
import pytest

from holysheep_nb import ConfigError, HolySheepWarning
from holysheep_nb.endpoint import Endpoint
from holysheep_nb.server import LocalServer, ServerConfig

ROOT = Path(__file__).resolve().parent.parent
KEY = "az-resource-key-0123456789abcdef"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra-test-token"
DEPLOYMENT = "prod-4o"
REVIEWS = pd.DataFrame({"text": ["I loved every minute", "Dull and far too long"]})


@pytest.fixture(scope="module")
def azure() -> Iterator[LocalServer]:
    config = ServerConfig(provider="azure", api_key=KEY, azure_ad_token=TOKEN, models=(DEPLOYMENT,))
    with LocalServer(config) as server:
        yield server


def resource(server: LocalServer) -> str:
    return server.base_url.removesuffix("/v1")


def test_serve_prints_what_an_azure_client_needs_and_it_works() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "holysheep_nb", "serve", "--provider", "azure",
               "--port", "0", "--model", DEPLOYMENT]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(7)]
        finally:
            proc.terminate()
    assert lines[0].startswith("serving on http://127.0.0.1:")  # ServerProcess reads this
    printed = dict(
        (name.strip(), value.strip()) for line in lines[2:5] for name, value in [line.split("=", 1)]
    )
    endpoint = lines[0].removeprefix("serving on ").strip().removesuffix("/v1")
    assert printed == {
        "azure_endpoint / base_url": endpoint,
        "api_version": "2024-10-21",
        "deployment / model": DEPLOYMENT,
    }
    assert f"base_url={endpoint!r}" in lines[5]
    assert f"AzureOpenAI(azure_endpoint={endpoint!r}" in lines[6]


def test_the_printed_values_reach_the_azure_personality(azure: LocalServer) -> None:
    out = REVIEWS.holysheep.label(
        "text", labels=["positive", "negative"], base_url=resource(azure), api_version="2024-10-21",
        model=DEPLOYMENT, api_key=KEY, cache=False, progress=False,
    )  # fmt: skip
    assert out["error"].isna().all(), out["error"].tolist()


def test_without_api_version_the_error_says_it_is_missing(azure: LocalServer) -> None:
    with pytest.warns(HolySheepWarning) as notices:
        out = REVIEWS.holysheep.label(
            "text", labels=["positive", "negative"], base_url=azure.base_url, model=DEPLOYMENT,
            api_key=KEY, cache=False, progress=False,
        )  # fmt: skip
    notice = " ".join(str(w.message) for w in notices)
    assert "api_version= is missing" in notice
    assert "usually /v1" not in notice
    assert out["error"].iat[0].startswith("HTTP 404")
    assert "api_version= is missing" in str(out.holysheep.report())


def test_entra_id_token_is_sent_as_bearer(azure: LocalServer) -> None:
    out = REVIEWS.holysheep.complete(
        "text", base_url=resource(azure), api_version="2024-10-21", model=DEPLOYMENT,
        azure_ad_token=TOKEN, cache=False, progress=False,
    )  # fmt: skip
    assert out["error"].isna().all(), out["error"].tolist()


def test_entra_id_token_provider_is_asked_for_every_request(azure: LocalServer) -> None:
    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        return TOKEN

    frame = pd.DataFrame({"text": [f"review {i}" for i in range(5)]})
    out = frame.holysheep.complete(
        "text", base_url=resource(azure), api_version="2024-10-21", model=DEPLOYMENT,
        azure_ad_token_provider=provider, cache=False, progress=False,
    )  # fmt: skip
    assert out["error"].isna().all(), out["error"].tolist()
    assert len(calls) == 5


def test_a_wrong_entra_token_is_refused(azure: LocalServer) -> None:
    with pytest.warns(HolySheepWarning, match=r"authentication failed \(HTTP 401\)"):
        out = REVIEWS.holysheep.complete(
            "text", base_url=resource(azure), api_version="2024-10-21", model=DEPLOYMENT,
            azure_ad_token="not-the-token", cache=False, progress=False,
        )  # fmt: skip
    assert out["error"].iat[0].startswith("authentication failed (HTTP 401)")


@pytest.mark.parametrize("how", ["azure_ad_token", "azure_ad_token_provider", "api_key"])
def test_the_official_azure_client_signs_in_either_way(azure: LocalServer, how: str) -> None:
    options = {
        "azure_ad_token": {"azure_ad_token": TOKEN},
        "azure_ad_token_provider": {"azure_ad_token_provider": lambda: TOKEN},
        "api_key": {"api_key": KEY},
    }[how]
    with openai.AzureOpenAI(
        azure_endpoint=resource(azure), api_version="2024-10-21", max_retries=0,
        http_client=openai.DefaultHttpxClient(trust_env=False), **options,  # type: ignore[arg-type]
    ) as client:  # fmt: skip
        reply = client.chat.completions.create(
            model=DEPLOYMENT, messages=[{"role": "user", "content": "I loved it"}]
        )
    assert reply.choices[0].message.content


def test_the_official_client_with_a_wrong_token_gets_401(azure: LocalServer) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=resource(azure), api_version="2024-10-21", azure_ad_token="wrong",
        max_retries=0, http_client=openai.DefaultHttpxClient(trust_env=False),
    ) as client, pytest.raises(openai.AuthenticationError):  # fmt: skip
        client.chat.completions.create(
            model=DEPLOYMENT, messages=[{"role": "user", "content": "hi"}]
        )


def test_entra_options_are_checked_before_anything_is_sent() -> None:
    with pytest.raises(ConfigError, match="not both"):
        Endpoint(base_url="https://r.openai.azure.com", model="d", api_version="2024-10-21",
                 azure_ad_token=TOKEN, azure_ad_token_provider=lambda: TOKEN)  # fmt: skip
    with pytest.raises(ConfigError, match="are for Azure OpenAI"):
        Endpoint(base_url="https://api.example.com/v1", model="m", azure_ad_token=TOKEN)
    with pytest.raises(ConfigError, match="must be a function"):
        Endpoint(base_url="https://r.openai.azure.com", model="d", api_version="2024-10-21",
                 azure_ad_token_provider="token")  # type: ignore[arg-type]  # fmt: skip
    # A token is enough: no api_key needed for a remote Azure resource.
    endpoint = Endpoint(base_url="https://r.openai.azure.com", model="d",
                        api_version="2024-10-21", azure_ad_token=TOKEN)  # fmt: skip
    assert endpoint.request_headers()["Authorization"] == f"Bearer {TOKEN}"
    assert "api-key" not in endpoint.request_headers()
    assert TOKEN not in repr(endpoint)
