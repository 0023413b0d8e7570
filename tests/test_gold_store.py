"""The gold store: each answer committed as it is given, kept through a crash, shared by
processes; tasks kept apart; a foreign file refused."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest

import holysheep_nb
from holysheep_nb.errors import ConfigError
from holysheep_nb.review import GoldStore, default_gold_path, task_name
from holysheep_nb.review.start import start

ROOT = Path(__file__).resolve().parent.parent
LABELS = ["positive", "negative", "neutral"]


def _stored(path: Path) -> list[tuple[str, str, str]]:
    """The store's rows as another reader (plain sqlite3, a connection of its own) sees them."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT task, text, label FROM gold ORDER BY text").fetchall()


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": ["good", "bad", "meh", "fine"],
            "label": pd.Categorical(["positive", "negative", "neutral", "neutral"], LABELS),
            "confidence": [0.4, 0.6, 0.8, 0.9],
        }
    )


def test_each_answer_is_committed_before_the_next_key(tmp_path: Path) -> None:
    path = tmp_path / "gold.sqlite"
    session = start(_frame(), store=path)
    task = task_name(LABELS)
    session.press("2")
    assert _stored(path) == [(task, "good", "negative")]
    session.press("Enter")
    assert _stored(path) == [(task, "bad", "negative"), (task, "good", "negative")]
    session.press("s")
    assert len(_stored(path)) == 2  # a skip writes nothing
    session.store.close()


def test_the_default_store_is_beside_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOLYSHEEP_CACHE_DIR", str(tmp_path))
    assert default_gold_path() == tmp_path / "gold.sqlite"
    session = start(_frame())
    session.press("1")
    session.store.close()
    assert _stored(tmp_path / "gold.sqlite") == [(task_name(LABELS), "good", "positive")]


def test_a_later_answer_replaces_the_earlier_one_and_tasks_stay_apart(tmp_path: Path) -> None:
    times = iter([100.0, 200.0, 300.0])
    with GoldStore(tmp_path / "g.sqlite", wall=lambda: next(times)) as store:
        store.put("sentiment", "good", "neutral", labels=LABELS, predicted="positive")
        store.put("topic", "good", "kitchen", labels=["kitchen", "garden"])
        store.put("sentiment", "good", "positive", labels=LABELS, predicted="positive")
        assert store.labels_of("sentiment", ["good", "other"]) == {"good": "positive"}
        assert store.labels_of("topic", ["good"]) == {"good": "kitchen"}
        assert store.tasks() == ["sentiment", "topic"]
        assert [row[5] for row in store.rows("sentiment")] == [300.0]
    frame = holysheep_nb.gold("sentiment", path=tmp_path / "g.sqlite")
    assert frame[["text", "label", "predicted", "task"]].values.tolist() == [
        ["good", "positive", "positive", "sentiment"]
    ]
    assert frame["created"].iloc[0] == pd.Timestamp(300, unit="s", tz="UTC")


def test_answers_may_come_from_another_thread(tmp_path: Path) -> None:
    # ipykernel may run a widget's message handlers on a thread other than the cell's.
    session = start(_frame(), store=tmp_path / "gold.sqlite")
    worker = threading.Thread(target=session.press, args=("3",))
    worker.start()
    worker.join()
    assert _stored(tmp_path / "gold.sqlite") == [(task_name(LABELS), "good", "neutral")]
    session.store.close()


def test_a_file_that_is_not_a_gold_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("PRAGMA user_version = 7")
    with pytest.raises(ConfigError, match="not a holysheep_nb gold store"):
        GoldStore(path)


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    """``python -c code args`` importing this tree, with pipes for stdin, stdout, stderr."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


# A review in another process: it answers rows as told on stdin, says "answered N" after
# each, and blocks on the next line, as a kernel does between key presses.
_REVIEWER = """
import sys
import pandas as pd
from holysheep_nb.review.start import start

texts = [f"review number {i}" for i in range(20)]
frame = pd.DataFrame({"text": texts})
session = start(frame, labels=["positive", "negative", "neutral"], order="frame",
                store=sys.argv[1])
for line in sys.stdin:
    session.press(line.strip())
    print("answered", session.done, flush=True)
"""


def test_a_review_killed_mid_way_keeps_every_answer_given(tmp_path: Path) -> None:
    path = tmp_path / "gold.sqlite"
    proc = _python(_REVIEWER, str(path))
    assert proc.stdin is not None
    assert proc.stdout is not None
    for key, done in (("1", 1), ("3", 2), ("2", 3)):
        proc.stdin.write(key + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split() == ["answered", str(done)]
    os.kill(proc.pid, signal.SIGKILL)  # no clean-up, no close, no flush: a crashed kernel
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stdin.close()
    assert proc.stderr is not None
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    found = holysheep_nb.gold(labels=["neutral", "negative", "positive"], path=path)
    assert found[["text", "label"]].values.tolist() == [
        ["review number 0", "positive"],
        ["review number 1", "neutral"],
        ["review number 2", "negative"],
    ]


# A writer that waits for "go", then keeps ``count`` answers of its own and some shared ones.
_WRITER = """
import sys
from holysheep_nb.review import GoldStore

name, count, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
store = GoldStore(path)
print("ready", flush=True)
sys.stdin.readline()
for i in range(count):
    store.put("sentiment", f"{name} text {i}", "positive", labels=["positive", "negative"])
    store.put("sentiment", f"shared text {i}", name, labels=["positive", "negative"])
store.close()
print("done", flush=True)
"""


def test_two_processes_write_the_same_store(tmp_path: Path) -> None:
    path = tmp_path / "gold.sqlite"
    writers = [_python(_WRITER, name, "60", str(path)) for name in ("first", "second")]
    for writer in writers:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
    for writer in writers:  # both start writing together
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
    for writer in writers:
        _out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    rows = holysheep_nb.gold("sentiment", path=path)
    own = rows[~rows["text"].str.startswith("shared")]
    shared = rows[rows["text"].str.startswith("shared")]
    assert sorted(own["text"]) == sorted(
        f"{n} text {i}" for n in ("first", "second") for i in range(60)
    )
    assert len(shared) == 60  # one row per text: the later writer's answer
    assert set(shared["label"]) <= {"first", "second"}
