"""The progress bar a saved notebook shows: one per run, in its final state.

A small notebook is executed in a real kernel (nbclient), once with ipywidgets importable
(the widget bar) and once with it hidden from the kernel (the text bar), and the saved
outputs are read the way a person opening the file later would see them.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.kernel

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
nbconvert = pytest.importorskip("nbconvert")
bs4 = pytest.importorskip("bs4")  # nbconvert's own dependency

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

SETUP = """\
import pandas as pd
import holysheep_nb
from holysheep_nb.server import Latency, LocalServer, ServerConfig

server = LocalServer(ServerConfig(latency=Latency.fixed(0.03))).start()
frame = pd.DataFrame({"text": [f"review number {i} is great" for i in range(120)]})
options = {"base_url": server.base_url, "max_concurrent": 4, "cache": False}
"""
# About a second of answers: ten or so redraws, every one of which a naive bar would keep.
ONE_RUN = 'out = frame.holysheep.label("text", labels=["positive", "negative"], **options)'
TWO_RUNS = """\
first = frame.head(40).holysheep.complete("text", **options)
second = frame.head(30).holysheep.complete("text", **options)
"""
CLOSE = "server.close()"


def _run_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, widgets: bool) -> Any:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # the bars on, as for a user
    if not widgets:
        pytest.importorskip("ipywidgets")  # else the hiding below proves nothing
        hidden = tmp_path / "hidden"
        (hidden / "ipywidgets").mkdir(parents=True)
        (hidden / "ipywidgets" / "__init__.py").write_text(
            'raise ImportError("ipywidgets is hidden from this kernel")\n'
        )
        paths = [str(hidden), os.environ.get("PYTHONPATH", "")]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, paths)))
    else:
        pytest.importorskip("ipywidgets")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source) for source in (SETUP, ONE_RUN, TWO_RUNS, CLOSE)]
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    saved = tmp_path / "saved.ipynb"
    nbformat.write(nb, saved)
    return nbformat.read(saved, as_version=4)  # what a person opening the file gets


def _bars(cell: Any) -> list[dict[str, Any]]:
    """The outputs of a cell that are progress bars (widget or text)."""
    return [
        output
        for output in cell["outputs"]
        if output["output_type"] == "display_data"
        and "".join(output["data"].get("text/plain", "")).startswith("holysheep:")
    ]


def _stderr(cell: Any) -> str:
    return "".join(
        output["text"]
        for output in cell["outputs"]
        if output["output_type"] == "stream" and output["name"] == "stderr"
    )


def _check_final_bars(nb: Any) -> list[dict[str, Any]]:
    one, two = nb.cells[1], nb.cells[2]
    for cell, rows in ((one, [120]), (two, [40, 30])):
        bars = _bars(cell)
        assert len(bars) == len(rows), f"{len(bars)} bars for {len(rows)} runs: {cell['outputs']}"
        assert "holysheep:" not in _stderr(cell), "the bar was streamed as text lines"
        for bar, total in zip(bars, rows, strict=True):
            text = bar["data"]["text/plain"]
            assert "100%" in text
            assert f"{total}/{total}" in text
            assert f"ok={total}, failed=0" in text
    return [*_bars(one), *_bars(two)]


def test_text_bar_without_ipywidgets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _run_notebook(tmp_path, monkeypatch, widgets=False)
    for bar in _check_final_bars(nb):
        assert WIDGET_VIEW not in bar["data"]
        assert "\n" not in bar["data"]["text/plain"].strip()


def test_widget_bar_with_ipywidgets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _run_notebook(tmp_path, monkeypatch, widgets=True)
    bars = _check_final_bars(nb)
    # A finished bar is no widget any more: text and HTML, which need no script to show.
    for bar in bars:
        assert WIDGET_VIEW not in bar["data"]
        page = bar["data"]["text/html"]
        total = re.search(r"(\d+)/\1", bar["data"]["text/plain"])
        assert total is not None
        assert f'<progress value="{total[1]}" max="{total[1]}"' in page
        assert html.escape(bar["data"]["text/plain"]) in page
    # While the run went, it was the widget: its model was created (and closed at the end).
    assert nb.metadata.get("widgets", {}).get(WIDGET_STATE) is not None

    # jupyter nbconvert --to html: each finished bar's text is in the page, no script needed.
    exporter = nbconvert.HTMLExporter()
    page, _ = exporter.from_notebook_node(nb)
    soup = bs4.BeautifulSoup(page, "html.parser")
    for script in soup(["script", "style"]):
        script.decompose()  # what shows offline: no widget script runs, no widget state read
    text = soup.get_text()
    for rows in (120, 40, 30):
        assert f"{rows}/{rows}" in text
        assert f"ok={rows}, failed=0" in text
    assert page.count('class="holysheep-progress"') == 3
