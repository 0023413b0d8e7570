"""``python -m holysheep_nb demo``: the README's first command, end to end in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from holysheep_nb.demo import LABELS
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import LocalServer, ServerConfig


def run_demo(
    tmp_path: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], pd.DataFrame]:
    out = tmp_path / "labelled.csv"
    done = subprocess.run(
        [sys.executable, "-m", "holysheep_nb", "demo", "--rows", "300", "--latency", "0.01",
         "--out", str(out), "--no-progress", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done, pd.read_csv(out)


def test_demo_labels_the_sample_on_the_embedded_server(tmp_path: Path) -> None:
    done, labelled = run_demo(tmp_path)
    assert "embedded OpenAI-compatible server on http://127.0.0.1:" in done.stdout
    # It names the simulated models with their configured quality and price, labels with
    # sim-small, and measures it against the sample's gold sentiment.
    assert "sim-small: accuracy 0.80, over-confident (+1.5 log-odds), $0.00015" in done.stdout
    assert "sim-large: accuracy 0.94, well calibrated, $0.0015 / $0.006" in done.stdout
    assert "labelling with sim-small" in done.stdout
    measured = re.search(r"accuracy against the sample's gold sentiment: (0\.\d+)", done.stdout)
    assert measured is not None
    gold = load_reviews(300)["sentiment"].astype(str)
    answered = labelled["label"].notna()
    right = (labelled.loc[answered, "label"] == gold[answered]).mean()
    assert float(measured[1]) == round(right, 3)
    assert 0.7 < right < 0.95
    assert re.search(r"cost +\$0\.00\d+", done.stdout)  # priced at sim-small's price
    # The sample repeats some reviews: each distinct one is asked once.
    assert re.search(r"holysheep_nb estimate \(nothing sent\): 2\d\d of 300 rows", done.stdout)
    assert "holysheep_nb run: 300 rows" in done.stdout
    assert len(labelled) == 300
    assert (labelled["label"].notna() ^ labelled["error"].notna()).all()
    failed = int(labelled["error"].notna().sum())
    assert (f"the {failed} rows that failed" in done.stdout) == (failed > 0)
    assert set(labelled["label"].dropna()) <= set(LABELS)
    assert labelled["label"].notna().mean() > 0.95
    # Answers from a server on a one-off port could never be reused: not in the user's cache.
    assert not any(Path(os.environ["HOLYSHEEP_CACHE_DIR"]).glob("*.sqlite"))


def test_demo_uses_the_provider_when_a_key_is_set(tmp_path: Path) -> None:
    """With HOLYSHEEP_API_KEY set it goes to HOLYSHEEP_BASE_URL (the real provider by default)."""
    key = "sk-demo-test-0123456789"
    with LocalServer(ServerConfig(api_key=key)) as provider:
        done, labelled = run_demo(
            tmp_path, HOLYSHEEP_API_KEY=key, HOLYSHEEP_BASE_URL=provider.base_url
        )
        requests = provider.stats()["requests"]
        url = provider.base_url
    assert "embedded OpenAI-compatible server" not in done.stdout
    assert f"sending to {url} with the key in $HOLYSHEEP_API_KEY" in done.stdout
    distinct = labelled["text"].nunique()
    assert requests >= distinct - labelled["cached"].sum()
    assert requests < 300 - labelled["cached"].sum()  # repeated reviews were asked once
    assert labelled["error"].isna().all()
    assert key not in done.stdout + done.stderr


def test_demo_batch_runs_through_the_embedded_batch_api(tmp_path: Path) -> None:
    done, labelled = run_demo(tmp_path, "--batch")
    assert "up to 24 h" in done.stdout
    assert "the provider's Batch API, 1 batch" in done.stdout
    assert len(labelled) == 300
    assert labelled["latency"].isna().all()
    assert (labelled["label"].notna() ^ labelled["error"].notna()).all()
    failed = int(labelled["error"].notna().sum())
    assert (f"the {failed} rows that failed" in done.stdout) == (failed > 0)
    assert labelled["label"].notna().mean() > 0.9
