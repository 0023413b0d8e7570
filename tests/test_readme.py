"""The README a newcomer reads: it opens with the two commands, its quickstart runs as it
stands, it lists every notebook, and every page it links to exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_it_opens_with_the_demo_and_the_test_command_ci_runs() -> None:
    first = code_blocks(README, "bash")[0]
    commands = [line.split("#")[0].strip() for line in first.strip().splitlines()]
    assert commands == ["python -m holysheep_nb demo", "python -m pytest -q"]
    assert README.index(first) < 40  # right under the title
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == "python -m pytest -q"


def test_it_stays_short() -> None:
    assert len(README.splitlines()) < 300


def test_the_quickstart_runs_as_it_stands(tmp_path: Path) -> None:
    quickstart = README.split("## Quickstart", 1)[1]
    code = code_blocks(quickstart, "python")[0]
    assert "reviews.csv" not in code
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "HOLYSHEEP_CACHE_DIR": str(tmp_path),
                   "TQDM_DISABLE": "1"}  # fmt: skip
    environment.pop("HOLYSHEEP_API_KEY", None)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment,
        cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "holysheep_nb run: 500 rows" in done.stdout


def test_every_notebook_is_listed() -> None:
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"](notebooks/{notebook.name})" in README, notebook.name


def test_every_link_leads_somewhere() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#]+?)(?:#[^)]*)?\)", text):
            if target.startswith(("http://", "https://")):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
