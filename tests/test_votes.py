"""Votes (issue 30, point 2): n=k in one request, the majority label, vote share, ties."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from holysheep_nb.answers import parse_answer
from holysheep_nb.errors import ConfigError
from holysheep_nb.labels import ConfidentLabels, LabelSet
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import LocalServer
from holysheep_nb.votes import VotedFormat
from tests.scripted import BASE_URL, Reply, scripted

LABELS = ["positive", "negative", "neutral"]
QUIET: dict[str, Any] = {"base_url": BASE_URL, "cache": False, "progress": False}


def choices_body(*answers: str, prompt_tokens: int = 30) -> str:
    return json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": a},
                    "finish_reason": "stop",
                }
                for i, a in enumerate(answers)
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(answers)},
        }
    )


def test_one_request_with_n_and_the_majority_label_with_its_share() -> None:
    frame = pd.DataFrame({"text": ["a", "b", "c"]})
    with scripted() as server:
        server.script("a", Reply(body=choices_body("positive", "negative", "positive")))
        server.script("b", Reply(body=choices_body("neutral", "negative", "negative")))
        server.script("c", Reply(body=choices_body("neutral", "negative", "bogus")))
        out = frame.holysheep.label("text", labels=LABELS, votes=3, **QUIET)
    assert [body["n"] for body in server.bodies] == [3, 3, 3]
    assert len(server.bodies) == 3
    assert out["label"].astype(str).tolist() == ["positive", "negative", "neutral"]
    assert out["votes"].tolist() == pytest.approx([2 / 3, 2 / 3, 1 / 3])
    assert out["confidence"].tolist() == out["votes"].tolist()  # no logprobs
    assert out["tie"].tolist() == [False, False, True]  # the first sampled of a tie is kept
    report = out.holysheep.report()
    assert report.samples == 9
    assert report.prompt_tokens == 90  # the prompt paid once a row
    assert "samples" in str(report)


def test_votes_check_their_temperature_and_call_before_anything_is_sent() -> None:
    frame = pd.DataFrame({"text": ["a"]})
    with scripted() as server:
        with pytest.raises(ConfigError, match="temperature=0"):
            frame.holysheep.label("text", labels=LABELS, votes=5, temperature=0, **QUIET)
        with pytest.raises(ConfigError, match="stream"):
            frame.holysheep.label("text", labels=LABELS, votes=3, stream=True, **QUIET)
        with pytest.raises(ConfigError, match="at least 2"):
            frame.holysheep.label("text", labels=LABELS, votes=1, **QUIET)
        with pytest.raises(ConfigError, match="label"):
            frame.holysheep.complete("text", votes=3, **QUIET)
        with pytest.raises(ConfigError, match="did you mean votes"):
            frame.holysheep.label("text", labels=LABELS, vots=3, **QUIET)
    assert server.bodies == []


def test_the_samples_survive_the_cache_and_logprobs_keep_their_confidence() -> None:
    answer = parse_answer(choices_body("negative", "negative", "positive").encode())
    voted = VotedFormat(ConfidentLabels(LabelSet(LABELS)), 3)
    vote = voted.read(answer.text or "")
    assert (vote.value, vote.share, vote.tie, vote.samples) == ("negative", 2 / 3, False, 3)
    out = voted.add_columns(pd.DataFrame({"response": [answer.text]}), [vote], before="response")
    # The logprobs confidence stays (NaN here: no logprobs sent); votes is the share.
    assert list(out.columns) == ["label", "confidence", "votes", "tie", "response"]
    assert out["votes"].tolist() == [pytest.approx(2 / 3)]
    # One choice (a provider that ignores n) is a vote of one.
    single = VotedFormat(LabelSet(LABELS), 3).read("neutral")
    assert (single.value, single.share, single.samples) == ("neutral", 1.0, 1)


def test_votes_on_sim_small_beat_one_sample(tmp_path: Any) -> None:
    reviews = load_reviews(400)
    with LocalServer() as server:
        options: dict[str, Any] = dict(
            base_url=server.base_url, model="sim-small", cache=False, progress=False
        )
        one = reviews.holysheep.label("text", labels=LABELS, **options)
        five = reviews.holysheep.label("text", labels=LABELS, votes=5, **options)
    right = lambda out: (out["label"].astype(str) == out["sentiment"].astype(str)).mean()  # noqa: E731
    assert right(five) > right(one) + 0.05
    assert five.holysheep.report().prompt_tokens == one.holysheep.report().prompt_tokens
    assert ((five["votes"] > 0) & (five["votes"] <= 1)).all()


def test_a_provider_that_ignores_n_gets_k_requests_each_with_its_own_seed() -> None:
    frame = pd.DataFrame({"text": ["a", "b"]})
    with scripted() as server:
        server.script(
            "a", *(Reply(body=choices_body(x)) for x in ("negative", "positive", "positive"))
        )
        server.script("b", *(Reply(body=choices_body(x)) for x in ("neutral", "neutral", "bogus")))
        out = frame.holysheep.label("text", labels=LABELS, votes=3, seed=7, **QUIET)
    assert sorted((b["messages"][-1]["content"], b.get("seed")) for b in server.bodies) == [
        ("a", 7), ("a", 8), ("a", 9), ("b", 7), ("b", 8), ("b", 9)
    ]  # fmt: skip
    assert out["label"].astype(str).tolist() == ["positive", "neutral"]
    assert out["votes"].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert out["error"].isna().all()
    report = out.holysheep.report()
    assert (report.rows, report.samples, report.requests_sent) == (2, 6, 6)
    assert report.prompt_tokens == 6 * 30  # the prompt paid k times
