"""The simulated models sim-small and sim-large: known accuracy, calibration, informative
confidence, independent samples, and the prompt effects docs/server.md documents.

Statistics run on 2,000 sample rows by calling the simulation directly (``simulate_label``,
the same draw the server makes); a few checks go through the server, the official openai
client and ``df.holysheep.label``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import openai
import pandas as pd
import pytest
from scipy.stats import binom
from sklearn.metrics import roc_auc_score

import holysheep_nb  # noqa: F401 - registers df.holysheep
from holysheep_nb.errors import ConfigError
from holysheep_nb.labels import LabelSet
from holysheep_nb.reviews import PRODUCTS, truth_of
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import LocalServer, ServerConfig, config_args, parse_cli
from holysheep_nb.server.embeddings import bag_vector
from holysheep_nb.server.models import SIM_MODELS, SimModel
from holysheep_nb.server.simulate import Draw, answers_for, simulate_label
from tests.openai_clients import connect

SMALL, LARGE = SIM_MODELS
LABELS = ["positive", "negative", "neutral"]
#: The system message a label() run sends: the simulation sees exactly this prompt.
SYSTEM = LabelSet(LABELS).system_prompt()
ROWS = 2000


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    frame = load_reviews(ROWS)
    frame["kind"] = frame["text"].map(lambda text: truth_of(text).kind)  # type: ignore[union-attr]
    return frame


def run(model: SimModel, frame: pd.DataFrame, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """(right or wrong, reported confidence) of ``model`` on every row."""
    options.setdefault("system", SYSTEM)
    draws = [simulate_label(model, text, **options) for text in frame["text"]]
    right = np.array([d.label == gold for d, gold in zip(draws, frame["sentiment"], strict=True)])
    return right, np.array([d.scores[0][1] for d in draws])


def ece(right: np.ndarray, confidence: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: equal-width bins, |accuracy - mean confidence| weighted."""
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return float(
        sum(
            abs(right[which == b].mean() - confidence[which == b].mean()) * (which == b).mean()
            for b in range(bins)
            if (which == b).any()
        )
    )


@pytest.fixture(scope="module")
def plain(reviews: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {model.name: run(model, reviews) for model in SIM_MODELS}


# --- accuracy, calibration, confidence -------------------------------------------------------


@pytest.mark.parametrize("model", SIM_MODELS, ids=lambda m: m.name)
def test_accuracy_lies_in_the_binomial_interval_of_the_configured_one(
    model: SimModel, plain: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    right, _ = plain[model.name]
    low, high = binom.interval(0.95, ROWS, model.accuracy)
    assert low <= right.sum() <= high, right.mean()


def test_sim_large_is_calibrated_and_sim_small_over_confident(
    plain: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    right, confidence = plain["sim-large"]
    assert ece(right, confidence) < 0.04
    assert abs(confidence.mean() - right.mean()) < 0.02
    right, confidence = plain["sim-small"]
    assert ece(right, confidence) > 0.10
    assert confidence.mean() - right.mean() > 0.10  # it says 0.93 and is right 0.80 of the time


def test_confidence_tells_right_from_wrong_more_for_the_large_model(
    plain: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    large = roc_auc_score(*plain["sim-large"])
    small = roc_auc_score(*plain["sim-small"])
    assert 0.72 <= large <= 0.9
    assert 0.6 <= small < large
    for right, confidence in plain.values():
        assert confidence[~right].mean() < confidence[right].mean()
        assert len(np.unique(confidence.round(3))) > 50  # not two values: a spread


def test_wrong_answers_follow_the_confusion_pattern(reviews: pd.DataFrame) -> None:
    draws = [simulate_label(SMALL, text, system=SYSTEM) for text in reviews["text"]]
    wrong_on_positive = [
        d.label
        for d, gold in zip(draws, reviews["sentiment"], strict=True)
        if gold == "positive" and d.label != gold
    ]
    share_neutral = wrong_on_positive.count("neutral") / len(wrong_on_positive)
    assert len(wrong_on_positive) > 50
    assert 0.65 < share_neutral < 0.95  # configured 0.8 neutral, 0.2 negative


def test_the_alternatives_are_the_labels_it_hesitated_between(reviews: pd.DataFrame) -> None:
    draws = [simulate_label(LARGE, text, system=SYSTEM) for text in reviews["text"][:400]]
    for draw, gold in zip(draws, reviews["sentiment"][:400], strict=True):
        labels = [label for label, _ in draw.scores]
        assert sorted(labels) == sorted(LABELS)
        assert sum(p for _, p in draw.scores) <= 1.0 + 1e-9
        assert all(p <= draw.scores[0][1] for _, p in draw.scores[1:])
        if not draw.correct:
            assert labels[1] == gold  # when wrong, the truth is its first doubt


# --- temperature and n -----------------------------------------------------------------------


def test_temperature_zero_repeats_exactly(reviews: pd.DataFrame) -> None:
    for text in reviews["text"][:200]:
        assert simulate_label(SMALL, text, system=SYSTEM) == simulate_label(
            SMALL, text, system=SYSTEM
        )


@pytest.mark.parametrize("model", SIM_MODELS, ids=lambda m: m.name)
def test_samples_at_temperature_one_are_independent(model: SimModel, reviews: pd.DataFrame) -> None:
    # Distinct texts: a repeated review is one question asked twice, not two questions.
    rows = reviews.drop_duplicates("text")
    first = [simulate_label(model, t, system=SYSTEM, draw="1:0") for t in rows["text"]]
    second = [simulate_label(model, t, system=SYSTEM, draw="2:0") for t in rows["text"]]
    chance = np.array([d.chance for d in first])
    # Independent draws from the same beliefs: both right with p^2, both wrong with
    # (1 - p)^2, and then the same wrong label with the confusion weights' sum of squares.
    same_wrong = {
        gold: sum(w**2 for w in weights.values()) / sum(weights.values()) ** 2
        for gold, weights in model.confusion.items()
    }
    collide = np.array([same_wrong[g] for g in rows["sentiment"].astype(str)])
    predicted = np.mean(chance**2 + (1 - chance) ** 2 * collide)
    agreement = np.mean([a.label == b.label for a, b in zip(first, second, strict=True)])
    assert abs(agreement - predicted) < 0.025, (agreement, predicted)
    both_wrong = np.mean(
        [not a.correct and not b.correct for a, b in zip(first, second, strict=True)]
    )
    assert abs(both_wrong - np.mean((1 - chance) ** 2)) < 0.02
    assert agreement < 0.99


def test_rewording_the_instructions_changes_some_answers(reviews: pd.DataFrame) -> None:
    one = [simulate_label(SMALL, t, system=SYSTEM) for t in reviews["text"]]
    other = [simulate_label(SMALL, t, system=SYSTEM + "\nBe careful.") for t in reviews["text"]]
    agreement = np.mean([a.label == b.label for a, b in zip(one, other, strict=True)])
    assert 0.75 < agreement < 0.97


# --- the prompt matters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "definition"),
    [
        ("sarcastic", "Sarcasm counts as negative."),
        ("mixed", "A mixed review follows its overall verdict."),
    ],
)
@pytest.mark.parametrize("model", SIM_MODELS, ids=lambda m: m.name)
def test_instructions_that_define_a_hard_case_raise_accuracy_on_those_rows(
    model: SimModel,
    kind: str,
    definition: str,
    reviews: pd.DataFrame,
    plain: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    told = LabelSet(LABELS, instructions=definition).system_prompt()
    right, _ = run(model, reviews, system=told)
    before, _ = plain[model.name]
    rows = (reviews["kind"] == kind).to_numpy()
    others = (~reviews["kind"].isin(["sarcastic", "mixed"])).to_numpy()
    assert rows.sum() > 30
    assert right[rows].mean() - before[rows].mean() > 0.1
    assert 1 - right[rows].mean() < 0.7 * (1 - before[rows].mean())  # a third fewer errors
    assert abs(right[others].mean() - before[others].mean()) < 0.02


def test_examples_raise_accuracy_and_similar_ones_more(reviews: pd.DataFrame) -> None:
    pool = load_reviews(300, seed=77)
    vectors = np.array([bag_vector(text) for text in pool["text"]])
    far = [("Zebra quartz vortex.", "positive"), ("Xylophone jigsaw.", "neutral")]

    def nearest(text: str) -> list[tuple[str, str]]:
        best = np.argsort(vectors @ np.array(bag_vector(text)))[::-1][:2]
        return [(pool["text"][i], str(pool["sentiment"][i])) for i in best]

    frame = reviews.head(1000)
    before, _ = run(SMALL, frame)
    with_far, _ = run(SMALL, frame, examples=far)
    with_near = np.array(
        [
            simulate_label(SMALL, text, system=SYSTEM, examples=nearest(text)).label == gold
            for text, gold in zip(frame["text"], frame["sentiment"], strict=True)
        ]
    )
    assert with_far.mean() - before.mean() > 0.02
    assert with_near.mean() - with_far.mean() > 0.04


def test_a_label_set_without_the_truth_gives_the_nearest_or_an_off_set_answer(
    reviews: pd.DataFrame,
) -> None:
    neutral = reviews.loc[reviews["sentiment"] == "neutral", "text"].drop_duplicates()
    system = LabelSet(["positive", "negative"]).system_prompt()
    answers = [
        simulate_label(SMALL, t, system=system, labels=["positive", "negative"]).label
        for t in neutral
    ]
    off_set = answers.count("neutral")
    low, high = binom.interval(0.99, len(answers), SMALL.off_set_rate)
    assert low <= off_set <= high
    in_set = [a for a in answers if a != "neutral"]
    assert in_set.count("positive") / len(in_set) > 0.5  # neutral is nearest to positive


# --- extraction ------------------------------------------------------------------------------

FACTS = {
    "type": "object",
    "properties": {
        "product": {"type": "string"},
        "stars": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "aspect": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "sentiment": {"type": "string", "enum": LABELS},
    },
    "required": ["product", "stars", "aspect", "sentiment"],
    "additionalProperties": False,
}


def extract(model: SimModel, text: str) -> dict[str, Any]:
    body = {
        "model": model.name,
        "temperature": 0,
        "messages": [{"role": "user", "content": text}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "f", "schema": FACTS}},
    }
    answer = answers_for(
        ServerConfig(), body, model.name, body["messages"], [text], text, lambda _: 0
    )[0]
    value: dict[str, Any] = json.loads(answer.content)
    return value


@pytest.mark.parametrize("model", SIM_MODELS, ids=lambda m: m.name)
def test_extracted_fields_are_wrong_at_the_configured_rate(
    model: SimModel, reviews: pd.DataFrame
) -> None:
    facts = pd.DataFrame([extract(model, text) for text in reviews["text"]])
    stars_right = (facts["stars"] == reviews["rating"]).sum()
    low, high = binom.interval(0.99, ROWS, 1 - model.field_error("stars"))
    assert low <= stars_right <= high
    named = reviews["aspect"].notna()
    aspect_right = (facts.loc[named, "aspect"] == reviews.loc[named, "aspect"]).sum()
    low, high = binom.interval(0.99, named.sum(), 1 - model.field_error("aspect"))
    assert low <= aspect_right <= high
    assert facts.loc[~named, "aspect"].isna().mean() > 0.8
    accuracy = (facts["sentiment"] == reviews["sentiment"]).mean()
    assert abs(accuracy - model.accuracy) < 0.04
    # A text that names neither its product nor an aspect has no product to read: a model
    # writes "unknown" in a string field (it wrote words of the text before).
    nothing = [truth_of(text) for text in reviews["text"]]
    blank = [truth is not None and not truth.product for truth in nothing]
    assert any(blank)
    right_or_unknown = facts.loc[blank, "product"].isin(["unknown", *PRODUCTS])
    assert right_or_unknown.all()
    assert (facts.loc[blank, "product"] == "unknown").mean() > 1 - 2 * model.field_error("product")


# --- through the server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig()) as running:
        yield running


@pytest.fixture
def client(server: LocalServer) -> Iterator[openai.OpenAI]:
    with connect(server.base_url) as opened:
        yield opened


def test_the_openai_client_reads_the_simulated_logprobs(
    client: openai.OpenAI, reviews: pd.DataFrame
) -> None:
    text = reviews["text"][0]
    ask = {
        "model": "sim-large",
        "temperature": 0,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
        "response_format": LabelSet(LABELS).response_format(),
    }
    reply = client.chat.completions.create(**ask, logprobs=True, top_logprobs=4)
    expected = simulate_label(LARGE, text, system=SYSTEM)
    choice = reply.choices[0]
    assert json.loads(choice.message.content or "") == {"label": expected.label}
    assert choice.logprobs is not None
    assert choice.logprobs.content is not None
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens == len(tokens)
    (entry,) = [t for t in tokens if t.token == expected.label]
    assert math.exp(entry.logprob) == pytest.approx(expected.scores[0][1], rel=1e-5)
    assert [t.token for t in entry.top_logprobs][:3] == [label for label, _ in expected.scores]
    assert len(entry.top_logprobs) == 4
    assert all(t.logprob == 0.0 for t in tokens if t is not entry)
    # Asking for logprobs does not change the answer, and temperature 0 repeats it.
    again = client.chat.completions.create(**ask)
    assert again.choices[0].message.content == choice.message.content
    assert again.usage is not None
    assert again.usage.completion_tokens == len(tokens)
    stream = client.chat.completions.create(**ask, stream=True, logprobs=True, top_logprobs=4)
    pieces = [chunk.choices[0] for chunk in stream if chunk.choices]
    streamed = [c.logprobs.content[0] for c in pieces if c.logprobs and c.logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in tokens]


def test_n_choices_are_independent_above_temperature_zero(
    client: openai.OpenAI, reviews: pd.DataFrame
) -> None:
    differ = 0
    hard = reviews.loc[reviews["kind"] == "sarcastic", "text"].head(20)
    for text in hard:
        messages: Any = [{"role": "user", "content": text}]
        sure = client.chat.completions.create(
            model="sim-small", messages=messages, n=5, temperature=0
        )
        assert len({c.message.content for c in sure.choices}) == 1
        votes = client.chat.completions.create(model="sim-small", messages=messages, n=5)
        assert len(votes.choices) == 5
        differ += len({c.message.content for c in votes.choices}) > 1
        again = client.chat.completions.create(model="sim-small", messages=messages, n=5)
        differ += [c.message.content for c in votes.choices] != [
            c.message.content for c in again.choices
        ]
    assert differ > 15  # sarcasm is a coin toss for sim-small: its samples disagree


def test_label_run_gets_the_simulated_confidence(
    server: LocalServer, reviews: pd.DataFrame
) -> None:
    frame = reviews.head(300)
    out = frame.holysheep.label(
        "text",
        labels=LABELS,
        model="sim-large",
        temperature=0,
        logprobs=True,
        base_url=server.base_url,
        cache=False,
        progress=False,
    )
    expected = [simulate_label(LARGE, text, system=SYSTEM) for text in frame["text"]]
    assert out["label"].astype(str).tolist() == [d.label for d in expected]
    assert np.allclose(out["confidence"], [d.scores[0][1] for d in expected], rtol=1e-5)
    right = out["label"].astype(str) == out["sentiment"].astype(str)
    assert out.loc[~right, "confidence"].mean() < out.loc[right, "confidence"].mean()


def test_other_models_keep_the_rule_based_answers(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Great, the blender broke after a week."}]
    rule = client.chat.completions.create(model="gpt-4o", messages=messages, n=3)
    assert [c.message.content for c in rule.choices] == ["neutral"] * 3  # great +1, broke -1


def test_a_misspelt_simulated_model_is_not_found(client: openai.OpenAI) -> None:
    """``sim-lage`` is a typo, not a model: answering it by the rules would pass it off as
    the model of known quality."""
    messages: Any = [{"role": "user", "content": "Great, the blender broke after a week."}]
    with pytest.raises(openai.NotFoundError, match="sim-lage"):
        client.chat.completions.create(model="sim-lage", messages=messages)
    listed = ServerConfig(models=("sim-custom",))  # a listed name is the caller's choice
    with LocalServer(listed) as server, connect(server.base_url) as listed_client:
        answer = listed_client.chat.completions.create(model="sim-custom", messages=messages)
    assert answer.choices[0].message.content == "neutral"


def test_models_route_names_the_simulated_models_with_their_price(client: openai.OpenAI) -> None:
    listed = {m.id: m for m in client.models.list()}
    assert {"sim-small", "sim-large", "gpt-4o"} <= set(listed)
    large = (listed["sim-large"].model_extra or {})["pricing"]
    small = (listed["sim-small"].model_extra or {})["pricing"]
    assert float(large["prompt"]) == pytest.approx(10 * float(small["prompt"]))
    assert (listed["sim-small"].model_extra or {})["simulated"]["accuracy"] == 0.8


# --- embeddings ------------------------------------------------------------------------------


def test_the_openai_client_reads_embeddings(client: openai.OpenAI, server: LocalServer) -> None:
    before = server.stats()["embeddings"]
    texts = ["The battery life is great.", "Great battery life!", "Customer support was slow."]
    got = client.embeddings.create(model="text-embedding-3-small", input=texts)  # base64
    floats = client.embeddings.create(model="e", input=texts, encoding_format="float")
    assert [d.index for d in got.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in got.data])
    assert np.allclose(vectors, np.array([d.embedding for d in floats.data]), atol=1e-6)
    assert vectors.shape == (3, 256)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.6 > 0.3 > similarity[0, 2]
    assert got.usage.prompt_tokens == got.usage.total_tokens == sum(-(-len(t) // 4) for t in texts)
    one = client.embeddings.create(model="e", input=texts[0], dimensions=64)
    assert len(one.data) == 1
    assert len(one.data[0].embedding) == 64
    again = client.embeddings.create(model="e", input=texts[0], dimensions=64)
    assert again.data[0].embedding == one.data[0].embedding
    with pytest.raises(openai.BadRequestError, match="input"):
        client.embeddings.create(model="e", input="")
    assert server.stats()["embeddings"] == before + 5


# --- configuration ---------------------------------------------------------------------------


def test_models_are_configured_by_spec_and_flags() -> None:
    tiny = SimModel.from_json({"name": "tiny", "accuracy": 0.6, "overconfidence": 2.0})
    assert tiny.calibration == "over-confident (+2 log-odds)"
    assert LARGE.calibration == "well calibrated"
    config = ServerConfig(sim_models=(tiny, replace(LARGE, accuracy=0.9)))
    parsed, _, _ = parse_cli(config_args(config))
    assert parsed.sim_models == config.sim_models
    assert parse_cli(config_args(ServerConfig()))[0].sim_models == SIM_MODELS
    assert parse_cli(["--no-sim-models"])[0].sim_models == ()
    with pytest.raises(ConfigError, match="unknown simulated model field"):
        SimModel.from_json({"name": "x", "accuracy": 0.5, "acuracy": 1})
    with pytest.raises(ConfigError, match="accuracy"):
        SimModel(name="x", accuracy=1.5)
    with pytest.raises(ConfigError, match="unique"):
        ServerConfig(sim_models=(tiny, tiny))


def test_a_configured_model_answers_at_its_accuracy(reviews: pd.DataFrame) -> None:
    coin = SimModel(name="coin", accuracy=0.6, discrimination=0.3, hard_penalty=0.5)
    right, _ = run(coin, reviews)
    low, high = binom.interval(0.95, ROWS, 0.6)
    assert low <= right.sum() <= high


def test_draws_name_their_chance_of_being_right(reviews: pd.DataFrame) -> None:
    draw = simulate_label(LARGE, reviews["text"][3], system=SYSTEM)
    assert isinstance(draw, Draw)
    assert 0.0 < draw.chance < 1.0
    assert draw.scores[0] == (draw.label, pytest.approx(draw.chance, rel=1e-9))
