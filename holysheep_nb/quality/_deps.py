"""The optional libraries of the quality tools, loaded on first use with one clear hint.

scikit-learn (metrics), SciPy (intervals, the exact test) and ``krippendorff`` come with
the ``eval`` extra; importing ``holysheep_nb`` never loads them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EVAL_HINT = "pip install 'holysheep_nb[eval]'"


def load(module: str) -> ModuleType:
    """Import ``module`` (``sklearn.metrics``, ``scipy.stats``, ``krippendorff``).

    Raises ``ImportError`` naming the extra to install when it is missing.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise ImportError(
            f"evaluating labels needs {package} (the 'eval' extra): {EVAL_HINT}"
        ) from exc
