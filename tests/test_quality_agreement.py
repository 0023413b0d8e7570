"""Agreement without gold, multi-label and extracted-field evaluation: hand-computed cases and
scikit-learn's own functions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, jaccard_score
from sklearn.preprocessing import MultiLabelBinarizer

from holysheep_nb.errors import ConfigError
from holysheep_nb.quality import evaluate
from holysheep_nb.quality.agreement import Agreement
from holysheep_nb.quality.fields import FieldEvaluation
from holysheep_nb.quality.intervals import wilson
from holysheep_nb.quality.multilabel import MultiLabelEvaluation

# --- agreement -------------------------------------------------------------------------------


def two_raters() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": ["a", "a", "b", "b"] * 5,
            "other": ["a", "b", "b", "b"] * 5,
            "third": ["a", "a", "b", None] * 5,
        }
    )


def test_two_columns_percent_agreement_kappa_and_alpha_by_hand() -> None:
    result = evaluate(two_raters(), against="other")
    assert isinstance(result, Agreement)
    assert result.n == 20
    assert result.agreement == pytest.approx(0.75)
    assert result.agreement_ci == pytest.approx(wilson(15, 20))
    # p_o = 3/4; margins (1/2, 1/2) and (1/4, 3/4): p_e = 1/2, kappa = 1/2.
    assert result.kappa == pytest.approx(0.5)
    # Krippendorff, nominal, per 4 units: coincidences o_aa = 2, o_ab = o_ba = 1, o_bb = 4,
    # n = 8, n_a = 3, n_b = 5: D_o = 2/8, D_e = 2 * 3 * 5 / (8 * 7), alpha = 1 - D_o / D_e.
    # Five copies of the 4 units: n = 40, n_a = 15, n_b = 25, D_o the same.
    assert result.alpha == pytest.approx(1 - (10 / 40) / (2 * 15 * 25 / (40 * 39)))
    assert result.kappa_ci is not None
    for value, (low, high) in ((result.kappa, result.kappa_ci), (result.alpha, result.alpha_ci)):
        assert low <= value <= high


def test_case_and_spacing_do_not_make_a_disagreement() -> None:
    frame = pd.DataFrame({"label": ["Yes", "no ", "yes"], "other": ["yes", "No", "YES"]})
    assert evaluate(frame, against="other").agreement == 1.0


def test_several_columns_give_alpha_and_the_pairwise_kappas() -> None:
    result = evaluate(two_raters(), against=["other", "third"])
    assert result.kappa is None
    assert result.n == 15  # every fourth row lacks "third"
    assert result.left_out == 5
    assert result.pairwise.loc["label", "other"] == pytest.approx(0.5)
    assert result.pairwise.loc["label", "third"] == pytest.approx(1.0)
    assert result.pairwise.loc["other", "label"] == result.pairwise.loc["label", "other"]
    assert result.alpha_ci[0] <= result.alpha <= result.alpha_ci[1]
    assert "pairwise kappa" in str(result)
    assert result.to_frame().index.tolist() == ["agreement", "alpha"]


def test_agreement_needs_two_different_columns() -> None:
    with pytest.raises(ConfigError, match="at least two different columns"):
        evaluate(two_raters(), against="label")


# --- several labels a row --------------------------------------------------------------------

GOLD = [["fit", "colour"], ["price"], ["fit"], ["colour", "price"], ["fit", "price"], ["colour"]]
PRED = [["fit"], ["price"], ["fit", "price"], ["colour", "price"], ["price", "fit"], ["fit"]]


def test_multi_labels_against_scikit_learn() -> None:
    frame = pd.DataFrame({"label": pd.Series(PRED, dtype=object), "gold": GOLD})
    ev = evaluate(frame, "gold")
    assert isinstance(ev, MultiLabelEvaluation)
    binary = MultiLabelBinarizer(classes=["colour", "fit", "price"])
    y_true, y_pred = binary.fit_transform(GOLD), binary.transform(PRED)
    assert ev.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    assert ev.jaccard == pytest.approx(jaccard_score(y_true, y_pred, average="samples"))
    assert ev.micro_f1 == pytest.approx(f1_score(y_true, y_pred, average="micro"))
    assert ev.macro_f1 == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert ev.per_class.index.tolist() == ["colour", "fit", "price"]
    assert ev.per_class["f1"].tolist() == pytest.approx(f1_score(y_true, y_pred, average=None))
    # colour by hand: predicted once (right), gold 3 times.
    assert ev.per_class.loc["colour", "precision"] == 1.0
    assert ev.per_class.loc["colour", "recall"] == pytest.approx(1 / 3)
    assert ev.per_class.loc["colour", "support"] == 3


def test_multi_gold_as_text_and_a_row_without_labels() -> None:
    gold = ["fit; colour", '["price"]', "fit"]
    pred = pd.Series([["fit", "colour"], ["price"], None], dtype=object)
    ev = evaluate(pd.DataFrame({"label": pred, "gold": gold}), "gold")
    assert ev.unlabelled == 1
    assert ev.accuracy == pytest.approx(2 / 3)  # the row without labels is wrong
    assert ev.jaccard == pytest.approx(2 / 3)  # and has Jaccard 0
    assert "no label" in str(ev)


# --- extract() fields ------------------------------------------------------------------------


def extracted() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "product": pd.array([" Acme  Corp", "Widget", None, "x"], dtype="string"),
            "stars": pd.array([4, 3, None, 5], dtype="Int64"),
            "price": pd.array([9.99, 5.0, 1.0, 2.0], dtype="Float64"),
            "gold_product": ["acme corp", "WIDGET", "foo", None],
            "gold_stars": ["4", "2", "3", None],
            "gold_price": [10.0, 5.0, 1.0, None],
        }
    )


def test_fields_compare_normalised_text_and_numbers_within_tolerance() -> None:
    gold = {"product": "gold_product", "stars": "gold_stars", "price": "gold_price"}
    ev = evaluate(extracted(), gold, tolerance={"price": 0.05})
    assert isinstance(ev, FieldEvaluation)
    table = ev.per_field
    assert table["gold"].tolist() == [3, 3, 3]
    assert table["correct"].tolist() == [2, 1, 3]  # the missing product and stars count wrong
    assert table["missing"].tolist() == [1, 1, 0]
    assert (table.loc["stars", "accuracy_low"], table.loc["stars", "accuracy_high"]) == (
        pytest.approx(wilson(1, 3))
    )
    assert ev.n == 3
    assert ev.accuracy == pytest.approx(1 / 3)  # only the first row has every field right
    strict = evaluate(extracted(), gold)
    assert strict.per_field.loc["price", "correct"] == 2  # 9.99 is not 10 without tolerance
    assert ev.to_frame().loc["(all)", "value"] == pytest.approx(1 / 3)


def test_fields_misuse() -> None:
    with pytest.raises(ConfigError, match="field 'colour' is not a column"):
        evaluate(extracted(), {"colour": "gold_product"})
    with pytest.raises(ConfigError, match="tolerance names fields without gold"):
        evaluate(extracted(), {"price": "gold_price"}, tolerance={"stars": 1})
    with pytest.raises(ConfigError, match="tolerance must be a number >= 0"):
        evaluate(extracted(), {"price": "gold_price"}, tolerance=-1)


def test_numbers_compare_with_a_relative_floor() -> None:
    frame = pd.DataFrame({"x": pd.array([0.1 + 0.2], dtype="Float64"), "g": [0.3]})
    assert evaluate(frame, {"x": "g"}).accuracy == 1.0
    assert np.isclose(0.1 + 0.2, 0.3)
