"""label(..., logprobs=True): the probability of the chosen label from the token logprobs."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pandas as pd
import pytest
from aioresponses import CallbackResult, aioresponses

from holysheep_nb.answers import parse_answer
from holysheep_nb.logprobs import TokenLogprob, parse_logprobs, span_probability
from holysheep_nb.server import RunningServer, ServerConfig, start_server
from tests.scripted import BASE_URL, URL

SENTIMENT = ["positive", "negative", "neutral"]


def entries(*pairs: tuple[str, float]) -> dict[str, Any]:
    """OpenAI's ``choices[0].logprobs``: one entry per token, with top alternatives."""
    return {
        "content": [
            {
                "token": token,
                "logprob": logprob,
                "bytes": list(token.encode()),
                "top_logprobs": [{"token": token, "logprob": logprob, "bytes": []}],
            }
            for token, logprob in pairs
        ],
        "refusal": None,
    }


def tokens(*pairs: tuple[str, float]) -> tuple[TokenLogprob, ...]:
    return tuple(TokenLogprob(token, logprob) for token, logprob in pairs)


# --- the computation -------------------------------------------------------------------------


def test_logprobs_are_read_from_the_openai_shape() -> None:
    assert parse_logprobs(entries(("pos", -0.1), ("itive", -0.2))) == tokens(
        ("pos", -0.1), ("itive", -0.2)
    )


def test_an_answer_carries_its_logprobs_as_json_or_as_a_stream() -> None:
    body = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "positive"},
                "finish_reason": "stop",
                "logprobs": entries(("pos", -0.1), ("itive", -0.2)),
            }
        ]
    }
    assert parse_answer(json.dumps(body).encode()).logprobs == tokens(
        ("pos", -0.1), ("itive", -0.2)
    )
    chunks = [
        {
            "choices": [
                {"index": 0, "delta": {"content": "pos"}, "logprobs": entries(("pos", -0.1))}
            ]
        },
        {
            "choices": [
                {"index": 0, "delta": {"content": "itive"}, "logprobs": entries(("itive", -0.2))}
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    stream = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
    answer = parse_answer(stream.encode())
    assert answer.text == "positive"
    assert answer.logprobs == tokens(("pos", -0.1), ("itive", -0.2))
    del body["choices"][0]["logprobs"]
    assert parse_answer(json.dumps(body).encode()).logprobs is None


@pytest.mark.parametrize(
    "logprobs",
    [
        None,
        {},
        {"content": None},
        {"content": []},
        {"content": [{"token": "a"}]},
        {"content": [{"token": "a", "logprob": 0.5}]},  # a probability above 1
        {"content": [{"token": "a", "logprob": float("nan")}]},
        {"content": [{"token": "a", "logprob": True}]},
        {"content": [{"token": None, "logprob": -1}]},
        {"content": ["a"]},
        [{"token": "a", "logprob": -1}],
    ],
)
def test_logprobs_that_are_absent_or_malformed_are_none(logprobs: object) -> None:
    assert parse_logprobs(logprobs) is None


def test_a_one_token_label_has_that_tokens_probability() -> None:
    answer = tokens(("negative", math.log(0.8)))
    assert span_probability(answer, ["negative"]) == pytest.approx(0.8)


def test_a_label_over_several_tokens_has_the_product_of_theirs() -> None:
    answer = tokens(('{"', -0.01), ("label", -0.02), ('":"', -0.01), ("neg", math.log(0.9)),
                    ("ative", math.log(0.5)), ('"}', -0.3))  # fmt: skip
    assert span_probability(answer, ["negative"]) == pytest.approx(0.45)


def test_the_last_spelling_counts_and_case_is_forgiven() -> None:
    answer = tokens(("<think>", -1.0), ("negative", math.log(0.1)), ("? no", -2.0),
                    ("</think>", -0.1), ("Positive", math.log(0.7)))  # fmt: skip
    assert span_probability(answer, ["positive"]) == pytest.approx(0.7)
    assert span_probability(answer, ["negative"]) == pytest.approx(0.1)


def test_a_token_that_also_holds_a_quote_counts_whole() -> None:
    answer = tokens(('"pos', math.log(0.6)), ('itive"', math.log(0.5)))
    assert span_probability(answer, ["positive"]) == pytest.approx(0.3)


def test_several_labels_multiply() -> None:
    answer = tokens(("fit", math.log(0.5)), (", ", -0.0), ("sound", math.log(0.4)))
    assert span_probability(answer, ["fit", "sound"]) == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("answer", "pieces"),
    [(None, ["positive"]), ((), ["positive"]), (tokens(("positive", -0.1)), ["negative"]),
     (tokens(("positive", -0.1)), [])],
)  # fmt: skip
def test_no_tokens_or_a_label_not_spelled_out_is_nan(
    answer: tuple[TokenLogprob, ...] | None, pieces: list[str]
) -> None:
    assert math.isnan(span_probability(answer, pieces))


# --- label() with scripted answers -----------------------------------------------------------


def completion(text: str, logprobs: dict[str, Any] | None) -> str:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "stop",
        "logprobs": logprobs,
    }
    return json.dumps({"choices": [choice], "usage": {"prompt_tokens": 9, "completion_tokens": 3}})


ANSWERS = {
    "great": completion(
        '{"label": "positive"}',
        entries(
            ('{"', -0.001),
            ("label", -0.001),
            ('":"', -0.001),
            ("positive", math.log(0.9)),
            ('"}', -0.001),
        ),
    ),
    "awful": completion("negative", entries(("neg", math.log(0.8)), ("ative", math.log(0.75)))),
    "no logprobs": completion("neutral", None),
    "off": completion("unsure", entries(("unsure", -0.1))),
}


@pytest.fixture
def scripted_labels() -> Iterator[list[dict[str, Any]]]:
    bodies: list[dict[str, Any]] = []

    async def handle(url: Any, **kwargs: Any) -> CallbackResult:
        body = json.loads(kwargs["data"])
        bodies.append(body)
        return CallbackResult(status=200, body=ANSWERS[body["messages"][-1]["content"]])

    with aioresponses() as mocked:
        mocked.post(URL, callback=handle, repeat=True)
        yield bodies


async def test_label_with_logprobs_adds_confidence_after_the_label(
    scripted_labels: list[dict[str, Any]], tmp_path: Any
) -> None:
    frame = pd.DataFrame({"text": list(ANSWERS)})
    options: dict[str, Any] = {
        "labels": SENTIMENT,
        "logprobs": True,
        "base_url": BASE_URL,
        "progress": False,
        "cache": str(tmp_path / "cache.sqlite"),
    }
    out = await frame.holysheep.alabel("text", **options)
    assert all(body["logprobs"] is True for body in scripted_labels)
    assert list(out.columns[:4]) == ["text", "label", "confidence", "response"]
    assert out["confidence"].dtype == float
    by_text = out.set_index("text")
    assert by_text.loc["great", "confidence"] == pytest.approx(0.9)
    assert by_text.loc["awful", "confidence"] == pytest.approx(0.6)
    assert math.isnan(by_text.loc["no logprobs", "confidence"])
    assert by_text.loc["no logprobs", "label"] == "neutral"
    assert math.isnan(by_text.loc["off", "confidence"])  # off the set: no label, no confidence
    assert by_text.loc["off", "error"] == "not in label set: 'unsure'"
    assert dict(out.holysheep.report().labels) == {"positive": 1, "negative": 1, "neutral": 1}
    cached = await frame.holysheep.alabel("text", **options)
    assert cached["cached"].all()
    assert cached["label"].tolist() == out["label"].tolist()
    # The cache keeps the logprobs: a cell run again keeps its confidence (the threshold and
    # escalate() need it); a fresh user lost it on every re-run before.
    pd.testing.assert_series_equal(cached["confidence"], out["confidence"])
    assert cached["confidence"].notna().sum() == 2


def test_without_logprobs_there_is_no_confidence_column(
    scripted_labels: list[dict[str, Any]],
) -> None:
    out = pd.Series(["great"]).holysheep.label(
        labels=SENTIMENT, base_url=BASE_URL, cache=False, progress=False
    )
    assert "confidence" not in out.columns
    assert "logprobs" not in scripted_labels[0]


def test_an_input_confidence_column_is_kept(scripted_labels: list[dict[str, Any]]) -> None:
    frame = pd.DataFrame({"text": ["great"], "confidence": ["mine"]})
    out = frame.holysheep.label(
        "text", labels=SENTIMENT, logprobs=True, base_url=BASE_URL, cache=False, progress=False
    )
    assert out.loc[0, "confidence"] == "mine"
    assert out.loc[0, "confidence_2"] == pytest.approx(0.9)


# --- on the local server ---------------------------------------------------------------------


@pytest.fixture
async def labeller() -> AsyncIterator[RunningServer]:
    async with await start_server(ServerConfig()) as server:
        yield server


async def test_confidence_from_the_local_servers_logprobs(labeller: RunningServer) -> None:
    frame = pd.DataFrame({"text": ["Excellent sound, I love it", "Awful, it broke", "Blue box"]})
    out = await frame.holysheep.alabel(
        "text",
        labels=SENTIMENT,
        logprobs=True,
        top_logprobs=2,
        base_url=labeller.base_url,
        cache=False,
        progress=False,
    )
    assert out["error"].isna().all()
    assert out["confidence"].between(0, 1, inclusive="right").all(), out["confidence"]


async def test_a_repeated_row_has_the_confidence_of_the_row_it_repeats(
    labeller: RunningServer,
) -> None:
    # One at a time, the repeat comes after its first copy is answered: it is not sent, and
    # its confidence (from logprobs that are not kept) is carried over, not lost to NaN.
    frame = pd.DataFrame({"text": ["I love it", "Awful, it broke", "I love it"]})
    out = await frame.holysheep.alabel(
        "text",
        labels=SENTIMENT,
        logprobs=True,
        base_url=labeller.base_url,
        cache=False,
        progress=False,
        max_concurrent=1,
    )
    assert out["shared"].tolist() == [False, False, True]
    assert labeller.stats()["requests"] == 2
    assert out["label"][2] == out["label"][0]
    assert 0 < out["confidence"][0] <= 1
    assert out["confidence"][2] == out["confidence"][0]
