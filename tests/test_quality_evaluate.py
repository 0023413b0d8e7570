"""evaluate() on label() results: every figure checked on a case computed by hand, and once
end to end on a real labelling run against the local server."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score

import holysheep_nb  # noqa: F401  (registers the accessor)
from holysheep_nb.errors import ConfigError, HolySheepError, HolySheepWarning
from holysheep_nb.quality import evaluate
from holysheep_nb.quality.calibration import Calibration
from holysheep_nb.quality.classification import NO_LABEL, LabelEvaluation
from holysheep_nb.quality.intervals import wilson
from holysheep_nb.server import RunningServer, ServerConfig, start_server

SENTIMENT = ["positive", "negative", "neutral"]


def labelled() -> pd.DataFrame:
    """A label() result by hand: 8 rows with gold (one without a label), 2 without gold."""
    return pd.DataFrame(
        {
            "text": [f"review {i}" for i in range(10)],
            "sentiment": ["positive", "positive", "positive", "negative", "negative",
                          "neutral", "neutral", "Positive ", None, None],
            "label": pd.Categorical(
                ["positive", "positive", "negative", "negative", "negative",
                 "positive", "neutral", None, "positive", None],
                categories=SENTIMENT,
            ),
            "confidence": [0.95, 0.9, 0.6, 0.8, 0.85, 0.55, 0.7, np.nan, 0.9, np.nan],
            "response": ["..."] * 10,
            "error": [None] * 7 + ["not in label set: 'meh'", None, "HTTP 500: boom"],
        }
    )  # fmt: skip


@pytest.fixture
def ev() -> LabelEvaluation:
    result = evaluate(labelled(), "sentiment")
    assert isinstance(result, LabelEvaluation)
    return result


def test_counts_rows_with_gold_and_says_what_was_left_out(ev: LabelEvaluation) -> None:
    assert ev.n == 8
    assert ev.without_gold == 2
    assert ev.unlabelled == 1  # gold ("Positive " is positive) but no label: wrong
    assert ev.unlabelled_causes == (("not in label set", 1),)


def test_accuracy_with_wilson_interval(ev: LabelEvaluation) -> None:
    assert ev.accuracy == pytest.approx(5 / 8)
    assert ev.accuracy_ci == pytest.approx(wilson(5, 8))


def test_confusion_has_gold_rows_predicted_columns_and_no_label(ev: LabelEvaluation) -> None:
    assert ev.confusion.index.tolist() == SENTIMENT
    assert ev.confusion.columns.tolist() == [*SENTIMENT, NO_LABEL]
    assert ev.confusion.to_numpy().tolist() == [[2, 1, 0, 1], [0, 2, 0, 0], [1, 0, 1, 0]]


def test_per_class_by_hand(ev: LabelEvaluation) -> None:
    table = ev.per_class
    assert table.index.tolist() == SENTIMENT
    # positive: 2 right of 3 predicted, of 4 gold; negative: 2 of 3, of 2; neutral: 1 of 1, of 2.
    assert table["precision"].tolist() == pytest.approx([2 / 3, 2 / 3, 1.0])
    assert table["recall"].tolist() == pytest.approx([0.5, 1.0, 0.5])
    assert table["f1"].tolist() == pytest.approx([4 / 7, 0.8, 2 / 3])
    assert table["support"].tolist() == [4, 2, 2]
    assert (table.loc["positive", "precision_low"], table.loc["positive", "precision_high"]) == (
        pytest.approx(wilson(2, 3))
    )
    assert (table.loc["neutral", "recall_low"], table.loc["neutral", "recall_high"]) == (
        pytest.approx(wilson(1, 2))
    )
    assert (table["f1_low"] <= table["f1"]).all()
    assert (table["f1"] <= table["f1_high"]).all()


def test_macro_f1_and_kappa_by_hand_and_against_scikit_learn(ev: LabelEvaluation) -> None:
    assert ev.macro_f1 == pytest.approx((4 / 7 + 0.8 + 2 / 3) / 3)
    # p_o = 5/8; gold margins 4, 2, 2, 0 and predicted 3, 3, 1, 1 (no label): p_e = 20/64.
    assert ev.kappa == pytest.approx((5 / 8 - 20 / 64) / (1 - 20 / 64))
    gold = ["positive", "positive", "positive", "negative", "negative", "neutral", "neutral",
            "positive"]  # fmt: skip
    pred = ["positive", "positive", "negative", "negative", "negative", "positive", "neutral",
            NO_LABEL]  # fmt: skip
    assert ev.kappa == pytest.approx(cohen_kappa_score(gold, pred))
    assert ev.macro_f1 == pytest.approx(
        f1_score(gold, pred, labels=SENTIMENT, average="macro", zero_division=0)
    )
    for value, (low, high) in ((ev.macro_f1, ev.macro_f1_ci), (ev.kappa, ev.kappa_ci)):
        assert low <= value <= high


def test_the_bootstrap_intervals_follow_the_seed() -> None:
    first = evaluate(labelled(), "sentiment", seed=1)
    assert first.kappa_ci == evaluate(labelled(), "sentiment", seed=1).kappa_ci
    assert first.kappa_ci != evaluate(labelled(), "sentiment", seed=2).kappa_ci


def test_gold_as_a_series_is_lined_up_by_index() -> None:
    frame = labelled()
    gold = frame["sentiment"].sample(frac=1, random_state=3)  # shuffled: aligned by label
    by_series = evaluate(frame.drop(columns="sentiment"), gold)
    assert by_series.accuracy == pytest.approx(5 / 8)
    assert by_series.confusion.equals(evaluate(frame, "sentiment").confusion)


def test_a_gold_value_outside_the_label_set_is_a_class_of_its_own() -> None:
    frame = labelled()
    frame.loc[0, "sentiment"] = "mixed"
    ev = evaluate(frame, "sentiment")
    assert ev.accuracy == pytest.approx(4 / 8)
    assert ev.confusion.loc["mixed", "positive"] == 1
    assert ev.per_class.loc["mixed", "support"] == 1


def test_gold_spellings_of_a_value_never_predicted_are_one_class() -> None:
    frame = labelled()
    frame.loc[5, "sentiment"] = "Mixed"
    frame.loc[6, "sentiment"] = " mixed"
    ev = evaluate(frame, "sentiment")
    assert ev.per_class.loc["Mixed", "support"] == 2
    assert ev.confusion.loc["Mixed"].sum() == 2
    assert "mixed" not in ev.per_class.index


def test_the_label_column_of_a_frame_whose_input_had_one_is_predicted_label() -> None:
    frame = labelled().rename(columns={"sentiment": "label", "label": "predicted_label"})
    assert evaluate(frame, "label").accuracy == pytest.approx(5 / 8)


def test_reading_it_in_a_terminal_and_in_jupyter(ev: LabelEvaluation) -> None:
    shown = str(ev)
    assert "accuracy       62.5%" in shown
    assert "(counted wrong; not in label set: 1)" in shown
    assert "(rows without gold)" in shown
    assert "confusion (gold \\ predicted)" in shown
    page = ev._repr_html_()
    assert '<table class="holysheep-confusion">' in page
    assert "background:rgba(31,119,180,0.50)" in page  # positive -> positive: 2 of 4
    assert ev.to_frame().index.tolist() == [
        "accuracy",
        "macro_f1",
        "kappa",
        "ece",
        "frame_accuracy",
    ]
    assert ev.to_frame().loc["accuracy"].tolist() == pytest.approx([5 / 8, *wilson(5, 8)])


# --- confidence ------------------------------------------------------------------------------


def test_ece_and_reliability_by_hand(ev: LabelEvaluation) -> None:
    # Gold rows with confidence: 7. Bins: 0.9-1 (0.95, 0.9: right), 0.8-0.9 (0.8, 0.85: right),
    # 0.7 (right), 0.6 (wrong), 0.55 (wrong).
    gaps = 2 * 0.075 + 2 * 0.175 + 0.3 + 0.6 + 0.55
    assert ev.ece == pytest.approx(gaps / 7)
    assert ev.ece_ci[0] <= ev.ece <= ev.ece_ci[1]
    table = ev.reliability
    assert table["rows"].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]
    assert table.loc["0.9-1", "confidence"] == pytest.approx(0.925)
    assert table.loc["0.6-0.7", "accuracy"] == 0.0
    assert table.loc["0.8-0.9", "gap"] == pytest.approx(-0.175)
    assert ev.calibration is not None
    assert ev.calibration.without_confidence == 1


def test_accuracy_at_coverage_by_hand(ev: LabelEvaluation) -> None:
    table = ev.at_coverage([0.0, 0.8, 0.96])
    assert table["kept"].tolist() == [7, 4, 0]
    assert table["coverage"].tolist() == pytest.approx([7 / 8, 4 / 8, 0.0])
    assert table.loc[0.8, "accuracy"] == 1.0
    assert (table.loc[0.8, "accuracy_low"], table.loc[0.8, "accuracy_high"]) == pytest.approx(
        wilson(4, 4)
    )
    assert math.isnan(table.loc[0.96, "accuracy"])


def test_threshold_for_is_the_lowest_whose_lower_bound_meets_the_target(
    ev: LabelEvaluation,
) -> None:
    # Going down: 0.95 (1 of 1), 0.9 (2/2), 0.85 (3/3) miss 0.5; 0.8 (4/4: low 0.510) and 0.7
    # (5/5: 0.566) meet it; 0.6 (5/6: 0.437) misses, and the search stops there.
    assert ev.threshold_for(accuracy=0.5) == 0.7
    assert wilson(4, 4)[0] >= 0.5 > wilson(5, 6)[0]


def test_threshold_for_stops_at_the_first_miss_below_a_pass() -> None:
    confidence = np.array([0.99] * 20 + [0.9] + [0.5] * 30)
    correct = np.array([True] * 20 + [False] + [True] * 30)
    calibration = Calibration.of(confidence, correct)
    # 0.5 keeps 50 of 51 right (lower bound 0.90), but 0.9 missed first (20 of 21: 0.77).
    assert wilson(50, 51)[0] >= 0.8 > wilson(20, 21)[0]
    assert calibration.threshold_for(0.8) == 0.99


def test_no_threshold_is_none_with_the_reason(ev: LabelEvaluation) -> None:
    with pytest.warns(HolySheepWarning, match=r"no confidence threshold .* reaches 95\.0%"):
        assert ev.threshold_for(accuracy=0.95) is None
    with pytest.raises(ConfigError, match="accuracy must be a share"):
        ev.threshold_for(accuracy=95)


def test_the_reliability_diagram(ev: LabelEvaluation) -> None:
    figure = ev.plot_reliability()
    ax = figure.axes[0]
    assert ax.get_title() == f"reliability (ECE {ev.ece:.3f})"
    points = ax.lines[1].get_xydata()  # after the diagonal: one point per non-empty bin
    assert points[:, 0] == pytest.approx([0.55, 0.6, 0.7, 0.825, 0.925])
    assert points[:, 1].tolist() == [0, 0, 1, 1, 1]


def test_without_a_confidence_column_calibration_says_how_to_get_one() -> None:
    ev = evaluate(labelled().drop(columns="confidence"), "sentiment")
    assert isinstance(ev, LabelEvaluation)
    with pytest.raises(HolySheepError, match="logprobs=True"):
        ev.ece  # noqa: B018
    assert "ece" not in ev.to_frame().index
    # As docs/evaluate.md says: no threshold is None with the reason, not an exception.
    with pytest.warns(HolySheepWarning, match=r"no confidence column: label with logprobs=True"):
        assert ev.threshold_for(accuracy=0.9) is None
    with pytest.raises(ConfigError, match="accuracy must be a share"):
        ev.threshold_for(accuracy=90)


def test_rows_answered_from_the_cache_are_named_as_why_there_is_no_confidence() -> None:
    # Every row from a cache written before it kept logprobs (or by a run without them).
    frame = labelled().assign(confidence=np.nan, cached=True)
    ev = evaluate(frame, "sentiment")
    assert isinstance(ev, LabelEvaluation)
    with pytest.warns(HolySheepWarning) as caught:
        assert ev.threshold_for(accuracy=0.9) is None
    (message,) = [str(w.message) for w in caught]
    assert "8 of 8 were answered from a cache written before it kept logprobs" in message
    assert "cache=False" in message
    assert "label with logprobs=True" not in message
    # Without cached rows the advice stays: ask for logprobs.
    fresh = evaluate(frame.assign(cached=False), "sentiment")
    assert isinstance(fresh, LabelEvaluation)
    assert fresh.choose_threshold(0.9) == (
        None,
        "no gold row has a confidence: label with logprobs=True",
    )


# --- the whole frame -------------------------------------------------------------------------


def test_the_whole_frame_from_the_gold_sample(ev: LabelEvaluation) -> None:
    estimate = ev.frame_estimate
    # 5 gold rows right; 7 gold rows have a label (p = 5/7); 1 labelled row has no gold; the
    # row with neither gold nor label is wrong.
    assert (estimate.rows, estimate.gold_rows, estimate.unlabelled) == (10, 8, 2)
    assert estimate.correct == pytest.approx(5 + 5 / 7)
    low, high = wilson(5, 7)
    assert estimate.correct_ci == pytest.approx((5 + low, 5 + high))
    assert estimate.accuracy_ci == pytest.approx(((5 + low) / 10, (5 + high) / 10))
    assert "random sample" in str(estimate)


def test_row_estimates_use_the_gold_rows_of_the_same_confidence_bin(ev: LabelEvaluation) -> None:
    rows = ev.row_estimates()
    assert rows.index.equals(labelled().index)
    assert rows["p_correct"].tolist()[:8] == [1, 1, 0, 1, 1, 0, 1, 0]  # gold rows: known
    assert rows.loc[8, "basis"] == "confidence 0.9-1"  # two gold rows there, both right
    assert rows.loc[8, "p_correct"] == 1.0
    assert (rows.loc[8, "p_correct_low"], rows.loc[8, "p_correct_high"]) == pytest.approx(
        wilson(2, 2)
    )
    assert rows.loc[9, "basis"] == "no label"
    assert rows.loc[9, "p_correct"] == 0.0


def test_row_estimates_without_confidence_use_the_predicted_labels_precision() -> None:
    rows = evaluate(labelled(), "sentiment", confidence=False).row_estimates()
    assert rows.loc[8, "basis"] == "label positive"
    assert rows.loc[8, "p_correct"] == pytest.approx(2 / 3)


# --- misuse ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gold": "sentiments"}, r"gold 'sentiments' is not a column .*did you mean 'sentiment'"),
        ({}, "not neither"),
        ({"gold": "sentiment", "against": "text"}, "not both"),
        ({"gold": "sentiment", "level": 95}, "level must be a share"),
        ({"gold": "sentiment", "column": "labels"}, "column 'labels' is not a column"),
        ({"gold": pd.Series([None] * 10)}, "no row has gold"),
        ({"gold": "sentiment", "resamples": 10}, "resamples must be"),
    ],
)
def test_misuse_is_a_config_error_naming_the_fix(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        evaluate(labelled(), **kwargs)  # type: ignore[arg-type]


def test_a_frame_without_labels_says_what_to_evaluate() -> None:
    with pytest.raises(ConfigError, match="no label column"):
        evaluate(pd.DataFrame({"text": ["a"], "gold": ["b"]}), "gold")


def test_the_accessor_delegates() -> None:
    ev = labelled().holysheep.evaluate(gold="sentiment")
    assert isinstance(ev, LabelEvaluation)
    assert ev.accuracy == pytest.approx(5 / 8)


# --- end to end ------------------------------------------------------------------------------


@pytest.fixture
async def labeller() -> AsyncIterator[RunningServer]:
    async with await start_server(ServerConfig()) as server:
        yield server


async def test_a_real_labelling_run_evaluated(labeller: RunningServer) -> None:
    texts = ["Excellent sound, I love it", "Awful, it broke", "Blue box", "Great value",
             "Terrible support", "It is a cable"]  # fmt: skip
    frame = pd.DataFrame({"text": texts, "sentiment": ["positive", "negative", "neutral",
                                                       "positive", "negative", None]})  # fmt: skip
    out = await frame.holysheep.alabel(
        "text", labels=SENTIMENT, logprobs=True, base_url=labeller.base_url, cache=False,
        progress=False,
    )  # fmt: skip
    ev = out.holysheep.evaluate(gold="sentiment")
    right = (out["label"].astype(object) == out["sentiment"]).iloc[:5]
    assert ev.n == 5
    assert ev.without_gold == 1
    assert ev.accuracy == pytest.approx(right.mean())
    assert ev.confusion.to_numpy().sum() == 5
    assert ev.calibration is not None
    assert 0 <= ev.ece <= 1


async def test_two_runs_agree_in_the_forms_docs_evaluate_md_shows(labeller: RunningServer) -> None:
    from holysheep_nb.quality.agreement import Agreement

    texts = ["Excellent sound, I love it", "Awful, it broke", "Blue box", "Great value"]
    options = {"base_url": labeller.base_url, "cache": False, "progress": False}
    frame = pd.DataFrame({"text": texts})
    out = await frame.holysheep.alabel("text", labels=SENTIMENT, **options)
    other = await frame.holysheep.alabel("text", labels=SENTIMENT, model="sim-large", **options)
    both = await out.holysheep.alabel("text", labels=SENTIMENT, model="sim-large", **options)
    assert "predicted_label" in both.columns
    assert "label_2" not in both.columns
    assert both["predicted_label"].tolist() == other["label"].tolist()
    by_column = both.holysheep.evaluate(column="label", against="predicted_label")
    by_assign = out.assign(large=other["label"]).holysheep.evaluate(against="large")
    assert isinstance(by_column, Agreement)
    assert isinstance(by_assign, Agreement)
    assert by_column.columns == ("label", "predicted_label")
    assert by_assign.columns == ("label", "large")
    same = (out["label"] == other["label"]).mean()
    assert by_column.agreement == by_assign.agreement == pytest.approx(same)


def test_a_notebook_cell_shows_the_text_not_the_dataclass_fields(ev: LabelEvaluation) -> None:
    """IPython's pretty printer takes a class's own ``__repr__`` (a dataclass has one) before
    an inherited ``_repr_pretty_``: the text is what a cell's plain output must show."""
    from IPython.lib.pretty import pretty

    assert pretty(ev) == str(ev)
    assert pretty(ev).startswith("holysheep_nb evaluation")
