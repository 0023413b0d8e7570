"""The quickstart notebook in JupyterLab, in a real browser, checked the way a person sees it.

JupyterLab runs on 127.0.0.1 (token auth, a temporary root folder and settings); Debian's
Chromium, headless, is driven by Playwright (``executable_path``: no browser is downloaded).
After Run All: the widget progress bar of the labelling run is full and reads 500/500, the
run report's table and the plot image are shown, and no cell shows an error or stderr. A
screenshot goes to ``test-artifacts/browser/`` (git-ignored) for a look after a failure.

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

# What JupyterLab draws: ipywidgets 8's progress bar, outputs by MIME type, cell prompts.
SELECTORS = {
    "bar": ".jp-OutputArea-output .widget-hprogress .progress-bar",
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


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JupyterLab server on 127.0.0.1 with the quickstart notebook; yields its base URL."""
    missing = _requirements()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {missing}")
        pytest.skip(missing)
    home = tmp_path_factory.mktemp("lab")
    root = home / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
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
        yield f"{base}/lab/tree/{NOTEBOOK.name}?token={token}"
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


def test_quickstart_as_a_person_sees_it(lab: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "quickstart.png"
    with sync_playwright() as playwright:
        # Chromium's sandbox cannot start as root (CI runs as root); nothing untrusted loads.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(lab)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=RUN_ALL_TIMEOUT_MS)
            page.wait_for_function(_KERNEL_READY, timeout=RUN_ALL_TIMEOUT_MS)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            page.wait_for_function(_ALL_RAN, timeout=RUN_ALL_TIMEOUT_MS)
            seen = _what_a_person_sees(page)
            page.locator(SELECTORS["bar"]).first.scroll_into_view_if_needed()
            page.screenshot(path=str(screenshot))
        finally:
            if not screenshot.exists():
                page.screenshot(path=str(screenshot))
            browser.close()
    detail = f"(screenshot: {screenshot})"
    assert seen["stderr"] == [], f"a cell shows error output {detail}: {seen['stderr']}"
    assert seen["bars"], f"no widget progress bar {detail}"
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
            "width": bar.evaluate("node => node.style.width"),
            "text": bar.evaluate("node => node.closest('.widget-hbox').innerText"),
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
