"""Nothing is lost or mixed up under faults, and a killed run resumes without paying twice.

The soak sends every row of a large frame through the embedded server with about 10%
of requests failing in every way the server can fail them; the kill test SIGKILLs a labelling
run in a subprocess at random points and resumes it from the same cache file.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from holysheep_nb.endpoint import Endpoint
from holysheep_nb.engine import FREE_RESENDS
from holysheep_nb.job import CompletionJob
from holysheep_nb.job_options import JobOptions
from holysheep_nb.policies import EngineSettings, RetryPolicy
from holysheep_nb.prompts import PromptSource
from holysheep_nb.server import (
    Faults,
    Latency,
    LocalServer,
    ServerConfig,
    ServerProcess,
    parse_marker,
    prompt_digest,
)
from tests.helpers_reliability import bounded

# --- the soak ---------------------------------------------------------------------------------

#: Full size with HOLYSHEEP_SOAK_ROWS=50000; CI runs the same test on 3,000 rows in a few seconds.
SOAK_ROWS = int(os.environ.get("HOLYSHEEP_SOAK_ROWS") or 3000)
SOAK_SEED = 20260408
MAX_RETRIES = 5  # 6 attempts: a row hit by 6% random faults exhausts them with p ~ 5e-8
#: Seconds per attempt. The server's hangs (60 s) always pass it; its latency (10 ms at most)
#: must never, also when a busy machine makes an answer late: at 0.5 s, a loaded run timed
#: out answers the plan meant to be "badjson".
TIMEOUT = 5.0

#: Rate-limit 429s: they spend no attempt, so a row they meet MAX_RETRIES + 1 times (or any
#: number of times within the run's max_retry_after) is answered all the same.
RATE_LIMITS = ("429", "429-ms", "429-date")
#: Retryable faults and the start of the error a row gets when one of them persists.
RETRYABLE = {
    "500": "HTTP 500 after 6 attempts: ",
    "502": "HTTP 502 after 6 attempts: ",
    "503": "HTTP 503 after 6 attempts: ",
    "504": "HTTP 504 after 6 attempts: ",
    "408": "HTTP 408 after 6 attempts: ",
    "drop": "connection error after 6 attempts: ",
    "hang": "timeout after 6 attempts",
    "html": "malformed response after 6 attempts: not JSON: HTML page",
    "badjson": "malformed response after 6 attempts: not JSON",
    "nochoices": "malformed response after 6 attempts: no choices",
}
#: Not retried: the row fails on its first attempt.
PERMANENT = {"400": "HTTP 400: ", "501": "HTTP 501: "}
#: Random faults on every request of an unmarked row: 6% in all.
RATES = {
    "429": 0.008, "429-ms": 0.008, "500": 0.006, "502": 0.006, "503": 0.006, "504": 0.006,
    "408": 0.004, "drop": 0.006, "hang": 0.002, "html": 0.002, "badjson": 0.003,
    "nochoices": 0.003,
}  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """What the soak expects of one marked row."""

    kind: str
    attempts: int  # attempts the row must take, exactly (or down to attempts - slack)
    fails: bool
    #: A dropped connection that had come from the pool may be resent without spending an
    #: attempt (the server may never have read it), up to FREE_RESENDS times per row.
    slack: int = 0
    free: int = 0  # rate-limit 429s the row meets, which spend no attempt


def soak_rows(rows: int, seed: int) -> tuple[list[str], dict[int, Plan]]:
    """Unique prompts; some carry ``{{fault:KIND*N}}`` markers with a known outcome.

    - persistent: every retryable kind at least once, failing more than ``MAX_RETRIES`` times,
      plus 400 / 501 (never retried): these rows, and only these, must end with an error;
    - transient: ~1.5% of rows fail 1..MAX_RETRIES times, then must succeed on the next attempt,
      including two 429s with an HTTP-date Retry-After (whole seconds, so only two);
    - every other row meets the server's random faults (``RATES``) on every attempt.
    """
    rng = random.Random(seed)
    words = ["great kettle", "awful lamp", "ok chair", "ดีมาก", "😍 love it", "壊れた"]
    texts = [f"row {i}: {rng.choice(words)} #{rng.randrange(10**9)}" for i in range(rows)]
    plans: dict[int, Plan] = {}
    persistent = [*RETRYABLE, "429", "429-ms"] * max(1, rows // 2000) + [*PERMANENT] * max(
        1, rows // 3000
    )
    transient = ["429-date", "429-date"] + [
        rng.choice([*RETRYABLE, "429", "429-ms"]) for _ in range(max(10, rows * 15 // 1000) - 2)
    ]
    positions = rng.sample(range(rows), k=len(persistent) + len(transient))
    for kind in persistent:
        position = positions.pop()
        if kind in PERMANENT:
            texts[position] += f" {{{{fault:{kind}}}}}"
            plans[position] = Plan(kind, 1, fails=True)
        elif kind in RATE_LIMITS:
            texts[position] += f" {{{{fault:{kind}*{MAX_RETRIES + 1}}}}}"
            plans[position] = Plan(kind, 1, fails=False, free=MAX_RETRIES + 1)
        else:
            # Enough drops to outlast the free resends too: the row fails all the same.
            times = MAX_RETRIES + 1 + (FREE_RESENDS if kind == "drop" else 0)
            texts[position] += f" {{{{fault:{kind}*{times}}}}}"
            plans[position] = Plan(kind, MAX_RETRIES + 1, fails=True)
    for kind in transient:
        position = positions.pop()
        times = 1 if kind == "429-date" else rng.randint(1, MAX_RETRIES)
        texts[position] += f" {{{{fault:{kind}*{times}}}}}"
        slack = min(times, FREE_RESENDS) if kind == "drop" else 0
        if kind in RATE_LIMITS:
            plans[position] = Plan(kind, 1, fails=False, free=times)
        else:
            plans[position] = Plan(kind, times + 1, fails=False, slack=slack)
    return texts, plans


def expected_answer(prompt: str) -> str:
    """What the echo+digest server answers to ``prompt``, and to no other prompt."""
    return f"{parse_marker(prompt)[0]} [sha:{prompt_digest(prompt)}]"


async def soak(base_url: str, frame: pd.DataFrame, cache: Path) -> pd.DataFrame:
    # The accessor's options have no backoff knobs, so the job is built as the accessor builds
    # it, with a fast retry policy: a 5,000-row soak must not spend its time in 0.5 s backoffs.
    options = JobOptions(
        endpoint=Endpoint(base_url=base_url),
        settings=EngineSettings(
            max_concurrent=64,
            timeout=TIMEOUT,
            retry=RetryPolicy(max_retries=MAX_RETRIES, initial_wait=0.01, max_wait=0.05),
        ),
        progress=False,
        cache=str(cache),
    )
    job = CompletionJob(
        PromptSource(frame, "text", None), options, jitter=random.Random(SOAK_SEED).random
    )
    # A hang guard: a row that hangs at every attempt takes 6 x TIMEOUT, the rest seconds.
    return await bounded(job.run(), 600 + SOAK_ROWS / 20, f"the {SOAK_ROWS}-row soak")


@pytest.mark.slow
async def test_soak_with_mixed_faults_loses_and_mixes_nothing(tmp_path: Path) -> None:
    texts, plans = soak_rows(SOAK_ROWS, SOAK_SEED)
    assert len(set(texts)) == SOAK_ROWS
    frame = pd.DataFrame(
        {"text": texts, "n": range(SOAK_ROWS)},
        index=pd.Index([f"id-{i % (SOAK_ROWS // 2)}" for i in range(SOAK_ROWS)], name="id"),
    )  # duplicate labels on purpose: rows are told apart by position, never by label
    config = ServerConfig(
        echo=True, digest=True, faults=Faults(RATES), latency=Latency.uniform(0.0, 0.01),
        retry_after=0.02, hang_seconds=60.0, seed=SOAK_SEED,
    )  # fmt: skip
    cache = tmp_path / "soak.sqlite"
    with ServerProcess(config) as server:
        out = await soak(server.base_url, frame, cache)
        stats = server.stats()
        again = await soak(server.base_url, frame, cache)
        sent_again = server.stats()["requests"] - stats["requests"]

    # Every row exactly once, in order, under its own label.
    assert len(out) == SOAK_ROWS
    assert out.index.equals(frame.index)
    assert out["text"].tolist() == texts
    assert out["n"].tolist() == list(range(SOAK_ROWS))
    answered = out["response"].notna()
    assert (answered ^ out["error"].notna()).all(), "exactly one of response / error per row"

    # Every answer is the answer to its own prompt.
    mixed = [
        i
        for i in range(SOAK_ROWS)
        if answered.iat[i] and out["response"].iat[i] != expected_answer(texts[i])
    ]
    assert mixed == [], f"{len(mixed)} rows got another row's answer, e.g. {mixed[:5]}"

    # Errors exactly on the rows whose faults outlived the retries, with the right cause.
    failed = set(out["error"].notna().to_numpy().nonzero()[0].tolist())
    must_fail = {i for i, plan in plans.items() if plan.fails}
    assert failed == must_fail, (
        f"unexpected errors: {[(i, out['error'].iat[i]) for i in sorted(failed - must_fail)][:5]}; "
        f"missing errors: {sorted(must_fail - failed)[:5]}"
    )
    for i in must_fail:
        expected = {**RETRYABLE, **PERMANENT}[plans[i].kind]
        assert str(out["error"].iat[i]).startswith(expected), (plans[i], out["error"].iat[i])
    attempts = out["attempts"].to_numpy()
    wrong = [
        (i, plan, int(attempts[i]))
        for i, plan in plans.items()
        if not plan.attempts - plan.slack <= attempts[i] <= plan.attempts
    ]
    assert wrong == [], f"rows that took an unexpected number of attempts: {wrong[:5]}"

    # The server saw exactly the attempts the rows account for, plus the 429s (which spend
    # none), and each failed attempt was one injected fault (no spurious timeout, no request
    # lost on the way).
    report = out.holysheep.report()
    total_attempts = int(attempts.sum())
    free = report.rate_limited
    assert stats["requests"] == total_attempts + report.resent + free == report.requests_sent
    assert report.resent <= stats["faults"].get("drop", 0)  # only a dropped request is resent
    assert report.retries == total_attempts - SOAK_ROWS + free
    faults = Counter(stats["faults"])
    assert free == sum(faults[kind] for kind in RATE_LIMITS)
    assert sum(faults.values()) == total_attempts + report.resent + free - int(answered.sum())
    marked: Counter[str] = Counter()
    for plan in plans.values():
        marked[plan.kind] += plan.attempts - (0 if plan.fails else 1) + plan.free
    for kind, count in marked.items():
        assert faults[kind] >= count, (kind, faults[kind], count)
    assert set(faults) == set(RETRYABLE) | set(PERMANENT) | set(RATE_LIMITS)
    share = sum(faults.values()) / stats["requests"]
    assert 0.07 <= share <= 0.14, f"faults were {share:.1%} of requests, meant ~10%"
    print(
        f"soak: {SOAK_ROWS} rows, {stats['requests']} requests, {sum(faults.values())} faults "
        f"injected ({share:.1%}), {report.retries} retries, {len(must_fail)} rows failed as "
        f"planned, lost 0, mixed {len(mixed)}, {report.elapsed:.1f} s"
    )

    # A re-run is served from the cache but for the failed rows, which are sent once more
    # (the server remembers their markers are spent, so all but the 400/501 rows succeed).
    assert sent_again == len(must_fail)
    assert int(again["cached"].sum()) == SOAK_ROWS - len(must_fail)
    still_failing = {i for i in must_fail if plans[i].kind in PERMANENT}
    assert set(again["error"].notna().to_numpy().nonzero()[0].tolist()) == still_failing
    ok = again["response"].notna().to_numpy()
    assert [again["response"].iat[i] for i in range(SOAK_ROWS) if ok[i]] == [
        expected_answer(texts[i]) for i in range(SOAK_ROWS) if ok[i]
    ]


# --- kill -9 and resume -----------------------------------------------------------------------

KILL_ROWS = 2000
KILL_CONCURRENCY = 8  # with 10 ms per answer: at most 800 rows a second, a ~2.5 s run
#: Seconds the parent may wait for the child to get where it is killed: a hang guard.
HANG_GUARD = 180.0
HANG = " {{fault:hang*1}}"

CHILD = textwrap.dedent(
    """
    import sys
    import pandas as pd
    import holysheep_nb  # noqa: F401 - registers the accessor

    base_url, cache, texts, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    texts = open(texts, encoding="utf-8").read().splitlines()
    frame = pd.DataFrame({"text": texts})
    # timeout: the hanging rows hold every slot until the parent kills this process.
    frame.holysheep.complete("text", base_url=base_url, cache=cache,
                             max_concurrent=concurrency, progress=False, timeout=600)
    print("finished", flush=True)
    """
)


def stored_answers(cache: Path) -> int:
    if not cache.exists():
        return 0
    with closing(sqlite3.connect(cache, timeout=10)) as conn:
        try:
            (count,) = conn.execute("SELECT COUNT(*) FROM answers").fetchone()
        except sqlite3.OperationalError:  # the child has not made the table yet
            return 0
    return int(count)


def _kill_texts(hang_from: int) -> list[str]:
    """The rows; ``KILL_CONCURRENCY`` of them from ``hang_from`` hang at their first attempt,
    so the child, all its slots taken by them, stops there (until killed)."""
    hanging = range(hang_from, hang_from + KILL_CONCURRENCY)
    return [f"resume row {i}" + (HANG if i in hanging else "") for i in range(KILL_ROWS)]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_then_resume_pays_only_for_what_was_not_stored(seed: int, tmp_path: Path) -> None:
    """Killed with every answer it received flushed, a run resumed from the cache pays only
    for the rest. Where the kill comes is fixed by the rows (they hang there), and when is
    fixed by the file: once it holds every answer the server gave, so no real-clock luck.
    That answers older than the flush interval survive a kill at any moment is
    ``test_cache.test_answers_older_than_the_flush_interval_survive_sigkill``."""
    hang_from = random.Random(seed).randrange(KILL_ROWS * 2 // 5, KILL_ROWS * 9 // 10)
    texts = _kill_texts(hang_from)
    rows = tmp_path / "rows.txt"
    rows.write_text("\n".join(texts) + "\n", encoding="utf-8")
    cache = tmp_path / "resume.sqlite"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    with LocalServer(ServerConfig(echo=True, latency=Latency.fixed(0.01))) as server:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, server.base_url, str(cache), str(rows),
             str(KILL_CONCURRENCY)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + HANG_GUARD
            while True:
                assert child.poll() is None, f"the run ended before the kill: {child.communicate()}"
                assert time.monotonic() < deadline, "the run never got to the hanging rows"
                stats = server.stats()
                # Every hanging row is in flight (so nothing more can go), and the file holds
                # every other answer the server gave.
                if (
                    stats["faults"].get("hang") == KILL_CONCURRENCY
                    and stored_answers(cache) == int(stats["requests"]) - KILL_CONCURRENCY
                ):
                    break
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
            child.wait(HANG_GUARD)
        finally:
            if child.poll() is None:
                child.kill()
            child.communicate(timeout=HANG_GUARD)
        assert child.returncode == -signal.SIGKILL

        sent_first = int(server.stats()["requests"])
        stored = stored_answers(cache)
        assert stored == sent_first - KILL_CONCURRENCY
        assert stored >= hang_from  # every row before the hanging ones was answered

        frame = pd.DataFrame({"text": texts})
        out = frame.holysheep.complete(
            "text", base_url=server.base_url, cache=str(cache), max_concurrent=32,
            progress=False,
        )  # fmt: skip
        sent_second = int(server.stats()["requests"]) - sent_first

    # Every row, its own answer (the hanging rows' second attempts are answered).
    assert out["response"].tolist() == [parse_marker(text)[0] for text in texts]
    assert out["error"].isna().all()
    assert int(out["cached"].sum()) == stored
    assert sent_second == KILL_ROWS - stored  # only what the file did not hold
