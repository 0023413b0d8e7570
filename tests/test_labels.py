"""label() / alabel() / estimate(): a fixed label set in, a Categorical out."""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from aioresponses import CallbackResult, aioresponses

from holysheep_nb import Prices
from holysheep_nb.errors import ConfigError
from holysheep_nb.estimate import Estimate
from holysheep_nb.labels import LabelSet
from holysheep_nb.outcome import AnswerRejected, OutcomeKind, RowOutcome
from holysheep_nb.policies import EngineSettings, RateLimits
from holysheep_nb.server import LocalServer, RunningServer, ServerConfig, start_server
from tests.scripted import BASE_URL, URL, ok_body

SENTIMENT = ["positive", "negative", "neutral"]
ASPECTS = ["sound", "battery life", "fit"]
REVIEWS = [
    "Excellent sound, I love it",
    "Awful, it broke after a week",
    "It arrived on Tuesday",
    "Great value and a solid build",
    "Terrible battery, a waste of money",
    "The box is blue",
]


@pytest.fixture
async def labeller() -> AsyncIterator[RunningServer]:
    async with await start_server(ServerConfig()) as server:
        yield server


def requests_at(server: RunningServer) -> int:
    return int(server.stats()["requests"])


def one_of_label_or_error(out: pd.DataFrame, column: str = "label") -> None:
    assert (out[column].notna() ^ out["error"].notna()).all(), out[[column, "error"]]


# --- reading answers back --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("positive", "positive"),
        ("Positive", "positive"),
        ("  NEGATIVE.\n", "negative"),
        ('"neutral"', "neutral"),
        ("\u201cpositive\u201d", "positive"),
        ("**negative**", "negative"),
        ("`neutral`", "neutral"),
        ("Label: positive", "positive"),
        ('{"label": "negative"}', "negative"),
        ('{"label": " Neutral "}', "neutral"),
        ('```json\n{"label": "positive"}\n```', "positive"),
        ('"positive"', "positive"),
        ('{"sentiment": "negative"}', "negative"),  # one-key object: its value
    ],
)
def test_answers_on_the_set_are_normalised_to_the_label(answer: str, label: str) -> None:
    assert LabelSet(SENTIMENT).read(answer) == label


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("unsure", "not in label set: 'unsure'"),
        ("", "not in label set: ''"),
        ("positive, negative", "not in label set: 'positive, negative'"),
        ('{"label": "mixed"}', "not in label set: 'mixed'"),
        ('["positive", "negative"]', 'not in label set: \'["positive", "negative"]\' (more'),
        ("I think it is positive", "not in label set: 'I think it is positive'"),
        ("x" * 200, "not in label set: '" + "x" * 79 + "…'"),
    ],
)
def test_answers_off_the_set_are_errors_never_guesses(answer: str, error: str) -> None:
    with pytest.raises(AnswerRejected) as rejected:
        LabelSet(SENTIMENT).read(answer)
    assert rejected.value.kind is OutcomeKind.OFF_LABEL
    outcome = RowOutcome(0, rejected.value.kind, detail=rejected.value.detail)
    assert outcome.error is not None
    assert outcome.error.startswith(error)


@pytest.mark.parametrize(
    ("answer", "labels"),
    [
        ("fit, sound", ["sound", "fit"]),  # in the label set's order
        ("Battery_Life; fit\nfit", ["battery life", "fit"]),
        ('{"labels": ["fit", "sound"]}', ["sound", "fit"]),
        ('{"labels": "fit"}', ["fit"]),
        ("sound", ["sound"]),
    ],
)
def test_multi_answers_become_lists_in_label_order(answer: str, labels: list[str]) -> None:
    assert LabelSet(ASPECTS, multi=True).read(answer) == labels


def test_multi_answer_with_one_label_off_the_set_is_an_error() -> None:
    with pytest.raises(AnswerRejected, match=r"^'colour', 'weight'$"):
        LabelSet(ASPECTS, multi=True).read("fit, colour, weight")


@pytest.mark.parametrize(
    ("labels", "options", "match"),
    [
        ("positive", {}, "must be a list of strings"),
        ({"a", "b"}, {}, "must be a list of strings"),
        ([], {}, "labels is empty"),
        (["a", 3], {}, "non-blank string, got 3"),
        (["a", "  "], {}, "non-blank string"),
        (["Positive", "positive "], {}, "only differ in case"),
        (["x", "y", "x"], {}, "label 'x' is given twice"),
        (["x", "".join(["x"])], {}, "label 'x' is given twice"),  # equal, not the same object
        (["pos", "two\nlines"], {}, "cannot contain a line break"),
        (["a, b", "c"], {"multi": True}, "comma, semicolon or line break"),
        (["a"], {"instructions": 5}, "instructions must be a string"),
        (["a"], {"multi": "yes"}, "multi and structured must be True or False"),
    ],
)
def test_bad_label_sets_are_clear_errors(labels: Any, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        LabelSet(labels, **options)


def test_a_string_of_labels_is_refused_whole_not_read_letter_by_letter() -> None:
    """A fresh user got "label 'i' is given twice" for labels="positive,negative"."""
    frame = pd.DataFrame({"text": ["a"]})
    for call in (frame.holysheep.label, frame.holysheep.estimate, frame.holysheep.batch.label):
        with pytest.raises(
            ConfigError, match=r"labels must be a list of strings .*, got 'pos,neg'"
        ):
            call("text", labels="pos,neg", base_url=BASE_URL, cache=False)
    with pytest.raises(ConfigError, match=re.escape("pass e.g. labels=['pos', 'neg']")):
        frame.holysheep.label("text", labels="pos, neg", base_url=BASE_URL, cache=False)


def test_request_asks_for_one_label_with_a_json_schema_enum() -> None:
    labels = LabelSet(SENTIMENT, instructions="Sarcasm counts as negative.")
    options = labels.request_options({"system": "You review kettles.", "temperature": 0})
    system = options["system"]
    assert system.startswith("You review kettles.\n")
    assert "Sarcasm counts as negative." in system
    assert "exactly one label" in system
    assert system.endswith("Labels: positive, negative, neutral")
    schema = options["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"] == SENTIMENT
    assert schema["required"] == ["label"]
    assert options["temperature"] == 0


def test_multi_request_asks_for_an_array_and_plain_text_has_no_schema() -> None:
    multi = LabelSet(ASPECTS, multi=True).request_options({})
    items = multi["response_format"]["json_schema"]["schema"]["properties"]["labels"]
    assert items == {"type": "array", "items": {"type": "string", "enum": ASPECTS}}
    assert "every label" in multi["system"]
    plain = LabelSet(ASPECTS, structured=False).request_options({})
    assert "response_format" not in plain
    assert "JSON" not in plain["system"]


# --- label() end to end on the embedded server ------------------------------------------------


async def test_label_returns_a_categorical_before_the_raw_response(
    labeller: RunningServer,
) -> None:
    frame = pd.DataFrame({"text": REVIEWS, "stars": range(6)})
    out = await frame.holysheep.alabel(
        "text", labels=SENTIMENT, base_url=labeller.base_url, cache=False, progress=False
    )
    assert list(out.columns[:4]) == ["text", "stars", "label", "response"]
    assert isinstance(out["label"].dtype, pd.CategoricalDtype)
    assert list(out["label"].cat.categories) == SENTIMENT
    assert out["label"].tolist() == [
        "positive", "negative", "neutral", "positive", "negative", "neutral",
    ]  # fmt: skip
    assert out["response"].str.startswith('{"label": ').all()  # the raw answer, kept
    assert out["error"].isna().all()
    report = out.holysheep.report()
    assert dict(report.labels) == {"positive": 2, "negative": 2, "neutral": 2}
    assert report.succeeded == 6


async def test_off_label_answers_leave_the_label_missing_and_say_why(
    labeller: RunningServer,
) -> None:
    labeller.update(off_label_rate=0.3)
    frame = pd.DataFrame({"text": [f"{text} #{i}" for i in range(20) for text in REVIEWS]})
    out = await frame.holysheep.alabel(
        "text", labels=SENTIMENT, base_url=labeller.base_url, cache=False, progress=False
    )
    one_of_label_or_error(out)
    off = out["error"].notna()
    assert 0 < off.sum() < len(out)
    assert (out.loc[off, "error"] == "not in label set: 'unsure'").all()
    assert (out.loc[off, "response"] == '{"label": "unsure"}').all()
    report = out.holysheep.report()
    assert dict(report.failures) == {"not in label set": int(off.sum())}
    assert sum(n for _, n in report.labels) == int((~off).sum())


async def test_failed_requests_keep_their_error_and_no_label(labeller: RunningServer) -> None:
    frame = pd.DataFrame({"text": ["Great kettle", "Broken {{fault:400}}", None]})
    out = await frame.holysheep.alabel(
        "text", labels=SENTIMENT, base_url=labeller.base_url, cache=False, progress=False
    )
    one_of_label_or_error(out)
    assert out["label"].tolist()[0] == "positive"
    assert out["error"].tolist()[1].startswith("HTTP 400: ")
    assert out["error"].tolist()[2] == "missing prompt"


async def test_a_tool_call_instead_of_a_label_is_an_error_not_a_blank_row(
    labeller: RunningServer,
) -> None:
    """A model that calls a tool gives no text to read: the row says so in ``error`` (it
    was counted a success with neither label nor error before), and its call is kept."""
    frame = pd.DataFrame({"text": ["Great kettle", "Look it up {{fault:tools}}"]})
    out = await frame.holysheep.alabel(
        "text", labels=SENTIMENT, base_url=labeller.base_url, cache=False, progress=False
    )
    one_of_label_or_error(out)
    assert out["error"].tolist()[1] == (
        "not in label set: the answer has no text to read, only a tool call (see tool_calls)"
    )
    assert out["finish_reason"].tolist()[1] == "tool_calls"
    assert json.loads(out["tool_calls"].tolist()[1])[0]["function"]["name"] == "lookup"
    report = out.holysheep.report()
    assert (report.succeeded, report.failed) == (1, 1)
    # The report groups it apart from answers off the label set: the fix is not the same.
    assert report.failures == (("a tool call instead of an answer", 1),)
    extracted = await frame.holysheep.aextract(
        "text", schema={"product": str}, base_url=labeller.base_url, cache=False, progress=False
    )
    assert extracted["error"].tolist()[1] == (
        "answer does not fit the schema: the answer has no text to read, only a tool call "
        "(see tool_calls)"
    )
    assert extracted["product"].isna().tolist() == [False, True]
    assert extracted.holysheep.report().failures == (("a tool call instead of an answer", 1),)


async def test_tool_calls_to_extract_are_no_sign_that_response_format_is_ignored(
    labeller: RunningServer,
) -> None:
    """A tool call has no text, so it does not fit the schema; but it says nothing of whether
    the server heeds ``response_format``. Each row is asked once (it was asked again with the
    schema in words), and three in a row do not switch the run to that form with a notice
    that the server seems to ignore response_format."""
    frame = pd.DataFrame({"text": [f"Look item {i} up {{{{fault:tools}}}}" for i in range(4)]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no notice of any kind
        out = await frame.holysheep.aextract(
            "text", schema={"product": str}, base_url=labeller.base_url, cache=False, progress=False
        )
    report = out.holysheep.report()
    assert (report.failed, report.requests_sent) == (4, 4)
    assert out["attempts"].tolist() == [1, 1, 1, 1]


async def test_gold_label_column_survives_and_the_prediction_sits_beside_it(
    labeller: RunningServer,
) -> None:
    frame = pd.DataFrame({"text": REVIEWS[:3], "label": ["positive", "negative", "positive"]})
    out = await frame.holysheep.alabel(
        "text", labels=SENTIMENT, base_url=labeller.base_url, cache=False, progress=False
    )
    assert out["label"].tolist() == frame["label"].tolist()
    assert out["predicted_label"].tolist() == ["positive", "negative", "neutral"]
    assert (out["label"] == out["predicted_label"].astype(str)).tolist() == [True, True, False]
    assert dict(out.holysheep.report().labels) == {"positive": 1, "negative": 1, "neutral": 1}


async def test_multi_label_rows_hold_lists(labeller: RunningServer) -> None:
    frame = pd.DataFrame({"text": ["Great sound but the battery life is short", "It fits well"]})
    for structured in (True, False):
        out = await frame.holysheep.alabel(
            "text",
            labels=ASPECTS,
            multi=True,
            structured=structured,
            base_url=labeller.base_url,
            cache=False,
            progress=False,
        )
        assert out["label"].tolist() == [["sound", "battery life"], ["fit"]]
        assert dict(out.holysheep.report().labels) == {"battery life": 1, "fit": 1, "sound": 1}


def test_series_label_and_sync_label_in_a_script(tmp_path: Path) -> None:
    with LocalServer() as server:
        series = pd.Series(REVIEWS[:2], name="review")
        out = series.holysheep.label(
            labels=SENTIMENT, base_url=server.base_url, cache=str(tmp_path / "c.sqlite"),
            progress=False,
        )  # fmt: skip
        assert list(out.columns[:3]) == ["review", "label", "response"]
        assert out["label"].tolist() == ["positive", "negative"]
        again = series.holysheep.label(
            labels=SENTIMENT, base_url=server.base_url, cache=str(tmp_path / "c.sqlite"),
            progress=False,
        )  # fmt: skip
        assert again["cached"].all()
        assert again["label"].tolist() == ["positive", "negative"]
        assert server.stats()["requests"] == 2


async def test_label_sets_are_cached_apart(labeller: RunningServer, tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": REVIEWS[:3]})
    cache = str(tmp_path / "c.sqlite")
    options: dict[str, Any] = {"base_url": labeller.base_url, "cache": cache, "progress": False}
    first = await frame.holysheep.alabel("text", labels=SENTIMENT, **options)
    other = await frame.holysheep.alabel("text", labels=["happy", "sad"], **options)
    assert not other["cached"].any()  # another label set is another question
    assert set(other["label"].dropna()) <= {"happy", "sad"}
    again = await frame.holysheep.alabel("text", labels=SENTIMENT, **options)
    assert again["cached"].all()
    assert again["label"].tolist() == first["label"].tolist()
    assert requests_at(labeller) == 6


async def test_plain_text_run_sends_no_response_format() -> None:
    bodies: list[dict[str, Any]] = []

    def reply(url: Any, **kwargs: Any) -> CallbackResult:
        bodies.append(json.loads(kwargs["data"]))
        return CallbackResult(status=200, body=ok_body(" Negative. "))

    frame = pd.DataFrame({"text": ["it broke"]})
    with aioresponses() as mocked:
        mocked.post(URL, callback=reply, repeat=True)
        plain = await frame.holysheep.alabel(
            "text", labels=SENTIMENT, structured=False, base_url=BASE_URL, cache=False,
            progress=False,
        )  # fmt: skip
        structured = await frame.holysheep.alabel(
            "text", labels=SENTIMENT, base_url=BASE_URL, cache=False, progress=False,
            response_format={"type": "json_object"},
        )  # fmt: skip
    assert "response_format" not in bodies[0]
    assert bodies[1]["response_format"] == {"type": "json_object"}  # the caller's own wins
    assert bodies[0]["messages"][0]["role"] == "system"
    assert plain["label"].tolist() == structured["label"].tolist() == ["negative"]


# --- estimate(): the dry run ------------------------------------------------------------------


async def test_estimate_sends_nothing_and_counts_cache_hits_and_missing_prompts(
    labeller: RunningServer, tmp_path: Path
) -> None:
    frame = pd.DataFrame({"text": [*REVIEWS, None, "  "]})
    options: dict[str, Any] = {
        "base_url": labeller.base_url, "cache": str(tmp_path / "c.sqlite"), "progress": False,
    }  # fmt: skip
    before = frame.holysheep.estimate("text", labels=SENTIMENT, **options)
    assert requests_at(labeller) == 0
    assert (before.rows, before.to_send, before.cached, before.missing) == (8, 6, 0, 2)
    out = await frame.head(4).holysheep.alabel("text", labels=SENTIMENT, **options)
    after = frame.holysheep.estimate("text", labels=SENTIMENT, **options)
    assert (after.to_send, after.cached, after.missing) == (2, 4, 2)
    assert requests_at(labeller) == 4
    # The input estimate is of the same prompts the real run sent (4 characters a token).
    sent = int(out["prompt_tokens"].sum())
    assert before.input_tokens * 4 / 6 == pytest.approx(sent, rel=0.35)


def test_estimate_time_is_the_slowest_of_concurrency_and_limits() -> None:
    frame = pd.DataFrame({"text": [f"{i:03d}" + "x" * 37 for i in range(120)]})
    common: dict[str, Any] = {"base_url": BASE_URL, "cache": False}
    by_slots = frame.holysheep.estimate("text", latency=2.0, max_concurrent=4, **common)
    assert by_slots.limited_by == "concurrency"
    assert by_slots.seconds == pytest.approx(120 * 2.0 / 4)
    two_rows = frame.head(2).holysheep.estimate("text", latency=1.0, **common)
    assert two_rows.seconds == pytest.approx(1.0)  # one round of requests: never less
    uneven = frame.head(5).holysheep.estimate("text", latency=1.0, max_concurrent=4, **common)
    assert uneven.seconds == pytest.approx(2.0)  # a second round for the fifth row
    by_rpm = frame.holysheep.estimate("text", requests_per_minute=60, latency=0.1, **common)
    burst = RateLimits(requests_per_minute=60).request_capacity
    assert burst is not None
    assert by_rpm.limited_by == "requests_per_minute"
    assert by_rpm.seconds == pytest.approx(120 - burst + 0.1)  # the last answer's latency too
    per_row = by_rpm.input_tokens / 120
    by_tpm = frame.holysheep.estimate(
        "text", tokens_per_minute=600, max_tokens=10, latency=0.1, **common
    )
    token_burst = RateLimits(tokens_per_minute=600).token_capacity
    assert token_burst is not None
    assert by_tpm.limited_by == "tokens_per_minute"
    assert by_tpm.output_tokens == 10 * 120
    assert by_tpm.seconds == pytest.approx((120 * (per_row + 10) - token_burst) * 60 / 600 + 0.1)


def test_estimate_cost_and_its_text() -> None:
    frame = pd.DataFrame({"text": [f"a fine kettle #{i}" for i in range(10)]})
    prices = Prices(input_per_1k=1.0, output_per_1k=2.0)
    unknown = frame.holysheep.estimate("text", base_url=BASE_URL, cache=False, prices=prices)
    assert unknown.output_tokens is None
    assert unknown.cost == pytest.approx(unknown.input_tokens / 1000)
    assert "input only" in str(unknown)
    labelled = frame.holysheep.estimate(
        "text", labels=SENTIMENT, base_url=BASE_URL, cache=False, prices=prices
    )
    assert labelled.output_tokens == 10 * LabelSet(SENTIMENT).answer_tokens()
    assert labelled.input_tokens > unknown.input_tokens  # the label instructions cost too
    assert labelled.cost == pytest.approx(
        (labelled.input_tokens + 2 * labelled.output_tokens) / 1000
    )
    text = str(labelled)
    assert "rows to send" in text
    assert f"{labelled.input_tokens:,}" in text
    assert "<table" in labelled._repr_html_()
    assert labelled.to_dict()["to_send"] == 10
    series = frame["text"].holysheep.estimate(labels=SENTIMENT, base_url=BASE_URL, cache=False)
    assert series.input_tokens == labelled.input_tokens


def test_estimates_of_parts_combine_into_the_estimate_of_the_whole() -> None:
    """Counts, tokens and cost add up; the time is the whole run's under one set of limits
    (two halves alone would take 13 and 18 rounds of 4; together 30, not 31)."""
    frame = pd.DataFrame({"text": [f"{i:03d} a fine kettle" for i in range(120)]})
    options: dict[str, Any] = {
        "labels": SENTIMENT, "base_url": BASE_URL, "cache": False, "max_concurrent": 4,
        "latency": 2.0, "prices": Prices(input_per_1k=1.0, output_per_1k=2.0),
    }  # fmt: skip
    whole = frame.holysheep.estimate("text", **options)
    parts = [frame.iloc[:50].holysheep.estimate("text", **options),
             frame.iloc[50:].holysheep.estimate("text", **options)]  # fmt: skip
    assert sum(part.seconds for part in parts) == pytest.approx(62.0)
    combined = Estimate.combine(parts, EngineSettings(max_concurrent=4))
    assert combined.seconds == whole.seconds == pytest.approx(60.0)
    assert combined.cost == pytest.approx(whole.cost)
    assert {**combined.to_dict(), "cost": None} == {**whole.to_dict(), "cost": None}
    unknown = [frame.iloc[:50].holysheep.estimate("text", base_url=BASE_URL, cache=False)] * 2
    assert Estimate.combine(unknown, EngineSettings()).output_tokens is None
    with pytest.raises(ConfigError, match="at least one"):
        Estimate.combine([], EngineSettings())


def test_estimate_names_a_misspelt_option_or_argument() -> None:
    frame = pd.DataFrame({"text": ["a"]})
    with pytest.raises(ConfigError, match="did you mean max_concurrent"):
        frame.holysheep.estimate("text", base_url=BASE_URL, max_concurent=4)
    with pytest.raises(ConfigError, match=r"did you mean instructions\? \(an argument of estim"):
        frame.holysheep.estimate("text", labels=SENTIMENT, base_url=BASE_URL, instructons="x")
    with pytest.raises(ConfigError, match="did you mean latency"):
        frame.holysheep.estimate("text", base_url=BASE_URL, lattency=2.0)


@pytest.mark.parametrize("latency", [0, -1, math.nan, "1", True])
def test_estimate_rejects_a_bad_latency(latency: Any) -> None:
    frame = pd.DataFrame({"text": ["a"]})
    with pytest.raises(ConfigError, match="latency must be a positive number"):
        frame.holysheep.estimate("text", base_url=BASE_URL, cache=False, latency=latency)


def test_estimate_of_an_empty_frame_is_zero() -> None:
    frame = pd.DataFrame({"text": pd.Series([], dtype=object)})
    estimate = frame.holysheep.estimate("text", base_url=BASE_URL, cache=False)
    assert (estimate.rows, estimate.to_send, estimate.seconds) == (0, 0, 0.0)
    assert np.isfinite(estimate.seconds)


async def test_a_cached_off_label_answer_fails_again_but_counts_as_cached_not_unsent(
    labeller: RunningServer, tmp_path: Path
) -> None:
    labeller.update(off_label_rate=1.0)
    frame = pd.DataFrame({"text": REVIEWS[:3]})
    options: dict[str, Any] = {
        "base_url": labeller.base_url, "cache": str(tmp_path / "c.sqlite"), "progress": False,
    }  # fmt: skip
    await frame.holysheep.alabel("text", labels=SENTIMENT, **options)
    again = await frame.holysheep.alabel("text", labels=SENTIMENT, **options)
    assert again["error"].eq("not in label set: 'unsure'").all()
    report = again.holysheep.report()
    assert (report.failed, report.cached, report.not_sent) == (3, 3, 0)
    assert requests_at(labeller) == 3
