"""``batch=True``: the provider's Batch API behind the usual calls, at about half the price.

- ``lines``: one JSONL line per distinct request (``custom_id`` = the cache fingerprint),
  split by the provider's per-batch limits (``BatchLimits``);
- ``client``: the files and batches endpoints over aiohttp (``BatchClient``), and the
  errors (``BatchError``, ``BatchUnavailableError`` for a provider without a Batch API);
- ``records``: the submitted batch ids, kept in the cache file (a kernel restart re-attaches);
- ``results``: output and error lines read into row outcomes, as the online path reads answers;
- ``job``: ``BatchJob`` (submit, wait, collect) and ``BatchHandle`` (collect later);
- ``cli``: ``python -m holysheep_nb batches list|cancel ID``.

The contract is in ``docs/contract.md`` ("Batch").
"""

from holysheep_nb.batch.client import BatchError, BatchUnavailableError
from holysheep_nb.batch.handle import BatchHandle
from holysheep_nb.batch.job import BatchJob
from holysheep_nb.batch.lines import BatchLimits

__all__ = ["BatchError", "BatchHandle", "BatchJob", "BatchLimits", "BatchUnavailableError"]
