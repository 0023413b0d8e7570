"""``python -m holysheep_nb label | complete | extract | estimate FILE`` against the local server.

Most runs call the command in this process (``main(argv)``, as ``python -m`` does); the
Ctrl-C test and one plain run go through a real subprocess.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from holysheep_nb.__main__ import main
from holysheep_nb.accessor import HolySheepFrameAccessor
from holysheep_nb.cache import cache_info
from holysheep_nb.commands import EXIT_INTERRUPTED, EXIT_OK, EXIT_ROWS_FAILED, EXIT_USAGE
from holysheep_nb.files import read_table, write_table
from holysheep_nb.job import REPORT_ATTR
from holysheep_nb.outcome import RunStats
from holysheep_nb.report import RunReport
from holysheep_nb.server import Latency, LocalServer, ServerConfig

LABELS = "positive,negative,neutral"
SUFFIXES = {"csv": ".csv", "parquet": ".parquet", "jsonl": ".jsonl"}
FAILING = "{{fault:500*99}} this row's every attempt gets an HTTP 500"

needs_pyarrow = pytest.mark.skipif(
    __import__("importlib").util.find_spec("pyarrow") is None,
    reason="Parquet needs pyarrow: pip install -e '.[dev]' brings it",
)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig()) as running:
        yield running


def reviews(rows: int = 30) -> pd.DataFrame:
    moods = ["great, I love it", "broken and useless, terrible", "it is fine"]
    return pd.DataFrame(
        {
            "id": [f"{i:05d}" for i in range(rows)],  # leading zeros must survive a CSV
            "text": [f"review {i}: {moods[i % 3]}" for i in range(rows)],
        }
    )


def write_input(folder: Path, frame: pd.DataFrame, fmt: str) -> Path:
    path = folder / f"input{SUFFIXES[fmt]}"
    write_table(frame, path, fmt)  # type: ignore[arg-type]
    return path


def run(*argv: str | Path) -> int:
    return main([str(arg) for arg in argv])


def target(server: LocalServer, tmp_path: Path) -> list[str]:
    return ["--base-url", server.base_url, "--cache", str(tmp_path / "answers.sqlite")]


@pytest.mark.parametrize("fmt", ["csv", pytest.param("parquet", marks=needs_pyarrow), "jsonl"])
def test_label_a_file_in_each_format(
    fmt: str, server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path, reviews(), fmt)
    out = tmp_path / f"labelled{SUFFIXES[fmt]}"
    code = run("label", source, "--column", "text", "--labels", LABELS, "--out", out,
               *target(server, tmp_path))  # fmt: skip
    printed = capsys.readouterr().out
    assert code == EXIT_OK
    assert "holysheep_nb run: 30 rows" in printed  # the report
    assert f"wrote 30 rows to {out}" in printed
    labelled = read_table(out, fmt)  # type: ignore[arg-type]
    assert list(labelled.columns[:2]) == ["id", "text"]
    assert labelled["id"].tolist() == reviews()["id"].tolist()
    assert set(labelled["label"]) == {"positive", "negative", "neutral"}
    assert labelled["error"].isna().all()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_a_second_run_resumes_from_the_cache(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path, reviews(), "csv")
    args = ["label", source, "--column", "text", "--labels", LABELS,
            "--out", tmp_path / "out.jsonl", *target(server, tmp_path)]  # fmt: skip
    assert run(*args) == EXIT_OK
    sent = server.stats()["requests"]
    assert run(*args) == EXIT_OK
    assert server.stats()["requests"] == sent  # nothing sent again
    assert read_table(tmp_path / "out.jsonl", "jsonl")["cached"].all()
    assert re.search(r"cached\s+30\n", capsys.readouterr().out)


@pytest.mark.parametrize(
    ("fmt", "out_fmt"),
    [
        ("jsonl", "csv"),
        pytest.param("csv", "parquet", marks=needs_pyarrow),
        pytest.param("parquet", "jsonl", marks=needs_pyarrow),
    ],
)
def test_failed_rows_have_their_own_exit_status_and_are_written(
    fmt: str, out_fmt: str, server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = reviews(10)
    frame.loc[[3, 7], "text"] = FAILING
    source = write_input(tmp_path, frame, fmt)
    out = tmp_path / f"out{SUFFIXES[out_fmt]}"
    code = run("complete", source, "--column", "text", "--out", out, "--max-retries", "0",
               *target(server, tmp_path))  # fmt: skip
    assert code == EXIT_ROWS_FAILED
    assert "2 failed: see the error column" in capsys.readouterr().out
    written = read_table(out, out_fmt)  # type: ignore[arg-type]
    assert written["error"].notna().tolist() == [i in (3, 7) for i in range(10)]
    assert written.loc[3, "error"].startswith("HTTP 500")


RUN = "complete {source} --column text --out {out}"
LOCAL = "--base-url http://127.0.0.1:9"  # nothing is ever sent there


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("label {source} --column text --out {out}", "--labels"),
        ("label {source} --labels a,b --out {out}", "--column NAME, or --template"),
        ("complete {source} --column nope --out {out}", "nope"),
        ("complete {source} --column text --out {tmp}/x.xlsx", "--format csv|parquet|jsonl"),
        ("complete {source} --column text --out {tmp}/no/such/x.csv", "does not exist"),
        ("complete {source} --column text --out {source}", "names the input file"),
        ("complete {tmp}/missing.csv --column text --out {out}", "no such file"),
        (f"{RUN} {LOCAL} --max-concurrent 0", "max_concurrent"),
        (f"{RUN} {LOCAL} --param model=x", "own flag, --model"),
        (f"{RUN} {LOCAL} --param nojson", "KEY=VALUE"),
        (f"{RUN} --api-key-env UNSET_VAR_1", "UNSET_VAR_1"),
        (f"{RUN} --base-url https://api.example.invalid/v1", "no API key for this base URL"),
        (f"{RUN} --base-url https://api.example.invalid/v1", "with --api-key-env NAME"),
        (f"{RUN} {LOCAL} --prices cheap", "--prices"),
        ("frobnicate {source}", "unknown command"),
        (f"{RUN} {LOCAL} --max-concurent 8", "did you mean --max-concurrent?"),
        (f"{RUN} {LOCAL} --tempreature=0", "--tempreature"),
    ],
)
def test_misuse_exits_2_with_a_message(
    argv: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path, reviews(3), "csv")
    values = {"source": source, "out": tmp_path / "out.csv", "tmp": tmp_path}
    code = run(*(arg.format(**values) for arg in argv.split()))
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("label", "--help") == EXIT_OK
    text = capsys.readouterr().out
    for flag in ("--column", "--template", "--system", "--labels", "--instructions", "--multi",
                 "--no-structured", "--out", "--format", "--encoding-errors", "--model",
                 "--base-url", "--api-key-env", "--no-verify", "--ca-bundle", "--max-concurrent",
                 "--rpm", "--tpm", "--max-retries", "--timeout", "--chunk-size", "--cache",
                 "--no-cache", "--prices", "--param", "--no-progress"):  # fmt: skip
        assert flag in text
    assert "HOLYSHEEP_API_KEY" in text
    assert "never from the command line" in text
    assert f"{EXIT_ROWS_FAILED} some rows failed" in text


def test_cache_help_never_suggests_true_and_true_is_no_file_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("label", "--help") == EXIT_OK
    text = " ".join(capsys.readouterr().out.split())
    assert "--cache FILE the cache file (default: the per-user cache" in text
    assert "True (the default file)" not in text
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "in.csv"
    source.write_text("text\nfine\n")
    out = tmp_path / "out.csv"
    code = run("label", source, "--column", "text", "--labels", "a,b", "--cache", "True",
               "--out", out)  # fmt: skip
    assert code == EXIT_USAGE
    assert "--cache takes a file path, not 'True'" in capsys.readouterr().err
    assert not (tmp_path / "True").exists()
    assert not out.exists()


def test_a_provider_parameter_is_told_its_command_line_form_and_that_form_works(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path, reviews().head(3), "csv")
    out = tmp_path / "out.csv"
    argv = ["label", source, "--column", "text", "--labels", LABELS, "--out", out,
            *target(server, tmp_path)]  # fmt: skip
    assert run(*argv, "--param", "top_k=40") == EXIT_USAGE
    err = capsys.readouterr().err
    assert """goes in --param 'extra_body={"top_k": 40}'""" in err
    assert "extra_body={'top_k'" not in err  # the Python form
    assert run(*argv, "--param", 'extra_body={"top_k": 40}') == EXIT_OK
    assert len(read_table(out, "csv")) == 3


def test_a_byte_that_does_not_decode_is_named_by_its_line(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "latin1.csv"
    source.write_bytes(b"id,text\n1,fine\n2,caf\xe9 au lait was great\n3,ok\n")
    out = tmp_path / "out.csv"
    common = ["complete", source, "--column", "text", "--out", out, *target(server, tmp_path)]
    assert run(*common) == EXIT_USAGE
    error = capsys.readouterr().err
    assert "latin1.csv line 3: byte 0xe9 is not valid utf-8" in error
    assert "--encoding-errors replace" in error
    assert run(*common, "--encoding-errors", "replace") == EXIT_OK
    assert read_table(out, "csv").loc[1, "text"] == "caf\ufffd au lait was great"
    assert run(*common, "--encoding", "latin-1") == EXIT_OK
    assert read_table(out, "csv").loc[1, "text"] == "caf\xe9 au lait was great"


def test_a_bad_jsonl_line_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "a"}\n\n{"text": "b"\n', encoding="utf-8")
    assert run("complete", source, "--column", "text", "--out", tmp_path / "o.csv") == EXIT_USAGE
    assert "in.jsonl line 3: not valid JSON" in capsys.readouterr().err


def test_half_an_emoji_in_jsonl_is_named_by_its_line(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    whole, half = r'{"text": "ok \ud83d\ude00"}', r'{"text": "cut \ud83d"}'
    source.write_text(f"{whole}\n{half}\n", encoding="utf-8")
    out = tmp_path / "o.csv"
    assert run("complete", source, "--column", "text", "--out", out) == EXIT_USAGE
    assert "in.jsonl line 2: a \\u escape there is half an emoji" in capsys.readouterr().err
    source.write_text(f"{whole}\n", encoding="utf-8")
    assert run("complete", source, "--column", "text", "--out", out, *target(server, tmp_path)) == 0
    assert read_table(out, "csv").loc[0, "text"] == "ok \U0001f600"


def test_complete_with_a_template_and_parameters(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = reviews(5).assign(title=[f"t{i}" for i in range(5)])
    source = write_input(tmp_path, frame, "jsonl")
    out = tmp_path / "out.csv"
    code = run("complete", source, "--template", "{title}: {text}", "--system", "Summarise.",
               "--param", "temperature=0", "--param", "stop=[\"\\n\"]", "--param", "user=bob",
               "--model", "tiny", "--max-concurrent", "2", "--rpm", "6000", "--tpm", "1000000",
               "--timeout", "10", "--chunk-size", "2", "--prices", "0.15,0.6", "--no-progress",
               "--out", out, *target(server, tmp_path))  # fmt: skip
    assert code == EXIT_OK
    assert "cost" in capsys.readouterr().out
    assert read_table(out, "csv")["response"].notna().all()


def test_no_key_and_no_base_url_tells_how_to_try_it_on_the_embedded_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HOLYSHEEP_API_KEY", "HOLYSHEEP_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    source = write_input(tmp_path, reviews(3), "csv")
    code = run("complete", source, "--column", "text", "--out", tmp_path / "out.csv")
    assert code == EXIT_USAGE
    error = capsys.readouterr().err
    assert "no API key for this base URL" in error
    assert "python -m holysheep_nb serve --port 8765" in error
    assert "--base-url http://127.0.0.1:8765/v1" in error


def test_label_a_csv_of_image_paths(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--images COL [COL ...] and --image-detail: the CSV's paths are read from the working
    directory, each row's image goes with its text, and a bad file is that row's error."""
    from PIL import Image

    for name, colour in {"red": (255, 0, 0), "blue": (0, 0, 255)}.items():
        Image.new("RGB", (8, 8), colour).save(tmp_path / f"{name}.png")
    frame = pd.DataFrame({"caption": ["a mug", "a bike", "a ghost"],
                          "front": ["red.png", "blue.png", "gone.png"],
                          "back": ["blue.png", None, None]})  # fmt: skip
    source = write_input(tmp_path, frame, "csv")
    out = tmp_path / "out.csv"
    monkeypatch.chdir(tmp_path)  # relative paths, as a user in that folder writes them
    code = run("label", source, "--column", "caption", "--labels", "red,blue,green",
               "--images", "front", "back", "--image-detail", "low", "--out", out,
               "--no-cache", "--base-url", server.base_url)  # fmt: skip
    assert code == EXIT_ROWS_FAILED
    result = read_table(out, "csv")
    assert result["label"].tolist()[:2] == ["red", "blue"]  # the first image's colour wins
    assert result["error"][2].startswith("image file not found: 'gone.png'")


def test_label_several_per_row_to_csv(server: LocalServer, tmp_path: Path) -> None:
    source = write_input(tmp_path, reviews(6), "csv")
    out = tmp_path / "out.csv"
    code = run("label", source, "--column", "text", "--labels", LABELS, "--multi",
               "--no-structured", "--instructions", "Sentiment.", "--no-cache", "--out", out,
               "--base-url", server.base_url)  # fmt: skip
    assert code == EXIT_OK
    for cell in read_table(out, "csv")["label"]:
        assert set(json.loads(cell)) <= set(LABELS.split(","))  # a list, as JSON text


@pytest.mark.parametrize("fmt", ["csv", pytest.param("parquet", marks=needs_pyarrow), "jsonl"])
def test_estimate_sends_nothing(
    fmt: str, server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path, reviews(), fmt)
    before = server.stats()["requests"]
    code = run("estimate", source, "--column", "text", "--labels", LABELS, "--latency", "0.5",
               "--prices", "0.15,0.6", "--head", "20", *target(server, tmp_path))  # fmt: skip
    assert code == EXIT_OK
    assert "holysheep_nb estimate (nothing sent): 20 of 20 rows" in capsys.readouterr().out
    assert server.stats()["requests"] == before


def test_the_key_comes_from_the_environment_and_is_never_shown(tmp_path: Path) -> None:
    key, wrong = "sk-cli-test-0123456789abcdef", "sk-cli-wrong-0123456789abcdef"
    source = write_input(tmp_path, reviews(4), "csv")

    def run_with(given: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "holysheep_nb", "complete", str(source), "--column", "text",
             "--out", str(tmp_path / "out.csv"), "--base-url", guarded.base_url,
             "--api-key-env", "MY_PROVIDER_KEY", "--no-cache"],
            env={**os.environ, "MY_PROVIDER_KEY": given, "TQDM_DISABLE": ""},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    with LocalServer(ServerConfig(api_key=key)) as guarded:
        refused, done = run_with(wrong), run_with(key)
    assert refused.returncode == EXIT_ROWS_FAILED, refused.stderr
    # The run's stop is one plain line, not a warning with a source line under it.
    stopped = "python -m holysheep_nb complete: warning: holysheep_nb stopped the run: "
    assert f"{stopped}authentication failed (HTTP 401)" in refused.stderr
    assert "warnings.warn" not in refused.stderr
    assert done.returncode == EXIT_OK, done.stderr
    assert "holysheep:" in done.stderr  # the progress bar
    for output in (refused, done):
        assert key not in output.stdout + output.stderr
        assert wrong not in output.stdout + output.stderr


@needs_pyarrow
def test_parquet_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path, reviews(3), "csv")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    code = run("complete", source, "--column", "text", "--out", tmp_path / "out.parquet")
    assert code == EXIT_USAGE
    assert "pip install 'holysheep_nb[parquet]'" in capsys.readouterr().err


@needs_pyarrow
def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    write_table(reviews(3), out, "parquet")
    before = out.read_bytes()
    unwritable = pd.DataFrame({"value": [object()]})  # pyarrow cannot store this
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever pyarrow raises
        write_table(unwritable, out, "parquet")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]


def test_ctrl_c_stops_the_run_and_keeps_the_answers(tmp_path: Path) -> None:
    """A subprocess interrupted mid-run: no output file, answers in the cache, then resume.

    Rows 40 and 41 hang at their first attempt: with two in flight the run stops there, so
    the interrupt comes at the same row on any machine, however busy (not at a request
    count read in a poll, which a fast run had already passed the end of).
    """
    rows = 400
    frame = reviews(rows)
    frame.loc[[40, 41], "text"] += " {{fault:hang*1}}"
    source = write_input(tmp_path, frame, "csv")
    out = tmp_path / "out.csv"
    cache = tmp_path / "answers.sqlite"
    with LocalServer(ServerConfig(latency=Latency.fixed(0.05))) as slow:
        argv = ["label", str(source), "--column", "text", "--labels", LABELS, "--out", str(out),
                "--base-url", slow.base_url, "--cache", str(cache), "--max-concurrent", "2",
                "--timeout", "600"]  # fmt: skip
        # SIGINT as a terminal gives it: a child inherits an ignored SIGINT from this process
        # once an earlier test (a kernel, a cluster) has set one, and then never stops.
        process = subprocess.Popen(
            [sys.executable, "-m", "holysheep_nb", *argv],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120  # a hang guard
            while slow.stats()["faults"].get("hang") != 2:  # both slots hang: rows 0-39 done
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the run never got to the hanging rows"
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)
            # A hang guard: the run stops in well under a second (what a busy machine does
            # to that is not this test's business).
            _, stderr = process.communicate(timeout=120)
        finally:
            process.kill()
            process.communicate()  # reaped, pipes closed: no warning in a later test
        assert process.returncode == EXIT_INTERRUPTED, stderr
        assert "run the same command again" in stderr
        assert "Traceback" not in stderr
        assert not out.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
        kept = cache_info(cache).entries
        assert kept == 40  # every answer received; the two in flight at the interrupt not

        sent_before = slow.stats()["requests"]
        assert main([*argv, "--no-progress", "--max-concurrent", "32"]) == EXIT_OK
        assert slow.stats()["requests"] - sent_before == rows - kept
    resumed = read_table(out, "csv")
    assert (resumed["cached"] == "True").sum() == kept  # a CSV read back is text


def _fake_extract(calls: list[dict[str, Any]]) -> Any:
    def extract(self: HolySheepFrameAccessor, column: str, **kwargs: Any) -> pd.DataFrame:
        calls.append({"column": column, **kwargs})
        out = self._frame.assign(name="x", error=None)
        stats = RunStats()
        stats.succeeded = len(out)
        out.attrs[REPORT_ATTR] = RunReport.from_run(
            stats, latency=pd.Series([float("nan")] * len(out)).to_numpy(), elapsed=0.0
        )
        return out

    return extract


def test_extract_passes_the_schema_and_its_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command's wiring to ``df.holysheep.extract``, whatever the extraction does."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(HolySheepFrameAccessor, "extract", _fake_extract(calls), raising=False)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    (tmp_path / "schema.json").write_text(json.dumps(schema), encoding="utf-8")
    source = write_input(tmp_path, reviews(3), "jsonl")
    code = run("extract", source, "--column", "text", "--schema", tmp_path / "schema.json",
               "--instructions", "Names.", "--no-flatten", "--no-structured", "--model", "m", "--param", "seed=1",
               "--out", tmp_path / "fields.jsonl")  # fmt: skip
    assert code == EXIT_OK
    (call,) = calls
    assert call["column"] == "text"
    assert call["schema"] == schema
    assert call["instructions"] == "Names."
    assert call["flatten"] is False
    assert call["structured"] is False
    assert call["model"] == "m"
    assert call["seed"] == 1
    assert read_table(tmp_path / "fields.jsonl", "jsonl")["name"].tolist() == ["x"] * 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not a JSON file"),
        ('["a"]', "expected a JSON Schema object, got list"),
        # A dict of field types is a Python-only form: a file is a JSON Schema or nothing.
        ('{"a": 5}', 'expected a JSON Schema ({"type": "object", "properties": {...}}), got'),
    ],
)
def test_extract_with_a_schema_file_that_is_not_a_json_schema(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "schema.json").write_text(text, encoding="utf-8")
    source = write_input(tmp_path, reviews(3), "csv")
    code = run("extract", source, "--column", "text", "--schema", tmp_path / "schema.json",
               "--out", tmp_path / "out.csv")  # fmt: skip
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["csv", pytest.param("parquet", marks=needs_pyarrow), "jsonl"])
def test_extract_a_file_on_the_local_server(fmt: str, server: LocalServer, tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"sentiment": {"type": "string"}},
        "required": ["sentiment"],
    }
    (tmp_path / "schema.json").write_text(json.dumps(schema), encoding="utf-8")
    source = write_input(tmp_path, reviews(6), fmt)
    out = tmp_path / f"fields{SUFFIXES[fmt]}"
    args = ["extract", source, "--column", "text", "--schema", tmp_path / "schema.json",
            "--out", out, *target(server, tmp_path)]  # fmt: skip
    assert run(*args) in (EXIT_OK, EXIT_ROWS_FAILED)
    fields = read_table(out, fmt)  # type: ignore[arg-type]
    assert len(fields) == 6
    assert "error" in fields.columns
    sent = server.stats()["requests"]
    assert run(*args) in (EXIT_OK, EXIT_ROWS_FAILED)  # resumed: answered rows from the cache
    assert server.stats()["requests"] - sent == fields["error"].notna().sum()
