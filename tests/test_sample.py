"""The generated sample reviews: shape, determinism, Unicode, plausible sentiment.

How long they take to make is a benchmark figure (``benchmarks/run.py --only sample``).
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pandas as pd
import pytest

from holysheep_nb.errors import ConfigError
from holysheep_nb.reviews import aspects_of, truth_of
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import start_server

COLUMNS = ["id", "product", "text", "rating", "sentiment", "aspect"]


def test_columns_types_and_ids() -> None:
    frame = load_reviews(500)
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 500
    assert frame["id"].tolist() == list(range(1, 501))
    assert frame["id"].dtype == "int64"
    assert frame["rating"].dtype == "int64"
    assert set(frame["rating"]) == {1, 2, 3, 4, 5}
    assert frame["product"].map(type).eq(str).all()
    assert frame["text"].map(type).eq(str).all()
    assert frame["product"].nunique() >= 10
    assert list(frame["sentiment"].cat.categories) == ["positive", "negative", "neutral"]
    assert frame["sentiment"].notna().all()
    assert frame["aspect"].notna().mean() > 0.7


def test_texts_are_short_reviews_of_one_or_two_sentences() -> None:
    texts = load_reviews()["text"]
    assert texts.str.len().between(10, 160).all()
    assert texts.map(lambda t: len(re.findall(r"[.!?。]", t)) <= 2).all()
    assert texts.nunique() > 1000


def test_same_seed_same_frame_and_rows_do_not_depend_on_n() -> None:
    pd.testing.assert_frame_equal(load_reviews(300, seed=4), load_reviews(300, seed=4))
    pd.testing.assert_frame_equal(load_reviews(50), load_reviews(300).head(50))
    assert not load_reviews(300, seed=1)["text"].equals(load_reviews(300, seed=2)["text"])


def test_a_handful_of_reviews_show_off_unicode() -> None:
    texts = load_reviews()["text"]
    thai = texts.str.contains("[\u0e00-\u0e7f]")
    japanese = texts.str.contains("[\u3040-\u30ff\u4e00-\u9fff]")
    emoji = texts.str.contains("[\U0001f300-\U0001faff]")
    assert thai.any()
    assert japanese.any()
    assert emoji.any()
    assert 10 <= (thai | japanese | emoji).sum() <= 150


def test_empty_and_invalid_sizes() -> None:
    empty = load_reviews(0)
    assert empty.empty
    assert list(empty.columns) == COLUMNS
    with pytest.raises(ConfigError, match="n must be"):
        load_reviews(-1)


async def test_server_sentiment_agrees_with_the_rating_for_most_rows() -> None:
    frame = load_reviews(400, seed=5)
    expected = frame["rating"].map(
        lambda r: "positive" if r >= 4 else "negative" if r <= 2 else "neutral"
    )
    async with await start_server() as server, aiohttp.ClientSession() as session:

        async def label(text: str) -> str:
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
            async with session.post(f"{server.base_url}/chat/completions", json=body) as response:
                content: str = (await response.json())["choices"][0]["message"]["content"]
                return content

        answers = await asyncio.gather(*(label(text) for text in frame["text"]))
    agreement = (pd.Series(answers) == expected).mean()
    assert 0.85 <= agreement < 1.0


def test_gold_sentiment_follows_the_hard_cases_as_a_careful_human_would() -> None:
    frame = load_reviews(3000, seed=2)
    sarcastic = frame["text"].str.match(r"Great, the .* broke|Just perfect: it died")
    assert sarcastic.sum() > 20
    assert (frame.loc[sarcastic, "sentiment"] == "negative").all()
    mixed = frame["text"].str.contains(r"\b(?:but|though)\b.*(?:On balance|Overall)")
    assert mixed.sum() > 50
    going_back = frame["text"].str.endswith(("going back.", "not a keeper."))
    keeper = frame["text"].str.endswith(("a keeper.", "keeping it.")) & ~going_back
    assert (frame.loc[mixed & keeper, "sentiment"] == "positive").all()
    assert (frame.loc[mixed & going_back, "sentiment"] == "negative").all()
    assert set(frame.loc[mixed, "sentiment"]) == {"positive", "negative", "neutral"}
    # The stars are the ones the words give: neutral 3, positive 4-5, negative 1-2.
    plain = frame[~mixed]
    for sentiment, allowed in (("neutral", {3}), ("positive", {4, 5}), ("negative", {1, 2})):
        assert set(plain.loc[plain["sentiment"] == sentiment, "rating"]) == allowed
    assert set(frame.loc[sarcastic, "rating"]) == {1}


def test_aspect_is_the_one_the_text_names() -> None:
    frame = load_reviews(1000, seed=3)
    named = frame.dropna(subset=["aspect"])
    assert named.apply(lambda row: row["aspect"] in row["text"], axis=1).all()
    unnamed = frame[frame["aspect"].isna()]
    assert 0 < len(unnamed) < 300
    for row in unnamed.itertuples():
        assert not any(aspect in row.text for aspect in aspects_of(row.product)), row.text


def test_the_server_recognises_every_sample_text_and_its_gold() -> None:
    frame = load_reviews(2000, seed=9)
    for row in frame.itertuples():
        truth = truth_of(row.text)
        assert truth is not None, row.text
        assert (truth.sentiment, truth.stars, truth.aspect) == (
            row.sentiment,
            row.rating,
            row.aspect,
        ), row.text
        if truth.product_named:
            assert truth.product == row.product
    # In a template ("Review: ...") on a line of its own, and nothing else.
    assert truth_of("Review:\nThe sound is great.") is not None
    assert truth_of("The sound is great, I think.") is None
    assert truth_of("hello") is None
