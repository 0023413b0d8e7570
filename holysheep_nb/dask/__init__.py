"""The pandas calls on a Dask DataFrame, with one provider limit for the whole cluster.

``import holysheep_nb.dask`` registers ``ddf.holysheep`` on Dask DataFrames and Series::

    import dask.dataframe as dd
    from distributed import Client
    import holysheep_nb.dask

    client = Client()                                   # or the cluster's address
    ddf = dd.read_parquet("reviews/*.parquet")
    out = ddf.holysheep.label("text", labels=labels, requests_per_minute=5000)
    with holysheep_nb.dask.progress(out):               # one bar for the whole run
        out.to_parquet("labelled/")                     # lazy until here
    out.holysheep.report()                              # one report, per-worker counts

``complete``, ``label`` and ``extract`` return a lazy Dask DataFrame with the columns and
dtypes of the pandas path (its meta is the pandas path run on the empty meta); each partition
is run by the pandas path on a worker (``holysheep_nb.dask.worker.run_partition``).

How the limit is shared. A scheduler plugin (``holysheep_nb.dask.plugin``, registered by the
first partition that starts) keeps one ``RunLimits`` per call on the scheduler's event loop.
Before every send, the engine of every partition asks it, in one round trip, for a slot in
flight (``max_concurrent`` for the whole cluster, a lease freed when the send is over, when
its worker leaves the cluster, or ``timeout`` + 10 s after its send time at the latest) and a
send time (the ``requests_per_minute`` / ``tokens_per_minute`` budgets as shared token
buckets, and any hold for a spent budget that one worker saw). A stop (authentication,
quota: docs/contract.md, "Failures that stop the run") seen by one worker is sent to the
scheduler, and every later ask of every worker is answered with it: nothing more is sent
anywhere. Releases, holds, stops and token corrections are sent without waiting.

What one round trip costs: measured by ``benchmarks/run.py --only dask`` on a LocalCluster
(loopback TCP, 2 shared cores), one ``admit`` from a worker's run to the scheduler and back
takes 0.3 to 0.55 ms (median; p90 0.7 ms). A send waits for it once, so it matters only
against very fast answers: 2,000 rows at 20 ms latency took 1.25 times as long as the
pandas path on the same rows (2 workers, 4 partitions, graph and partition start-up
included). Across machines it is one network round trip to the scheduler.

Resume. Dask runs a lost worker's partition again elsewhere. Workers write every answer to
the SQLite cache as it arrives (write-through, not once a second as the pandas path does),
so the retried partition finds every answer the lost worker received and pays for none of
them again. Workers on one machine share the cache file (WAL mode; the default path, or
``cache="..."`` / ``$HOLYSHEEP_CACHE_DIR``). Several machines cannot share one SQLite file:
WAL needs every process on one host, and SQLite's locks are not safe on network file systems
(NFS, SMB). So each machine keeps its own file on local disk, and a partition that Dask
retries on another machine pays again for what the lost worker had received (one
partition's answers at most: smaller partitions bound it). A re-run on the same cluster
pays only for rows whose partition lands on a machine that has not answered them.

Progress and report. Workers publish rows done per partition to the scheduler every 0.5 s
and each partition's report when it ends; ``progress(out)`` draws them on one bar on the
client while a block computes ``out``, and ``out.holysheep.report()`` merges the reports
(``ClusterReport``: the pandas report's figures over every partition, plus per-worker counts).

Needs a ``distributed`` client (``pip install 'holysheep_nb[dask]'``); the scheduler and
the workers must import ``holysheep_nb``.
"""

from holysheep_nb.dask import accessor as _accessor  # registers ddf.holysheep
from holysheep_nb.dask.progress import progress
from holysheep_nb.dask.report import ClusterReport, WorkerShare, fetch_report

__all__ = ["ClusterReport", "WorkerShare", "fetch_report", "progress"]

del _accessor
