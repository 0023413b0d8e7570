"""Reading a batch's output and error files into one ``RowOutcome`` per request.

Each line is read the way the online path reads an answer, with the same functions, so a
batch and an online run cannot disagree about a row: a 2xx body goes through
``answers.parse_answer``, ``answers.missing_content`` and ``rows.answered`` (and, in the job,
the run's reader via ``outcome.read_answer``); an error status through
``provider_errors.parse_error`` and ``retry.judge``, which give the failure kind. A line
the provider never ran (``error`` ``batch_expired`` or ``batch_cancelled``) is ``not_sent``.
Latency is unknown (None): the provider ran the request at a time of its choosing. Lines
follow OpenAI's Batch API reference:
``{"custom_id", "response": {"status_code", "body"}, "error"}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from holysheep_nb.answers import MalformedAnswer, missing_content, parse_answer
from holysheep_nb.errors import redact
from holysheep_nb.outcome import OutcomeKind, RowOutcome
from holysheep_nb.provider_errors import parse_error
from holysheep_nb.retry import judge
from holysheep_nb.rows import answered


def read_lines(data: bytes, key: str | None) -> Iterator[tuple[str, RowOutcome]]:
    """``(custom_id, outcome)`` for every line of an output or error file.

    ``key`` (the API key) is blanked out of every message. A line that is not JSON or has no
    ``custom_id`` cannot be matched to a row and is skipped; its rows end ``not_sent``.
    """
    for text in data.decode("utf-8", errors="replace").splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
            yield line["custom_id"], line_outcome(line, key)


def line_outcome(line: dict[str, Any], key: str | None) -> RowOutcome:
    """The outcome of one output or error line (``row_id`` is its ``custom_id``)."""
    custom_id = line["custom_id"]
    response = line.get("response")
    if not isinstance(response, dict):
        error = line.get("error")
        error = error if isinstance(error, dict) else {}
        code = str(error.get("code") or "no response")
        message = str(error.get("message") or "")
        detail = redact(f"{code}: {message}" if message else code, key)
        return RowOutcome(custom_id, OutcomeKind.NOT_SENT, detail=f"batch {detail}")
    status = response.get("status_code")
    status = status if isinstance(status, int) else 500
    raw = json.dumps(response.get("body"), ensure_ascii=False).encode()
    if not 200 <= status < 300:
        error = parse_error(raw)
        return RowOutcome(
            custom_id,
            judge(status, error).kind,
            status=status,
            detail=redact(error.flagged_reasons if status == 403 else error.message, key),
            attempts=1,
        )
    try:
        answer = parse_answer(raw)
    except MalformedAnswer as exc:
        return RowOutcome(
            custom_id, OutcomeKind.MALFORMED, status=status, detail=str(exc), attempts=1
        )
    missing = missing_content(answer)
    if missing is not None:
        return RowOutcome(
            custom_id, OutcomeKind.MALFORMED, status=status, detail=missing, attempts=1
        )
    return answered(custom_id, answer, None, None, 1)  # read by the batch job's reader
