"""holysheep_nb: label a pandas DataFrame with an LLM from a notebook cell.

``import holysheep_nb`` registers the ``holysheep`` accessor on DataFrame and Series.

The engine (``holysheep_nb.engine``) and the local server (``holysheep_nb.server``) do not
need pandas or tqdm, and importing them must not load those. Python runs this file for any
``import holysheep_nb.<module>``, so it imports nothing heavy itself:

- the names re-exported below are loaded on first access (a module ``__getattr__``);
- the accessor is registered at once if pandas is already imported, and otherwise the
  moment pandas is imported (a one-shot import hook, see ``_import_hook``). So
  ``import holysheep_nb`` works before or after ``import pandas``, a DataFrame always has
  ``.holysheep``, and ``import holysheep_nb.engine`` alone never loads pandas.
- the same for polars (the ``[polars]`` extra): the ``holysheep`` namespace on a polars
  DataFrame, Series and LazyFrame is registered when polars is imported, before or after
  this package (``polars_accessor``). Importing polars costs about four times this
  package's own import, so it is never imported for a user who does not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from holysheep_nb._import_hook import when_imported
from holysheep_nb.errors import (
    BatchError,
    BatchUnavailableError,
    CacheWarning,
    ConfigError,
    FileFormatError,
    HolySheepError,
    HolySheepWarning,
    LoopError,
    MissingAPIKeyError,
    RunStoppedError,
)

if TYPE_CHECKING:
    from holysheep_nb.cache import CacheInfo, cache_info, clear_cache
    from holysheep_nb.endpoint import Endpoint
    from holysheep_nb.engine import CompletionEngine
    from holysheep_nb.interrupt import last_result
    from holysheep_nb.outcome import OutcomeKind, RowOutcome, RunStats
    from holysheep_nb.policies import EngineSettings, RateLimits, RetryPolicy
    from holysheep_nb.prices import Prices
    from holysheep_nb.report import RunReport
    from holysheep_nb.review import gold

__version__ = "0.1.0"

__all__ = [
    "BatchError",
    "BatchUnavailableError",
    "CacheInfo",
    "CacheWarning",
    "CompletionEngine",
    "ConfigError",
    "Endpoint",
    "EngineSettings",
    "FileFormatError",
    "HolySheepError",
    "HolySheepWarning",
    "LoopError",
    "MissingAPIKeyError",
    "OutcomeKind",
    "Prices",
    "RateLimits",
    "RetryPolicy",
    "RowOutcome",
    "RunReport",
    "RunStats",
    "RunStoppedError",
    "__version__",
    "cache_info",
    "clear_cache",
    "gold",
    "last_result",
]

#: Where each lazily loaded public name lives.
_LAZY = {
    "CacheInfo": "holysheep_nb.cache",
    "cache_info": "holysheep_nb.cache",
    "clear_cache": "holysheep_nb.cache",
    "last_result": "holysheep_nb.interrupt",
    "CompletionEngine": "holysheep_nb.engine",
    "Endpoint": "holysheep_nb.endpoint",
    "EngineSettings": "holysheep_nb.policies",
    "RateLimits": "holysheep_nb.policies",
    "RetryPolicy": "holysheep_nb.policies",
    "Prices": "holysheep_nb.prices",
    "RunReport": "holysheep_nb.report",
    "OutcomeKind": "holysheep_nb.outcome",
    "RowOutcome": "holysheep_nb.outcome",
    "RunStats": "holysheep_nb.outcome",
    "gold": "holysheep_nb.review",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'holysheep_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _register_accessor() -> None:
    importlib.import_module("holysheep_nb.accessor")


def _register_polars_namespace() -> None:
    importlib.import_module("holysheep_nb.polars_accessor")


when_imported("pandas", _register_accessor)
when_imported("polars", _register_polars_namespace)
