"""Every failure kind a real provider sends, end to end: the accessor against the local
server's provider personalities and faults (``docs/server.md``), one test per kind, each
checking what the user sees (the row's error, the run's stop, the report, the notice)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from holysheep_nb.errors import HolySheepWarning
from holysheep_nb.server import Faults, RunningServer
from tests.helpers_reliability import bounded

SENTIMENT = ["positive", "negative", "neutral"]
DEADLINE = 30.0


def rows(n: int, marker: str = "", every: int = 0) -> pd.DataFrame:
    """``n`` reviews; with ``every``, each ``every``-th (from the first) carries ``marker``."""
    texts = [f"great kettle #{i}" for i in range(n)]
    if every:
        texts = [f"{t} {marker}" if i % every == 0 else t for i, t in enumerate(texts)]
    elif marker:
        texts = [f"{t} {marker}" for t in texts]
    return pd.DataFrame({"text": texts})


async def complete(frame: pd.DataFrame, server: RunningServer, **options: Any) -> pd.DataFrame:
    options = {"base_url": server.base_url, "cache": False, "progress": False, **options}
    return await bounded(frame.holysheep.acomplete("text", **options), DEADLINE, "the run")


def sent(server: RunningServer) -> int:
    return int(server.stats()["requests"])


# --- failures that concern the whole run ------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "cause"),
    [
        ({"faults": Faults({"429-quota": 1.0})}, "quota exhausted (HTTP 429 insufficient_quota)"),
        ({"provider": "openrouter", "faults": Faults({"402": 1.0})}, "out of credits (HTTP 402)"),
        ({"models": ("gpt-4o-mini",)}, "model not found (HTTP 404)"),
        ({"faults": Faults({"401": 1.0})}, "authentication failed (HTTP 401)"),
    ],
    ids=["quota", "credits", "model", "key"],
)
async def test_a_run_wide_failure_stops_at_once_and_says_why(
    serve: Callable[..., Any], config: dict[str, Any], cause: str
) -> None:
    server = await serve(**config)
    with pytest.warns(
        HolySheepWarning, match=r"stopped the run: " + cause.split(" (")[0]
    ) as notices:
        out = await complete(rows(20), server, model="gpt-4o", max_concurrent=4)
    assert len(notices) == 1  # told once
    assert sent(server) <= 4  # at most the first requests in flight, never 6 attempts a row
    not_sent = out["error"].str.startswith(f"not sent: {cause}")
    assert not_sent.sum() >= 16
    assert out["response"].isna().all()
    report = out.holysheep.report()
    assert report.stop_cause is not None
    assert report.stop_cause.startswith(cause)
    assert str(report).splitlines()[1].startswith(f"stopped early: {cause}")


async def test_a_retry_after_far_in_the_future_stops_instead_of_stalling(
    serve: Callable[..., Any],
) -> None:
    server = await serve()
    frame = rows(10, "{{fault:429-long}}", every=10)  # only row 0 is told to wait an hour
    with pytest.warns(HolySheepWarning, match="asked to wait 3,600 s"):
        out = await complete(frame, server, max_concurrent=1)
    assert (
        out["error"].iat[0] == "HTTP 429 after 1 attempt: " + out["error"].iat[0].split(": ", 1)[1]
    )
    assert (
        out["error"].iloc[1:].str.startswith("not sent: the provider asked to wait 3,600 s").all()
    )
    assert "max_retry_after=3600" in str(out.holysheep.report())


async def test_one_flagged_input_is_that_rows_error_and_the_run_goes_on(
    serve: Callable[..., Any],
) -> None:
    server = await serve(provider="openrouter")
    frame = rows(40, "{{fault:moderation}}", every=40)
    out = await complete(frame, server, max_concurrent=4)
    assert out["error"].iat[0].startswith("withheld by the content filter: ")
    assert out["response"].iloc[1:].notna().all()
    assert sent(server) == 40
    assert out.holysheep.report().stop_cause is None


# --- well-formed answers that are not plain text ---------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "finish_reason"),
    [
        ("refusal", "refused by the model: ", None),
        ("content-filter", "withheld by the content filter", "content_filter"),
        ("length-empty", "truncated at the token limit: raise max_tokens", "length"),
        ("length-null", "truncated at the token limit: raise max_tokens", "length"),
    ],
)
async def test_unusable_answers_are_answered_once_and_explained(
    serve: Callable[..., Any], fault: str, error: str, finish_reason: str | None
) -> None:
    server = await serve()
    out = await complete(rows(3, f"{{{{fault:{fault}}}}}", every=3), server)
    assert out["error"].iat[0].startswith(error), out["error"].iat[0]
    assert out["attempts"].iat[0] == 1
    assert sent(server) == 3  # never retried
    if finish_reason is not None:
        assert out["finish_reason"].iat[0] == finish_reason
    assert out["error"].iloc[1:].isna().all()


async def test_a_cut_answer_with_text_is_kept_but_never_a_label(serve: Callable[..., Any]) -> None:
    server = await serve()
    frame = rows(4, "{{fault:length}}", every=2)
    out = await complete(frame, server)
    assert out["error"].isna().all()
    assert out["finish_reason"].tolist() == ["length", "stop", "length", "stop"]
    labelled = await bounded(
        frame.holysheep.alabel("text", labels=SENTIMENT, base_url=server.base_url, cache=False,
                               progress=False),
        DEADLINE, "the label run",
    )  # fmt: skip
    assert labelled["label"].isna().tolist() == [True, False, True, False]
    assert labelled["error"].iat[0].startswith("truncated at the token limit")
    assert labelled.holysheep.report().truncated == 2


async def test_a_tool_call_answer_is_kept_in_its_column(serve: Callable[..., Any]) -> None:
    server = await serve()
    out = await complete(rows(2, "{{fault:tools}}", every=2), server)
    assert out["error"].isna().all()
    assert out["finish_reason"].iat[0] == "tool_calls"
    assert '"lookup"' in out["tool_calls"].iat[0]
    assert pd.isna(out["response"].iat[0])
    assert sent(server) == 2


@pytest.mark.parametrize(
    "config",
    [
        {"provider": "ollama"},
        {"provider": "vllm"},
        {"provider": "deepseek"},
        {"provider": "openrouter"},
    ],
    ids=[
        "ollama-think",
        "vllm-closing-think",
        "deepseek-reasoning_content",
        "openrouter-reasoning",
    ],
)
async def test_reasoning_is_set_apart_and_labels_match_without_it(
    serve: Callable[..., Any], config: dict[str, Any], tmp_path: Any
) -> None:
    server = await serve(**config)
    frame = pd.DataFrame({"text": ["I love it, great", "Awful, it broke", "It is a kettle"]})
    options = {"labels": SENTIMENT, "base_url": server.base_url, "progress": False,
               "cache": str(tmp_path / "c.sqlite"), "structured": False}  # fmt: skip
    out = await bounded(frame.holysheep.alabel("text", **options), DEADLINE, "the label run")
    assert out["error"].isna().all(), out["error"].tolist()
    assert out["label"].tolist() == ["positive", "negative", "neutral"]
    assert out["reasoning"].notna().all()
    assert not out["response"].str.contains("think").any()
    again = await bounded(frame.holysheep.alabel("text", **options), DEADLINE, "the re-run")
    assert again["cached"].all()
    assert again["label"].tolist() == out["label"].tolist()  # the cache kept it apart too


async def test_a_server_that_streams_unasked_is_read(serve: Callable[..., Any]) -> None:
    server = await serve(always_stream=True)
    out = await complete(rows(5), server, max_retries=0)
    assert out["error"].isna().all(), out["error"].tolist()
    assert out["response"].notna().all()
    assert (out["prompt_tokens"] > 0).all()


@pytest.mark.parametrize("max_concurrent", [1, 16])
async def test_a_server_rejecting_response_format_gets_one_notice_then_plain_requests(
    serve: Callable[..., Any], max_concurrent: int
) -> None:
    """DeepSeek answers 400 to a json_schema response_format: 30 rows used to end as 30
    identical 400s with nothing labelled. Rows whose structured requests were already in
    flight when the first refusal came back are sent again too, at no attempt's cost."""
    server = await serve(provider="deepseek")
    frame = pd.DataFrame({"text": [f"great kettle #{i}" for i in range(30)]})
    with pytest.warns(HolySheepWarning, match="rejected response_format") as notices:
        out = await bounded(
            frame.holysheep.alabel("text", labels=SENTIMENT, base_url=server.base_url,
                                   cache=False, progress=False, max_concurrent=max_concurrent),
            DEADLINE, "the label run",
        )  # fmt: skip
    assert len(notices) == 1
    assert out["error"].isna().all(), out["error"].dropna().tolist()
    assert (out["label"] == "positive").all()
    refused = sent(server) - 30  # each row once without response_format, after the refusals
    assert 1 <= refused <= max_concurrent
    assert out["attempts"].tolist() == [1] * 30


async def test_azure_deployment_url_api_version_and_api_key(serve: Callable[..., Any]) -> None:
    key = "azure-key-0123456789abcdef"
    server = await serve(provider="azure", api_key=key)
    endpoint = server.base_url.removesuffix("/v1")
    frame = pd.DataFrame({"text": ["I love it", "Awful"]})
    out = await bounded(
        frame.holysheep.alabel("text", labels=SENTIMENT, base_url=endpoint, model="my-deploy",
                               api_version="2024-10-21", api_key=key, cache=False, progress=False),
        DEADLINE, "the Azure run",
    )  # fmt: skip
    assert out["error"].isna().all(), out["error"].tolist()
    assert out["label"].tolist() == ["positive", "negative"]


async def test_a_stale_keep_alive_connection_costs_no_attempt(serve: Callable[..., Any]) -> None:
    server = await serve()
    frame = rows(30, "{{fault:stale}}")
    out = await complete(frame, server, max_retries=0, max_concurrent=1)
    assert out["error"].isna().all(), out["error"].dropna().tolist()[:3]
    assert out["attempts"].tolist() == [1] * 30
    assert out.holysheep.report().resent > 0
