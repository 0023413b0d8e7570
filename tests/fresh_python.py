"""Running a snippet in a fresh interpreter: what the test process has already imported says
nothing about what an import loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import holysheep_nb

REPO_ROOT = Path(holysheep_nb.__file__).resolve().parents[1]


def fresh_python(code: str) -> str:
    """``code``'s standard output from a new interpreter that imports this checkout and turns
    every warning into an error; the test fails with its stderr if it exits non-zero."""
    path = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path},
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout
