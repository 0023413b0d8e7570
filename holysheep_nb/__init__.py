"""holysheep_nb: label a pandas DataFrame with an LLM from a notebook cell.

``import holysheep_nb`` registers the ``holysheep`` accessor on DataFrame and Series.
"""

from holysheep_nb import accessor as _accessor  # noqa: F401 - registers df.holysheep
from holysheep_nb.cache import CacheInfo, cache_info, clear_cache
from holysheep_nb.endpoint import Endpoint
from holysheep_nb.engine import CompletionEngine
from holysheep_nb.errors import ConfigError, HolySheepError, MissingAPIKeyError
from holysheep_nb.outcome import OutcomeKind, RowOutcome, RunStats
from holysheep_nb.policies import EngineSettings, RateLimits, RetryPolicy
from holysheep_nb.prices import Prices
from holysheep_nb.report import RunReport

__version__ = "0.1.0"

__all__ = [
    "CacheInfo",
    "CompletionEngine",
    "ConfigError",
    "Endpoint",
    "EngineSettings",
    "HolySheepError",
    "MissingAPIKeyError",
    "OutcomeKind",
    "Prices",
    "RateLimits",
    "RetryPolicy",
    "RowOutcome",
    "RunReport",
    "RunStats",
    "__version__",
    "cache_info",
    "clear_cache",
]
