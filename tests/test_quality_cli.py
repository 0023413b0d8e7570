"""``python -m holysheep_nb evaluate FILE --gold COLUMN``, the light import and the hint
given without the ``eval`` extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import holysheep_nb
from holysheep_nb.__main__ import main
from holysheep_nb.files import read_table, write_table
from holysheep_nb.quality._deps import load
from tests.fresh_python import fresh_python

REPO_ROOT = Path(holysheep_nb.__file__).resolve().parents[1]


@pytest.fixture
def result_file(tmp_path: Path) -> Path:
    frame = pd.DataFrame(
        {
            "text": list("abcde"),
            "sentiment": ["positive", "negative", "neutral", "positive", None],
            "label": ["positive", "negative", "positive", None, "neutral"],
            "confidence": [0.9, 0.8, 0.6, None, 0.7],
            "error": [None, None, None, "not in label set: 'meh'", None],
        }
    )
    path = tmp_path / "labelled.csv"
    write_table(frame, path, "csv")
    return path


def test_evaluate_a_csv_result(result_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["evaluate", str(result_file), "--gold", "sentiment", "--threshold-for", "0.2"]) == 0
    )
    out = capsys.readouterr().out
    assert "4 rows with gold" in out
    assert "accuracy       50.0%" in out
    assert "(counted wrong; not in label set: 1)" in out
    assert "ECE" in out  # the confidence column was read back as numbers
    assert "for accuracy 20.0%" in out


def test_agreement_from_the_command_line(
    result_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(result_file), "--against", "sentiment"]) == 0
    assert "Cohen's kappa" in capsys.readouterr().out


def test_fields_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fields.jsonl"
    rows = [{"stars": 4, "gold": "4"}, {"stars": 2, "gold": "3"}]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    assert main(["evaluate", str(path), "--gold", "stars=gold", "--tolerance", "1"]) == 0
    assert "stars              100.0%" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--gold", "nope"], "gold 'nope' is not a column"),
        ([], "not neither"),
        (["--gold", "a=b", "--gold", "c"], "FIELD=COLUMN pairs"),
        (["--gold", "sentiment", "--threshold-for", "0.9", "--confidence", "text"], "numbers"),
    ],
)
def test_misuse_exits_2(
    result_file: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(result_file), *argv]) == 2
    assert message in capsys.readouterr().err


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "krippendorff", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"pip install 'holysheep_nb\[eval\]'"):
        load("krippendorff")


def test_importing_the_package_loads_no_statistics_library() -> None:
    code = (
        "import sys, pandas as pd, holysheep_nb\n"
        "pd.DataFrame({'text': ['a']}).holysheep\n"
        "print(sorted(m for m in ('sklearn', 'scipy', 'krippendorff', 'holysheep_nb.quality')"
        " if m in sys.modules))\n"
    )
    assert fresh_python(code).strip() == "[]"


def test_a_reader_that_closes_stdout_early_ends_the_command_quietly(result_file: Path) -> None:
    # `... | head`: the reader is gone before the command writes (its end of the pipe is
    # closed before the process starts, so the write always meets a broken pipe).
    reader, writer = os.pipe()
    os.close(reader)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "holysheep_nb", "evaluate", str(result_file), "--gold",
             "sentiment"],
            stdout=writer, stderr=subprocess.PIPE, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
    finally:
        os.close(writer)
    assert done.stderr == ""  # no BrokenPipeError traceback
    assert done.returncode == 1


@pytest.mark.parametrize(
    "command", ["demo", "serve", "cache", "batches", "label", "complete", "extract", "estimate",
                "evaluate"],
)  # fmt: skip
def test_every_command_s_help_names_it_as_it_is_run(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main([command, "--help"])
    except SystemExit as exit_info:  # some commands let argparse exit, others return its code
        code = exit_info.code  # type: ignore[assignment]
    assert code == 0
    assert f"usage: python -m holysheep_nb {command} " in capsys.readouterr().out


def test_threshold_advice_on_the_command_line_names_flags(
    result_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = read_table(result_file, "csv").drop(columns="confidence")
    no_confidence = tmp_path / "no_confidence.csv"
    write_table(frame, no_confidence, "csv")
    argv = ["evaluate", str(no_confidence), "--gold", "sentiment", "--threshold-for", "0.9"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "label with --param logprobs=true (or name the column with --confidence COLUMN)" in out
    assert "logprobs=True" not in out
    # Every row from a cache written before it kept logprobs: no confidence.
    cached = tmp_path / "cached.csv"
    write_table(frame.assign(confidence=float("nan"), cached=True), cached, "csv")
    assert main(["evaluate", str(cached), *argv[2:]]) == 0
    out = capsys.readouterr().out
    assert "answered from a cache written before it kept logprobs" in out
    assert "label again with --no-cache to ask again" in out
    assert "cache=False" not in out


def test_each_python_phrase_the_cli_rewords_is_the_library_s_own() -> None:
    from holysheep_nb.cli_wording import PHRASES
    from holysheep_nb.quality.calibration import Calibration
    from holysheep_nb.quality.classification import NO_CONFIDENCE

    cached = Calibration.of(np.array([np.nan]), np.array([True]), cached=np.array([True]))
    fresh = Calibration.of(np.array([np.nan]), np.array([True]))
    messages = [NO_CONFIDENCE, cached.choose_threshold(0.9)[1], fresh.choose_threshold(0.9)[1]]
    for python, _ in PHRASES:
        assert any(python in message for message in messages), python
