"""Bad input, table-driven (docs/contract.md, "Bad input"): a clear error before anything is sent, or the
right outcome on each row, and never a hang.

Each case runs ``acomplete`` against a fresh echo server under a deadline. "Raises" cases
also check that the server saw no request at all. Cases that name a non-loopback host run
with the proxy variables pointing at a refusing loopback port, so that if the package let
such a URL through, the attempt would still stay on this machine (no DNS, no network).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from holysheep_nb.engine import CONNECT_FAILURES_TO_STOP
from holysheep_nb.errors import ConfigError, HolySheepWarning, MissingAPIKeyError
from holysheep_nb.server import RunningServer, ServerConfig, start_server
from tests.helpers_reliability import bounded, client_tasks, refused_port

RESULT_COLUMNS = ["response", "error", "latency", "cached", "shared", "attempts", "prompt_tokens",
                  "completion_tokens", "finish_reason", "reasoning", "tool_calls"]  # fmt: skip
DEADLINE = 20.0  # seconds any single case may take before it counts as a hang
KEY = "sk-test-bad-input-0123456789abcdef"


@pytest.fixture
async def echo() -> AsyncIterator[RunningServer]:
    async with await start_server(ServerConfig(echo=True)) as server:
        yield server


@pytest.fixture(autouse=True)
def _proxies_stay_local(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any request to a non-loopback host goes to a refusing 127.0.0.1 port, never out."""
    with refused_port() as port:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        yield


def requests_at(server: RunningServer) -> int:
    return int(server.stats()["requests"])


def frame_of(*prompts: object, **columns: Any) -> Callable[[], pd.DataFrame]:
    if prompts:
        columns = {"text": list(prompts), **columns}
    return lambda: pd.DataFrame(columns)


def object_frame_of(*prompts: object) -> Callable[[], pd.DataFrame]:
    """Prompts kept as Python objects: pandas' pyarrow-backed ``str`` dtype (pandas 3 with
    pyarrow installed) cannot even hold a lone surrogate, an object column can."""
    return lambda: pd.DataFrame({"text": pd.Series(list(prompts), dtype=object)})


TWO_ROWS = frame_of("a", "b")


# --- a clear error before anything is sent ----------------------------------------------------


@dataclass(frozen=True)
class Raises:
    """``acomplete(column, **options)`` must raise ``error`` matching ``match``, sending nothing."""

    options: dict[str, Any]
    match: str
    column: str | None = "text"
    frame: Callable[[], pd.DataFrame] = TWO_ROWS
    error: type[Exception] = ConfigError
    local: bool = True  # base_url defaults to the echo server

    def __str__(self) -> str:  # the table row in the test id
        return f"{self.options}"


RAISES: dict[str, Raises] = {
    # the prompt column or template
    "missing column": Raises({}, "no column 'nope'", column="nope"),
    "duplicate column": Raises({}, "not unique",
                               frame=lambda: pd.DataFrame([["x", "y"]], columns=["text", "text"])),
    "template with missing column": Raises({"template": "T: {nope}"}, "missing column", column=None),
    "template positional field": Raises({"template": "T: {}"}, "positional field", column=None),
    "template unbalanced brace": Raises({"template": "T: {text"}, "bad template", column=None),
    "template and column": Raises({"template": "{text}"}, "exactly one of"),
    "neither column nor template": Raises({}, "exactly one of", column=None),
    # limits and timeouts: zero, negative, not a number, wrong type
    "max_concurrent 0": Raises({"max_concurrent": 0}, "max_concurrent must be a whole number >= 1"),
    "max_concurrent -4": Raises({"max_concurrent": -4}, "max_concurrent must be a whole number"),
    "max_concurrent 2.5": Raises({"max_concurrent": 2.5}, "max_concurrent must be a whole number"),
    "max_concurrent True": Raises({"max_concurrent": True}, "max_concurrent must be a whole number"),
    "requests_per_minute 0": Raises({"requests_per_minute": 0}, "requests_per_minute must be a positive"),
    "requests_per_minute -60": Raises({"requests_per_minute": -60}, "requests_per_minute must be a positive"),
    "requests_per_minute nan": Raises({"requests_per_minute": math.nan}, "requests_per_minute must be a positive"),
    "tokens_per_minute 0": Raises({"tokens_per_minute": 0}, "tokens_per_minute must be a positive"),
    "tokens_per_minute -1": Raises({"tokens_per_minute": -1.0}, "tokens_per_minute must be a positive"),
    "timeout 0": Raises({"timeout": 0}, "timeout must be a positive number"),
    "timeout -1": Raises({"timeout": -1}, "timeout must be a positive number"),
    "timeout nan": Raises({"timeout": math.nan}, "timeout must be a positive number"),
    "timeout '30'": Raises({"timeout": "30"}, "timeout must be a positive number"),
    "max_retries -1": Raises({"max_retries": -1}, "max_retries must be a whole number >= 0"),
    "max_retries 1.5": Raises({"max_retries": 1.5}, "max_retries must be a whole number"),
    "chunk_size 0": Raises({"chunk_size": 0}, "chunk_size must be a whole number >= 1"),
    "chunk_size -10": Raises({"chunk_size": -10}, "chunk_size must be a whole number"),
    # other options
    "blank model": Raises({"model": "   "}, "model must be a non-empty string"),
    "model not a string": Raises({"model": 4}, "model must be a non-empty string"),
    "progress 'yes'": Raises({"progress": "yes"}, "progress must be True or False"),
    "cache 3": Raises({"cache": 3}, "cache must be"),
    "verify 1": Raises({"verify": 1}, "verify must be"),
    "verify missing file": Raises({"verify": "/nonexistent/holysheep-ca.pem"},
                                  "/nonexistent/holysheep-ca.pem"),
    "reserved parameter": Raises({"n": 2}, "n cannot be passed through"),
    "parameter of the wrong type": Raises({"temperature": "hot"},
                                          "temperature must be a number or None, got str"),
    "parameter not JSON": Raises({"extra_body": {"x": object()}}, "must be JSON values"),
    "parameter NaN": Raises({"temperature": math.nan}, "must be JSON values"),
    "parameter with a lone surrogate": Raises({"stop": ["\ud83d"]}, "not valid Unicode"),
    "system with a lone surrogate": Raises({"system": "be \ud83d brief"}, "not valid Unicode"),
    # the key (docs/contract.md, "Bad input": name HOLYSHEEP_API_KEY, for any non-loopback base_url)
    "no key for a remote URL": Raises({"base_url": "https://api.example.test/v1"},
                                      "HOLYSHEEP_API_KEY", error=MissingAPIKeyError, local=False),
    "placeholder key": Raises({"base_url": "https://api.example.test/v1",
                               "api_key": "YOUR_HOLYSHEEP_API_KEY"},
                              "HOLYSHEEP_API_KEY", error=MissingAPIKeyError, local=False),
    "blank key": Raises({"base_url": "https://api.example.test/v1", "api_key": "  "},
                        "HOLYSHEEP_API_KEY", error=MissingAPIKeyError, local=False),
    "key with a newline": Raises({"base_url": "https://api.example.test/v1",
                                  "api_key": "sk-abc\ndef"}, "api_key", local=False),
    # invalid URLs
    "base_url not a URL": Raises({"base_url": "not a url", "api_key": KEY}, "base_url", local=False),
    "base_url ftp": Raises({"base_url": "ftp://files.example.test/v1", "api_key": KEY}, "base_url",
                           local=False),
    "base_url no host": Raises({"base_url": "http:///v1", "api_key": KEY}, "base_url", local=False),
    "base_url bad port": Raises({"base_url": "http://api.example.test:99999/v1", "api_key": KEY},
                                "invalid port", local=False),
    "base_url unclosed IPv6": Raises({"base_url": "http://[::1/v1", "api_key": KEY}, "base_url",
                                     local=False),
    "base_url empty label": Raises({"base_url": "http://api..example.test/v1", "api_key": KEY},
                                   "base_url", local=False),
    "base_url space in host": Raises({"base_url": "http://api example.test/v1", "api_key": KEY},
                                     "base_url", local=False),
}  # fmt: skip


@pytest.mark.parametrize("case", list(RAISES.values()), ids=list(RAISES))
async def test_bad_input_is_a_clear_error_before_anything_is_sent(
    echo: RunningServer, case: Raises
) -> None:
    options = dict(case.options)
    if case.local:
        options.setdefault("base_url", echo.base_url)
    else:  # if a case is let through after all, its failure should come quickly
        options.setdefault("max_retries", 1)
    options.setdefault("cache", False)
    options.setdefault("progress", False)
    frame = case.frame()
    with pytest.raises(case.error, match=case.match):
        await bounded(frame.holysheep.acomplete(case.column, **options), DEADLINE, str(case))
    assert requests_at(echo) == 0


# --- the right outcome on every row -----------------------------------------------------------


@dataclass(frozen=True)
class Rows:
    """``acomplete`` returns; ``check(out, frame, server)`` judges every row."""

    frame: Callable[[], pd.DataFrame]
    check: Callable[[pd.DataFrame, pd.DataFrame, RunningServer], None]
    options: dict[str, Any] = field(default_factory=dict)
    column: str | None = "text"


def exactly_one_outcome(out: pd.DataFrame) -> None:
    assert (out["response"].notna() ^ out["error"].notna()).all()


def echoed(
    requests: int | None = None,
) -> Callable[[pd.DataFrame, pd.DataFrame, RunningServer], None]:
    """Every row answered with its own prompt, exactly (the echo server)."""

    def check(out: pd.DataFrame, frame: pd.DataFrame, server: RunningServer) -> None:
        assert out["error"].isna().all(), out["error"].dropna().tolist()
        assert out["response"].tolist() == frame["text"].tolist()
        assert requests_at(server) == (len(frame) if requests is None else requests)

    return check


def errors(
    *expected: str | None, requests: int = 0, attempts: int | None = None
) -> Callable[..., None]:
    """Row ``i``'s error starts with ``expected[i]`` (None: the row was answered)."""

    def check(out: pd.DataFrame, frame: pd.DataFrame, server: RunningServer) -> None:
        exactly_one_outcome(out)
        got = out["error"].tolist()
        assert len(got) == len(expected)
        for value, prefix in zip(got, expected, strict=True):
            if prefix is None:
                assert pd.isna(value), value
            else:
                assert isinstance(value, str), value
                assert value.startswith(prefix), (value, prefix)
        unsent = out["error"].str.startswith(("missing", "template error"), na=False)
        assert out.loc[unsent, "latency"].isna().all()
        assert (out.loc[unsent, "attempts"] == 0).all()
        if attempts is not None:
            assert (out.loc[out["error"].notna() & ~unsent, "attempts"] == attempts).all()
        assert requests_at(server) == requests

    return check


def responses(*expected: str | None, requests: int) -> Callable[..., None]:
    def check(out: pd.DataFrame, frame: pd.DataFrame, server: RunningServer) -> None:
        exactly_one_outcome(out)
        assert [None if pd.isna(v) else v for v in out["response"].tolist()] == list(expected)
        assert requests_at(server) == requests

    return check


def empty_result(out: pd.DataFrame, frame: pd.DataFrame, server: RunningServer) -> None:
    assert len(out) == 0
    assert list(out.columns) == [*frame.columns, *RESULT_COLUMNS]
    assert out.holysheep.report().rows == 0
    assert requests_at(server) == 0


def same_index_and_order(out: pd.DataFrame, frame: pd.DataFrame, server: RunningServer) -> None:
    assert out.index.equals(frame.index)
    echoed()(out, frame, server)


def lone_surrogate(out: pd.DataFrame, frame: pd.DataFrame, server: RunningServer) -> None:
    # Bad source data must not kill the batch: the other rows are answered, and the bad row
    # has one clear outcome (answered with the surrogate replaced, or an error of its own).
    exactly_one_outcome(out)
    assert out["response"].tolist()[0::2] == ["before", "after"]
    bad_error = out["error"].iat[1]
    assert pd.isna(bad_error) or "\n" not in bad_error


UNICODE = [
    "ภาษาไทยอ่านง่ายไหม สินค้าดีมาก",  # Thai
    "👩‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 skin tone",  # ZWJ sequences and modifiers
    "Ünïcödé mixed: English ไทย 日本語 한국어 العربية עברית Ελληνικά",  # mixed scripts, RTL
    "e\u0301 combining, \u200b zero width, \ufeff BOM inside",
    "  leading and trailing spaces kept  ",
    "tabs\tand\nnew\r\nlines and a NUL \x00 char",
    "quotes \" ' ` and backslash \\ and {braces} and {{fault-like}}",
]  # fmt: skip

BIG = "x" * (1 << 20) + " ทดสอบ 🎉 end"

ROWS: dict[str, Rows] = {
    "empty frame": Rows(lambda: pd.DataFrame({"text": pd.Series([], dtype="str")}), empty_result),
    "empty frame, template": Rows(lambda: pd.DataFrame({"a": [], "b": []}), empty_result,
                                  options={"template": "{a} {b}"}, column=None),
    "all-NaN column": Rows(frame_of(np.nan, np.nan, np.nan),
                           errors("missing prompt", "missing prompt", "missing prompt")),
    "None, NaN, empty, blank": Rows(lambda: pd.DataFrame({"text": ["ok", None, np.nan, "", " \t\n"]}, dtype=object),
                                    errors(None, "missing prompt", "missing prompt", "missing prompt",
                                           "missing prompt", requests=1)),
    "categorical with NaN": Rows(lambda: pd.DataFrame({"text": pd.Categorical(["pos", None, "neg", "pos"])}),
                                 responses("pos", None, "neg", "pos", requests=2)),  # "pos" asked once
    "integer column": Rows(frame_of(1, -2, 30), responses("1", "-2", "30", requests=3)),
    "float column": Rows(frame_of(2.5, np.nan, -0.125), responses("2.5", None, "-0.125", requests=2)),
    "nullable Int64 with NA": Rows(lambda: pd.DataFrame({"text": pd.array([7, None], dtype="Int64")}),
                                   responses("7", None, requests=1)),
    "bool column": Rows(frame_of(True, False), responses("True", "False", requests=2)),
    "Thai, emoji, mixed scripts": Rows(frame_of(*UNICODE), echoed()),
    "lone surrogate": Rows(object_frame_of("before", "bad \ud83d half an emoji", "after"),
                           lone_surrogate),
    "prompt over 1 MB": Rows(frame_of(BIG), echoed()),
    "duplicate index labels": Rows(lambda: pd.DataFrame({"text": ["a", "b", "c", "d"]}, index=[7, 7, 3, 7]),
                                   same_index_and_order),
    "MultiIndex": Rows(lambda: pd.DataFrame({"text": ["a", "b", "c"]},
                                            index=pd.MultiIndex.from_tuples([("x", 1), ("x", 1), ("y", 0)])),
                       same_index_and_order),
    "template: missing value and format error": Rows(
        lambda: pd.DataFrame({"a": ["k", None, "m"], "n": pd.Series([1, 2, "three"], dtype=object)}),
        errors(None, "missing value for column 'a'", "template error: ", requests=1),
        options={"template": "{a}: {n:d}"}, column=None),
    "max_retries 0 and a 500": Rows(frame_of("fine", "fails {{fault:500}}"),
                                    errors(None, "HTTP 500 after 1 attempt: ", requests=2, attempts=1),
                                    options={"max_retries": 0}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ROWS.values()), ids=list(ROWS))
async def test_odd_input_gets_the_right_outcome_per_row(echo: RunningServer, case: Rows) -> None:
    frame = case.frame()
    before = frame.copy()
    options = {"base_url": echo.base_url, "cache": False, "progress": False, **case.options}
    out = await bounded(frame.holysheep.acomplete(case.column, **options), DEADLINE, "the run")
    pd.testing.assert_frame_equal(frame, before)  # never mutated
    assert len(out) == len(frame)
    assert out.index.equals(frame.index)
    assert list(out.columns) == [*frame.columns, *RESULT_COLUMNS]
    case.check(out, frame, echo)


# --- base URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/", "/v1//"])
async def test_base_url_with_or_without_v1_and_trailing_slash(
    echo: RunningServer, suffix: str
) -> None:
    root = echo.base_url.removesuffix("/v1")
    frame = pd.DataFrame({"text": ["one", "two"]})
    out = await bounded(
        frame.holysheep.acomplete("text", base_url=root + suffix, cache=False, progress=False),
        DEADLINE, "the run",
    )  # fmt: skip
    assert out["response"].tolist() == ["one", "two"]
    assert requests_at(echo) == 2


async def test_base_url_pasted_with_the_endpoint_path_is_accepted(echo: RunningServer) -> None:
    """Providers' pages show the full URL; posting to /chat/completions/chat/completions
    made every row a 404."""
    frame = pd.DataFrame({"text": ["one", "two"]})
    out = await bounded(
        frame.holysheep.acomplete("text", base_url=echo.base_url + "/chat/completions/",
                                  cache=False, progress=False),
        DEADLINE, "the run",
    )  # fmt: skip
    assert out["response"].tolist() == ["one", "two"]
    assert requests_at(echo) == 2


async def test_a_wrong_path_stops_the_run_at_the_first_404(echo: RunningServer) -> None:
    frame = pd.DataFrame({"text": [f"r{i}" for i in range(30)]})
    with pytest.warns(HolySheepWarning, match="not found"):
        out = await bounded(
            frame.holysheep.acomplete("text", base_url=echo.base_url + "/oops", max_concurrent=1,
                                      cache=False, progress=False),
            DEADLINE, "the run",
        )  # fmt: skip
    assert out["error"].iat[0].startswith("HTTP 404")
    assert out["error"].iloc[1:].str.startswith("not sent: not found (HTTP 404)").all()
    assert out.holysheep.report().requests_sent == 1
    assert "check base_url" in str(out.holysheep.report())


async def test_unreachable_port_stops_the_run_at_once_naming_the_url(
    echo: RunningServer,
) -> None:
    """Nothing ever answered and the first requests all fail to connect: a wrong base_url or
    a server that is down. One line says so; rows are not retried one by one."""
    frame = pd.DataFrame({"text": [f"r{i}" for i in range(200)]})
    with refused_port() as port:
        url = f"http://127.0.0.1:{port}/v1"
        with pytest.warns(HolySheepWarning, match=f"cannot connect to {url}/chat/completions"):
            out = await bounded(
                frame.holysheep.acomplete("text", base_url=url, cache=False, progress=False,
                                          max_concurrent=16),
                DEADLINE, "the run against a closed port",
            )  # fmt: skip
    assert out["response"].isna().all()
    # Stopped at the third refused connection: only the sends already in flight then went,
    # once each (not 6 attempts a row, with their backoffs).
    assert out["attempts"].sum() <= CONNECT_FAILURES_TO_STOP + 16
    connect_errors = out["error"].str.startswith("connection error after ")
    not_sent = out["error"].str.startswith(f"not sent: cannot connect to {url}/chat/completions")
    assert (connect_errors | not_sent).all(), out["error"].unique()
    assert not_sent.sum() >= 180
    report = out.holysheep.report()
    assert report.stop_cause is not None
    assert report.stop_cause.startswith(f"cannot connect to {url}")
    assert str(report).splitlines()[1].startswith("stopped early: cannot connect to")
    assert report.requests_sent == 0  # nothing reached a server
    assert requests_at(echo) == 0


async def test_a_cancelled_bad_run_leaves_nothing_behind(echo: RunningServer) -> None:
    """A run stuck in long backoffs (every answer a 503) ends promptly when cancelled."""
    frame = pd.DataFrame({"text": [f"r{i} {{{{fault:503}}}}" for i in range(50)]})
    task = asyncio.ensure_future(
        frame.holysheep.acomplete("text", base_url=echo.base_url,
                                  max_retries=10, cache=False, progress=False)
    )  # fmt: skip
    for _ in range(500):  # until the workers are running (and failing, and backing off)
        await asyncio.sleep(0.01)
        if any(name.startswith("_Run.work") for name in client_tasks()):
            break
    assert client_tasks(), "the run never started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(task, DEADLINE, "cancelling the run")  # a hang guard
    assert client_tasks() == []
