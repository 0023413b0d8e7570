"""The local server's Batch API: ``/v1/batches`` over the files of ``/v1/files``.

Shapes follow OpenAI's Batch API reference: a batch is created from an uploaded JSONL file
(one ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`` a line)
with ``endpoint`` ``/v1/chat/completions`` and ``completion_window`` ``24h``; it moves
through ``in_progress`` to ``completed`` (or ``failed``, ``expired``, ``cancelling`` /
``cancelled``), counting ``request_counts`` ``{total, completed, failed}``. When it ends it
has an output file (a line per request answered 200: ``{"id", "custom_id", "response":
{"status_code", "request_id", "body"}, "error": null}``) and an error file (requests answered
with an error status, and requests never run: ``"response": null, "error": {"code":
"batch_expired" | "batch_cancelled", "message"}``).

Time is the server's to set (``ServerConfig``): a batch is done once it has been retrieved
``batch_polls`` times and ``batch_seconds`` have passed since it was created (both 0 by
default: done at the first retrieve), running its requests in proportion as it goes; it
expires, unfinished, when ``batch_expiry`` seconds pass first. Each request is answered as
the chat route answers it (the same rules, markers and faults), without latency or rate
limits; faults that break a connection or the JSON (``drop``, ``hang``, ``html``,
``badjson``, ``stale``, ``stream-error``) are the request's 500. ``ServerConfig(batches=False)``
turns both APIs off: every files and batches route is then a 404, as on a provider without.

Length: a batch's whole life (create, run as it is polled, expire, cancel, list, the
output and error files) over one small state machine.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from holysheep_nb.server.answers import last_user_text, message_text
from holysheep_nb.server.checks import check_request
from holysheep_nb.server.completion import completion_body, plan_choices
from holysheep_nb.server.faults import FAULT_KINDS, SHAPE_FAULTS, fault_response, parse_marker
from holysheep_nb.server.files import FileStore
from holysheep_nb.server.images import request_prompt_tokens
from holysheep_nb.server.providers import route_not_found, unauthorized
from holysheep_nb.server.replies import error_body, error_response, json_response
from holysheep_nb.server.simulate import answers_for

if TYPE_CHECKING:
    from holysheep_nb.server.app import Service

__all__ = ["BatchDesk"]

Handler = Callable[[web.Request], Awaitable[web.Response]]

CHAT_ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
#: Faults that cannot happen inside a batch as they do online (a broken connection, a body
#: that is not JSON): the request's answer is a 500 instead.
_BROKEN = frozenset({"drop", "hang", "stale", "html", "badjson", "stream-error"})
_NEVER_RUN = {
    "expired": ("batch_expired", "This request could not be executed before the completion "
                "window expired."),
    "cancelled": ("batch_cancelled", "This request was not executed because the batch was "
                  "cancelled."),
}  # fmt: skip


@dataclass
class _Batch:
    id: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: int
    started: float  # monotonic
    lines: list[dict[str, Any]]
    headers: dict[str, str]  # of the create call: the lines run with its key
    status: str = "in_progress"
    polls: int = 0
    done: int = 0
    completed: int = 0
    failed: int = 0
    output: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stamps: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    problems: list[dict[str, Any]] | None = None
    model: str = ""
    tokens: int = 0  # input tokens, counted against ServerConfig.batch_token_limit

    def as_json(self) -> dict[str, Any]:
        """The ``batch`` object of OpenAI's Batch API."""
        stamp = self.stamps.get
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": CHAT_ENDPOINT,
            "errors": None if self.problems is None else {"object": "list", "data": self.problems},
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": stamp("in_progress_at"),
            "expires_at": self.created_at + 24 * 3600,
            "finalizing_at": stamp("finalizing_at"),
            "completed_at": stamp("completed_at"),
            "failed_at": stamp("failed_at"),
            "expired_at": stamp("expired_at"),
            "cancelling_at": stamp("cancelling_at"),
            "cancelled_at": stamp("cancelled_at"),
            "request_counts": {
                "total": len(self.lines),
                "completed": self.completed,
                "failed": self.failed,
            },
            "metadata": self.metadata,
        }


def _input_tokens(lines: list[dict[str, Any]]) -> tuple[str, int]:
    """The model of a batch's requests and their input tokens (the server's rough count)."""
    model = str(lines[0]["body"].get("model", "")) if lines else ""
    tokens = sum(
        request_prompt_tokens([m for m in line["body"].get("messages", ()) if isinstance(m, dict)])
        for line in lines
    )
    return model, tokens


class BatchDesk:
    """The files and batches of one server, and the handlers of their routes."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.files = FileStore()
        self.batches: dict[str, _Batch] = {}
        self._ids = itertools.count(1)
        self._prefix = os.urandom(6).hex()
        self.reset()

    def reset(self) -> None:
        """Forget every file and batch, and zero the counters."""
        self.files.reset()
        self.batches.clear()
        self.created = self.polls = self.cancels = self.lines_run = 0

    def stats(self) -> dict[str, int]:
        """Counters for ``/_stats``: uploads, batches created, retrieves, cancels, lines run."""
        return {
            "uploads": self.files.uploads,
            "created": self.created,
            "polls": self.polls,
            "cancels": self.cancels,
            "lines_run": self.lines_run,
        }

    def routes(self) -> list[tuple[str, str, Handler]]:
        """``(method, path, handler)`` of every files and batches route."""
        files = self.files
        return [
            ("POST", "/v1/files", self._guard(files.upload)),
            ("GET", "/v1/files", self._guard(files.listing)),
            ("GET", "/v1/files/{file_id}", self._guard(files.retrieve)),
            ("DELETE", "/v1/files/{file_id}", self._guard(files.delete)),
            ("GET", "/v1/files/{file_id}/content", self._guard(files.content)),
            ("POST", "/v1/batches", self._guard(self.create)),
            ("GET", "/v1/batches", self._guard(self.listing)),
            ("GET", "/v1/batches/{batch_id}", self._guard(self.retrieve)),
            ("POST", "/v1/batches/{batch_id}/cancel", self._guard(self.cancel)),
        ]

    def _guard(self, handler: Handler) -> Handler:
        """``handler`` behind the switch (``batches=False``: 404) and the server's key."""

        async def guarded(request: web.Request) -> web.Response:
            config = self.service.config
            self.files.provider = config.provider
            if not config.batches:
                response = route_not_found(config.provider, request)
            elif config.api_key is not None and (
                request.headers.get("Authorization") != f"Bearer {config.api_key}"
            ):
                response = unauthorized(config.provider, request.headers.get("Authorization"))
            else:
                response = await handler(request)
            response.headers["x-request-id"] = self.service.request_id()
            return response

        return guarded

    def _missing(self, batch_id: str) -> web.Response:
        return error_response(
            404, f"No batch found with id '{batch_id}'.", provider=self.service.config.provider
        )

    async def create(self, request: web.Request) -> web.Response:
        """``POST /v1/batches``: a batch over an uploaded ``batch`` file."""
        provider = self.service.config.provider
        try:
            body = json.loads(await request.read())
        except ValueError:
            return error_response(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return error_response(400, "Expected a JSON object.", provider=provider)
        if body.get("endpoint") != CHAT_ENDPOINT:
            return error_response(
                400,
                f"Invalid endpoint {body.get('endpoint')!r}; this server batches only "
                f"{CHAT_ENDPOINT}.",
                provider=provider,
                param="endpoint",
            )
        if body.get("completion_window") != "24h":
            return error_response(
                400, "completion_window must be '24h'.", provider=provider, param="window"
            )
        stored = self.files.files.get(str(body.get("input_file_id")))
        if stored is None:
            return self.files.missing(str(body.get("input_file_id")))
        if stored.purpose != "batch":
            return error_response(
                400, "The input file must be uploaded with purpose 'batch'.", provider=provider
            )
        metadata = body.get("metadata")
        lines, problems = self._read_lines(stored.data)
        now = int(time.time())
        batch = _Batch(
            id=f"batch_{self._prefix}{next(self._ids):012x}",
            input_file_id=stored.id,
            completion_window="24h",
            metadata=metadata if isinstance(metadata, dict) else None,
            created_at=now,
            started=time.monotonic(),
            lines=lines,
            headers=dict(request.headers),
        )
        batch.model, batch.tokens = _input_tokens(lines)
        problems = problems or self._over_token_limit(batch)
        if problems:
            batch.status, batch.problems, batch.lines = "failed", problems, []
            batch.stamps["failed_at"] = now
        else:
            batch.stamps["in_progress_at"] = now
        self.batches[batch.id] = batch
        self.created += 1
        return json_response(200, batch.as_json())

    def _over_token_limit(self, batch: _Batch) -> list[dict[str, Any]]:
        """OpenAI's enqueued-token limit: the input tokens of one model's batches still in
        progress count against one limit, and a batch beyond it fails at once with
        ``token_limit_exceeded`` (the Batch API guide's rate limits; the message as users'
        reports quote it)."""
        limit = self.service.config.batch_token_limit
        if limit is None:
            return []
        enqueued = sum(
            other.tokens
            for other in self.batches.values()
            if other.model == batch.model and other.status not in TERMINAL
        )
        if enqueued + batch.tokens <= limit:
            return []
        message = (
            f"Enqueued token limit reached for {batch.model} in organization org-local. "
            f"Limit: {limit:,} enqueued tokens. Please try submitting an equal or smaller batch "
            "once some in_progress batches have been completed."
        )
        return [{"code": "token_limit_exceeded", "message": message, "param": None, "line": None}]

    def _read_lines(self, data: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The requests of an input file, and what is wrong with it (OpenAI's line errors)."""
        config = self.service.config
        lines: list[dict[str, Any]] = []
        problems: list[dict[str, Any]] = []
        seen: set[str] = set()

        def problem(code: str, message: str, number: int | None) -> None:
            problems.append({"code": code, "message": message, "param": None, "line": number})

        if len(data) > config.batch_max_bytes:
            problem("file_too_large", f"The file exceeds {config.batch_max_bytes} bytes.", None)
            return [], problems
        for number, text in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except ValueError:
                problem("invalid_json_line", "This line is not parseable as valid JSON.", number)
                continue
            custom_id = line.get("custom_id") if isinstance(line, dict) else None
            if not isinstance(custom_id, str) or not isinstance(line.get("body"), dict):
                problem("missing_required_parameter", "custom_id and body are required.", number)
            elif custom_id in seen:
                problem("duplicate_custom_id", "The custom_id for this request is a duplicate "
                        "of another request. Each custom_id must be unique.", number)  # fmt: skip
            elif line.get("url") != CHAT_ENDPOINT or line.get("method") != "POST":
                problem("invalid_url", f"Every request must POST to {CHAT_ENDPOINT}.", number)
            else:
                seen.add(custom_id)
                lines.append(line)
        if len(lines) > config.batch_max_requests:
            problem("too_many_requests", f"A batch holds at most {config.batch_max_requests} "
                    "requests.", None)  # fmt: skip
        return lines, problems

    async def retrieve(self, request: web.Request) -> web.Response:
        """``GET /v1/batches/{batch_id}``: the batch, moved on by one poll."""
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return self._missing(request.match_info["batch_id"])
        self.polls += 1
        self._advance(batch)
        return json_response(200, batch.as_json())

    async def cancel(self, request: web.Request) -> web.Response:
        """``POST /v1/batches/{batch_id}/cancel``: ``cancelling`` now, ``cancelled`` at the
        next retrieve (requests not yet run go to the error file)."""
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return self._missing(request.match_info["batch_id"])
        if batch.status in TERMINAL:
            return error_response(
                400,
                f"Cannot cancel a batch with status '{batch.status}'.",
                provider=self.service.config.provider,
            )
        self.cancels += 1
        batch.status = "cancelling"
        batch.stamps["cancelling_at"] = int(time.time())
        return json_response(200, batch.as_json())

    async def listing(self, request: web.Request) -> web.Response:
        """``GET /v1/batches?limit=&after=``: batches, newest first, paged by ``after``."""
        batches = list(reversed(self.batches.values()))
        after = request.query.get("after")
        if after is not None:
            ids = [b.id for b in batches]
            batches = batches[ids.index(after) + 1 :] if after in ids else []
        try:
            limit = max(1, min(100, int(request.query.get("limit", "20"))))
        except ValueError:
            return error_response(400, "limit must be an integer.", param="limit")
        page = batches[:limit]
        return json_response(
            200,
            {
                "object": "list",
                "data": [b.as_json() for b in page],
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
                "has_more": len(batches) > limit,
            },
        )

    # -- processing ----------------------------------------------------------------------

    def _advance(self, batch: _Batch) -> None:
        """Run the share of the requests this poll has reached; end the batch when due."""
        if batch.status in TERMINAL:
            return
        if batch.status == "cancelling":
            self._finish(batch, "cancelled")
            return
        config = self.service.config
        batch.polls += 1
        elapsed = time.monotonic() - batch.started
        share = min(
            batch.polls / config.batch_polls if config.batch_polls else 1.0,
            elapsed / config.batch_seconds if config.batch_seconds else 1.0,
        )
        total = len(batch.lines)
        target = total if share >= 1.0 else min(total, math.floor(total * share))
        while batch.done < target:
            self._run_line(batch, batch.lines[batch.done])
            batch.done += 1
        if batch.done == total:
            self._finish(batch, "completed")
        elif elapsed >= config.batch_expiry:
            self._finish(batch, "expired")

    def _run_line(self, batch: _Batch, line: dict[str, Any]) -> None:
        status, payload = self.answer(line["body"], batch.headers)
        self.lines_run += 1
        result = {
            "id": f"batch_req_{self._prefix}{next(self._ids):012x}",
            "custom_id": line["custom_id"],
            "response": {
                "status_code": status,
                "request_id": self.service.request_id(),
                "body": payload,
            },
            "error": None,
        }
        text = json.dumps(result, ensure_ascii=False)
        if status == 200:
            batch.completed += 1
            batch.output.append(text)
        else:
            batch.failed += 1
            batch.errors.append(text)

    def _finish(self, batch: _Batch, status: str) -> None:
        """End the batch: requests never run go to the error file; both files are written."""
        code_message = _NEVER_RUN.get(status)
        if code_message is not None:
            code, message = code_message
            for line in batch.lines[batch.done :]:
                batch.failed += 1
                batch.errors.append(
                    json.dumps(
                        {
                            "id": f"batch_req_{self._prefix}{next(self._ids):012x}",
                            "custom_id": line["custom_id"],
                            "response": None,
                            "error": {"code": code, "message": message},
                        },
                        ensure_ascii=False,
                    )
                )
            batch.done = len(batch.lines)
        now = int(time.time())
        batch.stamps["finalizing_at"] = now
        if batch.output:
            data = ("\n".join(batch.output) + "\n").encode()
            batch.output_file_id = self.files.add(
                f"{batch.id}_output.jsonl", "batch_output", data
            ).id
        if batch.errors:
            data = ("\n".join(batch.errors) + "\n").encode()
            batch.error_file_id = self.files.add(f"{batch.id}_error.jsonl", "batch_output", data).id
        batch.output, batch.errors = [], []
        batch.status = status
        batch.stamps[f"{status}_at"] = now

    def answer(self, body: dict[str, Any], headers: Mapping[str, str]) -> tuple[int, Any]:
        """``(status, JSON body)`` of one request of a batch, as the chat route would answer
        it: the same checks, rules, markers and faults (see the module docstring)."""
        service = self.service
        config = service.config
        refused = check_request(config, body, headers, None)
        if refused is not None:
            return refused.status, json.loads(cast(bytes, refused.body))
        messages = body["messages"]
        raw = last_user_text(messages)
        text, marker, times = parse_marker(raw)
        if marker is not None and marker not in FAULT_KINDS:
            message = f"unknown fault marker {marker!r}; known: {', '.join(FAULT_KINDS)}"
            return 400, error_body(400, message, provider=config.provider)
        fault = config.faults.draw(service.rng)
        if marker is not None:
            attempt = service.attempts.get(raw, 0) + 1
            service.attempts[raw] = attempt
            fault = marker if times is None or attempt <= times else None
        if fault is not None:
            service.faults[fault] = service.faults.get(fault, 0) + 1
        if fault in _BROKEN:
            return 500, error_body(
                500,
                "The server had an error while processing your request.",
                provider=config.provider,
                type_="server_error",
            )
        model = body["model"]
        if fault is not None and fault not in SHAPE_FAULTS and fault != "sse":
            response = fault_response(
                fault,
                provider=config.provider,
                retry_after=config.retry_after,
                authorization=headers.get("Authorization"),
                model=model,
                text=text,
            )
            return response.status, json.loads(cast(bytes, response.body))
        texts = [message_text(m) for m in messages]
        answers = answers_for(config, body, model, messages, texts, raw, self.service.next_draw)
        replies = plan_choices(config, body, answers, None if fault == "sse" else fault, texts, raw)
        top = (body.get("top_logprobs") or 0) if body.get("logprobs") is True else None
        completion = completion_body(
            config,
            replies,
            completion_id=f"chatcmpl-{self._prefix}{next(self._ids):012x}",
            created=int(time.time()),
            model=model,
            choices=len(answers),
            prompt_tokens=request_prompt_tokens(messages),
            top_logprobs=top,
        )
        return 200, completion
