"""A model the server does not know: the run asks the server's model list once and names
the closest ids (``holysheep_nb.model_list``). List shapes as OpenAI's API reference ("List
models"), OpenRouter's and Ollama's documentation give them, rebuilt in our words."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from aioresponses import aioresponses

from holysheep_nb.endpoint import Endpoint
from holysheep_nb.errors import HolySheepWarning
from holysheep_nb.model_list import advice, listed_ids
from holysheep_nb.server import LocalServer
from tests.helpers_reliability import bounded

URL = "https://api.example.test/v1/models"

OPENAI = {
    "object": "list",
    "data": [
        {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
        {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
    ],
}
#: OpenRouter: no "object" keys, many more fields, provider-prefixed ids.
OPENROUTER = {
    "data": [
        {"id": "openai/gpt-4o", "name": "OpenAI: GPT-4o", "context_length": 128000},
        {"id": "deepseek/deepseek-chat", "name": "DeepSeek V3", "pricing": {"prompt": "0"}},
    ]
}
#: Ollama's OpenAI-compatible /v1/models: tags in the ids.
OLLAMA_V1 = {
    "object": "list",
    "data": [{"id": "llama3.2:latest", "object": "model", "created": 1, "owned_by": "library"}],
}
#: Ollama's own /api/tags is another shape: not a list of models to us.
OLLAMA_TAGS = {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"}]}


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        (json.dumps(OPENAI).encode(), ("gpt-4o", "gpt-4o-mini")),
        (json.dumps(OPENROUTER).encode(), ("openai/gpt-4o", "deepseek/deepseek-chat")),
        (json.dumps(OLLAMA_V1).encode(), ("llama3.2:latest",)),
        (json.dumps(OLLAMA_TAGS).encode(), None),
        (b'{"data": [{"id": "a"}, {"id": "a"}, {"id": 7}, "b", {"name": "c"}]}', ("a",)),
        (b"<html>Not Found</html>", None),
        (b"\xff\xfe", None),
        (b"[]", None),
    ],
    ids=["openai", "openrouter", "ollama-v1", "ollama-tags", "odd-items", "html", "bytes", "list"],
)
def test_the_list_is_read_from_openais_shape_only(body: bytes, ids: tuple[str, ...] | None) -> None:
    assert listed_ids(body) == ids


LISTED = ("sim-small", "sim-large", "gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini", "o4-mini")


def test_the_advice_names_the_closest_listed_models() -> None:
    assert advice("sim-lage", URL, LISTED) == (
        f"did you mean model='sim-large'? (GET {URL} lists the 7 models this server has)"
    )
    three = advice("gpt4o", URL, LISTED)
    assert three.startswith("did you mean model='gpt-4o' or 'gpt-4.1' or 'gpt-4o-mini'? (GET")


def test_a_listed_model_that_is_not_found_is_a_question_of_access() -> None:
    said = advice("gpt-4o", URL, LISTED)
    assert said.startswith("this server lists 'gpt-4o', so the key has no access to it")


def test_nothing_close_gives_examples_and_no_list_gives_the_url() -> None:
    said = advice("claude-3-opus", URL, LISTED)
    assert said == (
        "check model=: none of the 7 models this server lists is close "
        "('sim-small', 'sim-large', 'gpt-4o', 'gpt-4o-mini', 'gpt-4.1', ...)"
    )
    assert advice("x", URL, None) == f"check model= (GET {URL} lists the models this server has)"
    assert advice("x", URL, ()) == (
        f"check model=: this server lists no models (GET {URL} lists the models this server has)"
    )


def test_azure_asks_no_list() -> None:
    azure = Endpoint(
        base_url="https://res.openai.azure.com", api_version="2024-10-21", api_key="k" * 32
    )
    assert azure.models_url is None
    assert "deployment" in advice("gpt-4o", azure.models_url, None)
    assert Endpoint(base_url="http://127.0.0.1:8/v1").models_url == "http://127.0.0.1:8/v1/models"


async def test_a_misspelt_model_is_answered_with_the_closest_the_server_lists(
    serve: Callable[..., Any],
) -> None:
    server = await serve(models=("gpt-4o-mini", "gpt-4.1"))
    frame = pd.DataFrame({"text": [f"kettle {i}" for i in range(12)]})
    with pytest.warns(HolySheepWarning, match="stopped the run") as notices:
        out = await bounded(
            frame.holysheep.acomplete(
                "text",
                model="gpt-4o-mni",
                base_url=server.base_url,
                cache=False,
                progress=False,
                max_concurrent=2,
            ),
            30.0,
            "the run",
        )
    assert len(notices) == 1
    said = str(notices[0].message)
    assert "model not found (HTTP 404)" in said
    assert f"did you mean model='gpt-4o-mini'? (GET {server.base_url}/models lists" in said
    report = out.holysheep.report()
    assert report.stop_advice is not None
    assert report.stop_advice.startswith("did you mean model='gpt-4o-mini'?")
    assert out["error"].str.startswith("not sent: model not found").sum() >= 10


KEY = "sk-test-" + "k" * 40
CHAT = "https://api.example.test/v1/chat/completions"
NOT_FOUND = {
    "error": {
        "message": "The model `gpt-4o-mni` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }
}


async def test_the_list_is_asked_of_the_api_host_with_the_key_and_never_redirected() -> None:
    frame = pd.DataFrame({"text": ["kettle"]})
    options: dict[str, Any] = {
        "model": "gpt-4o-mni",
        "base_url": "https://api.example.test/v1",
        "api_key": KEY,
        "cache": False,
        "progress": False,
        "max_concurrent": 1,
    }
    with aioresponses() as mocked:
        mocked.post(CHAT, status=404, payload=NOT_FOUND)
        mocked.get(URL, status=302, headers={"Location": "https://elsewhere.test/models"})
        with pytest.warns(HolySheepWarning, match="stopped the run"):
            out = await frame.holysheep.acomplete("text", **options)
        asked = [(method, str(url)) for method, url in mocked.requests]
        assert asked == [("POST", CHAT), ("GET", URL)]  # not the redirect's host
        get = mocked.requests[("GET", mocked_url(URL))][0]
        assert get.kwargs["allow_redirects"] is False
        assert get.kwargs["headers"]["Authorization"] == f"Bearer {KEY}"  # the API host's own
    advice_said = out.holysheep.report().stop_advice
    assert advice_said == f"check model= (GET {URL} lists the models this server has)"
    assert KEY not in repr(out.attrs)


def mocked_url(url: str) -> Any:
    from yarl import URL as Yarl

    return Yarl(url)


def test_the_stop_is_told_at_the_users_line_not_the_engines() -> None:
    """A notebook showed `holysheep_nb/engine.py:506` and the engine's `warnings.warn(...)`
    line above the stop; pandas-like, the warning now names the line that made the call."""
    frame = pd.DataFrame({"text": ["kettle"]})
    with LocalServer() as server, pytest.warns(HolySheepWarning, match="stopped") as notices:
        frame.holysheep.complete("text", model="sim-lage", base_url=server.base_url, cache=False)
    (notice,) = notices
    assert notice.filename == __file__
    assert "did you mean model='sim-large'?" in str(notice.message)
