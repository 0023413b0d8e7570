"""Row planning and the result sink: the parts the online run and the batch share.

The planner says what every row needs (known outcome, or a request, with its leader when it
repeats an earlier row) by one rule on both paths; the batch plans exactly what the online
dry run counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from holysheep_nb.accessor import _job
from holysheep_nb.batch import BatchJob
from holysheep_nb.cache import CachedAnswer, Fingerprinter, ResponseCache
from holysheep_nb.chat import build_messages
from holysheep_nb.outcome import OutcomeKind
from holysheep_nb.planning import Ask, Known, RowPlanner

TEXTS: list[str | None] = ["a", "b", "a", None, "c", "a", "b", "  "]


def job(texts: list[str | None], **options: Any) -> Any:
    options.setdefault("progress", False)
    options.setdefault("base_url", "http://127.0.0.1:9/v1")
    options.setdefault("api_key", "sk-test")
    return _job(pd.DataFrame({"text": texts}), "text", None, options)


def walk(texts: list[str | None], **options: Any) -> list[Any]:
    built = job(texts, **options)
    return list(RowPlanner(built.source, built.options, None, fingerprint=True).walk())


def summary(items: list[Known | Ask]) -> list[tuple[int, str]]:
    out = []
    for item in items:
        if isinstance(item, Known):
            out.append((item.position, item.outcome.kind.value))
        else:
            out.append((item.position, "ask" if item.leader is None else f"repeat {item.leader}"))
    return out


def test_repeats_are_found_by_prompt_across_chunks() -> None:
    items = walk(TEXTS, cache=False, chunk_size=2)
    missing = OutcomeKind.MISSING_PROMPT.value
    assert sorted(summary(items)) == [
        (0, "ask"), (1, "ask"), (2, "repeat 0"), (3, missing), (4, "ask"),
        (5, "repeat 0"), (6, "repeat 1"), (7, missing),
    ]  # fmt: skip
    keys = {item.position: item.key for item in items if isinstance(item, Ask)}
    assert keys[0] == keys[2] == keys[5] != keys[1] == keys[6]


def test_a_cache_hit_is_no_leader_its_repeats_are_hits_too(tmp_path: Path) -> None:
    built = job(["a", "b", "a"], cache=str(tmp_path / "c.sqlite"))
    options = built.options
    endpoint = options.endpoint
    key_of = Fingerprinter(base_url=endpoint.base_url, model=endpoint.model, params=options.params)
    cache = ResponseCache.open(str(tmp_path / "c.sqlite"))
    assert cache is not None
    cache.put(key_of(build_messages("a", options.system)), CachedAnswer("stored"))
    items = list(RowPlanner(built.source, options, cache).walk())
    cache.close()
    assert summary(items) == [(0, "ok"), (1, "ask"), (2, "ok")]
    assert [i.outcome.cached for i in items if isinstance(i, Known)] == [True, True]


def test_a_forgotten_leader_makes_its_next_repeat_a_new_request() -> None:
    built = job(["a", "a", "a"], cache=False)
    planner = RowPlanner(built.source, built.options, None)
    rows = planner.walk()
    first = next(rows)
    assert isinstance(first, Ask)
    assert first.leader is None
    second = next(rows)
    assert isinstance(second, Ask)
    assert second.leader == 0
    planner.forget(first)  # its answer was not worth keeping
    third = next(rows)
    assert isinstance(third, Ask)
    assert third.leader is None


def test_the_batch_plans_what_the_online_dry_run_counts(tmp_path: Path) -> None:
    texts = [f"review {i % 7}" if i % 11 else None for i in range(60)]
    built = job(texts, cache=str(tmp_path / "c.sqlite"), chunk_size=8)
    dry = built.plan()
    plan = BatchJob(built.source, built.options)._prepare()
    assert dry.to_send == len(plan.lines) == 7
    assert dry.deduplicated == sum(len(p) - 1 for p in plan.positions.values())
    assert dry.missing == len(plan.known) == sum(t is None for t in texts)
    assert dry.to_send + dry.deduplicated + dry.missing == dry.rows == 60
