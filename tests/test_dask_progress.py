"""The Dask run's bar on the client (``holysheep_nb.dask.progress.ClusterBar``), fed the
scheduler's ``holysheep_status`` by hand on the injected fake clock: no cluster here (the
bar of a real run is checked in ``test_dask.py``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import pandas as pd
import pytest

import holysheep_nb.dask  # noqa: F401 - registers ddf.holysheep
from holysheep_nb.dask.accessor import run_rows
from holysheep_nb.dask.progress import ClusterBar
from tests.fakes import FakeClock

#: Nothing listens there: the calls below are lazy and send nothing.
NOWHERE = "http://127.0.0.1:9/v1"
SPENT = "the provider's budget is spent"


@pytest.fixture(autouse=True)
def _bars_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)


def _frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"review {i}" for i in range(rows)], "id": range(rows)})


def _status(
    started: dict[int, int], done: int = 0, held_for: float = 0.0, reason: str = ""
) -> dict[str, Any]:
    """A status as the scheduler sends it: ``started`` maps partitions to their rows; the
    rows ``done`` are counted on the first partition."""
    partitions = {
        number: {"rows": rows, "tally": [done if number == 0 else 0, 0, 0, 0]}
        for number, rows in started.items()
    }
    return {"partitions": partitions, "held_for": held_for, "hold_reason": reason, "stop": None}


def _last(log: io.StringIO) -> str:
    return log.getvalue().strip().rsplit("\r", 1)[-1]


def test_a_frame_from_pandas_knows_its_rows_before_anything_runs() -> None:
    """``dd.from_pandas`` split a frame in memory: its partitions' lengths are known on the
    client (no pass over the data), through column selections and other row-wise steps."""
    ddf = dd.from_pandas(_frame(400), npartitions=4)
    assert run_rows(ddf.holysheep.complete("text", base_url=NOWHERE)) == 400
    assert run_rows(ddf["text"].holysheep.complete(base_url=NOWHERE)) == 400
    with_id = ddf.assign(prompt=ddf["text"] + "!")
    assert run_rows(with_id.holysheep.complete("prompt", base_url=NOWHERE)) == 400


def test_rows_that_only_computing_would_tell_stay_unknown(tmp_path: Path) -> None:
    """A filter, a partition function or files: their length is a pass over the data (or at
    least over every file's footer), which the bar does not pay for."""
    ddf = dd.from_pandas(_frame(400), npartitions=4)
    assert run_rows(ddf[ddf["id"] % 2 == 0].holysheep.complete("text", base_url=NOWHERE)) is None
    mapped = ddf.map_partitions(lambda part: part)
    assert run_rows(mapped.holysheep.complete("text", base_url=NOWHERE)) is None
    _frame(40).to_parquet(tmp_path / "reviews.parquet")
    files = dd.read_parquet(tmp_path / "reviews.parquet")
    assert run_rows(files.holysheep.complete("text", base_url=NOWHERE)) is None


def test_a_known_total_is_on_the_bar_from_the_start(clock: FakeClock) -> None:
    log = io.StringIO()
    ddf = dd.from_pandas(_frame(400), npartitions=4)
    out = ddf.holysheep.complete("text", base_url=NOWHERE)
    bar = ClusterBar(out.npartitions, run_rows(out), file=log, now=clock.now)
    assert "0%" in _last(log)
    assert "0/400" in _last(log)
    clock.advance(0.2)
    bar.refresh(_status({0: 100, 1: 100}, done=30))
    assert "30/400" in _last(log)
    assert "started" not in log.getvalue()


def test_an_unknown_total_says_how_many_partitions_started_until_it_is_known(
    clock: FakeClock,
) -> None:
    log = io.StringIO()
    bar = ClusterBar(4, None, file=log, now=clock.now)
    clock.advance(0.2)
    bar.refresh(None)  # the scheduler has no state yet: no partition started
    assert "started=0/4 partitions" in _last(log)
    clock.advance(0.2)
    bar.refresh(_status({0: 100, 1: 100}, done=82))
    line = _last(log)
    assert "82row" in line  # rows done, and no total made up from half the partitions
    assert "%" not in line
    assert "started=2/4 partitions" in line
    clock.advance(0.2)
    bar.refresh(_status({0: 100, 1: 100, 2: 100, 3: 100}, done=200))
    line = _last(log)
    assert "50%" in line
    assert "200/400" in line
    assert "started" not in line


def test_the_clusters_short_pacing_holds_are_not_shown_nor_on_the_final_line(
    clock: FakeClock,
) -> None:
    """The scheduler's status is read every 0.2 s; a hold of a few milliseconds there (the
    pace at work) came and went on the bar as ``held=0s``, and stayed on the final line."""
    log = io.StringIO()
    bar = ClusterBar(2, 200, file=log, now=clock.now)
    for done in range(10, 200, 10):
        clock.advance(0.2)
        bar.refresh(_status({0: 100, 1: 100}, done=done, held_for=0.04, reason=SPENT))
    assert "held" not in log.getvalue()
    clock.advance(0.2)
    bar.refresh(_status({0: 100, 1: 100}, done=195, held_for=20.0, reason=SPENT))
    assert f"held=20s, {SPENT}" in _last(log)  # a real hold is said
    clock.advance(0.2)
    bar.refresh(_status({0: 100, 1: 100}, done=200, held_for=0.01, reason=SPENT), final=True)
    assert "200/200" in _last(log)
    assert "held" not in _last(log)
