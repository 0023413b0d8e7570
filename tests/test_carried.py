"""A result frame's ``attrs`` (its report and its call) survive what users do with frames:
Parquet (whose writers JSON-encode ``attrs``), pickling, copies and filters."""

from __future__ import annotations

import copy
import json
import pickle
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from pydantic import BaseModel

from holysheep_nb.carried import Carried, carried, from_file
from holysheep_nb.errors import ConfigError, HolySheepError
from holysheep_nb.report import REPORT_ATTR, RunReport
from holysheep_nb.server import LocalServer, ServerConfig

LABELS = ["positive", "negative"]


@pytest.fixture(scope="module")
def labelled() -> Iterator[pd.DataFrame]:
    with LocalServer(ServerConfig()) as server:
        frame = pd.DataFrame({"text": ["I love it", "it broke", "fine kettle"]})
        yield frame.holysheep.label(
            "text", labels=LABELS, base_url=server.base_url, cache=False, progress=False
        )


def test_a_result_frame_goes_to_parquet_with_its_report_counts(
    labelled: pd.DataFrame, tmp_path: Path
) -> None:
    """pandas 3 raised TypeError (and pyarrow warned) on the report object in attrs."""
    path = tmp_path / "out.parquet"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pyarrow's "Could not serialize" warning too
        labelled.to_parquet(path)
        labelled[labelled["error"].isna()][["text", "label"]].to_parquet(tmp_path / "some.parquet")
    back = pd.read_parquet(path)
    pd.testing.assert_series_equal(back["label"].astype(str), labelled["label"].astype(str))
    assert back.attrs[REPORT_ATTR]["rows"] == 3
    assert back.attrs[REPORT_ATTR]["succeeded"] == labelled.holysheep.report().succeeded
    assert back.attrs["holysheep_call"]["arguments"]["labels"] == LABELS
    # The report comes back from the file's metadata: every figure but the histogram's
    # latencies, which would make the file's metadata as long as 10,000 floats.
    report = labelled.holysheep.report()
    assert back.holysheep.report() == replace(report, latency_sample=())
    assert back.holysheep.report().latency_p50 == report.latency_p50


def test_a_frame_read_back_from_parquet_escalates_through_its_call(tmp_path: Path) -> None:
    """A fresh user's Parquet file could not be escalated: the file kept only the call's name.
    A call of JSON values (labels, options, base_url) is kept whole; one holding a pydantic
    class is kept by name, and escalate() says a pickle keeps it."""
    frame = pd.DataFrame({"text": ["I love it", "it broke", "fine kettle", "meh, it boils"]})
    with LocalServer(ServerConfig()) as server:
        options = {"base_url": server.base_url, "cache": False, "progress": False}
        first = frame.holysheep.label(
            "text", labels=LABELS, model="sim-small", logprobs=True, **options
        )
        first.to_parquet(tmp_path / "first.parquet")
        back = pd.read_parquet(tmp_path / "first.parquet")
        out = back.holysheep.escalate(model="sim-large", below=1.0)
        assert out["model"].astype(str).tolist() == ["sim-large"] * 4
        assert out.holysheep.report().escalated == 4
        assert out["text"].tolist() == frame["text"].tolist()

        class Review(BaseModel):
            product: str

        extracted = frame.holysheep.extract("text", schema=Review, model="sim-small", **options)
        extracted.to_parquet(tmp_path / "extracted.parquet")
    again = pd.read_parquet(tmp_path / "extracted.parquet")
    assert again.attrs["holysheep_call"] == {
        "method": "extract",
        "model": "sim-small",
        "unwritten": ["schema"],
    }
    with pytest.raises(HolySheepError, match=r"method and model .*\(here: schema=\): .*to_pickle"):
        again.holysheep.escalate(model="sim-large")
    with pytest.raises(ConfigError, match=r"schema= is not an option of escalate\(\).*extract"):
        extracted.holysheep.escalate(model="sim-large", schema=Review)
    with pytest.raises(ConfigError, match=r"schema= is not an option of escalate\(\).*label"):
        back.holysheep.escalate(model="sim-large", schema=Review)  # not label()'s either


def test_a_report_comes_back_whole_from_its_dict(labelled: pd.DataFrame) -> None:
    report = labelled.holysheep.report()
    plain = json.loads(json.dumps(report.to_dict(latency_sample=True)))
    assert RunReport.from_dict(plain) == report
    with pytest.raises(ConfigError, match="not the dict of a run report"):
        RunReport.from_dict({"rows": 3})


def test_pickles_copies_and_filters_keep_the_report_itself(labelled: pd.DataFrame) -> None:
    report = labelled.holysheep.report()
    assert pickle.loads(pickle.dumps(labelled)).holysheep.report() == report
    assert copy.deepcopy(labelled).holysheep.report() is report
    assert labelled.head(2).holysheep.report().shown_rows == 2
    json.dumps(labelled.attrs)  # JSON writes what the attrs carry


def test_a_carried_value_is_shared_by_copies_and_equal_by_its_object() -> None:
    first = Carried(object(), {"a": 1})
    assert copy.deepcopy(first) is first
    assert copy.copy(first) is first
    assert first != Carried(object(), {"a": 1})  # equal plain forms, different objects
    same = first.value
    assert first == Carried(same, {"b": 2})
    assert carried({"k": first}, "k", object) is same
    assert carried({"k": {"a": 1}}, "k", RunReport) is None  # only the plain form: from a file
    assert from_file({"k": {"a": 1}}, "k")
    assert not from_file({"k": first}, "k")
    assert not from_file({}, "k")
