"""``python -m holysheep_nb batches list|cancel ID``: the batches this machine submitted.

``list`` shows the batches kept in the cache file (newest first) and asks the provider for
the status of those not collected yet; ``cancel ID`` asks the provider to cancel one (the
requests it already ran are still charged, and collected by running the cell again). The
key comes from ``HOLYSHEEP_API_KEY`` (not needed for a loopback base URL).
"""

from __future__ import annotations

import asyncio
import time

from holysheep_nb.batch.client import BatchClient, BatchError
from holysheep_nb.batch.records import BatchRecord, BatchRecords, records_path
from holysheep_nb.cache.store import default_cache_path
from holysheep_nb.cli_parser import Parser
from holysheep_nb.clock import SystemClock
from holysheep_nb.endpoint import Endpoint
from holysheep_nb.errors import ConfigError

#: Seconds to connect and between reads, for each call to the provider.
TIMEOUT = 30.0


def main(argv: list[str]) -> int:
    """Run ``batches list|cancel ID [--cache PATH]``; return the process exit code."""
    parser = Parser(
        prog="python -m holysheep_nb batches",
        description="List or cancel the provider batches submitted with batch=True.",
    )
    parser.add_argument("action", choices=["list", "cancel"])
    parser.add_argument("batch_id", nargs="?", help="the batch to cancel")
    parser.add_argument("--cache", help=f"cache file (default: {default_cache_path()})")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on bad arguments
        return exc.code if isinstance(exc.code, int) else 0
    with BatchRecords(records_path(args.cache or True)) as store:
        records = store.all()
    if args.action == "list":
        return asyncio.run(_list(records))
    if not args.batch_id:
        parser.print_usage()
        print("cancel needs the batch id: python -m holysheep_nb batches cancel BATCH_ID")
        return 2
    chosen = [r for r in records if r.batch_id == args.batch_id]
    if not chosen:
        print(f"no batch {args.batch_id!r} in {records_path(args.cache or True)}")
        return 1
    return asyncio.run(_cancel(chosen[0]))


def _client(record: BatchRecord) -> BatchClient:
    endpoint = Endpoint.resolve(base_url=record.base_url, model=record.model)
    return BatchClient(endpoint, timeout=TIMEOUT, clock=SystemClock())


async def _list(records: list[BatchRecord]) -> int:
    if not records:
        print("no batches submitted from this cache file")
        return 0
    for record in records:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.created))
        part = f" part {record.part + 1}/{record.parts}" if record.parts > 1 else ""
        if record.collected is not None:
            state = "collected"
        else:
            try:
                async with _client(record) as client:
                    batch = await client.retrieve(record.batch_id)
                counts = batch.get("request_counts") or {}
                state = (
                    f"{batch.get('status')} ({counts.get('completed', 0)} completed, "
                    f"{counts.get('failed', 0)} failed of {counts.get('total', 0)})"
                )
            except (BatchError, ConfigError) as exc:
                state = f"status unknown: {exc}"
        print(
            f"{record.batch_id}  {when}  {record.requests:,} requests{part}  "
            f"{record.model} at {record.base_url}  {state}"
        )
    return 0


async def _cancel(record: BatchRecord) -> int:
    try:
        async with _client(record) as client:
            batch = await client.cancel(record.batch_id)
    except (BatchError, ConfigError) as exc:
        print(f"could not cancel {record.batch_id}: {exc}")
        return 1
    print(
        f"{record.batch_id}: {batch.get('status')}; requests already run are charged, and "
        "collected by running the cell again"
    )
    return 0
