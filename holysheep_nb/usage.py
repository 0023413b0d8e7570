"""Tokens and cost per model: one line of a run report for each model a result used.

A plain run used one model; an escalated result (``holysheep_nb.escalate``) used several,
and its report adds them up here, model by model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class ModelUsage(NamedTuple):
    """What one model took: rows asked of it (sent, or answered from its cache or by a
    repeat; whatever came back), tokens in and out, and the cost in USD (None when no prices
    were given). The report's line says "N rows": neither "answered" (a 404 answers
    nothing) nor "sent" (a cache hit is not)."""

    model: str
    rows: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None


def add_up(usages: Iterable[ModelUsage]) -> tuple[ModelUsage, ...]:
    """One line per model, in order of first use: rows, tokens and cost added (a cost is
    None when any part of it was)."""
    lines: dict[str, ModelUsage] = {}
    for usage in usages:
        seen = lines.get(usage.model)
        if seen is None:
            lines[usage.model] = usage
            continue
        cost = None if seen.cost is None or usage.cost is None else seen.cost + usage.cost
        lines[usage.model] = ModelUsage(
            usage.model,
            seen.rows + usage.rows,
            seen.prompt_tokens + usage.prompt_tokens,
            seen.completion_tokens + usage.completion_tokens,
            cost,
        )
    return tuple(lines.values())


def cost_text(cost: float | None) -> str:
    """``$1.23`` or ``$0.0012``; ``n/a`` without prices."""
    if cost is None:
        return "n/a"
    return f"${cost:,.2f}" if cost >= 1 else f"${cost:.4f}"
