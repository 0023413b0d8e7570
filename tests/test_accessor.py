"""df.holysheep.complete / acomplete against the embedded server (docs/contract.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import holysheep_nb
from holysheep_nb.errors import ConfigError, HolySheepError, LoopError, MissingAPIKeyError
from holysheep_nb.runner import run_sync
from holysheep_nb.server import LocalServer, RunningServer, ServerConfig, start_server
from tests.helpers_reliability import client_tasks

RESULT_COLUMNS = [
    "response",
    "error",
    "latency",
    "cached",
    "shared",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
    "reasoning",
    "tool_calls",
]


@pytest.fixture
async def echo() -> AsyncIterator[RunningServer]:
    async with await start_server(ServerConfig(echo=True)) as server:
        yield server


@pytest.fixture(scope="module")
def threaded_echo() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig(echo=True)) as server:
        yield server


def requests_at(server: RunningServer | LocalServer) -> int:
    return int(server.stats()["requests"])


async def test_result_is_a_new_frame_in_order_with_result_columns(echo: RunningServer) -> None:
    frame = pd.DataFrame(
        {"text": ["alpha", "beta", "gamma", "delta"], "n": [1, 2, 3, 4]},
        index=pd.Index(["x", "y", "x", "z"], name="key"),
    )
    before = frame.copy()
    out = await frame.holysheep.acomplete("text", base_url=echo.base_url, cache=False)
    assert out is not frame
    pd.testing.assert_frame_equal(frame, before)  # the input is never mutated
    assert list(out.columns) == ["text", "n", *RESULT_COLUMNS]
    assert out.index.equals(frame.index)
    assert out["response"].tolist() == ["alpha", "beta", "gamma", "delta"]
    assert out["error"].isna().all()
    assert (out["latency"] > 0).all()
    assert not out["cached"].any()
    assert out["attempts"].tolist() == [1, 1, 1, 1]
    assert (out["prompt_tokens"] > 0).all()
    assert out["latency"].dtype == np.float64
    assert out["cached"].dtype == bool


async def test_multiindex_and_many_rows_keep_their_own_answers(echo: RunningServer) -> None:
    n = 1500
    index = pd.MultiIndex.from_arrays([np.arange(n) % 7, np.arange(n)[::-1]], names=["a", "b"])
    frame = pd.DataFrame({"text": [f"row number {i}" for i in range(n)]}, index=index)
    out = await frame.holysheep.acomplete(
        "text", base_url=echo.base_url, cache=False, max_concurrent=32, chunk_size=100
    )
    assert out.index.equals(index)
    assert out["response"].tolist() == frame["text"].tolist()
    assert echo.stats()["max_in_flight"] <= 32


async def test_missing_prompts_are_not_sent(echo: RunningServer) -> None:
    frame = pd.DataFrame({"text": ["ok", None, np.nan, "", "   ", "fine"]}, dtype=object)
    out = await frame.holysheep.acomplete("text", base_url=echo.base_url, cache=False)
    assert out["error"].tolist()[1:5] == ["missing prompt"] * 4
    assert out["response"].isna().tolist() == [False, True, True, True, True, False]
    assert out["latency"].isna().tolist() == [False, True, True, True, True, False]
    assert out["attempts"].tolist() == [1, 0, 0, 0, 0, 1]
    assert requests_at(echo) == 2
    both = out["response"].notna() & out["error"].notna()
    neither = out["response"].isna() & out["error"].isna()
    assert not both.any()
    assert not neither.any()


async def test_non_string_prompts_are_sent_as_their_string_form(echo: RunningServer) -> None:
    frame = pd.DataFrame({"num": [1, 2.5, -3], "cat": pd.Categorical(["a", "b", "a"])})
    out = await frame.holysheep.acomplete("num", base_url=echo.base_url, cache=False)
    assert out["response"].tolist() == ["1.0", "2.5", "-3.0"]
    out = await frame.holysheep.acomplete("cat", base_url=echo.base_url, cache=False)
    assert out["response"].tolist() == ["a", "b", "a"]


async def test_template_formats_rows_and_flags_missing_values(echo: RunningServer) -> None:
    frame = pd.DataFrame(
        {
            "title": ["Kettle", "Lamp", None],
            "body": ["boils fast", None, "x"],
            "price": [9.5, 20, 3],
        }
    )
    out = await frame.holysheep.acomplete(
        template="Label: {title} / {body} ({price:.2f})", base_url=echo.base_url, cache=False
    )
    assert out["response"].tolist()[0] == "Label: Kettle / boils fast (9.50)"
    assert out["error"].tolist()[1:] == [
        "missing value for column 'body'",
        "missing value for column 'title'",
    ]
    assert requests_at(echo) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"column": "nope"}, "no column 'nope'"),
        ({"template": "Label: {nope}"}, "template refers to missing column"),
        ({"template": "Label: {}"}, "positional field"),
        ({"template": "Label: {title"}, "bad template"),
        ({"template": "no fields"}, "names no column"),
        ({"column": "title", "template": "{title}"}, "exactly one of"),
        ({}, "exactly one of"),
        ({"column": "title", "max_concurrent": 0}, "max_concurrent must be a whole number"),
        ({"column": "title", "requests_per_minute": -1}, "requests_per_minute"),
        ({"column": "title", "tokens_per_minute": 0}, "tokens_per_minute"),
        ({"column": "title", "timeout": 0}, "timeout"),
        ({"column": "title", "max_retries": -1}, "max_retries"),
        ({"column": "title", "chunk_size": 0}, "chunk_size"),
        ({"column": "title", "n": 2}, "n cannot be passed through"),
        ({"column": "title", "messages": []}, "messages cannot be passed through"),
        ({"column": "title", "temperature": object()}, "temperature must be a number or None"),
        ({"column": "title", "extra_body": {"x": object()}}, "must be JSON values"),
        ({"column": "title", "cache": 3}, "cache must be"),
        ({"column": "title", "base_url": "not a url"}, "base_url must be an http"),
    ],
)
async def test_bad_input_raises_before_anything_is_sent(
    echo: RunningServer, kwargs: dict[str, object], message: str
) -> None:
    frame = pd.DataFrame({"title": ["a", "b"]})
    kwargs.setdefault("base_url", echo.base_url)
    column = kwargs.pop("column", None)
    with pytest.raises(ConfigError, match=message):
        await frame.holysheep.acomplete(column, **kwargs)
    assert requests_at(echo) == 0


def test_missing_key_for_a_remote_url_names_the_variable() -> None:
    frame = pd.DataFrame({"text": ["a"]})
    with pytest.raises(MissingAPIKeyError, match="HOLYSHEEP_API_KEY"):
        frame.holysheep.complete("text")
    with pytest.raises(MissingAPIKeyError, match="HOLYSHEEP_API_KEY"):
        frame.holysheep.complete("text", api_key="YOUR_HOLYSHEEP_API_KEY")


def test_the_estimate_needs_no_key_as_it_sends_nothing() -> None:
    # The README's first step: what would this cost, before a key is even set.
    frame = pd.DataFrame({"text": ["a fine kettle", "a loud kettle"]})
    estimate = frame.holysheep.estimate("text", labels=["good", "bad"], cache=False)
    assert (estimate.rows, estimate.to_send) == (2, 2)
    with pytest.raises(MissingAPIKeyError):  # the run itself still needs one
        frame.holysheep.label("text", labels=["good", "bad"], cache=False)


def test_sync_complete_runs_in_a_script(threaded_echo: LocalServer) -> None:
    frame = pd.DataFrame({"text": ["one", "two"]})
    out = frame.holysheep.complete("text", base_url=threaded_echo.base_url, cache=False)
    assert out["response"].tolist() == ["one", "two"]


def test_environment_base_url_is_used_when_no_argument(
    threaded_echo: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOLYSHEEP_BASE_URL", threaded_echo.base_url)
    out = pd.DataFrame({"text": ["via env"]}).holysheep.complete("text", cache=False)
    assert out["response"].tolist() == ["via env"]


def test_series_accessor(threaded_echo: LocalServer) -> None:
    series = pd.Series(["s1", None, "s3"], index=[10, 20, 30], name="q")
    out = series.holysheep.complete(base_url=threaded_echo.base_url, cache=False)
    assert list(out.columns[:1]) == ["q"]
    assert out.index.tolist() == [10, 20, 30]
    assert out["response"].tolist()[::2] == ["s1", "s3"]
    assert out["error"].tolist()[1] == "missing prompt"
    unnamed = pd.Series(["u"]).holysheep.complete(
        template="Say {prompt}", base_url=threaded_echo.base_url, cache=False
    )
    assert unnamed["response"].tolist() == ["Say u"]


async def test_empty_frame_gives_empty_result_with_columns(echo: RunningServer) -> None:
    frame = pd.DataFrame({"text": pd.Series([], dtype="str")})
    out = await frame.holysheep.acomplete("text", base_url=echo.base_url, cache=False)
    assert len(out) == 0
    assert list(out.columns) == ["text", *RESULT_COLUMNS]
    assert out.holysheep.report().rows == 0


async def test_rerun_is_served_from_the_cache(echo: RunningServer, tmp_path: Path) -> None:
    cache = tmp_path / "answers.sqlite"
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(50)]})
    first = await frame.holysheep.acomplete("text", base_url=echo.base_url, cache=str(cache))
    assert requests_at(echo) == 50
    second = await frame.holysheep.acomplete("text", base_url=echo.base_url, cache=str(cache))
    assert requests_at(echo) == 50  # nothing sent again
    assert second["cached"].all()
    assert second["latency"].isna().all()
    assert second["response"].tolist() == first["response"].tolist()
    assert second.holysheep.report().cached == 50
    changed = await frame.holysheep.acomplete(
        "text", base_url=echo.base_url, cache=str(cache), system="Be terse."
    )
    assert requests_at(echo) == 100  # another system prompt is another question
    assert not changed["cached"].any()


async def test_errors_are_not_cached(tmp_path: Path) -> None:
    cache = str(tmp_path / "c.sqlite")
    frame = pd.DataFrame({"text": ["good", "bad {{fault:400}}"]})
    async with await start_server(ServerConfig(echo=True)) as server:
        first = await frame.holysheep.acomplete("text", base_url=server.base_url, cache=cache)
        assert first["error"].tolist()[1].startswith("HTTP 400: ")
        second = await frame.holysheep.acomplete("text", base_url=server.base_url, cache=cache)
        assert second["cached"].tolist() == [True, False]
        assert requests_at(server) == 3


async def test_cancel_keeps_answers_and_rerun_sends_only_the_rest(tmp_path: Path) -> None:
    cache = str(tmp_path / "c.sqlite")
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(400)]})
    async with await start_server(ServerConfig(echo=True)) as server:
        task = asyncio.ensure_future(
            frame.holysheep.acomplete(
                "text", base_url=server.base_url, cache=cache, max_concurrent=4
            )
        )
        for _ in range(500):
            await asyncio.sleep(0.005)
            if requests_at(server) >= 40:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        sent_first = requests_at(server)
        assert 40 <= sent_first < 400
        assert client_tasks() == []
        out = await frame.holysheep.acomplete(
            "text", base_url=server.base_url, cache=cache, max_concurrent=4
        )
        assert out["response"].tolist() == frame["text"].tolist()
        answered_before = int(out["cached"].sum())
        assert answered_before >= sent_first - 4  # only the in-flight ones were lost
        assert requests_at(server) - sent_first == 400 - answered_before


def test_report_on_a_plain_frame_is_a_clear_error() -> None:
    with pytest.raises(HolySheepError, match="no run report"):
        pd.DataFrame({"a": [1]}).holysheep.report()


def test_public_names_are_exported() -> None:
    for name in holysheep_nb.__all__:
        assert hasattr(holysheep_nb, name), name


async def test_a_result_never_replaces_a_column_of_the_input(echo: RunningServer) -> None:
    """complete() run again on an earlier result keeps the earlier answers and errors."""
    frame = pd.DataFrame({"text": ["a", "b"]})
    first = await frame.holysheep.acomplete(
        "text", base_url=echo.base_url, cache=False, progress=False
    )
    second = await first.holysheep.acomplete(
        template="again: {response}", base_url=echo.base_url, cache=False, progress=False
    )
    assert second[first.columns].equals(first)  # every earlier column, untouched
    new = [column for column in second.columns if column not in first.columns]
    assert new == [f"{name}_2" for name in RESULT_COLUMNS]
    assert second["response"].tolist() == first["response"].tolist()
    assert second["response_2"].tolist() == ["again: a", "again: b"]
    assert second["error_2"].isna().all()


def test_sync_complete_under_uvloop_says_to_await_the_async_form(
    threaded_echo: LocalServer,
) -> None:
    uvloop = pytest.importorskip("uvloop")
    frame = pd.DataFrame({"text": ["a", "b"]})

    async def cell() -> tuple[str, list[str]]:
        with pytest.raises(LoopError, match=r"await df\.holysheep\.acomplete") as info:
            frame.holysheep.complete("text", base_url=threaded_echo.base_url, cache=False,
                                     progress=False)  # fmt: skip
        out = await frame.holysheep.acomplete(
            "text", base_url=threaded_echo.base_url, cache=False, progress=False
        )
        return str(info.value), out["response"].tolist()

    message, answers = uvloop.run(cell())
    assert "uvloop" in message
    assert answers == ["a", "b"]  # the async form works under uvloop


def test_a_call_from_a_script_never_renders_its_result_as_text() -> None:
    # asyncio.run formats its main task once (restoring the SIGINT handler), and a task's
    # repr shows its result: a whole frame rendered for nothing on every call.
    rendered: list[str] = []

    class Result:
        def __repr__(self) -> str:
            rendered.append("repr")
            return "Result()"

    async def produce() -> Result:
        return Result()

    assert isinstance(run_sync(produce), Result)
    assert rendered == []
