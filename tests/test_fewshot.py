"""Few-shot examples (issue 30, point 1): turns before the row, fixed / balanced / similar,
no row is its own example, the cache key and the estimate cover the examples."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from aioresponses import aioresponses

import holysheep_nb
from holysheep_nb.chat import ChatRequest
from holysheep_nb.errors import ConfigError, HolySheepWarning
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import LocalServer
from holysheep_nb.server.embeddings import bag_vector
from tests.scripted import BASE_URL, URL, Reply, ScriptedServer, ok_body, scripted

LABELS = ["positive", "negative", "neutral"]
PAIRS = [("Loved it, works great.", "positive"), ("It broke in a day.", "negative")]
QUIET: dict[str, Any] = {"base_url": BASE_URL, "cache": False, "progress": False}


def _label(frame: pd.DataFrame, **options: Any) -> pd.DataFrame:
    return frame.holysheep.label("text", labels=LABELS, **{**QUIET, **options})


def _messages(frame: pd.DataFrame, **options: Any) -> list[tuple[dict[str, str], ...]]:
    """The messages each row would send (the job's own builder; nothing sent)."""
    job = frame.holysheep._job(
        holysheep_nb.namespace.label_call("text", LABELS, None, False, True, None),
        {**QUIET, "api_key": "sk-test", **options},
        sending=False,
    )
    return [job.options.messages(text) for text in frame["text"]]


def test_pairs_go_in_as_user_and_assistant_turns_between_system_and_row() -> None:
    frame = pd.DataFrame({"text": ["Pretty good value."]})
    with scripted() as server:
        server.script("Pretty good value.", Reply(body=ok_body('{"label": "positive"}')))
        out = _label(frame, examples=PAIRS)
    (body,) = server.bodies
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    turns = body["messages"][1:5]
    assert [m["content"] for m in turns] == [
        "Loved it, works great.",
        '{"label": "positive"}',
        "It broke in a day.",
        '{"label": "negative"}',
    ]
    assert body["messages"][-1]["content"] == "Pretty good value."
    assert out["label"].tolist() == ["positive"]


def test_unstructured_answers_are_bare_labels_and_the_fallback_keeps_the_turns() -> None:
    frame = pd.DataFrame({"text": ["Pretty good value."]})
    job = frame.holysheep._job(
        holysheep_nb.namespace.label_call("text", LABELS, None, False, False, None),
        {**QUIET, "api_key": "sk-test", "examples": PAIRS},
        sending=False,
    )
    plain_turns = job.options.messages("Pretty good value.")
    assert [m["content"] for m in plain_turns[2:-1:2]] == ["positive", "negative"]
    structured = _messages(frame, examples=PAIRS)[0]
    request = ChatRequest(structured, {"response_format": {"type": "json_object"}}, 0, "PLAIN")
    sent = json.loads(request.body("m", structured=False))["messages"]
    assert sent[0] == {"role": "system", "content": "PLAIN"}
    assert sent[1:] == [dict(m) for m in structured[1:]]


def test_a_frame_of_examples_with_its_own_column_names() -> None:
    gold = pd.DataFrame(
        {"review": ["Loved it.", "Awful.", None], "gold": ["positive", "negative", "neutral"]}
    )
    frame = pd.DataFrame({"text": ["Fine."]})
    (messages,) = _messages(frame, examples=gold, example_columns=("review", "gold"))
    # The row without a text is left out.
    assert [m["content"] for m in messages[1:-1:2]] == ["Loved it.", "Awful."]
    with pytest.raises(ConfigError, match="example_columns"):
        _messages(frame, examples=gold)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"examples": [("Great.", "superb")]}, "not in the label set"),
        ({"examples": "Great.=positive"}, "pairs"),
        ({"examples": [("Great.",)]}, "pairs"),
        ({"examples": PAIRS, "select": "nearest"}, "select must be one of"),
        ({"examples": PAIRS, "k": 0}, "k must be"),
        ({"k": 3}, "examples="),
        ({"exmples": PAIRS}, "did you mean examples"),
        ({"examples": [(None, "positive")]}, "no example"),
    ],
)
def test_bad_examples_are_config_errors_before_anything_is_sent(
    options: dict[str, Any], match: str
) -> None:
    frame = pd.DataFrame({"text": ["Fine."]})
    with scripted() as server, pytest.raises(ConfigError, match=match):
        _label(frame, **options)
    assert server.bodies == []


@pytest.mark.parametrize("select", ["fixed", "balanced", "similar"])
def test_a_row_is_never_its_own_example(select: str) -> None:
    reviews = load_reviews(120, seed=3)
    pool = reviews.rename(columns={"sentiment": "label"})[["text", "label"]]
    pool["label"] = pool["label"].astype(str)
    template_rows = reviews.head(60)
    for messages, text in zip(
        _messages(template_rows, examples=pool, k=5, select=select),
        template_rows["text"],
        strict=True,
    ):
        examples = [m["content"] for m in messages[1:-1:2]]
        assert len(examples) == 5
        assert text not in examples
        if select == "balanced":
            answers = {json.loads(m["content"])["label"] for m in messages[2:-1:2]}
            assert answers == set(LABELS)


def test_balanced_holds_every_label_and_fixed_the_first_k() -> None:
    pool = [(f"text {i}", LABELS[0]) for i in range(6)] + [
        ("t neg", "negative"),
        ("t neu", "neutral"),
    ]
    frame = pd.DataFrame({"text": ["Fine."]})
    (balanced,) = _messages(frame, examples=pool, select="balanced")
    answers = [json.loads(m["content"])["label"] for m in balanced[2:-1:2]]
    assert sorted(answers) == sorted(LABELS)
    (fixed,) = _messages(frame, examples=pool, k=3)
    assert [m["content"] for m in fixed[1:-1:2]] == ["text 0", "text 1", "text 2"]


def test_similar_by_the_provider_s_embeddings_is_the_k_nearest_and_cached(tmp_path: Any) -> None:
    reviews = load_reviews(300, seed=5)
    pool = reviews.iloc[:100].rename(columns={"sentiment": "label"})[["text", "label"]]
    rows = reviews.iloc[150:200]
    vectors = np.array([bag_vector(text) for text in pool["text"]])
    cache = tmp_path / "c.sqlite"
    options: dict[str, Any] = dict(
        examples=pool, k=3, select="similar", embedding_model="e", cache=str(cache)
    )
    with LocalServer() as server:
        base = {"base_url": server.base_url, "model": "sim-small", "progress": False}
        job = rows.holysheep.__class__(rows)  # a fresh accessor
        built = holysheep_nb.runner.run_sync(
            lambda: job._ajob(
                holysheep_nb.namespace.label_call("text", LABELS, None, False, True, None),
                {**base, **options},
            )
        )
        first = server.stats()["embeddings"]
        for text in rows["text"]:
            sent = [m["content"] for m in built.options.messages(text)[1:-1:2]]
            scores = vectors @ np.array(bag_vector(text))
            by_text = dict(zip(pool["text"], scores, strict=True))
            best = sorted((by_text[t] for t in set(pool["text"]) - {text}), reverse=True)
            # The k nearest (ties may go either way), the nearest last, next to the row.
            assert [by_text[t] for t in sent] == pytest.approx(best[:3][::-1], abs=1e-6)
            assert text not in sent
        out = rows.holysheep.label("text", labels=LABELS, temperature=0, **base, **options)
        assert server.stats()["embeddings"] == first  # every vector came from the cache
    assert first >= 1
    assert out["error"].isna().all()


def test_similar_falls_back_to_tfidf_when_the_provider_has_no_embeddings() -> None:
    frame = pd.DataFrame({"text": ["The battery died fast.", "Great screen."]})
    pool = [
        ("Battery died after a week.", "negative"),
        ("Lovely screen, great.", "positive"),
        ("It is okay.", "neutral"),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        server = ScriptedServer()
        with aioresponses() as mocked:
            mocked.post(URL, callback=server.handle, repeat=True)
            mocked.post(f"{BASE_URL}/embeddings", status=404, repeat=True)
            out = _label(frame, examples=pool, k=1, select="similar", embedding_model="e")
    assert any(issubclass(w.category, HolySheepWarning) for w in caught)
    nearest = {b["messages"][-1]["content"]: b["messages"][1]["content"] for b in server.bodies}
    assert nearest == {
        "The battery died fast.": "Battery died after a week.",
        "Great screen.": "Lovely screen, great.",
    }
    assert len(out) == 2


def test_the_cache_key_covers_the_examples(tmp_path: Any) -> None:
    frame = pd.DataFrame({"text": ["Pretty good value."]})
    cache = str(tmp_path / "c.sqlite")
    with scripted() as server:
        _label(frame, examples=PAIRS, cache=cache)
        _label(frame, examples=PAIRS, cache=cache)
        assert len(server.bodies) == 1  # the same examples: a cache hit
        _label(frame, examples=PAIRS[:1], cache=cache)
        _label(frame, cache=cache)
    assert len(server.bodies) == 3


def test_estimate_counts_the_example_tokens() -> None:
    frame = pd.DataFrame({"text": [f"Row number {i}." for i in range(10)]})
    pool = [("x" * 400, "positive"), ("y" * 400, "negative")]
    options = {**QUIET, "api_key": "sk-test"}
    plain = frame.holysheep.estimate("text", labels=LABELS, **options)
    shots = frame.holysheep.estimate("text", labels=LABELS, examples=pool, **options)
    per_row = (shots.input_tokens - plain.input_tokens) / 10
    # 2 x (400 chars / 4 + 4) for the texts, 2 x about (20 / 4 + 4) for the answers
    assert 2 * 104 <= per_row <= 2 * 104 + 2 * 12


def test_extract_takes_json_examples() -> None:
    schema = {
        "type": "object",
        "properties": {"product": {"type": "string"}},
        "required": ["product"],
        "additionalProperties": False,
    }
    frame = pd.DataFrame({"text": ["My kettle is great."]})
    with scripted() as server:
        server.script("My kettle is great.", Reply(body=ok_body('{"product": "kettle"}')))
        out = frame.holysheep.extract(
            "text", schema=schema, examples=[("The lamp broke.", {"product": "lamp"})], **QUIET
        )
        with pytest.raises(ConfigError, match="schema"):
            frame.holysheep.extract(
                "text", schema=schema, examples=[("The lamp broke.", {"item": 3})], **QUIET
            )
    (body,) = server.bodies
    assert json.loads(body["messages"][2]["content"]) == {"product": "lamp"}
    assert body["messages"][2]["role"] == "assistant"
    assert out["product"].tolist() == ["kettle"]


def test_a_left_out_example_is_replaced_by_one_with_the_same_answer_in_balanced() -> None:
    pool = [("p1", "positive"), ("n1", "negative"), ("u1", "neutral"), ("p2", "positive"),
            ("n2", "negative"), ("u2", "neutral")]  # fmt: skip
    frame = pd.DataFrame({"text": ["u1", "other"]})
    own, other = _messages(frame, examples=pool, select="balanced")
    assert [m["content"] for m in own[1:-1:2]] == ["p1", "n1", "u2"]
    assert [m["content"] for m in other[1:-1:2]] == ["p1", "n1", "u1"]


def test_a_template_row_contains_its_own_example_a_column_row_only_equals_it() -> None:
    pool = [("It broke.", "negative"), ("Loved it.", "positive")]
    frame = pd.DataFrame({"text": ["It broke. Then it caught fire."]})
    (column,) = _messages(frame, examples=pool)
    assert [m["content"] for m in column[1:-1:2]] == ["It broke.", "Loved it."]
    job = frame.holysheep._job(
        holysheep_nb.namespace.label_call(None, LABELS, None, False, True, "Review: {text}"),
        {**QUIET, "api_key": "sk-test", "examples": [("It broke. Then it caught fire.", "negative"),
                                                      ("Loved it.", "positive")]},
        sending=False,
    )  # fmt: skip
    templated = job.options.messages("Review: It broke. Then it caught fire.")
    assert [m["content"] for m in templated[1:-1:2]] == ["Loved it."]


def test_batch_sends_the_same_turns_as_online() -> None:
    reviews = load_reviews(60, seed=2)
    pool = reviews.iloc[:20].rename(columns={"sentiment": "label"})[["text", "label"]]
    rows = reviews.iloc[20:]
    with LocalServer() as server:
        options: dict[str, Any] = dict(
            labels=LABELS, model="sim-small", temperature=0, base_url=server.base_url,
            progress=False, cache=False, examples=pool, k=3, select="similar",
        )  # fmt: skip
        online = rows.holysheep.label("text", **options)
        batched = rows.holysheep.label("text", batch=True, **options)
        plain = rows.holysheep.label("text", **{**options, "examples": None, "k": None,
                                                "select": "fixed"})  # fmt: skip
    assert batched.holysheep.report().batch_ids
    assert batched["label"].tolist() == online["label"].tolist()
    assert online.holysheep.report().prompt_tokens > 2 * plain.holysheep.report().prompt_tokens
