"""The Batch API's enqueued-token limit (issue 26, item 6), on the local server's
``batch_token_limit``: a call split into parts runs them as the limit allows, resubmitting a
part refused with ``token_limit_exceeded`` when another completes, shows the waiting parts
on the bar, and does the same after a kernel restart (re-attach). Polls on a fake clock."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from holysheep_nb.accessor import _job
from holysheep_nb.batch import BatchJob, BatchLimits
from holysheep_nb.batch.capacity import over_token_limit
from holysheep_nb.batch.lines import split
from holysheep_nb.labels import LabelSet
from holysheep_nb.server import LocalServer, ServerConfig
from holysheep_nb.server.batches import _input_tokens
from tests.fakes import FakeClock

LABELS = ["positive", "negative", "neutral"]
PARTS = BatchLimits(max_requests=4)  # 12 rows: three parts of four requests


def rows() -> pd.DataFrame:
    return pd.DataFrame({"text": [f"review {i}: it works, mostly" for i in range(12)]})


def batch_job(df: pd.DataFrame, clock: FakeClock, **options: Any) -> BatchJob:
    job = _job(df, "text", None, {"progress": False, **options}, LabelSet(LABELS))
    return BatchJob(
        job.source, job.options, answer_format=job.answer_format, limits=PARTS, clock=clock
    )


def one_part_fits(df: pd.DataFrame, clock: FakeClock, **options: Any) -> int:
    """An enqueued-token limit that holds the biggest part, and never two."""
    plan = batch_job(df, clock, **options)._prepare()
    tokens = [
        _input_tokens([json.loads(line) for line in part.splitlines()])[1]
        for part in split(plan.lines.values(), PARTS)
    ]
    assert len(tokens) == 3
    return max(tokens) + min(tokens) - 1


def test_parts_over_the_enqueued_token_limit_wait_and_are_resubmitted(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.delenv("TQDM_DISABLE")
    df, cache = rows(), str(tmp_path / "cache.sqlite")
    with LocalServer(ServerConfig(batch_polls=2)) as server:
        limit = one_part_fits(df, clock, base_url=server.base_url, cache=cache)
        server.update(batch_token_limit=limit)
        job = batch_job(df, clock, base_url=server.base_url, cache=cache, progress=True)
        out = asyncio.run(job.run())
        created = server.stats()["batches"]["created"]
    assert out["error"].isna().all(), out["error"].dropna().tolist()[:2]
    assert out["label"].notna().all()
    assert len(out.holysheep.report().batch_ids) == 3
    # Parts 2 and 3 refused at first; when part 1 completed, part 2 went again and part 3
    # was refused again (part 2 took the room); when part 2 completed, part 3 went.
    assert created == 6
    assert "waiting=1 part" in capsys.readouterr().err  # the bar said so


def test_a_restart_reattaches_and_goes_on_resubmitting_the_waiting_parts(
    tmp_path: Path, clock: FakeClock
) -> None:
    df, cache = rows(), str(tmp_path / "cache.sqlite")
    with LocalServer(ServerConfig(batch_polls=2)) as server:
        options: dict[str, Any] = {"base_url": server.base_url, "cache": cache}
        server.update(batch_token_limit=one_part_fits(df, clock, **options))
        handle = asyncio.run(batch_job(df, clock, **options).submit())
        refused = [b for b in map(server_batch(server), handle.batch_ids) if over_token_limit(b)]
        assert len(refused) == 2
        # The kernel restarts: the same cell runs again with a new job, and re-attaches.
        out = asyncio.run(batch_job(df, clock, **options).run())
        stats = server.stats()["batches"]
    assert out["error"].isna().all(), out["error"].dropna().tolist()[:2]
    assert stats["uploads"] == 3  # nothing uploaded twice
    assert stats["created"] == 6  # as above: 3, then part 2, part 3 refused, part 3


def server_batch(server: LocalServer) -> Any:
    import urllib.request

    def get(batch_id: str) -> dict[str, Any]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{server.base_url}/batches/{batch_id}") as response:
            found: dict[str, Any] = json.loads(response.read())
            return found

    return get
