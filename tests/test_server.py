"""The local OpenAI-compatible server: answers, usage, faults, limits, counters, runners."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest

from holysheep_nb.errors import ConfigError
from holysheep_nb.server import (
    FAULT_KINDS,
    Faults,
    Latency,
    LocalServer,
    RunningServer,
    ServerConfig,
    ServerProcess,
    config_args,
    estimate_tokens,
    parse_cli,
    prompt_digest,
    start_server,
)
from holysheep_nb.server.app import Service
from holysheep_nb.server.completion import completion_body, plain_body, plan
from tests.fakes import FakeClock

MakeServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def make_server() -> AsyncIterator[MakeServer]:
    servers: list[RunningServer] = []

    async def make(**options: Any) -> RunningServer:
        server = await start_server(ServerConfig(**options))
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class Reply:
    """One HTTP exchange, read completely."""

    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content(self) -> str:
        assert self.status == 200, self.body
        content: str = self.json()["choices"][0]["message"]["content"]
        return content


async def post(
    session: aiohttp.ClientSession,
    server: RunningServer | LocalServer,
    prompt: str,
    *,
    system: str | None = None,
    key: str | None = None,
    **extra: Any,
) -> Reply:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    headers = {"Authorization": f"Bearer {key}"} if key else None
    body = {"model": "gpt-4.1", "messages": messages, **extra}
    url = f"{server.base_url}/chat/completions"
    async with session.post(url, json=body, headers=headers) as response:
        return Reply(response.status, response.headers, await response.read())


#: Seconds a poll waits before the test fails: a guard against a hang, never reached by a
#: condition that holds (it takes milliseconds), however busy the machine.
HANG_GUARD = 60.0


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` every few milliseconds, failing after ``HANG_GUARD`` seconds."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {HANG_GUARD} s"
        await asyncio.sleep(0.002)


def record_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How each of the server's sleeps (latency, hang) ends: ``"ended"`` (its time was up,
    or ``close`` woke it) or ``"cancelled"`` (aiohttp's shutdown backstop cut it off)."""
    ended: list[str] = []
    original = Service._sleep

    async def sleep(self: Service, seconds: float) -> None:
        try:
            await original(self, seconds)
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise
        ended.append("ended")

    monkeypatch.setattr(Service, "_sleep", sleep)
    return ended


# --- answers ------------------------------------------------------------------------------


async def test_completion_has_the_openai_shape_and_exact_usage(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    system, prompt = "Answer with one word: positive, negative or neutral.", "I love it!"
    reply = await post(session, server, prompt, system=system)
    body = reply.json()
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-4.1"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "positive"},
            "finish_reason": "stop",
        }
    ]
    prompt_tokens = (math.ceil(len(system) / 4) + 4) + (math.ceil(len(prompt) / 4) + 4)
    completion_tokens = math.ceil(len("positive") / 4)
    assert body["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@pytest.mark.parametrize("answer", ["positive", "", "ราคาดี 👍", "x" * 41])
def test_the_plain_fast_path_gives_what_the_general_path_gives(answer: str) -> None:
    config, body = ServerConfig(), {"model": "m", "messages": [{"role": "user", "content": "q"}]}
    ids = {"completion_id": "chatcmpl-1", "created": 7, "model": "m", "prompt_tokens": 5}
    general = completion_body(
        config, plan(config, body, answer, None, ["q"], "q"), choices=1, top_logprobs=None, **ids
    )
    assert plain_body(answer, **ids) == general


def test_token_estimate_and_digest_helpers() -> None:
    assert [estimate_tokens(t) for t in ("", "a", "abcd", "abcde", "ก" * 9)] == [0, 1, 1, 2, 3]
    text = "ราคาดี 👍 良い"
    assert prompt_digest(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


@pytest.mark.parametrize(
    ("prompt", "label"),
    [
        ("The battery life is excellent. Highly recommend it.", "positive"),
        ("The strap broke after a week. Would not recommend.", "negative"),
        ("It does the job. It arrived on time.", "neutral"),
        ("สินค้าดีมาก ส่งไวมาก 👍", "positive"),
        ("期待外れでした。すぐに壊れました。", "negative"),
    ],
)
async def test_default_answer_is_the_sentiment(
    make_server: MakeServer, session: aiohttp.ClientSession, prompt: str, label: str
) -> None:
    server = await make_server()
    assert (await post(session, server, prompt)).content == label


async def test_answers_are_deterministic_across_servers(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    prompts = [f"Review {i}: the fit is great but the zippers are awful." for i in range(5)]
    system = "Allowed labels: fit, zippers, price, colour"
    first, second = await make_server(), await make_server()
    answers = [(await post(session, first, p, system=system)).content for p in prompts]
    again = [(await post(session, second, p, system=system)).content for p in prompts]
    assert answers == again
    assert set(answers) <= {"fit", "zippers"}


async def test_models_lists_a_few_ids(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    async with session.get(f"{server.base_url}/models") as response:
        body = await response.json()
    assert body["object"] == "list"
    assert {"gpt-4o", "gpt-4.1"} <= {model["id"] for model in body["data"]}


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b'{"model": "gpt-4o"}', b'{"model": "gpt-4o", "messages": []}', b"[1, 2]"],
)
async def test_bad_request_bodies_get_an_openai_400(
    make_server: MakeServer, session: aiohttp.ClientSession, payload: bytes
) -> None:
    server = await make_server()
    url = f"{server.base_url}/chat/completions"
    async with session.post(url, data=payload) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert server.stats()["by_status"] == {"400": 1}


# --- label sets ---------------------------------------------------------------------------


async def test_json_schema_enum_gives_a_json_label_from_the_set(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    response_format = {
        "type": "json_schema",
        "json_schema": {
            "name": "topic",
            "schema": {
                "type": "object",
                "properties": {
                    "topic": {"type": "string", "enum": ["billing", "shipping", "quality"]}
                },
                "required": ["topic"],
            },
        },
    }
    reply = await post(
        session, server, "Shipping took three weeks.", response_format=response_format
    )
    assert json.loads(reply.content) == {"topic": "shipping"}


async def test_json_object_format_wraps_the_sentiment(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    reply = await post(session, server, "Awful. Avoid.", response_format={"type": "json_object"})
    assert json.loads(reply.content) == {"label": "negative"}


@pytest.mark.parametrize(
    ("system", "prompt", "expected"),
    [
        ("Allowed labels: billing, shipping, quality", "I was billed twice this month.", "billing"),
        (None, "Labels: billing, shipping, quality\nThe quality is poor.", "quality"),
        ("Labels: Positive, Negative, Neutral", "Terrible, it broke at once.", "Negative"),
    ],
)
async def test_labels_line_gives_a_bare_label_from_the_set(
    make_server: MakeServer,
    session: aiohttp.ClientSession,
    system: str | None,
    prompt: str,
    expected: str,
) -> None:
    server = await make_server()
    assert (await post(session, server, prompt, system=system)).content == expected


async def test_label_without_keyword_overlap_is_a_stable_member_of_the_set(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    labels = ["alpha", "beta", "gamma", "delta"]
    system = f"Labels: {', '.join(labels)}"
    answers = [(await post(session, server, f"row {i}", system=system)).content for i in range(20)]
    assert set(answers) <= set(labels)
    assert len(set(answers)) > 1
    assert answers == [
        (await post(session, server, f"row {i}", system=system)).content for i in range(20)
    ]


async def test_off_label_rate_answers_outside_the_set_for_that_share_of_prompts(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    system = "Labels: billing, shipping, quality"
    always = await make_server(off_label_rate=1.0)
    assert (await post(session, always, "The quality is poor.", system=system)).content == "unsure"
    sometimes = await make_server(off_label_rate=0.3)
    answers = [
        (await post(session, sometimes, f"order {i}", system=system)).content for i in range(200)
    ]
    off = [a for a in answers if a not in {"billing", "shipping", "quality"}]
    assert set(off) == {"unsure"}
    assert 30 <= len(off) <= 90


# --- echo and digest ----------------------------------------------------------------------

UNICODE = "ราคาดี 👍🏽 良い商品です — e\u0301 👨‍👩‍👧 ﷽ \u200b tab\tnew\nline"


async def test_echo_returns_the_prompt_exactly(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(echo=True)
    assert (await post(session, server, UNICODE)).content == UNICODE
    assert (await post(session, server, "héllo {{fault:500*1}}")).status == 500
    assert (await post(session, server, "héllo {{fault:500*1}}")).content == "héllo"


async def test_digest_suffix_proves_which_prompt_was_answered(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(digest=True)
    reply = await post(session, server, UNICODE)
    assert reply.content.endswith(f" [sha:{prompt_digest(UNICODE)}]")
    echo = await make_server(echo=True, digest=True)
    assert (await post(session, echo, "abc")).content == f"abc [sha:{prompt_digest('abc')}]"


# --- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "502", "503", "504", "501", "400", "403", "408"])
async def test_status_fault_marker_fails_every_attempt(
    make_server: MakeServer, session: aiohttp.ClientSession, kind: str
) -> None:
    server = await make_server()
    for _ in range(3):
        reply = await post(session, server, f"hello {{{{fault:{kind}}}}}")
        assert reply.status == int(kind)
        assert reply.json()["error"]["message"]
    assert server.stats()["faults"] == {kind: 3}


async def test_fault_marker_with_count_fails_then_answers(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    prompt = "The screen is excellent. {{fault:503*2}}"
    statuses = [(await post(session, server, prompt)).status for _ in range(2)]
    assert statuses == [503, 503]
    assert (await post(session, server, prompt)).content == "positive"
    assert (await post(session, server, "other prompt {{fault:503*2}}")).status == 503
    stats = server.stats()
    assert stats["faults"] == {"503": 3}
    assert stats["by_status"] == {"200": 1, "503": 3}


async def test_unknown_fault_marker_is_a_400(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    reply = await post(session, server, "x {{fault:teapot}}")
    assert reply.status == 400
    assert "teapot" in reply.json()["error"]["message"]


@pytest.mark.parametrize(
    ("retry_after", "kind", "header", "value"),
    [
        (0.05, "429", "Retry-After", "0.05"),
        (2.0, "429", "Retry-After", "2"),
        (0.05, "429-ms", "retry-after-ms", "50"),
        (1.5, "429-ms", "retry-after-ms", "1500"),
    ],
)
async def test_429_retry_after_in_seconds_or_milliseconds(
    make_server: MakeServer,
    session: aiohttp.ClientSession,
    retry_after: float,
    kind: str,
    header: str,
    value: str,
) -> None:
    server = await make_server(retry_after=retry_after)
    reply = await post(session, server, f"x {{{{fault:{kind}}}}}")
    assert reply.status == 429
    assert reply.headers[header] == value
    other = "retry-after-ms" if header == "Retry-After" else "Retry-After"
    assert other not in reply.headers
    assert reply.json()["error"]["code"] == "rate_limit_exceeded"


async def test_429_retry_after_as_http_date_is_rounded_up(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(retry_after=1.2)
    before = time.time()
    reply = await post(session, server, "x {{fault:429-date}}")
    deadline = parsedate_to_datetime(reply.headers["Retry-After"]).timestamp()
    assert reply.status == 429
    assert before + 1.2 <= deadline <= time.time() + 2.2


async def test_malformed_200_bodies(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    html = await post(session, server, "x {{fault:html}}")
    assert (html.status, html.headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert html.body.startswith(b"<html>")
    bad = await post(session, server, "x {{fault:badjson}}")
    assert (bad.status, bad.headers["Content-Type"]) == (200, "application/json")
    with pytest.raises(json.JSONDecodeError):
        bad.json()
    nochoices = await post(session, server, "x {{fault:nochoices}}")
    assert nochoices.status == 200
    assert "choices" not in nochoices.json()


async def test_drop_closes_the_connection_without_a_response(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(session, server, "x {{fault:drop}}")
    assert (await post(session, server, "fine")).status == 200
    stats = server.stats()
    assert stats["faults"] == {"drop": 1}
    assert stats["by_status"] == {"200": 1}


async def test_hang_outlasts_a_client_timeout_and_ends_at_shutdown(
    make_server: MakeServer, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await make_server()  # a hang is 300 s: only close() can end it in the test
    sleeps = record_sleeps(monkeypatch)
    url = f"{server.base_url}/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "x {{fault:hang}}"}]}
    with pytest.raises(asyncio.TimeoutError):
        await session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=0.05))
    await wait_until(lambda: server.stats()["in_flight"] == 0)  # the client gave up
    pending = asyncio.create_task(session.post(url, json=body))
    await wait_until(lambda: server.stats()["in_flight"] == 1)
    sleeps.clear()
    await server.close()
    # Woken by close, not cut off by aiohttp's shutdown backstop a second later.
    assert sleeps
    assert set(sleeps) == {"ended"}
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await pending


async def test_hang_shorter_than_the_client_timeout_is_a_late_answer(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(hang_seconds=0.02)
    started = time.monotonic()
    assert (await post(session, server, "I love it {{fault:hang}}")).content == "positive"
    waited = time.monotonic() - started
    assert waited >= 0.02  # a lower bound: a busy machine only makes the wait longer
    assert server.stats()["faults"] == {"hang": 1}


async def test_api_key_check_and_401_echo_the_sent_key(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(api_key="sk-right")
    wrong = await post(session, server, "hi", key="sk-wrong-123")
    assert wrong.status == 401
    assert wrong.json()["error"]["message"] == "Incorrect API key provided: sk-wrong-123."
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    missing = await post(session, server, "hi")
    assert missing.status == 401
    assert "didn't provide an API key" in missing.json()["error"]["message"]
    assert (await post(session, server, "hi", key="sk-right")).status == 200
    injected = await post(session, server, "hi {{fault:401}}", key="sk-right")
    assert injected.status == 401
    assert "sk-right" in injected.json()["error"]["message"]


async def test_fault_rates_are_drawn_from_the_seeded_rng(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    faults = Faults({"500": 0.3, "429": 0.2})
    runs = []
    for _ in range(2):
        server = await make_server(faults=faults, seed=7, retry_after=0)
        runs.append([(await post(session, server, f"p{i}")).status for i in range(200)])
    assert runs[0] == runs[1]
    assert 40 <= runs[0].count(500) <= 80
    assert 20 <= runs[0].count(429) <= 60
    assert server.stats()["faults"] == {"500": runs[0].count(500), "429": runs[0].count(429)}


# --- provider limits ----------------------------------------------------------------------


async def test_rpm_limit_allows_the_window_share_then_429s_with_headers(
    make_server: MakeServer, session: aiohttp.ClientSession, limits_clock: FakeClock
) -> None:
    server = await make_server(rpm=600, limit_window=1)
    replies = [await post(session, server, f"p{i}") for i in range(11)]
    assert [r.status for r in replies] == [200] * 10 + [429]
    assert replies[0].headers["x-ratelimit-remaining-requests"] == "9"
    limited = replies[-1]
    assert limited.headers["x-ratelimit-limit-requests"] == "10"  # what 1 s of 600 rpm holds
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert limited.headers["x-ratelimit-reset-requests"].endswith("s")
    assert 0 < float(limited.headers["retry-after"]) <= 1.0
    assert server.stats()["rate_limited"] == 1


async def test_rpm_slot_frees_after_retry_after(
    make_server: MakeServer, session: aiohttp.ClientSession, limits_clock: FakeClock
) -> None:
    server = await make_server(rpm=1200, limit_window=0.05)
    assert (await post(session, server, "a")).status == 200
    limits_clock.advance(0.02)
    limited = await post(session, server, "b")
    assert limited.status == 429
    wait = float(limited.headers["retry-after"])
    assert wait == pytest.approx(0.03)
    limits_clock.advance(wait - 0.001)
    assert (await post(session, server, "b")).status == 429  # not yet
    limits_clock.advance(0.001)
    assert (await post(session, server, "b")).status == 200


async def test_tpm_limit_counts_prompt_and_completion_tokens(
    make_server: MakeServer, session: aiohttp.ClientSession, limits_clock: FakeClock
) -> None:
    prompt = "x" * 40  # 10 + 4 prompt tokens, "neutral" is 2 completion tokens: 16 a request
    server = await make_server(tpm=60 * 40, limit_window=1)
    statuses = [(await post(session, server, prompt)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = await post(session, server, prompt)
    assert limited.headers["x-ratelimit-limit-tokens"] == "40"  # what 1 s of 2400 tpm holds
    assert limited.headers["x-ratelimit-remaining-tokens"] == "8"
    assert limited.json()["error"]["type"] == "tokens"


# --- counters and runtime changes ---------------------------------------------------------


async def test_counters_track_concurrency_and_reset(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(latency=Latency.fixed(0.03), record_times=True)
    before = time.monotonic()
    replies = await asyncio.gather(*(post(session, server, f"p{i}") for i in range(5)))
    assert [r.status for r in replies] == [200] * 5
    stats = server.stats()
    assert stats["requests"] == 5
    assert stats["in_flight"] == 0
    assert stats["max_in_flight"] == 5
    assert stats["by_status"] == {"200": 5}
    assert len(stats["times"]) == 5
    assert all(before <= t <= time.monotonic() for t in stats["times"])
    async with session.get(f"{server.base_url.removesuffix('/v1')}/_stats") as response:
        assert await response.json() == stats
    async with session.post(f"{server.base_url.removesuffix('/v1')}/_reset") as response:
        assert response.status == 200
    assert server.stats() == {
        "requests": 0,
        "in_flight": 0,
        "max_in_flight": 0,
        "by_status": {},
        "faults": {},
        "rate_limited": 0,
        "embeddings": 0,
        "batches": {"uploads": 0, "created": 0, "polls": 0, "cancels": 0, "lines_run": 0},
        "times": [],
    }


async def test_update_swaps_options_at_runtime(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    server.update(faults=Faults({"500": 1.0}))
    assert (await post(session, server, "a")).status == 500
    with pytest.raises(ConfigError, match="off_label_rate"):
        server.update(off_label_rate=2.0)
    assert server.config.faults == Faults({"500": 1.0})
    server.update(faults=Faults())
    assert (await post(session, server, "a")).status == 200


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"off_label_rate": -0.1}, "off_label_rate"),
        ({"rpm": 0}, "rpm must be > 0"),
        ({"tpm": -5}, "tpm must be > 0"),
        ({"limit_window": 0}, "limit_window"),
        ({"retry_after": -1}, "retry_after"),
        ({"hang_seconds": -1}, "hang_seconds"),
        ({"faults": {"429": 0.1}}, "faults must be a Faults"),
        ({"latency": 0.1}, "latency must be a Latency"),
    ],
)
def test_server_config_rejects_bad_values_readably(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig(**options)


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ({"418": 0.1}, "unknown fault kind"),
        ({"500": 1.5}, r"in \[0, 1\]"),
        ({"500": 0.6, "429": 0.6}, "sum"),
    ],
)
def test_faults_reject_bad_rates(rates: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Faults(rates)


def test_faults_cover_every_kind_and_are_hashable() -> None:
    faults = Faults(dict.fromkeys(FAULT_KINDS, 1 / len(FAULT_KINDS)))
    assert list(faults.rates) == list(FAULT_KINDS)
    assert hash(faults) == hash(Faults(dict(reversed(faults.rates.items()))))


@pytest.mark.parametrize(
    ("spec", "latency"),
    [
        ("0", Latency()),
        ("0.1", Latency.fixed(0.1)),
        ("0.01-0.05", Latency.uniform(0.01, 0.05)),
        ("1e-05-0.05", Latency.uniform(1e-05, 0.05)),
        ("lognormal:0.1:1.0", Latency.lognormal(median=0.1, sigma=1.0)),
    ],
)
def test_latency_parses_the_cli_forms_and_round_trips(spec: str, latency: Latency) -> None:
    assert Latency.parse(spec) == latency
    assert Latency.parse(str(latency)) == latency


@pytest.mark.parametrize("spec", ["fast", "0.1-", "lognormal:0.1", "-1", "0.5-0.1"])
def test_latency_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ConfigError):
        Latency.parse(spec)


def test_latency_samples_stay_in_range() -> None:
    from random import Random

    rng = Random(1)
    uniform = [Latency.uniform(0.01, 0.05).sample(rng) for _ in range(500)]
    assert all(0.01 <= s <= 0.05 for s in uniform)
    lognormal = sorted(Latency.lognormal(0.1, 1.0).sample(rng) for _ in range(501))
    assert 0.07 < lognormal[250] < 0.14
    assert lognormal[-1] > 0.5
    assert Latency.fixed(0.2).sample(rng) == 0.2


def test_cli_options_round_trip_through_config_args() -> None:
    config = ServerConfig(
        latency=Latency.uniform(0.01, 0.05),
        faults=Faults({"429": 0.02, "drop": 0.01}),
        seed=3,
        echo=True,
        digest=True,
        off_label_rate=0.1,
        api_key="sk-test",
        rpm=600.0,
        tpm=90000.0,
        limit_window=2.0,
        retry_after=0.25,
        hang_seconds=5.0,
        record_times=True,
    )
    assert parse_cli(["--port", "0", *config_args(config)]) == (config, "127.0.0.1", 0)
    assert parse_cli([]) == (ServerConfig(), "127.0.0.1", 8765)


@pytest.mark.parametrize(
    "argv",
    [["--fault-rate", "429"], ["--fault-rate", "429=2"], ["--latency", "soon"], ["--rpm", "0"]],
)
def test_cli_rejects_bad_options_with_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_cli(argv)
    assert exit_info.value.code == 2
    assert "python -m holysheep_nb serve" in capsys.readouterr().err


# --- the threaded and subprocess runners --------------------------------------------------


async def test_local_server_runs_in_a_thread_and_closes_with_a_hang_in_flight(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps = record_sleeps(monkeypatch)
    with LocalServer(ServerConfig(echo=True)) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert (await post(session, server, UNICODE)).content == UNICODE
        server.update(faults=Faults({"503": 1.0}))
        assert (await post(session, server, "a")).status == 503
        assert server.stats()["by_status"] == {"200": 1, "503": 1}
        server.reset()
        assert server.stats()["requests"] == 0
        pending = asyncio.create_task(post(session, server, "x {{fault:hang}}"))
        await wait_until(lambda: server.stats()["in_flight"] == 1)
        sleeps.clear()
    assert sleeps  # the hang's sleep ended: woken at close, not cut off by the backstop
    assert set(sleeps) == {"ended"}
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await pending


def test_server_process_serves_and_is_controlled_over_http() -> None:
    config = ServerConfig(digest=True, faults=Faults({"500": 1.0}), seed=1)
    with ServerProcess(config) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert server.pid != os.getpid()
        os.kill(server.pid, 0)  # a process of its own, alive: signal 0 only checks
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def ask(prompt: str) -> tuple[int, str]:
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}]})
            request = urllib.request.Request(
                f"{server.base_url}/chat/completions",
                data=body.encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with opener.open(request, timeout=5) as response:
                    return response.status, json.loads(response.read())["choices"][0]["message"][
                        "content"
                    ]
            except urllib.error.HTTPError as exc:
                return exc.code, ""

        assert ask("hello")[0] == 500
        assert server.update(faults=Faults(), latency=Latency.fixed(0.001)) == server.config
        assert server.config.latency == Latency.fixed(0.001)
        assert ask("I love it") == (200, f"positive [sha:{prompt_digest('I love it')}]")
        assert server.stats()["by_status"] == {"200": 1, "500": 1}
        with pytest.raises(ConfigError, match="rate"):
            server.update(off_label_rate=3)
        server.reset()
        assert server.stats()["requests"] == 0


def test_server_process_reports_why_it_did_not_start() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=r"did not start: .*cannot listen on 127\.0\.0\.1:"):
            ServerProcess(port=port).start()
    with pytest.raises(RuntimeError, match="not running"):
        _ = ServerProcess().pid
