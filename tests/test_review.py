"""review(): the order rows come in, what each key does, the gold column, agreement, the
panel's view, gold() read back (as examples and for evaluate), and misuse."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import holysheep_nb
from holysheep_nb.errors import ConfigError
from holysheep_nb.review.panel import ReviewPanel, status
from holysheep_nb.review.start import start

LABELS = ["positive", "negative", "neutral"]


def _labelled() -> pd.DataFrame:
    """A label() result in small: labels, confidence, an off-label row, a failed row."""
    return pd.DataFrame(
        {
            "text": ["a", "b", "c", "d", "e", "f", "g"],
            "label": pd.Categorical(
                ["positive", "negative", "neutral", None, "positive", None, "negative"], LABELS
            ),
            "response": ["positive", "negative", "neutral", "maybe", "positive", None, "negative"],
            "error": [None, None, None, "off label: maybe", None, "HTTP 500", None],
            "confidence": [0.95, 0.40, 0.70, np.nan, 0.55, np.nan, np.nan],
            "other": [
                "positive",
                "positive",
                "neutral",
                "neutral",
                "negative",
                "neutral",
                "neutral",
            ],
        },
        index=[10, 11, 12, 13, 14, 15, 16],
    )


def _keys(session: Any) -> list[str]:
    return list(session.queue)


def test_least_sure_first_then_disagreements_then_failures(tmp_path: Path) -> None:
    session = start(_labelled(), against="other", store=tmp_path / "g.sqlite")
    # confidence ascending (b .40, e .55, c .70, a .95); then g (negative vs neutral);
    # then the failures d and f (no label); nothing left.
    assert _keys(session) == ["b", "e", "c", "a", "g", "d", "f"]
    without_other = start(_labelled(), store=tmp_path / "h.sqlite")
    assert _keys(without_other) == ["b", "e", "c", "a", "d", "f", "g"]


def test_the_other_variant_may_be_a_series_of_another_result(tmp_path: Path) -> None:
    # compare(): cmp.results["large"]["label"] has the sample's index, in any order.
    large = _labelled()["other"].rename("large").iloc[::-1]
    frame = _labelled().drop(columns="other")
    panel = ReviewPanel(start(frame, against=large, store=tmp_path / "g.sqlite"))
    assert _keys(panel.session) == ["b", "e", "c", "a", "g", "d", "f"]
    assert panel.view["other"] == "large: positive"
    assert "large" not in frame.columns


def test_an_order_given_by_index_labels_or_the_frame(tmp_path: Path) -> None:
    frame = _labelled()
    assert _keys(start(frame, order=[16, 10], store=tmp_path / "g.sqlite")) == ["g", "a"]
    assert _keys(start(_labelled(), order="frame", store=tmp_path / "g.sqlite"))[:3] == [
        "a",
        "b",
        "c",
    ]
    with pytest.raises(ConfigError, match="not in the frame: \\[99\\]"):
        start(_labelled(), order=[10, 99], store=tmp_path / "g.sqlite")
    with pytest.raises(ConfigError, match="order='confidence'"):
        start(_labelled(), order="confidence", store=tmp_path / "g.sqlite")


def test_keys_answer_accept_skip_and_go_back(tmp_path: Path) -> None:
    frame = _labelled()
    session = start(frame, store=tmp_path / "g.sqlite")
    assert session.press("3")  # b -> neutral
    assert session.press("Enter")  # e -> positive (the model's)
    assert session.press("s")  # c skipped
    assert session.press("Backspace")  # back to c
    assert session.current() is not None
    assert session.current().key == "c"  # type: ignore[union-attr]
    assert session.press("Backspace")  # back to e, answered: shown with its answer
    assert session.current().key == "e"  # type: ignore[union-attr]
    assert session.answer_of("e") == "positive"
    assert session.press("2")  # e replaced -> negative; on to c (not answered)
    assert session.current().key == "c"  # type: ignore[union-attr]
    assert not session.press("x")
    assert not session.press("4")  # three labels only
    assert frame["gold"].tolist() == [None, "neutral", None, None, "negative", None, None]
    assert holysheep_nb.gold(labels=LABELS, path=tmp_path / "g.sqlite")["label"].tolist() == [
        "neutral",
        "negative",
    ]


def test_enter_needs_a_prediction_in_the_label_set(tmp_path: Path) -> None:
    session = start(_labelled(), order=[13, 10], store=tmp_path / "g.sqlite")
    assert not session.press("Enter")  # d: off label, nothing to accept
    assert session.current().key == "d"  # type: ignore[union-attr]
    assert session.press("s")
    assert session.press("Enter")
    assert session.current() is None
    assert not session.press("1")  # every row seen
    assert session.press("Backspace")


def test_running_agreement_and_the_status_line(tmp_path: Path) -> None:
    session = start(_labelled(), order=[11, 14, 13], store=tmp_path / "g.sqlite")
    assert status(session) == "row 1 of 3 · 0 done"
    session.press("2")  # b: negative, the model's label
    session.press("3")  # e: neutral, the model said positive
    session.press("1")  # d: no model label: not compared
    assert session.agreement == (1, 2)
    assert session.done == 3
    assert status(session) == "row 3 of 3 · 3 done · you agree with the model on 1 of 2 (50%)"


def test_rows_with_the_same_text_are_one_item(tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": ["same", "other", "same", None]})
    session = start(frame, labels=["yes", "no"], order="frame", store=tmp_path / "g.sqlite")
    assert session.total == 2  # the row with no text is left out
    session.press("1")
    assert frame["gold"].tolist() == ["yes", None, "yes", None]


def test_a_second_review_finds_the_earlier_answers(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    first = start(_labelled(), store=path)
    first.press("1")
    first.press("1")
    first.store.close()
    again = _labelled()
    second = start(again, store=path)
    assert second.done == 2
    assert second.current().key == "c"  # type: ignore[union-attr]
    assert again["gold"].tolist() == [None, "positive", None, None, "positive", None, None]


def test_gold_from_scratch_and_the_gold_column_never_replaces_the_users(tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": ["x", "y"], "gold": ["mine", "mine"]})
    session = start(frame, labels=["spam", "ham"], order="frame", store=tmp_path / "g.sqlite")
    session.press("2")
    assert frame["gold"].tolist() == ["mine", "mine"]
    assert frame["gold_2"].tolist() == ["ham", None]
    # Opened again on the same frame, the review writes to its own column, not a third one.
    start(frame, labels=["spam", "ham"], store=tmp_path / "g.sqlite")
    assert [c for c in frame.columns if str(c).startswith("gold")] == ["gold", "gold_2"]


def test_several_fields_are_shown_and_keyed_together(tmp_path: Path) -> None:
    frame = pd.DataFrame({"title": ["T"], "body": ["B"]})
    session = start(frame, text=["title", "body"], labels=["a", "b"], store=tmp_path / "g.sqlite")
    assert session.current().fields == (("title", "T"), ("body", "B"))  # type: ignore[union-attr]
    session.press("2")
    stored = holysheep_nb.gold(labels=["a", "b"], path=tmp_path / "g.sqlite")
    assert stored["text"].tolist() == ['{"title": "T", "body": "B"}']
    lined_up = holysheep_nb.gold(frame=frame, text=["title", "body"], path=tmp_path / "g.sqlite")
    assert lined_up.tolist() == ["b"]


def test_gold_lines_up_with_another_frame_for_evaluate(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    session = start(_labelled(), store=path)
    for key in ("2", "1", "3", "1"):  # b, e, c, a
        session.press(key)
    out = _labelled().iloc[::-1]  # another frame, other order
    gold = holysheep_nb.gold(frame=out, path=path)
    assert gold.index.equals(out.index)
    assert gold.to_dict() == {
        16: None,
        15: None,
        14: "positive",
        13: None,
        12: "neutral",
        11: "negative",
        10: "positive",
    }
    pytest.importorskip("sklearn")
    ev = out.holysheep.evaluate(gold=gold)
    assert ev.n == 4
    assert ev.accuracy == 1.0


def test_gold_is_an_examples_frame_and_names_its_task(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    start(_labelled(), store=path, task="sentiment").press("3")
    start(_labelled(), store=path, labels=["yes", "no"]).press("1")
    examples = holysheep_nb.gold("sentiment", path=path)
    assert examples[["text", "label"]].values.tolist() == [["b", "neutral"]]
    assert len(holysheep_nb.gold(path=path)) == 2
    assert holysheep_nb.gold(labels=["no", "yes"], path=path)["label"].tolist() == ["yes"]
    with pytest.raises(ConfigError, match="several tasks"):
        holysheep_nb.gold(frame=_labelled(), path=path)
    with pytest.raises(ConfigError, match="not both"):
        holysheep_nb.gold("sentiment", labels=LABELS, path=path)


def test_the_panel_draws_the_session_and_acts_on_messages(tmp_path: Path) -> None:
    frame = _labelled()
    panel = ReviewPanel(start(frame, against="other", store=tmp_path / "g.sqlite"))
    assert panel.labels == LABELS
    view = panel.view
    assert view["fields"] == [["text", "b"]]
    assert view["model"] == "model: negative (confidence 0.40)"
    assert view["other"] == "other: positive"
    assert view["raw"] == "answer:\nnegative"
    panel._received(panel, {"press": "1"}, [])
    panel._received(panel, {"choose": "neutral"}, [])
    assert frame.loc[[11, 14], "gold"].tolist() == ["positive", "neutral"]
    assert panel.view["status"].startswith("row 3 of 7 · 2 done")
    panel._received(panel, {"press": "Backspace"}, [])
    assert panel.view["given"] == "your label: neutral"
    assert repr(panel).startswith("<review: 2 of 7 done")
    assert panel.frame is frame
    assert panel.column == "gold"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"text": "body"}, "text column 'body' is not in the frame"),
        ({"labels": "positive"}, "labels= must be a list of str"),
        ({"labels": ["a", "a"]}, "repeats a label"),
        ({"against": "nope"}, "against 'nope' is not a column"),
        ({"gold": ""}, "gold= names the gold column"),
        ({"column": "nope"}, "column 'nope' is not a column"),
    ],
)
def test_misuse_is_a_config_error(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        start(_labelled(), store=tmp_path / "g.sqlite", **options)


def test_unlabelled_rows_need_the_label_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"review\(labels=\[...\]\)"):
        start(pd.DataFrame({"text": ["x"]}), store=tmp_path / "g.sqlite")


def test_several_labels_a_row_are_refused(tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": ["x"], "label": pd.Series([["a", "b"]], dtype=object)})
    with pytest.raises(ConfigError, match="multi=True"):
        start(frame, store=tmp_path / "g.sqlite")


def test_without_the_notebook_extra_the_call_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_anywidget(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "anywidget":
            raise ModuleNotFoundError("No module named 'anywidget'", name="anywidget")
        return real_import(name, *args, **kwargs)

    frame = pd.DataFrame({"text": ["x"]})
    monkeypatch.delitem(__import__("sys").modules, "holysheep_nb.review.panel")
    monkeypatch.setattr(builtins, "__import__", no_anywidget)
    with pytest.raises(
        ImportError, match=r"anywidget is missing\): pip install 'holysheep_nb\[notebook\]'"
    ):
        frame.holysheep.review(labels=["a"], store=tmp_path / "g.sqlite")
    assert list(frame.columns) == ["text"]  # nothing added
    assert not (tmp_path / "g.sqlite").exists()  # nothing opened
