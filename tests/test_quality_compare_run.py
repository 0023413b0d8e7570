"""compare() end to end: the variants run on the local server's simulated models, and every
figure of the comparison is worked out again by hand from the result frames."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score

import holysheep_nb  # noqa: F401 - registers df.holysheep
from holysheep_nb.errors import ConfigError, HolySheepWarning, RunStoppedError
from holysheep_nb.labels import LabelSet
from holysheep_nb.prices import Prices
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import LocalServer, ServerConfig
from holysheep_nb.server.models import SIM_MODELS
from holysheep_nb.server.simulate import simulate_label

SMALL, LARGE = SIM_MODELS
LABELS = ["positive", "negative", "neutral"]
DEFINE = "Sarcasm counts as negative. A mixed review follows its overall verdict."
SMALL_PRICES = Prices(0.00015, 0.0006)
LARGE_PRICES = Prices(0.0015, 0.006)
VARIANTS: dict[str, dict[str, Any]] = {
    "small": {"model": "sim-small", "prices": SMALL_PRICES},
    "large": {"model": "sim-large", "prices": LARGE_PRICES},
    "defined": {"model": "sim-small", "prices": SMALL_PRICES, "instructions": DEFINE},
}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig()) as running:
        yield running


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    return load_reviews(400, seed=3)


def wilson(hits: int, n: int) -> tuple[float, float]:
    interval = binomtest(hits, n).proportion_ci(0.95, method="wilson")
    return interval.low, interval.high


def compare(sample: pd.DataFrame, server: LocalServer, **options: Any) -> Any:
    given: dict[str, Any] = {
        "labels": LABELS,
        "variants": VARIANTS,
        "gold": "sentiment",
        "temperature": 0,
        "base_url": server.base_url,
        "progress": False,
        **options,
    }
    return sample.holysheep.compare("text", **given)


def test_every_variant_answers_as_its_model_and_prompt(
    server: LocalServer, population: pd.DataFrame
) -> None:
    sample = population.sample(80, random_state=0)
    cmp = compare(sample, server)
    assert list(cmp.results) == ["small", "large", "defined"]
    asked = {
        "small": (SMALL, LabelSet(LABELS).system_prompt()),
        "large": (LARGE, LabelSet(LABELS).system_prompt()),
        "defined": (SMALL, LabelSet(LABELS, instructions=DEFINE).system_prompt()),
    }
    for name, (model, system) in asked.items():
        out = cmp.results[name]
        assert out.index.equals(sample.index)
        expected = [simulate_label(model, text, system=system).label for text in out["text"]]
        assert out["label"].astype(str).tolist() == expected, name


def test_the_table_is_the_result_frames_worked_by_hand(
    server: LocalServer, population: pd.DataFrame
) -> None:
    sample = population.sample(80, random_state=1)
    cmp = compare(sample, server, project_to=population)
    table = cmp.table
    # Rows of project_to the sample did not put in the cache, each distinct prompt once.
    to_send = population.loc[~population["text"].isin(sample["text"]), "text"].nunique()
    prices = {"small": SMALL_PRICES, "large": LARGE_PRICES, "defined": SMALL_PRICES}
    for name, out in cmp.results.items():
        line = table.loc[name]
        right = out["label"].astype(str) == out["sentiment"].astype(str)
        hits = int(right.sum())
        assert line["accuracy"] == hits / 80
        assert (line["accuracy_low"], line["accuracy_high"]) == pytest.approx(wilson(hits, 80))
        prompt, completion = int(out["prompt_tokens"].sum()), int(out["completion_tokens"].sum())
        assert (line["prompt_tokens"], line["completion_tokens"]) == (prompt, completion)
        price = prices[name]
        cost = (prompt * price.input_per_1k + completion * price.output_per_1k) / 1000
        assert line["cost"] == pytest.approx(cost)
        assert line["projected_cost"] == pytest.approx(cost / 80 * to_send)
        sent = np.sort(out["latency"].dropna().to_numpy())
        assert line["p50_latency"] == pytest.approx(np.percentile(sent, 50))
        assert line["p95_latency"] == pytest.approx(np.percentile(sent, 95))
    for first in cmp.results:
        for second in cmp.results:
            kappa = cohen_kappa_score(
                cmp.results[first]["label"].astype(str), cmp.results[second]["label"].astype(str)
            )
            assert cmp.agreement.loc[first, second] == pytest.approx(kappa)
    top = str(table["accuracy"].idxmax())
    assert cmp.mcnemar is not None
    reference = cmp.results[top]["label"].astype(str) == sample["sentiment"].astype(str)
    for name, line in cmp.mcnemar.iterrows():
        other = cmp.results[name]["label"].astype(str) == sample["sentiment"].astype(str)
        b, c = int((reference & ~other).sum()), int((~reference & other).sum())
        assert (line["only_reference"], line["only_other"]) == (b, c)
        p = binomtest(b, b + c).pvalue if b + c else 1.0
        assert line["p_value"] == pytest.approx(p)
    tied = [top, *cmp.mcnemar.index[cmp.mcnemar["p_value"] >= 0.05]]
    assert cmp.best.name == table.loc[tied, "projected_cost"].idxmin()
    assert "McNemar" in cmp.best.rule


def test_batch_prices_the_projection_at_the_discount(
    server: LocalServer, population: pd.DataFrame
) -> None:
    sample = population.sample(40, random_state=2)
    online = compare(sample, server, project_to=1000)
    batch = compare(sample, server, project_to=1000, batch=True)
    assert batch.table["projected_cost"].tolist() == pytest.approx(
        (online.table["projected_cost"] * 0.5).tolist()
    )
    assert batch.table["cost"].tolist() == pytest.approx(online.table["cost"].tolist())


def test_the_second_compare_comes_from_the_cache(
    server: LocalServer, population: pd.DataFrame
) -> None:
    sample = population.sample(50, random_state=4)
    first = compare(sample, server)
    before = server.stats()["requests"]
    again = compare(sample, server)
    assert server.stats()["requests"] == before
    for name, out in again.results.items():
        assert out["cached"].all()
        assert out["label"].tolist() == first.results[name]["label"].tolist()
    assert again.table["accuracy"].tolist() == first.table["accuracy"].tolist()


def test_a_variant_changes_labels_and_template(
    server: LocalServer, population: pd.DataFrame
) -> None:
    sample = population.head(30)
    cmp = sample.holysheep.compare(
        "text",
        labels=LABELS,
        variants={
            "plain": {"model": "sim-large"},
            "templated": {"model": "sim-large", "template": "Review: {text}"},
            "two": {"model": "sim-large", "labels": ["positive", "negative"]},
        },
        gold="sentiment",
        temperature=0,
        base_url=server.base_url,
        progress=False,
    )
    assert set(cmp.results["two"]["label"].dropna().astype(str)) <= {"positive", "negative"}
    assert list(cmp.results["two"]["label"].cat.categories) == ["positive", "negative"]
    assert cmp.results["templated"]["label"].notna().all()
    assert (
        cmp.results["templated"]["prompt_tokens"].sum()
        > cmp.results["plain"]["prompt_tokens"].sum()
    )


async def test_acompare_in_the_running_loop(server: LocalServer, population: pd.DataFrame) -> None:
    sample = population.sample(30, random_state=5)
    cmp = await sample.holysheep.acompare(
        "text",
        labels=LABELS,
        variants=VARIANTS,
        gold="sentiment",
        temperature=0,
        base_url=server.base_url,
        progress=False,
    )
    assert set(cmp.table.index) == set(VARIANTS)
    assert cmp.best.name in VARIANTS


def test_one_bar_over_every_variant(
    server: LocalServer,
    population: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("TQDM_DISABLE")

    def no_own_bar(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a variant drew a bar of its own")

    monkeypatch.setattr("holysheep_nb.job.RunProgress", no_own_bar)
    compare(population.head(25), server, progress=True, cache=False)
    bar = capsys.readouterr().err
    assert "holysheep compare" in bar
    assert "75/75" in bar
    totals = {int(total) for total in re.findall(r"\d+/(\d+) \[", bar)}
    assert totals == {75}
    assert all(f"variant={name}" in bar for name in VARIANTS)


def test_a_stopped_variant_stops_the_comparison(population: pd.DataFrame) -> None:
    sample = population.head(5)
    with LocalServer(ServerConfig(api_key="right-key")) as guarded:
        variants = {
            "good": {"api_key": "right-key"},
            "bad": {"api_key": "wrong-key"},
            "never": {"api_key": "right-key", "temperature": 0},
        }
        with (
            pytest.raises(RunStoppedError, match=r"variant 'bad'.*authentication failed"),
            pytest.warns(HolySheepWarning, match="stopped the run"),
        ):
            sample.holysheep.compare(
                "text",
                labels=LABELS,
                variants=variants,
                model="sim-small",
                base_url=guarded.base_url,
                progress=False,
                cache=False,
            )
        sent = guarded.stats()["requests"]
    # "good" and "bad" sent at most one request a distinct text; "never" was not run.
    assert sent <= 2 * sample["text"].nunique()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"variants": [{"model": "sim-small"}]}, "variants must be a dict"),
        ({"variants": {"only": {}}}, "at least two variants"),
        ({"variants": {"a": {}, "b": "sim-large"}}, "variant 'b' must be a dict"),
        ({"variants": {"a": {}, "b": {"modle": "x"}}}, "variant 'b': unknown option 'modle'"),
        ({"variants": {"a": {}, "b": {"modle": "x"}}}, "did you mean model"),
        ({"variants": {"a": {}, "b": {"progress": False}}}, "pass progress= to compare"),
        ({"variants": {"a": {}, "b": {"batch": True}}}, "sample runs online"),
        ({"variants": {"a": {}, 1: {}}}, "non-empty string"),
        ({"variants": {"a": {}, "b": {"labels": "positive"}}}, "list of strings"),
        ({"variants": {"a": {}, "b": {"prices": "cheap"}}}, "prices must be"),
        ({"variants": {"a": {}, "b": {"max_concurrent": 0}}}, "max_concurrent"),
        ({"labels": None}, "has no labels"),
        ({"temprature": 0}, "did you mean temperature"),
        ({"gold": "no_such_column"}, "no_such_column"),
        ({"project_to": "all"}, "project_to must be"),
        ({"project_to": -1}, "project_to must be"),
        ({"project_to": pd.DataFrame({"other": ["x"]})}, "text"),
        ({"batch": "yes"}, "batch"),
    ],
)
def test_bad_variants_are_refused_before_anything_is_sent(
    server: LocalServer, population: pd.DataFrame, changes: dict[str, Any], message: str
) -> None:
    before = server.stats()["requests"]
    options: dict[str, Any] = {
        "labels": LABELS,
        "variants": {"a": {"model": "sim-small"}, "b": {"model": "sim-large"}},
        "gold": "sentiment",
        "base_url": server.base_url,
        "progress": False,
        **changes,
    }
    if options["labels"] is None:
        del options["labels"]
    with pytest.raises(ConfigError, match=message):
        population.head(10).holysheep.compare("text", **options)
    assert server.stats()["requests"] == before
    assert not math.isnan(before)
