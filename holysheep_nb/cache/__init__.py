"""The answer cache: every paid-for answer kept in a local SQLite file, so none is paid twice.

Four parts, one module each:

- ``keys``: the request fingerprint each answer is stored under (:func:`fingerprint`,
  :class:`Fingerprinter`);
- ``store``: :class:`ResponseCache`, the write-buffered, process-shared store a run reads
  and writes, with its durability and recovery rules;
- ``db``: the SQLite file underneath (schema, WAL, transactions, damage detection);
- ``admin`` and ``cli``: :func:`cache_info` and :func:`clear_cache`, and the
  ``python -m holysheep_nb cache info|clear`` command built on them.
"""

from holysheep_nb.cache.admin import CacheInfo, cache_info, clear_cache
from holysheep_nb.cache.keys import Fingerprinter, fingerprint
from holysheep_nb.cache.store import CachedAnswer, CacheWarning, ResponseCache, default_cache_path

__all__ = [
    "CacheInfo",
    "CacheWarning",
    "CachedAnswer",
    "Fingerprinter",
    "ResponseCache",
    "cache_info",
    "clear_cache",
    "default_cache_path",
    "fingerprint",
]
