"""holysheep_nb: label a pandas DataFrame with an LLM from a notebook cell."""

from holysheep_nb.errors import ConfigError, HolySheepError, MissingAPIKeyError, RunAborted

__all__ = ["ConfigError", "HolySheepError", "MissingAPIKeyError", "RunAborted"]
