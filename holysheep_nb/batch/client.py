"""The provider's files and batches endpoints over aiohttp: upload, create, poll, download.

Requests follow OpenAI's Files and Batch API references: ``POST /files`` (multipart,
``purpose=batch``), ``POST /batches``, ``GET /batches/{id}``, ``POST /batches/{id}/cancel``,
``GET /batches?limit=&after=``, ``GET /files/{id}/content``, ``DELETE /files/{id}``, all
under the run's ``base_url``. The key goes with each request to the API host only, as on
the online path, and is blanked out of every error message.

Calls that are safe to repeat are retried on a 429, a 5xx or a dropped connection by the
run's ``RetryPolicy``, as the online engine retries a row: up to ``max_retries`` retries,
full-jitter backoff, a ``Retry-After`` obeyed up to ``max_retry_after`` (a longer one is
the call's error at once), all on the run's clock (``retry.next_delay``). Creating a batch
is retried on a 429 only: a 5xx may hide a batch that was created, and a second one would be
paid twice.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import aiohttp

from holysheep_nb.clock import Clock
from holysheep_nb.endpoint import Endpoint, ssl_option
from holysheep_nb.errors import BatchError as BatchError  # defined in the one tree
from holysheep_nb.errors import BatchUnavailableError as BatchUnavailableError
from holysheep_nb.errors import redact
from holysheep_nb.policies import RetryPolicy
from holysheep_nb.provider_errors import parse_error
from holysheep_nb.retry import next_delay, parse_retry_after
from holysheep_nb.transport import describe_exception, proxy_for


class BatchClient:
    """One session to the provider's files and batches endpoints; ``async with`` it.

    ``timeout`` is seconds to connect and between two reads (an upload of 200 MB may take
    longer in all, so there is no total limit); ``clock`` paces the retries, which follow
    ``retry`` (the run's policy) with ``jitter`` (a uniform draw in [0, 1)) as the engine's.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float,
        clock: Clock,
        retry: RetryPolicy | None = None,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.jitter = jitter or random.random
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> BatchClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_option(self.endpoint.verify)),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.timeout, sock_read=self.timeout
            ),
            headers={"Accept": "application/json"},
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        """The URL of ``path`` (``/batches``) under the base URL, with the endpoint's query
        (``api-version``) and ``params``."""
        query = {**self.endpoint.query, **(params or {})}
        url = f"{self.endpoint.base_url}{path}"
        return f"{url}?{urlencode(query)}" if query else url

    async def upload(self, data: bytes, filename: str) -> dict[str, Any]:
        """``POST /files`` with ``purpose=batch``: the ``file`` object of the upload.

        Raises ``BatchUnavailableError`` on a 404 (nothing uploaded, nothing charged).
        """

        def form() -> aiohttp.FormData:
            body = aiohttp.FormData()
            body.add_field("purpose", "batch")
            # A stream, not bytes: aiohttp refuses a large bytes part (a batch file is up
            # to 200 MB), and a fresh one per attempt since sending consumes it.
            stream = io.BytesIO(data)
            body.add_field("file", stream, filename=filename, content_type="application/jsonl")
            return body

        return _json_object(
            await self._call("POST", "/files", form=form, what="upload the batch file"),
            "upload the batch file",
        )

    async def create(self, input_file_id: str, metadata: Mapping[str, str]) -> dict[str, Any]:
        """``POST /batches`` over an uploaded file: the new ``batch`` object.

        Raises ``BatchUnavailableError`` on a 404 (no batch was created: nothing charged).
        """
        body = {
            "input_file_id": input_file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": dict(metadata),
        }
        what = "create the batch"
        return _json_object(
            await self._call("POST", "/batches", json_body=body, what=what, repeatable=False),
            what,
        )

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        """``GET /batches/{id}``: the ``batch`` object now."""
        what = f"read batch {batch_id}"
        return _json_object(await self._call("GET", f"/batches/{batch_id}", what=what), what)

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        """``POST /batches/{id}/cancel``: the batch, now ``cancelling``."""
        what = f"cancel batch {batch_id}"
        return _json_object(
            await self._call("POST", f"/batches/{batch_id}/cancel", what=what), what
        )

    async def listing(self, limit: int = 20) -> list[dict[str, Any]]:
        """``GET /batches?limit=``: the newest batches of the account."""
        what = "list the batches"
        page = _json_object(
            await self._call("GET", "/batches", params={"limit": str(limit)}, what=what), what
        )
        data = page.get("data")
        return [b for b in data if isinstance(b, dict)] if isinstance(data, list) else []

    async def content(self, file_id: str) -> bytes:
        """``GET /files/{id}/content``: the bytes of an output or error file."""
        return await self._call("GET", f"/files/{file_id}/content", what=f"download file {file_id}")

    async def delete_file(self, file_id: str) -> None:
        """``DELETE /files/{id}``."""
        await self._call("DELETE", f"/files/{file_id}", what=f"delete file {file_id}")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        repeatable: bool = True,
    ) -> bytes:
        """One call, retried as the module docstring says; the body of its 2xx answer."""
        assert self._session is not None, "use BatchClient in an `async with` block"
        url = self.url(path, params)
        headers = self.endpoint.request_headers()
        key = self.endpoint.api_key
        policy = self.retry
        for attempt in range(1, policy.max_attempts + 1):
            last = attempt == policy.max_attempts
            retry_after: float | None = None
            try:
                async with self._session.request(
                    method,
                    url,
                    json=None if json_body is None else dict(json_body),
                    data=form() if form is not None else None,
                    headers=headers,
                    proxy=proxy_for(url),
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    body = await response.read()
                    answer_headers = response.headers
            except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError) as exc:
                if not repeatable or last:
                    raise BatchError(
                        f"could not {what}: {redact(describe_exception(exc), key)}"
                    ) from None
            else:
                if 200 <= status < 300:
                    return body
                retry = status == 429 or (repeatable and status >= 500)
                if not retry or last:
                    raise _failure(method, path, status, body, what, key)
                retry_after = self._retry_after(answer_headers, status, what)
            await self.clock.sleep(next_delay(attempt, policy, retry_after, self.jitter()))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _retry_after(self, headers: Mapping[str, str], status: int, what: str) -> float | None:
        """The server's ``Retry-After`` for a call to retry; a ``BatchError`` when it asks
        for longer than the policy's ``max_retry_after`` (waiting that long in a cell is
        worse than saying so)."""
        seconds = parse_retry_after(headers, self.clock.wall())
        if seconds is not None and seconds > self.retry.max_retry_after:
            raise BatchError(
                f"could not {what}: the provider asked to wait {seconds:,.0f} s "
                f"(HTTP {status} with Retry-After); run it again later, or pass "
                f"max_retry_after={seconds:.0f} to wait that long",
                status,
            )
        return seconds


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict):
        raise BatchError(f"could not {what}: the answer is not a JSON object")
    return data


def _failure(
    method: str, path: str, status: int, body: bytes, what: str, key: str | None
) -> BatchError:
    """The error for a failed call; a 404 on the files or batches collection is the clear
    'no Batch API here' error."""
    message = redact(parse_error(body).message, key)
    route = f"{method} {path}"
    if status == 404 and path in ("/files", "/batches"):
        charged = (
            "nothing was uploaded or charged"
            if path == "/files"
            else "the file was uploaded but no batch was created, so nothing was charged"
        )
        return BatchUnavailableError(
            f"this provider has no Batch API (HTTP 404 on {route}: {message}); {charged}. "
            "Run without batch=True to send the rows one by one.",
            status,
        )
    return BatchError(f"could not {what} (HTTP {status} on {route}): {message}", status)
