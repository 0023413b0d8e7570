"""One typed outcome per row, counted once: the bar, the stats and the report agree."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from holysheep_nb.job import CompletionJob
from holysheep_nb.job_options import JobOptions
from holysheep_nb.labels import LabelSet
from holysheep_nb.outcome import (
    NO_TEXT,
    TOOL_CALL_CAUSE,
    AnswerRejected,
    OutcomeKind,
    RowOutcome,
    RunStats,
    RunStop,
    cause_of_error,
    read_answer,
)
from holysheep_nb.prompts import PromptSource
from holysheep_nb.server import ServerConfig, start_server

SENTIMENT = ["positive", "negative", "neutral"]
K = OutcomeKind


@pytest.mark.parametrize(
    ("outcome", "error", "cause"),
    [
        (RowOutcome(0, K.OK, response="x"), None, None),
        (RowOutcome(0, K.HTTP, status=400, detail="bad", attempts=1), "HTTP 400: bad", "HTTP 400"),
        (
            RowOutcome(0, K.SERVER, status=503, detail="busy", attempts=6),
            "HTTP 503 after 6 attempts: busy",
            "HTTP 503",
        ),
        (
            RowOutcome(0, K.SERVER, status=429, detail="slow down", attempts=1),
            "HTTP 429 after 1 attempt: slow down",
            "HTTP 429",
        ),
        (RowOutcome(0, K.TIMEOUT, attempts=4), "timeout after 4 attempts", "timeout"),
        (
            RowOutcome(0, K.CONNECTION, detail="reset", attempts=6),
            "connection error after 6 attempts: reset",
            "connection error",
        ),
        (
            RowOutcome(0, K.MALFORMED, status=200, detail="not JSON: <", attempts=2),
            "malformed response after 2 attempts: not JSON: <",
            "malformed response",
        ),
        (
            RowOutcome(0, K.AUTH, status=401, detail="Incorrect API key", attempts=1),
            "authentication failed (HTTP 401): Incorrect API key",
            "authentication failed (HTTP 401)",
        ),
        (
            RowOutcome(0, K.NOT_SENT, detail="authentication failed (HTTP 401)"),
            "not sent: authentication failed (HTTP 401)",
            "not sent: authentication failed (HTTP 401)",
        ),
        (
            RowOutcome(0, K.MISSING_PROMPT, detail="missing prompt"),
            "missing prompt",
            "missing prompt",
        ),
        (
            RowOutcome(0, K.MISSING_PROMPT, detail="missing value for column 'a:b'"),
            "missing value for column 'a:b'",
            "missing value for column 'a:b'",
        ),
        (
            RowOutcome(0, K.OFF_LABEL, response="mixed", detail="'mixed'"),
            "not in label set: 'mixed'",
            "not in label set",
        ),
        (
            RowOutcome(0, K.INVALID, detail=NO_TEXT),
            f"answer does not fit the schema: {NO_TEXT}",
            TOOL_CALL_CAUSE,
        ),
        (
            RowOutcome(0, K.HTTP, status=404, detail="model x: not found after all"),
            "HTTP 404: model x: not found after all",
            "HTTP 404",
        ),
        (
            RowOutcome(0, K.TRUNCATED),
            "truncated at the token limit",
            "truncated at the token limit",
        ),
        (
            RowOutcome(0, K.REFUSED, detail="I can't help with that."),
            "refused by the model: I can't help with that.",
            "refused by the model",
        ),
    ],
)
def test_error_text_and_cause_come_from_the_kind(
    outcome: RowOutcome, error: str | None, cause: str | None
) -> None:
    assert outcome.error == error
    assert outcome.cause == cause
    if error is not None:  # and the cause is read back from the error cell alone
        assert cause_of_error(error) == cause


def test_a_bad_images_error_is_its_own_group_when_read_back() -> None:
    outcome = RowOutcome(0, K.BAD_IMAGE, detail="image file not found: a.png", group="not found")
    assert outcome.error is not None
    assert cause_of_error(outcome.error) == "image file not found: a.png"


def test_the_tally_counts_each_row_once_by_kind_and_status() -> None:
    stats = RunStats()
    outcomes = [
        RowOutcome(0, K.OK, response="a", latency=0.1, prompt_tokens=10, completion_tokens=2),
        RowOutcome(1, K.OK, response="b", cached=True, prompt_tokens=99, completion_tokens=99),
        RowOutcome(2, K.SERVER, status=503, attempts=6, latency=3.0),
        RowOutcome(3, K.SERVER, status=503, attempts=6, latency=3.0),
        RowOutcome(4, K.HTTP, status=400, attempts=1, latency=0.2),
        RowOutcome(5, K.MISSING_PROMPT, detail="missing prompt"),
        RowOutcome(6, K.NOT_SENT, detail="authentication failed (HTTP 401)"),
        RowOutcome(
            7, K.OFF_LABEL, response="meh", latency=0.3, prompt_tokens=5, completion_tokens=1
        ),
        RowOutcome(8, K.OFF_LABEL, response="meh", cached=True),
    ]
    for outcome in outcomes:
        stats.record(outcome)
    assert (stats.done, stats.succeeded, stats.failed) == (9, 2, 7)
    assert (stats.cached, stats.not_sent) == (2, 2)
    assert (stats.prompt_tokens, stats.completion_tokens) == (15, 3)  # cached rows cost nothing
    assert stats.failures == {
        "HTTP 503": 2,
        "HTTP 400": 1,
        "missing prompt": 1,
        "not sent: authentication failed (HTTP 401)": 1,
        "not in label set": 2,
    }


def test_reading_an_answer_fills_the_value_or_turns_it_into_the_rejection() -> None:
    labels = LabelSet(SENTIMENT)
    answered = RowOutcome(0, K.OK, response='{"label": "Positive"}', latency=0.1)
    assert read_answer(answered, labels.read).value == "positive"
    off = read_answer(RowOutcome(0, K.OK, response="mixed", latency=0.1), labels.read)
    assert (off.kind, off.response, off.error) == (
        K.OFF_LABEL,
        "mixed",
        "not in label set: 'mixed'",
    )
    failed = RowOutcome(0, K.TIMEOUT, attempts=2)
    assert read_answer(failed, labels.read) is failed
    assert read_answer(answered, None) is answered

    def reject(text: str, logprobs: object) -> str:
        raise AnswerRejected(K.OFF_LABEL, repr(text))

    assert read_answer(answered, reject).detail == repr('{"label": "Positive"}')


def _final_bar(text: str) -> dict[str, int]:
    """The postfix of the last state a text bar drew: ``ok=0, failed=6, ...``."""
    last = re.split(r"[\r\n]", text.strip())[-1]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", last)}


async def test_off_label_run_shows_the_same_counts_in_bar_stats_and_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TQDM_DISABLE")
    frame = pd.DataFrame({"text": [f"review {i}" for i in range(6)]})
    async with await start_server(ServerConfig(off_label_rate=1.0)) as server:
        labels = LabelSet(SENTIMENT)
        options = JobOptions.from_kwargs(
            **labels.request_options({"base_url": server.base_url, "cache": False})
        )
        job = CompletionJob(PromptSource(frame, "text", None), options, answer_format=labels)
        out = await job.run()
    bar = _final_bar(capsys.readouterr().err)
    report = out.holysheep.report()
    assert (bar["ok"], bar["failed"]) == (0, 6)
    assert (job.stats.succeeded, job.stats.failed) == (0, 6)
    assert (report.succeeded, report.failed) == (0, 6)
    assert dict(report.failures) == {"not in label set": 6}
    assert out["label"].isna().all()


@pytest.mark.parametrize("max_retries", [0, 2])
async def test_report_counts_every_429_the_server_sent(max_retries: int) -> None:
    """Three rate-limit 429s per row: each row is answered all the same (a 429 spends no
    attempt, whatever max_retries), and the report counts every 429."""
    frame = pd.DataFrame({"text": [f"{{{{fault:429-ms*3}}}} row {i}" for i in range(3)]})
    async with await start_server(ServerConfig(retry_after=0.05)) as server:
        out = await frame.holysheep.acomplete(
            "text",
            base_url=server.base_url,
            max_retries=max_retries,
            cache=False,
            progress=False,
        )
        sent_by_server = server.stats()["by_status"]["429"]
    report = out.holysheep.report()
    assert sent_by_server == 9
    assert report.rate_limited == sent_by_server
    assert (report.succeeded, report.failed) == (3, 0)
    assert out["attempts"].tolist() == [1, 1, 1]
    assert f"(429s: {sent_by_server})" in str(report)


@pytest.mark.parametrize("cache", [False, "file"])
async def test_identical_requests_are_sent_once_and_every_row_gets_its_answer(
    cache: object, tmp_path: object
) -> None:
    """100 rows holding 4 distinct prompts send 4 requests, with the cache on or off."""
    texts = [f"review {i % 4}" for i in range(100)]
    frame = pd.DataFrame({"text": texts})
    cache_option = False if cache is False else str(tmp_path) + "/c.sqlite"  # type: ignore[operator]
    async with await start_server(ServerConfig(echo=True)) as server:
        options = {"base_url": server.base_url, "cache": cache_option, "progress": False}
        estimate = frame.holysheep.estimate("text", **options)
        out = await frame.holysheep.acomplete("text", max_concurrent=8, **options)
        sent = server.stats()["requests"]
    assert sent == 4
    assert (estimate.to_send, estimate.deduplicated) == (4, 96)
    assert "repeats" in str(estimate)
    assert out["response"].tolist() == texts  # each row its own (identical) answer
    assert int((~out["shared"]).sum()) == 4
    assert out.loc[out["shared"], "latency"].isna().all()
    report = out.holysheep.report()
    assert (report.succeeded, report.deduplicated, report.requests_sent) == (100, 96, 4)
    # Tokens were paid once per distinct request.
    assert report.prompt_tokens == out.loc[~out["shared"], "prompt_tokens"].sum()


async def test_a_repeat_after_its_answer_came_back_is_not_sent_again_without_a_cache() -> None:
    """Chunks of 4, one request at a time: later chunks find the earlier answers in the run."""
    texts = [f"review {i % 3}" for i in range(30)]
    async with await start_server(ServerConfig(echo=True)) as server:
        out = await pd.DataFrame({"text": texts}).holysheep.acomplete(
            "text", base_url=server.base_url, cache=False, progress=False, chunk_size=4,
            max_concurrent=1,
        )  # fmt: skip
        assert server.stats()["requests"] == 3
    assert out["response"].tolist() == texts
    assert out["shared"].sum() == 27
    assert out["cached"].sum() == 0


async def test_repeats_are_asked_once_with_the_cache_on_too(tmp_path: object) -> None:
    """The demo's sample repeats reviews: with the cache on, each distinct one is sent once
    and the repeats are marked shared (answered in this run), not cached."""
    from holysheep_nb.sample import load_reviews

    frame = load_reviews(1_500)
    distinct = frame["text"].nunique()
    assert distinct < len(frame)
    async with await start_server(ServerConfig()) as server:
        out = await frame.holysheep.acomplete(
            "text", base_url=server.base_url, cache=str(tmp_path) + "/c.sqlite",  # type: ignore[operator]
            progress=False, chunk_size=200,
        )  # fmt: skip
        assert server.stats()["requests"] == distinct
    assert int(out["shared"].sum()) == len(frame) - distinct
    assert int(out["cached"].sum()) == 0


def test_a_stop_reads_as_one_sentence_when_the_providers_message_ends_with_a_period() -> None:
    stop = RunStop("model not found (HTTP 404): you do not have access to it.", "check model=")
    assert str(stop) == "model not found (HTTP 404): you do not have access to it: check model="
    # Without advice (a report's stop whose run gave none), no dangling colon.
    assert str(RunStop("model not found.", "")) == "model not found"
