"""Notebooks in JupyterLab, in a real browser, checked the way a person sees them.

JupyterLab runs on 127.0.0.1 (token auth, a temporary root folder and settings); Debian's
Chromium, headless, is driven by Playwright (``executable_path``: no browser is downloaded).
One server serves every test here; each test opens its notebook in a workspace of its own.

- The quickstart: after Run All, the progress bar of the labelling run (a widget while it
  runs, its finished state drawn without a script once done) is full and reads 500/500,
  the run report's table and the plot image are shown, and no cell shows an error or
  stderr.
- The review panel: opened on a labelled sample, 5 rows labelled with key presses, the
  kernel restarted, and the 5 answers found again by ``holysheep_nb.gold()``, in
  ``evaluate()`` and in the reopened panel. Its screenshot is docs/review.png.

Screenshots go to ``test-artifacts/browser/`` (git-ignored) for a look after a failure.
Skipped where Chromium or Playwright is missing, except in CI (``CI`` set), where that fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = next(
    (
        path
        for path in ("/usr/bin/chromium", shutil.which("chromium"))
        if path and Path(path).exists()
    ),
    None,
)
#: Run All of the quickstart takes about 15 s here; this bounds a hung run.
RUN_ALL_TIMEOUT_MS = 180_000
#: Seconds JupyterLab may take to start: a hang guard (it takes a few; more when busy).
STARTUP_GUARD = 180.0

# What JupyterLab draws: a finished run's bar, outputs by MIME type, cell prompts.
SELECTORS = {
    "bar": ".jp-OutputArea-output .holysheep-progress progress",
    "report": ".jp-OutputArea-output table.holysheep-report",
    "plot": ".jp-OutputArea-output img[src^='data:image/png']",
    "stderr": ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
}


def _requirements() -> str | None:
    """Why this test cannot run here, or None."""
    if CHROMIUM is None:
        return "Chromium is not installed (apt-get install chromium)"
    try:
        import jupyterlab  # noqa: F401
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[dev]')"
    return None


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: its address, token, and the folder it serves."""

    base: str
    token: str
    root: Path

    def url(self, notebook: Path) -> str:
        """Where ``notebook`` (copied into ``root``) opens, in a workspace of its own."""
        if not (self.root / notebook.name).exists():
            shutil.copy(notebook, self.root / notebook.name)
        workspace = notebook.stem.replace("_", "-")
        return f"{self.base}/lab/workspaces/{workspace}/tree/{notebook.name}?token={self.token}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A JupyterLab server on 127.0.0.1 serving a temporary folder."""
    missing = _requirements()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {missing}")
        pytest.skip(missing)
    home = tmp_path_factory.mktemp("lab")
    root = home / "root"
    root.mkdir()
    settings = home / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # Every cell in the DOM (no virtual scrolling), so off-screen outputs can be checked.
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    config = home / "config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    port = _free_port()
    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    env.pop("TQDM_DISABLE", None)  # the bars on, as for a user
    log = (home / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
         "--ServerApp.port_retries=0", "--ServerApp.allow_root=True"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{base}/api/status?token={token}", server, home / "jupyterlab.log")
        yield Lab(base, token, root)
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)  # JupyterLab shuts its kernels down first: slow when busy
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()  # reaped: no "subprocess is still running" warning at teardown
        log.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_up(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Poll until JupyterLab answers; ``STARTUP_GUARD`` only stops a start that hangs."""
    deadline = time.monotonic() + STARTUP_GUARD
    while time.monotonic() < deadline:
        assert server.poll() is None, f"JupyterLab exited:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"JupyterLab did not answer within {STARTUP_GUARD} s:\n{log.read_text()}")


@contextmanager
def _page(screenshot: Path) -> Iterator[Any]:
    """A Chromium page; a screenshot of it goes to ``screenshot`` if the test did not take one."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot.unlink(missing_ok=True)
    with sync_playwright() as playwright:
        # Chromium's sandbox cannot start as root (CI runs as root); nothing untrusted loads.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            yield page
        finally:
            if not screenshot.exists():
                page.screenshot(path=str(screenshot))
            browser.close()


def _run_all(page: Any, url: str) -> None:
    """Open the notebook at ``url``, wait for its kernel, Run All, wait until it is over."""
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=RUN_ALL_TIMEOUT_MS)
    page.wait_for_function(_KERNEL_READY, timeout=RUN_ALL_TIMEOUT_MS)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(_ALL_RAN, timeout=RUN_ALL_TIMEOUT_MS)


def test_quickstart_as_a_person_sees_it(lab: Lab) -> None:
    screenshot = ARTIFACTS / "quickstart.png"
    with _page(screenshot) as page:
        _run_all(page, lab.url(NOTEBOOK))
        seen = _what_a_person_sees(page)
        page.locator(SELECTORS["bar"]).first.scroll_into_view_if_needed()
        page.screenshot(path=str(screenshot))
    detail = f"(screenshot: {screenshot})"
    assert seen["stderr"] == [], f"a cell shows error output {detail}: {seen['stderr']}"
    assert seen["bars"], f"no progress bar {detail}"
    label_run = seen["bars"][0]  # the 500-row labelling run
    assert label_run["width"] == "100%", f"the progress bar stopped short {detail}: {label_run}"
    assert "500/500" in label_run["text"], f"the bar's counts {detail}: {label_run}"
    assert all(bar["width"] == "100%" for bar in seen["bars"]), f"{detail}: {seen['bars']}"
    assert any("holysheep_nb run: 500 rows" in table for table in seen["reports"]), detail
    assert seen["plots"] >= 1, f"no plot image {detail}"


# The status bar says the notebook's kernel is up and idle ("Python 3 (ipykernel) | Idle").
_KERNEL_READY = """() => {
    const bar = document.querySelector('#jp-main-statusbar');
    return bar !== null && /\\(ipykernel\\) \\| Idle/.test(bar.innerText);
}"""
# Run All is over: every code cell has an execution count (no "[ ]" or "[*]"), or it stopped
# at an error (JupyterLab runs no further cell) and nothing is running any more.
_ALL_RAN = """() => {
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
    const ran = prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
    const stderr = "[data-mime-type='application/vnd.jupyter.stderr']";
    const running = prompts.some(p => p.textContent.includes('*'));
    return ran || (document.querySelector(stderr) !== null && !running);
}"""


def _what_a_person_sees(page: Any) -> dict[str, Any]:
    bars = [
        {
            "width": bar.evaluate("node => `${Math.round(100 * node.position)}%`"),
            "text": bar.evaluate("node => node.closest('.holysheep-progress').innerText"),
        }
        for bar in page.locator(SELECTORS["bar"]).all()
    ]
    plots = sum(
        image.evaluate("node => node.complete && node.naturalWidth > 0")
        for image in page.locator(SELECTORS["plot"]).all()
    )
    return {
        "bars": bars,
        "reports": page.locator(SELECTORS["report"]).all_inner_texts(),
        "plots": plots,
        "stderr": page.locator(SELECTORS["stderr"]).all_inner_texts(),
    }


# The review notebook: a labelled sample from the local server, the panel, and a cell that
# reads the kept gold back (the store lives in this test's own cache folder).
_REVIEW_CELLS = [
    """import os
os.environ["HOLYSHEEP_CACHE_DIR"] = {cache!r}
import holysheep_nb
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import LocalServer, ServerConfig

server = LocalServer(ServerConfig()).start()
LABELS = ["positive", "negative", "neutral"]
out = load_reviews(40).holysheep.label(
    "text", labels=LABELS, logprobs=True, base_url=server.base_url
)""",
    "panel = out.holysheep.review()\npanel",
    """kept = holysheep_nb.gold(labels=LABELS)
line = f"gold kept: {{len(kept)}}"
if len(kept):
    ev = out.holysheep.evaluate(gold=holysheep_nb.gold(labels=LABELS, frame=out))
    line += f"; evaluate n={{ev.n}} of {{out['text'].isin(kept['text']).sum()}}"
print(line)""",
]
# Each key, and the panel's status line after it: five answers, a skip and a step back.
_KEYS = [
    ("1", r"^row 2 of \d+ · 1 done"),
    ("Enter", r"^row 3 of \d+ · 2 done"),
    ("2", r"^row 4 of \d+ · 3 done"),
    ("s", r"^row 5 of \d+ · 3 done"),
    ("Backspace", r"^row 4 of \d+ · 3 done"),
    ("3", r"^row 5 of \d+ · 4 done"),
    ("1", r"^row 6 of \d+ · 5 done · you agree with the model on \d of 5"),
]
REVIEW_PNG = ROOT / "docs" / "review.png"
#: A key's round trip to the kernel and back is well under a second; this allows for a
#: machine whose cores are all busy.
WAIT_MS = 30_000


def test_review_panel_keys_survive_a_kernel_restart(lab: Lab, tmp_path: Path) -> None:
    import re

    import nbformat
    from playwright.sync_api import expect

    cache = tmp_path / "cache"
    notebook = lab.root / "review_panel.ipynb"
    cells = [nbformat.v4.new_code_cell(source.format(cache=str(cache))) for source in _REVIEW_CELLS]
    kernel = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel}), notebook)
    screenshot = ARTIFACTS / "review.png"
    with _page(screenshot) as page:
        _run_all(page, lab.url(notebook))
        panel = page.locator(".holysheep-review")
        status = panel.locator(".holysheep-review-status")
        printed = page.locator(".jp-Notebook .jp-CodeCell").nth(2).locator(".jp-OutputArea-output")
        expect(status).to_have_text(re.compile(r"^row 1 of \d+ · 0 done"), timeout=WAIT_MS)
        expect(printed).to_have_text("gold kept: 0", timeout=WAIT_MS)
        panel.locator(".holysheep-review-text").click()  # focus the panel, as a person would
        for key, after in _KEYS:
            page.keyboard.press(key)
            expect(status).to_have_text(re.compile(after), timeout=WAIT_MS)
        panel.screenshot(path=str(REVIEW_PNG))
        page.get_by_role("menuitem", name="Kernel", exact=True).click()
        page.get_by_role("menuitem", name="Restart Kernel and Run All Cells…").click()
        page.get_by_role("button", name="Confirm Kernel Restart").click()
        # A new kernel, a new label run, the panel again: it finds the 5 answers kept.
        expect(printed).to_have_text(
            re.compile(r"^gold kept: 5; evaluate n=(\d+) of \1\s*$"), timeout=RUN_ALL_TIMEOUT_MS
        )
        expect(status).to_have_text(re.compile(r"· 5 done"), timeout=WAIT_MS)
        stderr = page.locator(SELECTORS["stderr"]).all_inner_texts()
        page.screenshot(path=str(screenshot))
    assert stderr == [], f"a cell shows error output (screenshot: {screenshot}): {stderr}"
    kept = holysheep_nb_gold(cache)
    assert kept["label"].tolist()[:1] + kept["label"].tolist()[2:] == [
        "positive", "negative", "neutral", "positive"
    ]  # fmt: skip
    assert kept["label"].iloc[1] == kept["predicted"].iloc[1]  # Enter took the model's label


def holysheep_nb_gold(cache: Path) -> Any:
    """The gold kept in ``cache``, read in this process (not the kernel's)."""
    from holysheep_nb.review import gold

    return gold(labels=["positive", "negative", "neutral"], path=cache / "gold.sqlite")
