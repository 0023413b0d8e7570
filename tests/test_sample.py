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
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import start_server


def test_columns_types_and_ids() -> None:
    frame = load_reviews(500)
    assert list(frame.columns) == ["id", "product", "text", "rating"]
    assert len(frame) == 500
    assert frame["id"].tolist() == list(range(1, 501))
    assert frame["id"].dtype == "int64"
    assert frame["rating"].dtype == "int64"
    assert set(frame["rating"]) == {1, 2, 3, 4, 5}
    assert frame["product"].map(type).eq(str).all()
    assert frame["text"].map(type).eq(str).all()
    assert frame["product"].nunique() >= 10


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
    assert list(empty.columns) == ["id", "product", "text", "rating"]
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
