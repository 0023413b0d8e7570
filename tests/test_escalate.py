"""Escalation (issue 30, point 3) and tokens and cost per model in every report (point 4)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import holysheep_nb  # noqa: F401 - registers df.holysheep
from holysheep_nb.call_record import call_of
from holysheep_nb.errors import (
    ConfigError,
    HolySheepError,
    HolySheepWarning,
    RunStoppedError,
)
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import LocalServer
from tests.scripted import BASE_URL, Reply, ok_body, scripted

LABELS = ["positive", "negative", "neutral"]
QUIET: dict[str, Any] = {"base_url": BASE_URL, "cache": False, "progress": False}
SMALL = (0.00015, 0.0006)
LARGE = (0.0015, 0.006)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


def test_only_the_doubtful_rows_are_asked_again_and_the_rest_is_kept() -> None:
    texts = ["t0", "t1", "t2", "t3", "t4"]
    frame = pd.DataFrame({"text": texts, "id": range(5)})
    with scripted() as server:
        for text in texts:
            answer = "nonsense" if text == "t3" else "positive"
            server.script(text, Reply(body=ok_body(answer, 10, 2)))
        first = frame.holysheep.label("text", labels=LABELS, model="small", prices=SMALL, **QUIET)
        assert first["error"].notna().tolist() == [False, False, False, True, False]
        first["confidence"] = [0.95, 0.5, 0.99, np.nan, 0.7]
        for text in ("t1", "t3", "t4"):
            server.script(text, Reply(body=ok_body("negative", 20, 2)))
        out = first.holysheep.escalate(model="large", below=0.8, prices=LARGE)
    again = server.bodies[5:]
    assert sorted(b["messages"][-1]["content"] for b in again) == ["t1", "t3", "t4"]
    assert {b["model"] for b in again} == {"large"}
    assert out["label"].astype(str).tolist() == [
        "positive", "negative", "positive", "negative", "negative"
    ]  # fmt: skip
    assert out["error"].isna().all()
    assert out["model"].astype(str).tolist() == ["small", "large", "small", "large", "large"]
    assert out["id"].tolist() == [0, 1, 2, 3, 4]
    assert first["label"].astype(str).tolist()[1] == "positive"  # the input is not changed
    report = out.holysheep.report()
    assert (report.rows, report.succeeded, report.failed, report.escalated) == (5, 5, 0, 3)
    assert report.failures == ()  # t3's failure went with its new answer
    small, large = report.models
    assert small == ("small", 5, 50, 10, pytest.approx((50 * SMALL[0] + 10 * SMALL[1]) / 1000))
    assert large == ("large", 3, 60, 6, pytest.approx((60 * LARGE[0] + 6 * LARGE[1]) / 1000))
    assert report.cost == pytest.approx(small.cost + large.cost)
    assert report.prompt_tokens == 110
    assert dict(report.labels) == {"negative": 3, "positive": 2}
    text = str(report)
    assert "escalated" in text
    assert "by model" in text
    assert "large" in text


def test_a_row_the_new_model_fails_keeps_its_answer_and_a_stopped_run_changes_nothing() -> None:
    """A fresh user escalated to a misspelt model: 59 good labels became 404 errors. A run
    that stops as a whole raises; a row the new model fails keeps the label it had."""
    texts = ["t0", "t1", "t2"]
    frame = pd.DataFrame({"text": texts})
    with scripted() as server:
        server.script("t0", Reply(body=ok_body("positive")))
        server.script("t1", Reply(body=ok_body("positive")))
        server.script("t2", Reply(body=ok_body("nonsense")))
        first = frame.holysheep.label("text", labels=LABELS, model="small", **QUIET)
        first["confidence"] = [0.5, 0.5, np.nan]
        server.script("t0", Reply(body=ok_body("negative")))
        server.script("t1", Reply(body=ok_body("off the label set")))  # fails anew
        server.script("t2", Reply(body=ok_body("still nonsense")))  # failed before too
        with pytest.warns(
            HolySheepWarning,
            match=r"1 of the 3 rows asked of 'large' failed "
            r"there \(not in label set 1\) and kept the answer they had",
        ):
            out = first.holysheep.escalate(model="large", below=0.8)
        assert out["label"].astype(str).tolist()[:2] == ["negative", "positive"]
        assert out["error"].notna().tolist() == [False, False, True]
        assert "still nonsense" in out["error"].tolist()[2]
        assert out["model"].astype(str).tolist() == ["large", "small", "large"]
        merged = out.holysheep.report()
        assert merged.escalated == 3
        # t2 failed both times; t1's new failure is not the frame's (it kept its label).
        assert (merged.failed, dict(merged.failures)) == (1, {"not in label set": 1})
        for text in texts:
            server.script(text, Reply(status=404, body=_not_found("lage")))
        with (
            pytest.raises(
                RunStoppedError, match=r"asked 3 rows of 'lage' and its run stopp"
            ) as stop,
            pytest.warns(HolySheepWarning, match="stopped the run: model not found"),
        ):
            first.holysheep.escalate(model="lage", below=0.8)
        assert ".:" not in str(stop.value)
    assert first["label"].astype(str).tolist()[:2] == ["positive", "positive"]


def test_the_report_counts_a_row_asked_again_by_its_new_answer_not_its_cached_one(
    tmp_path: Path,
) -> None:
    """A fresh user escalated 59 of 500 rows answered from the cache: the report said
    "cached 500" beside 54 requests sent."""
    frame = pd.DataFrame({"text": ["t0", "t1", "t2"]})
    options = {**QUIET, "cache": str(tmp_path / "c.sqlite")}
    with scripted() as server:
        for text in ("t0", "t1", "t2"):
            server.script(text, Reply(body=ok_body("positive")))
        frame.holysheep.label("text", labels=LABELS, model="small", **options)
        again = frame.holysheep.label("text", labels=LABELS, model="small", **options)
        assert again["cached"].all()
        again["confidence"] = [0.5, 0.99, 0.99]
        server.script("t0", Reply(body=ok_body("negative")))
        out = again.holysheep.escalate(model="large", below=0.8)
    report = out.holysheep.report()
    assert (report.cached, report.escalated, report.requests_sent) == (2, 1, 1)
    assert report.cached == int(out["cached"].sum())


def test_another_model_is_not_priced_at_the_first_ones_rates_and_cut_answers_are_recounted() -> (
    None
):
    """A fresh user's escalation to sim-large was charged at sim-small's prices, and its
    report kept "truncated 1" for a row whose cut answer had been replaced."""
    texts = ["t0", "t1"]
    frame = pd.DataFrame({"text": texts})
    cut = json.loads(ok_body("posi"))
    cut["choices"][0]["finish_reason"] = "length"
    with scripted() as server:
        server.script("t0", Reply(body=ok_body("positive", 10, 2)))
        server.script("t1", Reply(body=json.dumps(cut)))
        first = frame.holysheep.label("text", labels=LABELS, model="small", prices=SMALL, **QUIET)
        assert first.holysheep.report().truncated == 1
        server.script("t1", Reply(body=ok_body("negative", 10, 2)))
        unpriced = first.holysheep.escalate(model="large")
        same = first.holysheep.escalate(model="small")
    report = unpriced.holysheep.report()
    assert (report.failed, report.truncated, report.failures) == (0, 0, ())
    small, large = report.models
    assert small.cost is not None
    assert large.cost is None
    assert report.cost is None
    assert str(report).endswith("large  10 / 2   (1 row; cost n/a)")
    (again,) = same.holysheep.report().models  # the same model keeps its prices
    assert again.model == "small"
    assert again.cost is not None
    assert again.cost > small.cost


def _not_found(model: str) -> str:
    message = f"The model `{model}` does not exist or you do not have access to it."
    return json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                 "code": "model_not_found"}})  # fmt: skip


def test_votes_that_disagree_are_doubtful_and_without_below_only_they_and_failures() -> None:
    frame = pd.DataFrame({"text": ["a", "b", "c"]})
    with scripted() as server:
        for text in "abc":
            server.script(text, Reply(body=ok_body("neutral")))
        first = frame.holysheep.label("text", labels=LABELS, model="small", **QUIET)
        first["votes"] = [1.0, 0.6, 1.0]
        server.script("b", Reply(body=ok_body("positive")))
        out = first.holysheep.escalate(model="large")
    assert [b["messages"][-1]["content"] for b in server.bodies[3:]] == ["b"]
    assert out["model"].astype(str).tolist() == ["small", "large", "small"]
    assert out["label"].astype(str).tolist() == ["neutral", "positive", "neutral"]


def test_misuse_is_a_clear_error_before_anything_is_sent() -> None:
    frame = pd.DataFrame({"text": ["a"]})
    with scripted() as server:
        server.script("a", Reply(body=ok_body("neutral")))
        first = frame.holysheep.label("text", labels=LABELS, model="small", **QUIET)
        with pytest.raises(ConfigError, match="logprobs=True or votes"):
            first.holysheep.escalate(model="large", below=0.8)
        with pytest.raises(ConfigError, match="model="):
            first.holysheep.escalate(below=None)
        first["confidence"] = [0.5]
        with pytest.raises(ConfigError, match="below must be"):
            first.holysheep.escalate(model="large", below=80)
        with pytest.raises(HolySheepError, match="has none"):
            pd.DataFrame({"text": ["a"], "confidence": [0.5]}).holysheep.escalate(model="large")
        with pytest.raises(ConfigError, match="did you mean"):
            first.holysheep.escalate(model="large", below=0.9, temprature=0)
        with pytest.raises(ConfigError, match=r"'modle': did you mean model\?$"):
            first.holysheep.escalate(modle="large", below=0.9)  # named, not "model missing"
        with pytest.raises(ConfigError, match=r"'belw': did you mean below\? \(an argument"):
            first.holysheep.escalate(model="large", belw=0.9)
    assert len(server.bodies) == 1


def test_the_key_is_never_kept_with_the_result() -> None:
    frame = pd.DataFrame({"text": ["a"]})
    with scripted() as server:
        server.script("a", Reply(body=ok_body("neutral")))
        out = frame.holysheep.label(
            "text", labels=LABELS, model="small", api_key="sk-secret-123", **QUIET
        )
    assert "sk-secret-123" not in repr(out.attrs)
    assert "sk-secret-123" not in json.dumps(out.attrs)  # what a Parquet file's metadata keeps
    assert "api_key" not in call_of(out).options


def test_every_report_has_tokens_and_cost_per_model(server: LocalServer) -> None:
    frame = load_reviews(50)
    out = frame.holysheep.label(
        "text", labels=LABELS, model="sim-small", base_url=server.base_url, cache=False,
        progress=False, prices=SMALL,
    )  # fmt: skip
    report = out.holysheep.report()
    (line,) = report.models
    assert line == ("sim-small", 50, report.prompt_tokens, report.completion_tokens, report.cost)
    assert report.to_dict()["models"][0]["model"] == "sim-small"


def test_rows_never_sent_are_not_counted_as_asked_of_the_model(server: LocalServer) -> None:
    frame = pd.DataFrame({"text": ["great, I love it", None, "", "broken"]})
    out = frame.holysheep.label(
        "text", labels=LABELS, base_url=server.base_url, cache=False, progress=False
    )
    report = out.holysheep.report()
    assert (report.rows, report.not_sent) == (4, 2)
    (line,) = report.models
    assert line.rows == 2
    assert "(2 rows; cost n/a)" in str(report)


def test_a_threshold_chosen_on_gold_rows_a_chain_of_models_the_cache_and_batch(
    server: LocalServer, tmp_path: Any
) -> None:
    reviews = load_reviews(600)
    cache = str(tmp_path / "answers.sqlite")
    options: dict[str, Any] = dict(
        base_url=server.base_url, progress=False, temperature=0, logprobs=True, cache=cache
    )
    small = reviews.holysheep.label("text", labels=LABELS, model="sim-small", **options)
    gold = small.head(300)
    threshold = gold.holysheep.evaluate("sentiment").threshold_for(accuracy=0.85)
    assert threshold is not None
    below = int((small["confidence"] < threshold).sum() + small["error"].notna().sum())
    requests = server.stats()["requests"]
    step = small.holysheep.escalate(model="sim-large", below=threshold)
    assert step.holysheep.report().escalated == below
    assert server.stats()["requests"] - requests <= below  # repeats asked once
    right = (step["label"].astype(str) == step["sentiment"].astype(str)).mean()
    assert right > (small["label"].astype(str) == small["sentiment"].astype(str)).mean()
    # The same step again is answered from the cache.
    requests = server.stats()["requests"]
    again = small.holysheep.escalate(model="sim-large", below=threshold)
    assert server.stats()["requests"] == requests
    # (The cache keeps no logprobs, so a cached answer has no confidence: compare the rest.)
    kept = ["label", "error", "model"]
    pd.testing.assert_frame_equal(again[kept], step[kept])
    # One more step of the chain is one more call; batch=True goes through the Batch API.
    last = step.holysheep.escalate(model="gpt-4o", below=0.99, batch=True, cache=False)
    models = set(last["model"].astype(str))
    assert models <= {"sim-small", "sim-large", "gpt-4o"}
    assert "gpt-4o" in models
    report = last.holysheep.report()
    assert [usage.model for usage in report.models] == ["sim-small", "sim-large", "gpt-4o"]
    assert report.escalated == below + int((last["model"] == "gpt-4o").sum())
    assert report.batch_ids


def test_cascade_threshold_escalates_the_fewest_gold_rows_within_the_tolerance() -> None:
    from holysheep_nb.escalate import cascade_threshold

    truth = ["a", "a", "b", "b", "a"]
    first = pd.DataFrame(
        {"gold": truth, "label": ["a", "b", "b", "a", "a"], "confidence": [0.9, 0.6, 0.8, 0.7, 0.5]}
    )
    second = pd.DataFrame({"label": ["a", "a", "b", "b", "b"]})
    # Per row, second right minus cascade right, by threshold (first kept at >= t):
    # 0.5: [0, 1, 0, 1, -1] mean 0.2; 0.6: [0, 1, 0, 1, 0] 0.4; 0.7: [0, 0, 0, 1, 0] 0.2;
    # 0.8: all 0 -> upper bound 0, the first accepted at tolerance 0.
    assert cascade_threshold(first, second, "gold", tolerance=0.0) == 0.8
    # 0.5 with tolerance: mean 0.2, sd sqrt(0.7)=0.837, upper at 90% = 0.2 + 1.2816 * 0.374
    assert cascade_threshold(first, second, "gold", tolerance=0.68) == 0.5
    assert cascade_threshold(first, second, "gold", tolerance=0.67) == 0.7  # 0.2 + 1.28*0.2
    second_wrong = pd.DataFrame({"label": ["b", "b", "a", "a", "b"]})
    assert cascade_threshold(first, second_wrong, "gold", tolerance=-0.5) == float("inf")
    with pytest.raises(ConfigError, match="same gold rows"):
        cascade_threshold(first, second.iloc[:3], "gold")


def test_with_below_the_vote_share_is_the_confidence_compared() -> None:
    frame = pd.DataFrame({"text": ["a", "b", "c"]})
    with scripted() as server:
        for text in "abc":
            server.script(text, Reply(body=ok_body("neutral")))
        first = frame.holysheep.label("text", labels=LABELS, model="small", **QUIET)
        first["votes"] = [1.0, 0.8, 0.4]
        first["confidence"] = first["votes"]
        server.script("c", Reply(body=ok_body("positive")))
        out = first.holysheep.escalate(model="large", below=0.6)
    assert [b["messages"][-1]["content"] for b in server.bodies[3:]] == ["c"]
    assert out["votes"].isna().tolist() == [False, False, True]  # the large model did not vote
