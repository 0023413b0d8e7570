"""df.holysheep on polars frames (issue 32, part 1; docs/polars.md): the same calls as on
pandas, through the same planner, engine, cache and sink, returning typed polars frames."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import polars as pl
import pytest

from holysheep_nb import polars_frame
from holysheep_nb.__main__ import main
from holysheep_nb.errors import ConfigError, HolySheepError
from holysheep_nb.files import read_table
from holysheep_nb.polars_accessor import HolySheepPolarsFrame
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import LocalServer, RunningServer, ServerConfig, start_server
from tests.fresh_python import REPO_ROOT, fresh_python
from tests.scripted import BASE_URL, Reply, ok_body, scripted
from tests.test_votes import choices_body

LABELS = ["positive", "negative", "neutral"]
RESULT_TYPES = {
    "response": pl.String,
    "error": pl.String,
    "latency": pl.Float64,
    "cached": pl.Boolean,
    "shared": pl.Boolean,
    "attempts": pl.Int64,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
    "finish_reason": pl.String,
    "reasoning": pl.String,
    "tool_calls": pl.String,
}
QUIET: dict[str, Any] = {"cache": False, "progress": False}


@pytest.fixture
async def echo() -> AsyncIterator[RunningServer]:
    async with await start_server(ServerConfig(echo=True)) as server:
        yield server


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig()) as running:
        yield running


def requests_at(server: RunningServer | LocalServer) -> int:
    return int(server.stats()["requests"])


# --- registration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "imports",
    ["import polars as pl\nimport holysheep_nb", "import holysheep_nb\nimport polars as pl"],
)
def test_import_in_either_order_registers_the_namespaces(imports: str) -> None:
    out = fresh_python(
        f"{imports}\n"
        "frame = pl.DataFrame({'text': ['a']})\n"
        "print(type(frame.holysheep).__name__, type(frame['text'].holysheep).__name__,"
        " type(frame.lazy().holysheep).__name__)\n"
    )
    assert out.split() == ["HolySheepPolarsFrame", "HolySheepPolarsSeries", "HolySheepLazyFrame"]


def test_importing_the_package_does_not_import_polars() -> None:
    out = fresh_python("import sys, pandas, holysheep_nb\nprint('polars' in sys.modules)\n")
    assert out.strip() == "False"


# --- complete: order, types, nulls -----------------------------------------------------------


async def test_complete_keeps_rows_in_order_with_typed_result_columns(echo: RunningServer) -> None:
    texts = [f"row {i}" for i in range(300)]
    texts[7] = None  # type: ignore[call-overload]
    frame = pl.DataFrame({"text": texts, "n": range(300)})
    before = frame.clone()
    out = await frame.holysheep.acomplete("text", base_url=echo.base_url, **QUIET)
    assert isinstance(out, pl.DataFrame)
    assert out is not frame
    assert frame.equals(before)  # the input is never changed
    assert out.columns == ["text", "n", *RESULT_TYPES]
    assert dict(out.schema) == {"text": pl.String, "n": pl.Int64, **RESULT_TYPES}
    expected = [t for t in texts]
    assert out["response"].to_list() == expected  # echo: every row its own answer, in order
    assert out["n"].to_list() == list(range(300))
    assert out["error"].to_list()[7] == "missing prompt"
    assert out["error"].null_count() == 299
    # A row not sent: its latency and token counts are null, never NaN or -1.
    row = out.row(7, named=True)
    assert (row["latency"], row["prompt_tokens"], row["completion_tokens"]) == (None, None, None)
    assert out["latency"].is_nan().sum() == 0
    assert out["attempts"].to_list()[6:9] == [1, 0, 1]
    assert requests_at(echo) == 299


async def test_an_empty_frame_gives_an_empty_typed_result(echo: RunningServer) -> None:
    frame = pl.DataFrame({"text": pl.Series([], dtype=pl.String)})
    out = await frame.holysheep.alabel("text", labels=LABELS, base_url=echo.base_url, **QUIET)
    assert out.height == 0
    assert dict(out.schema) == {"text": pl.String, "label": pl.Enum(LABELS), **RESULT_TYPES}
    assert out.holysheep.report().rows == 0


async def test_numbers_and_enums_are_sent_as_their_text(echo: RunningServer) -> None:
    frame = pl.DataFrame(
        {"n": [1, None, 3], "kind": pl.Series(["a", "b", None], dtype=pl.Enum(["a", "b"]))}
    )
    numbers = await frame.holysheep.acomplete("n", base_url=echo.base_url, **QUIET)
    assert numbers["response"].to_list() == ["1", None, "3"]
    kinds = await frame.holysheep.acomplete(template="{kind}/{n}", base_url=echo.base_url, **QUIET)
    assert kinds["response"].to_list() == ["a/1", None, None]


async def test_pandas_and_polars_give_the_same_answers(echo: RunningServer) -> None:
    texts = ["a", "b", None, "a", "  ", "d"]
    pandas_out = await pd.DataFrame({"text": texts}).holysheep.acomplete(
        "text", base_url=echo.base_url, **QUIET
    )
    polars_out = await pl.DataFrame({"text": texts}).holysheep.acomplete(
        "text", base_url=echo.base_url, **QUIET
    )
    for name in ("response", "error", "shared", "attempts"):
        assert polars_out[name].to_list() == [
            None if pd.isna(v) else v for v in pandas_out[name].tolist()
        ], name


async def test_template_over_polars_columns(echo: RunningServer) -> None:
    frame = pl.DataFrame({"title": ["t1", "t2", None], "price": [1.5, 2.0, 3.0]})
    out = await frame.holysheep.acomplete(
        template="{title} costs {price:.2f}", base_url=echo.base_url, **QUIET
    )
    assert out["response"].to_list() == ["t1 costs 1.50", "t2 costs 2.00", None]
    assert out["error"].to_list()[2] == "missing value for column 'title'"


def test_bad_input_raises_before_anything_is_sent(server: LocalServer) -> None:
    sent = requests_at(server)
    frame = pl.DataFrame({"text": ["a"]})
    with pytest.raises(
        ConfigError, match=r"no column 'txt' in the DataFrame; columns are \['text'\]"
    ):
        frame.holysheep.complete("txt", base_url=server.base_url, **QUIET)
    with pytest.raises(ConfigError, match="template refers to missing column"):
        frame.holysheep.complete(template="{nope}", base_url=server.base_url, **QUIET)
    with pytest.raises(ConfigError, match="did you mean temperature"):
        frame.holysheep.complete("text", base_url=server.base_url, temprature=0, **QUIET)
    assert requests_at(server) == sent


# --- label and extract: Enum and typed fields ------------------------------------------------


async def test_label_column_is_an_enum_over_the_label_set(echo: RunningServer) -> None:
    frame = pl.DataFrame({"text": ["negative", "positive", "sideways", None], "label": ["g"] * 4})
    out = await frame.holysheep.alabel(
        "text", labels=LABELS, structured=False, base_url=echo.base_url, **QUIET
    )
    # The input's own ``label`` column (gold) is kept; the run's is ``predicted_label``.
    assert out.columns[:4] == ["text", "label", "predicted_label", "response"]
    assert out.schema["predicted_label"] == pl.Enum(LABELS)
    assert out["predicted_label"].to_list() == ["negative", "positive", None, None]
    assert out["error"].to_list()[2] == "not in label set: 'sideways'"
    assert out["label"].to_list() == ["g"] * 4


async def test_multi_labels_are_lists_of_the_enum_and_confidence_is_null_when_unknown(
    echo: RunningServer,
) -> None:
    frame = pl.DataFrame({"text": ["positive, neutral", "negative", None]})
    out = await frame.holysheep.alabel(
        "text", labels=LABELS, multi=True, structured=False, base_url=echo.base_url, **QUIET
    )
    assert out.schema["label"] == pl.List(pl.Enum(LABELS))
    assert out["label"].to_list() == [["positive", "neutral"], ["negative"], None]


def test_label_with_logprobs_has_a_float_confidence(server: LocalServer) -> None:
    frame = pl.DataFrame({"text": ["great, I love it", None]})
    out = frame.holysheep.label(
        "text", labels=LABELS, logprobs=True, base_url=server.base_url, **QUIET
    )
    assert out.columns[:3] == ["text", "label", "confidence"]
    assert out.schema["confidence"] == pl.Float64
    confidence = out["confidence"].to_list()
    assert 0 < confidence[0] <= 1
    assert confidence[1] is None  # no answer: null, not NaN


def test_extract_gives_each_field_its_polars_type(server: LocalServer) -> None:
    schema = {
        "product": str,
        "stars": int | None,
        "price": float,
        "in_stock": bool,
        "tone": Literal["warm", "cold"],
        "tags": list[str],
    }
    frame = pl.DataFrame({"text": ["a blender, 4 stars", None, "a kettle"]})
    out = frame.holysheep.extract("text", schema=schema, base_url=server.base_url, **QUIET)
    assert out.columns[:8] == ["text", *schema, "response"]
    types = out.schema
    assert (types["product"], types["stars"], types["price"]) == (pl.String, pl.Int64, pl.Float64)
    assert (types["in_stock"], types["tone"]) == (pl.Boolean, pl.Enum(["warm", "cold"]))
    assert types["tags"] == pl.List(pl.String)
    assert out["error"].to_list()[0] is None
    assert all(out[name].to_list()[1] is None for name in schema)  # the missing row
    assert isinstance(out["stars"].to_list()[0], int)


async def test_the_async_extract_matches_the_pandas_one(server: LocalServer) -> None:
    texts = ["one thing", "another"]
    schema = {"product": str, "stars": int | None}
    options = {"schema": schema, "base_url": server.base_url, **QUIET}
    on_polars = await pl.DataFrame({"text": texts}).holysheep.aextract("text", **options)
    on_pandas = await pd.DataFrame({"text": texts}).holysheep.aextract("text", **options)
    assert on_polars["product"].to_list() == on_pandas["product"].tolist()
    assert on_polars["stars"].to_list() == [None if pd.isna(v) else v for v in on_pandas["stars"]]


# --- Series, estimate, cache, report -----------------------------------------------------------


def test_series_namespace(server: LocalServer) -> None:
    named = pl.Series("q", ["great, I love it", None])
    out = named.holysheep.label(labels=LABELS, base_url=server.base_url, **QUIET)
    assert out.columns[:2] == ["q", "label"]
    assert out["error"].to_list()[1] == "missing prompt"
    unnamed = pl.Series(["u"]).holysheep.complete(
        template="Say {prompt}", base_url=server.base_url, **QUIET
    )
    assert unnamed.columns[0] == "prompt"
    with pytest.raises(ConfigError, match="a Series has no columns"):
        named.holysheep.complete("q", base_url=server.base_url, **QUIET)


def test_estimate_is_the_same_as_for_the_pandas_frame(tmp_path: Path) -> None:
    texts = [f"review {i % 7}" for i in range(40)] + [None]
    options: dict[str, Any] = {"labels": LABELS, "base_url": BASE_URL, "cache": False}
    on_polars = pl.DataFrame({"text": texts}).holysheep.estimate("text", **options)
    on_pandas = pd.DataFrame({"text": texts}).holysheep.estimate("text", **options)
    assert on_polars == on_pandas
    assert (on_polars.rows, on_polars.to_send, on_polars.deduplicated) == (41, 7, 33)


def test_a_second_run_is_served_from_the_cache(server: LocalServer, tmp_path: Path) -> None:
    cache = str(tmp_path / "answers.sqlite")
    frame = pl.DataFrame({"text": [f"review {i}: great" for i in range(30)]})
    options = {"labels": LABELS, "base_url": server.base_url, "cache": cache, "progress": False}
    first = frame.holysheep.label("text", **options)
    sent = requests_at(server)
    second = frame.holysheep.label("text", **options)
    assert requests_at(server) == sent  # nothing sent again
    assert second["cached"].all()
    assert second["latency"].null_count() == 30
    assert second["label"].equals(first["label"])
    assert second.holysheep.report().cached == 30
    # The cache is the same for both kinds of frame: a pandas run of the same rows hits it.
    as_pandas = frame.to_pandas().holysheep.label("text", **options)
    assert as_pandas["cached"].all()


def test_the_report_belongs_to_the_frame_a_call_returned(server: LocalServer) -> None:
    frame = pl.DataFrame({"text": ["great, I love it", "broken", None]})
    out = frame.holysheep.label("text", labels=LABELS, base_url=server.base_url, **QUIET)
    report = out.holysheep.report()
    assert (report.rows, report.succeeded, report.failed) == (3, 2, 1)
    assert sum(dict(report.labels).values()) == 2
    with pytest.raises(HolySheepError, match="polars frames have no attrs"):
        out.filter(pl.col("error").is_null()).holysheep.report()
    with pytest.raises(HolySheepError, match="no run report"):
        frame.holysheep.report()
    key = id(out)
    assert key in polars_frame._ATTRS
    del out
    gc.collect()
    assert key not in polars_frame._ATTRS  # kept no longer than the frame


def test_a_lazy_frame_is_refused_with_advice_and_nothing_is_sent(server: LocalServer) -> None:
    sent = requests_at(server)
    lazy = pl.DataFrame({"text": ["a"]}).lazy()
    with pytest.raises(ConfigError, match=r"lf\.collect\(\)\.holysheep\.label\(\.\.\.\)"):
        lazy.holysheep.label("text", labels=LABELS, base_url=server.base_url)
    with pytest.raises(ConfigError, match="LazyFrame"):
        lazy.holysheep.estimate("text")
    assert requests_at(server) == sent
    out = lazy.collect().holysheep.label("text", labels=LABELS, base_url=server.base_url, **QUIET)
    assert out.height == 1


def test_the_docs_example_runs_as_written_without_pyarrow(tmp_path: Path) -> None:
    """docs/polars.md's first example, with pyarrow hidden: the ``[polars]`` extra alone."""
    page = (REPO_ROOT / "docs" / "polars.md").read_text(encoding="utf-8")
    example = page.split("```python\n", 1)[1].split("```", 1)[0]
    hide_pyarrow = "import sys\nsys.modules['pyarrow'] = None  # as if not installed\n"
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT),
                   "HOLYSHEEP_CACHE_DIR": str(tmp_path), "TQDM_DISABLE": "1"}  # fmt: skip
    environment.pop("HOLYSHEEP_API_KEY", None)
    done = subprocess.run(
        [sys.executable, "-c", hide_pyarrow + example], capture_output=True, text=True,
        env=environment, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "holysheep_nb run: 200 rows" in done.stdout
    assert "shape: (3, 2)" in done.stdout  # the label counts, as a polars frame


def test_report_on_a_lazy_frame_says_it_never_ran_a_call_not_to_collect() -> None:
    lazy = pl.DataFrame({"text": ["a"]}).lazy()
    with pytest.raises(HolySheepError, match="a LazyFrame never ran a call") as info:
        lazy.holysheep.report()
    assert "collect" not in str(info.value)


def test_review_on_polars_says_it_is_pandas_only_and_the_way_there(server: LocalServer) -> None:
    out = pl.DataFrame({"text": ["great, I love it", "broken"]}).holysheep.label(
        "text", labels=LABELS, base_url=server.base_url, **QUIET
    )
    with pytest.raises(ConfigError, match=r"review\(\) is pandas only") as info:
        out.holysheep.review(labels=LABELS)
    assert "out.holysheep.to_pandas()" in str(info.value)
    as_pandas = out.holysheep.to_pandas()  # the way the message gives, report and all
    assert isinstance(as_pandas, pd.DataFrame)
    assert as_pandas["label"].tolist() == out["label"].to_list()
    assert as_pandas.holysheep.report().rows == 2


def test_batch_true_returns_a_polars_frame(server: LocalServer) -> None:
    frame = pl.DataFrame({"text": ["great, I love it", "broken and useless, terrible"]})
    out = frame.holysheep.label(
        "text", labels=LABELS, base_url=server.base_url, batch=True, **QUIET
    )
    assert isinstance(out, pl.DataFrame)
    assert out.schema["label"] == pl.Enum(LABELS)
    assert out["error"].null_count() == 2
    assert out.holysheep.report().batch_ids


def test_votes_give_the_majority_as_an_enum_with_float_shares_and_boolean_ties() -> None:
    frame = pl.DataFrame({"text": ["a", "b"]})
    with scripted() as fake:
        fake.script("a", Reply(body=choices_body("positive", "negative", "positive")))
        fake.script("b", Reply(body=choices_body("neutral", "negative", "bogus")))
        out = frame.holysheep.label("text", labels=LABELS, votes=3, base_url=BASE_URL, **QUIET)
    assert [body["n"] for body in fake.bodies] == [3, 3]
    assert out.schema["label"] == pl.Enum(LABELS)
    assert (out.schema["votes"], out.schema["tie"]) == (pl.Float64, pl.Boolean)
    assert out["label"].to_list() == ["positive", "neutral"]
    assert out["votes"].to_list() == pytest.approx([2 / 3, 1 / 3])
    assert out["tie"].to_list() == [False, True]
    assert out.holysheep.report().samples == 6


def test_votes_on_a_provider_that_ignores_n_combine_k_polars_runs() -> None:
    frame = pl.DataFrame({"text": ["a", "b"], "id": [1, 2]})
    with scripted() as fake:
        fake.script(
            "a", *(Reply(body=choices_body(x)) for x in ("negative", "positive", "positive"))
        )
        fake.script("b", *(Reply(body=choices_body(x)) for x in ("neutral", "neutral", "bogus")))
        out = frame.holysheep.label(
            "text", labels=LABELS, votes=3, seed=7, base_url=BASE_URL, **QUIET
        )
    assert len(fake.bodies) == 6
    assert isinstance(out, pl.DataFrame)
    assert out["label"].to_list() == ["positive", "neutral"]
    assert out.schema["label"] == pl.Enum(LABELS)
    assert out["id"].to_list() == [1, 2]
    assert out["error"].null_count() == 2
    report = out.holysheep.report()
    assert (report.rows, report.samples, report.requests_sent) == (2, 6, 6)


# --- evaluate, compare, escalate ------------------------------------------------------------


def test_evaluate_matches_the_pandas_evaluation(server: LocalServer) -> None:
    reviews = load_reviews(60, seed=1)
    frame = pl.DataFrame(
        {"text": reviews["text"].tolist(), "gold": reviews["sentiment"].astype(str).tolist()}
    )
    options = {
        "labels": LABELS,
        "model": "sim-small",
        "base_url": server.base_url,
        "temperature": 0,
    }
    out = frame.holysheep.label("text", **options, **QUIET)
    on_polars = out.holysheep.evaluate("gold")
    on_pandas = (
        frame.to_pandas().holysheep.label("text", **options, **QUIET).holysheep.evaluate("gold")
    )
    assert on_polars.accuracy == on_pandas.accuracy
    hits = (out["label"].cast(pl.String) == out["gold"]).sum()
    assert on_polars.accuracy == pytest.approx(hits / out.height)
    by_series = out.holysheep.evaluate(frame["gold"])  # a pl.Series, aligned by position
    assert by_series.accuracy == on_polars.accuracy


def test_compare_runs_the_variants_on_a_polars_frame(server: LocalServer) -> None:
    reviews = load_reviews(40, seed=2)
    frame = pl.DataFrame(
        {"text": reviews["text"].tolist(), "gold": reviews["sentiment"].astype(str).tolist()}
    )
    comparison = frame.holysheep.compare(
        "text",
        labels=LABELS,
        variants={"small": {"model": "sim-small"}, "large": {"model": "sim-large"}},
        gold="gold",
        temperature=0,
        base_url=server.base_url,
        **QUIET,
    )
    assert list(comparison.results) == ["small", "large"]
    for name, result in comparison.results.items():
        assert len(result) == 40, name


def test_escalate_asks_the_failed_rows_again_and_returns_a_polars_frame() -> None:
    texts = ["t0", "t1", "t2", "t3"]
    frame = pl.DataFrame({"text": texts, "id": range(4)})
    with scripted() as fake:
        for text in texts:
            fake.script(text, Reply(body=ok_body("nonsense" if text == "t2" else "positive")))
        first = frame.holysheep.label(
            "text", labels=LABELS, model="small", base_url=BASE_URL, **QUIET
        )
        assert first["error"].is_not_null().to_list() == [False, False, True, False]
        fake.script("t2", Reply(body=ok_body("negative")))
        out = first.holysheep.escalate(model="large")
    assert isinstance(out, pl.DataFrame)
    assert [b["messages"][-1]["content"] for b in fake.bodies[4:]] == ["t2"]
    assert out["label"].to_list() == ["positive", "positive", "negative", "positive"]
    assert out.schema["label"] == pl.Enum(LABELS)
    assert out["model"].cast(pl.String).to_list() == ["small", "small", "large", "small"]
    assert out["id"].to_list() == [0, 1, 2, 3]
    assert out.holysheep.report().escalated == 1


async def test_async_escalate_and_compare_forms(echo: RunningServer) -> None:
    frame = pl.DataFrame({"text": ["positive", "sideways"], "gold": ["positive", "neutral"]})
    first = await frame.holysheep.alabel(
        "text", labels=LABELS, structured=False, base_url=echo.base_url, **QUIET
    )
    again = await first.holysheep.aescalate(model="other")
    assert again["model"].cast(pl.String).to_list() == ["gpt-4o", "other"]
    comparison = await frame.holysheep.acompare(
        "text",
        labels=LABELS,
        structured=False,
        variants={"a": {}, "b": {"system": "Be terse."}},
        gold="gold",
        base_url=echo.base_url,
        **QUIET,
    )
    assert list(comparison.results) == ["a", "b"]


# --- the command line ------------------------------------------------------------------------


def test_the_cli_is_unchanged_with_polars_imported(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert HolySheepPolarsFrame is type(pl.DataFrame({"a": [1]}).holysheep)  # registered here
    source = tmp_path / "in.csv"
    pd.DataFrame({"id": ["001", "002"], "text": ["great, I love it", "it is fine"]}).to_csv(
        source, index=False
    )
    out = tmp_path / "out.csv"
    code = main(["label", str(source), "--column", "text", "--labels", ",".join(LABELS),
                 "--out", str(out), "--base-url", server.base_url, "--no-cache"])  # fmt: skip
    assert code == 0, capsys.readouterr()
    written = read_table(out, "csv")
    assert written["id"].tolist() == ["001", "002"]
    assert written["error"].isna().all()
    assert "wrote 2 rows" in capsys.readouterr().out
