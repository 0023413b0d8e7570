"""A provider that says "later" (rate-limit 429s) and a server that is down (the same 500 to
every request), on the local server, with the engine's clock virtual: every wait is exact
and no assert depends on real time (issue 26, items 0 and 5)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from holysheep_nb.chat import ChatRequest, build_messages
from holysheep_nb.endpoint import Endpoint
from holysheep_nb.engine import CompletionEngine
from holysheep_nb.errors import HolySheepWarning
from holysheep_nb.outcome import OutcomeKind, RowOutcome, RunStats
from holysheep_nb.policies import EngineSettings, RetryPolicy
from holysheep_nb.report import RunReport
from holysheep_nb.server import Faults, Latency, ServerConfig, start_server
from holysheep_nb.server.local import RunningServer
from tests.fakes import FakeClock, ScriptedJitter


async def run(
    server: RunningServer, clock: FakeClock, prompts: Iterable[str], **retry: float
) -> tuple[list[RowOutcome], RunStats]:
    engine = CompletionEngine(
        Endpoint(base_url=server.base_url, model="m"),
        EngineSettings(max_concurrent=4, retry=RetryPolicy(**retry)),  # type: ignore[arg-type]
        clock=clock,
        jitter=ScriptedJitter([1.0]),
    )
    outcomes: dict[int, RowOutcome] = {}

    def keep(outcome: RowOutcome) -> None:
        outcomes[outcome.row_id] = outcome  # type: ignore[index]

    rows = ((i, ChatRequest(build_messages(p, None), {})) for i, p in enumerate(prompts))
    stats = await engine.run(rows, keep)
    return [outcomes[i] for i in range(len(outcomes))], stats


async def test_a_rate_limit_429_spends_none_of_the_rows_attempts(clock: FakeClock) -> None:
    """Eight 429s for each row, three attempts allowed: every row is answered, on its one
    attempt (a run started on a spent budget used to lose its rows after six quick 429s)."""
    prompts = [f"row {i} {{{{fault:429*8}}}}" for i in range(6)]
    async with await start_server(ServerConfig(retry_after=0.5)) as server:
        outcomes, stats = await run(server, clock, prompts, max_retries=2)
        by_status = server.stats()["by_status"]
    assert [o.error for o in outcomes] == [None] * 6
    assert [o.attempts for o in outcomes] == [1] * 6
    assert by_status == {"429": 48, "200": 6}
    assert stats.rate_limited == 48
    assert stats.stop is None


async def test_only_429s_for_max_retry_after_stop_the_run_with_the_providers_message(
    clock: FakeClock,
) -> None:
    """Nothing but 429s for the run's max_retry_after: one clear stop, no row failed."""
    config = ServerConfig(faults=Faults({"429": 1.0}), retry_after=1.0)
    async with await start_server(config) as server:
        with pytest.warns(HolySheepWarning, match="answered only 429"):
            outcomes, stats = await run(server, clock, [f"row {i}" for i in range(10)],
                                        max_retry_after=20.0)  # fmt: skip
    assert stats.stop is not None
    assert stats.stop.cause.startswith("the provider answered only 429 (rate limited) for 20 s")
    assert "Rate limit reached" in stats.stop.cause  # the provider's own message
    assert "requests_per_minute=" in stats.stop.advice
    assert {o.error for o in outcomes} == {f"not sent: {stats.stop.cause}"}
    assert stats.failed == 10
    assert stats.succeeded == 0
    assert clock.now() - clock.start == pytest.approx(20.0, abs=1.0)


async def test_a_spent_quota_still_stops_the_run_at_once(clock: FakeClock) -> None:
    prompts = ["fine", "broke {{fault:429-quota}}", *[f"row {i}" for i in range(20)]]
    async with await start_server(ServerConfig()) as server:
        with pytest.warns(HolySheepWarning, match="quota exhausted"):
            _outcomes, stats = await run(server, clock, prompts)
        quota_429s = server.stats()["by_status"].get("429")
    assert stats.stop is not None
    assert stats.stop.cause.startswith("quota exhausted")
    assert quota_429s == 1  # never retried
    assert clock.sleeps == []


async def test_a_server_failing_every_request_stops_within_its_first_answers(
    clock: FakeClock,
) -> None:
    """Ollama that cannot load its model answers 500 to everything: the run stops at the
    fourth such answer with the server's message (it used to retry every row 6 times)."""
    config = ServerConfig(provider="ollama", faults=Faults({"500-load": 1.0}))
    async with await start_server(config) as server:
        with pytest.warns(HolySheepWarning, match="HTTP 500 to every request"):
            outcomes, stats = await run(server, clock, [f"row {i}" for i in range(100)])
        sent = server.stats()["requests"]
    assert stats.stop is not None
    assert "model" in stats.stop.cause  # Ollama's own words about the model it cannot load
    assert "{" not in stats.stop.cause  # its message, not raw JSON
    assert sent <= 8  # the first answers of 4 in flight, and their retries, at most
    assert stats.succeeded == 0
    assert len(outcomes) == 100


async def test_one_row_failing_with_500s_does_not_stop_a_working_run(clock: FakeClock) -> None:
    prompts = ["broken {{fault:500*99}}", *[f"row {i}" for i in range(11)]]
    async with await start_server(ServerConfig()) as server:
        outcomes, stats = await run(server, clock, prompts)
    assert stats.stop is None
    assert outcomes[0].error is not None
    assert outcomes[0].error.startswith("HTTP 500 after 6")
    assert all(o.error is None for o in outcomes[1:])


def paced_report(requests: int, limited: int, held: float) -> RunReport:
    stats = RunStats(requests_sent=requests, rate_limited=limited, paused_seconds=held)
    for i in range(100):
        stats.record(RowOutcome(i, OutcomeKind.OK, "ok", latency=1.0))
    return RunReport.from_run(stats, latency=np.ones(100), elapsed=60.0)


@pytest.mark.parametrize(
    ("requests", "limited", "held", "advice"),
    [
        (100, 0, 0.0, None),  # no 429
        (1000, 99, 0.5, None),  # 9.9% of requests, half a second held: nothing to do
        (1000, 100, 0.0, "pass requests_per_minute=900 (what the provider took)"),  # 10%
        (500, 5, 22.5, "pass requests_per_minute=495 (what the provider took)"),  # held
    ],
)
def test_the_report_says_to_pace_the_run_when_429s_cost_it_time(
    requests: int, limited: int, held: float, advice: str | None
) -> None:
    report = paced_report(requests, limited, held)
    if advice is None:
        assert report.pace_advice is None
        assert "requests_per_minute=" not in str(report)
    else:
        assert report.pace_advice is not None
        assert advice in report.pace_advice
        todo = str(report).split("\n429s cost time\n")[1]
        assert todo.split() == ["to", "do", *report.pace_advice.split()]


async def test_the_first_burst_meets_a_cap_of_eight_with_few_requests_over_it(
    clock: FakeClock,
) -> None:
    """A provider answering 8 requests at once and 429 with no headers beyond: the run
    slow-starts at 4 and grows, so only the requests over the cap while the window grew
    are refused (sent all 32 wide at once, 24 of the first burst were), and each refused row
    goes again without a wait or an attempt spent."""
    config = ServerConfig(max_in_flight=8, latency=Latency.fixed(0.05))
    async with await start_server(config) as server:
        engine = CompletionEngine(
            Endpoint(base_url=server.base_url, model="m"),
            EngineSettings(max_concurrent=32),
            clock=clock,
        )
        outcomes: list[RowOutcome] = []
        rows = ((i, ChatRequest(build_messages(f"row {i}", None), {})) for i in range(64))
        stats = await engine.run(rows, outcomes.append)
        refused = server.stats()["by_status"].get("429", 0)
    assert [o.error for o in outcomes] == [None] * 64
    assert {o.attempts for o in outcomes} == {1}
    assert 0 < refused <= 12, refused
    assert clock.sleeps == []  # a cap's refusal waits for room in the window, not a backoff
    assert stats.concurrency is not None
    assert stats.concurrency.limit <= 9


def test_a_run_starting_on_a_filled_window_paces_at_the_rate_an_earlier_run_learned(
    clock: FakeClock,
) -> None:
    """The first run of a process sees the window's length (a fresh window's reset); a run
    started right after sees only short resets, and used to take the stated 600 for a rate
    far above 600 a minute (12.8% of its answers 429 in benchmarks/spent_budget.py)."""
    from holysheep_nb.admission import NullSharedLimit
    from holysheep_nb.holds import BudgetHolds
    from holysheep_nb.policies import RateLimits
    from holysheep_nb.ratelimit import Throttle

    def holds(url: str) -> tuple[BudgetHolds, Throttle]:
        throttle = Throttle(RateLimits(), clock)
        return BudgetHolds(throttle, NullSharedLimit(), RunStats(), clock, 120.0, url), throttle

    url = "http://127.0.0.1:1/v1/chat/completions"
    first, _ = holds(url)
    first.observe({"x-ratelimit-limit-requests": "600", "x-ratelimit-reset-requests": "60s",
                   "x-ratelimit-remaining-requests": "599"})  # fmt: skip
    second, _ = holds(url)
    spent = {"x-ratelimit-limit-requests": "600", "x-ratelimit-reset-requests": "0.1s",
             "x-ratelimit-remaining-requests": "0"}  # fmt: skip
    assert second.observe(spent)
    assert second.stated.per_minute(spent) == pytest.approx(600.0)
    elsewhere, _ = holds("http://127.0.0.1:2/v1/chat/completions")
    assert elsewhere.stated.window == 0.0  # another endpoint learned nothing
