"""One attempt of one request: send it, read what came back, and judge it.

``Sender.send`` turns whatever happens to one POST (but an interrupt) into an ``Attempt``:
an answer, an error body judged by ``retry.judge``, a timeout (``deadlines``), or a
connection error. It
keeps the request counters of the run's ``RunStats`` (every request sent, every 429 seen,
requests in flight) and blanks the API key out of every error body before any of it is
read (``errors.redact``). An answer's text is the user's data and is never rewritten.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from holysheep_nb.answers import Answer, MalformedAnswer, missing_content, parse_answer
from holysheep_nb.clock import Clock
from holysheep_nb.deadlines import Deadlines, deadlines_for
from holysheep_nb.endpoint import Endpoint, ssl_option
from holysheep_nb.errors import is_secret
from holysheep_nb.outcome import OutcomeKind, RunStats
from holysheep_nb.policies import EngineSettings
from holysheep_nb.provider_errors import parse_error
from holysheep_nb.retry import Judgement, Verdict, judge, retry_hint
from holysheep_nb.sending import SENDING, ReuseTrackingConnector, enlist
from holysheep_nb.transport import describe_exception, payload, proxy_credentials, proxy_for

_MALFORMED = Judgement(Verdict.RETRY, OutcomeKind.MALFORMED)
_CONNECTION = Judgement(Verdict.RETRY, OutcomeKind.CONNECTION)
_TIMEOUT = Judgement(Verdict.RETRY, OutcomeKind.TIMEOUT)
_ANSWERED = judge(200, None)  # every 2xx answer (judged once, not per answer)


@dataclass(slots=True)
class Attempt:
    """What one attempt came back with (a value, never changed once built; not frozen only
    for the cost of building one per request, as ``RowOutcome``).

    ``unsent`` marks a request that the server cannot have read: the connection it was
    written on had been reused from the pool and was closed by the server before any answer
    (a keep-alive connection the server had already dropped). ``connect_failed`` marks one
    that never reached a server at all (refused, DNS, TLS handshake).
    """

    judgement: Judgement
    answer: Answer | None = None
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None
    headers: CIMultiDictProxy[str] | None = None
    unsent: bool = False
    connect_failed: bool = False

    @property
    def verdict(self) -> Verdict:
        """The judgement's verdict."""
        return self.judgement.verdict


class Sender:
    """Posts request bodies to one URL over one session (whose connector is a
    ``ReuseTrackingConnector``) and judges each answer."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        stats: RunStats,
        proxy: str | None,
        proxy_auth: aiohttp.BasicAuth | None = None,
        key: str | None,
        headers: dict[str, str] | Callable[[], dict[str, str]],
        wall: Any,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.session = session
        self.url = url
        self.stats = stats
        self.proxy = proxy
        self.proxy_auth = proxy_auth
        self.key_bytes = key.encode() if key and is_secret(key) else b""
        #: Headers to merge into the session's defaults for every request (None: nothing).
        self.headers = None if callable(headers) else headers or None
        #: Or a function asked for them at every request (a Microsoft Entra ID token
        #: provider hands out tokens that expire).
        self.fresh_headers = headers if callable(headers) else None
        self.wall = wall
        #: What bounds each request in time (None: nothing, an infinite ``timeout``).
        self.deadlines = deadlines
        #: True once any HTTP answer came back in this run (the server is reachable).
        self.heard_back = False

    async def send(self, body: bytes, *, structured: bool) -> Attempt:
        """Send ``body`` once and judge what came back (``structured``: it asked for a
        ``response_format``, so a 400 about it calls for the fallback)."""
        stats = self.stats
        stats.requests_sent += 1
        stats.in_flight += 1
        if stats.in_flight > stats.max_in_flight:
            stats.max_in_flight = stats.in_flight
        sending = SENDING.get() or enlist()
        sending.reused = False
        if self.deadlines is not None:
            self.deadlines.watch(sending)
        try:
            fresh = self.fresh_headers
            sent_headers = self.headers if fresh is None else fresh()
            post = self.session.post(
                self.url,
                data=payload(body),
                headers=sent_headers,
                proxy=self.proxy,
                proxy_auth=self.proxy_auth,
                allow_redirects=False,  # the key must never follow a redirect to another host
            )
            async with post as response:
                raw = await response.read()
                status = response.status
                headers = response.headers
        except (asyncio.TimeoutError, TimeoutError):
            return Attempt(_TIMEOUT)
        except asyncio.CancelledError:
            if not sending.expired or _cancelled_besides(sending.task):
                raise
            return Attempt(_TIMEOUT)
        except aiohttp.ClientConnectorError as exc:
            stats.requests_sent -= 1  # it never left this machine
            return Attempt(_CONNECTION, detail=describe_exception(exc), connect_failed=True)
        except aiohttp.ClientError as exc:
            unsent = sending.reused and isinstance(
                exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError
            )
            return Attempt(_CONNECTION, detail=describe_exception(exc), unsent=unsent)
        finally:
            stats.in_flight -= 1
            sending.serial += 1  # the request is over: its deadline no longer counts
            sending.expired = False
        self.heard_back = True
        if status == 429:
            stats.rate_limited += 1
        if 200 <= status < 300:
            return self._answered(raw, status, headers)
        error = parse_error(self.scrub(raw))
        judgement = judge(status, error, structured=structured)
        retry_after = (
            retry_hint(headers, error, self.wall())
            if judgement.verdict in (Verdict.RETRY, Verdict.STOP)
            else None
        )
        flagged = judgement.kind is OutcomeKind.FILTERED
        return Attempt(
            judgement,
            status=status,
            detail=error.flagged_reasons if flagged else error.message,
            retry_after=retry_after,
            headers=headers,
        )

    def _answered(self, raw: bytes, status: int, headers: CIMultiDictProxy[str]) -> Attempt:
        try:
            answer = parse_answer(raw)
        except MalformedAnswer:
            # Described again from the body with the key blanked: the message quotes the body
            # cut short, and a cut key would slip past a later redaction.
            detail = _malformed(self.scrub(raw))
            return Attempt(_MALFORMED, status=status, detail=detail, headers=headers)
        if answer.text is None and (missing := missing_content(answer)) is not None:
            return Attempt(_MALFORMED, status=status, detail=missing, headers=headers)
        return Attempt(_ANSWERED, answer=answer, status=status, headers=headers)

    async def read(self, url: str, timeout: float) -> bytes | None:
        """The body of a ``GET url`` on the run's session, with the headers every request
        carries (the key too: ``url`` must be on the API host), never following a redirect;
        None unless it answered 200 within ``timeout`` seconds."""
        fresh = self.fresh_headers
        try:
            get = self.session.get(
                url,
                headers=self.headers if fresh is None else fresh(),
                proxy=self.proxy,
                proxy_auth=self.proxy_auth,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            )
            async with get as response:
                return await response.read() if response.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError):
            return None

    def scrub(self, raw: bytes) -> bytes:
        """An error body with the API key blanked, before any of it is cut short into an error
        line (a placeholder key too short to be a secret is left: see ``errors.redact``)."""
        if self.key_bytes and self.key_bytes in raw:
            return raw.replace(self.key_bytes, b"***")
        return raw


@asynccontextmanager
async def open_sender(
    endpoint: Endpoint, settings: EngineSettings, stats: RunStats, clock: Clock
) -> AsyncIterator[Sender]:
    """A run's ``Sender``: one session, its pool as wide as ``max_concurrent``, each
    attempt bounded by ``timeout`` (``deadlines``, in place of aiohttp's per-request timer);
    closed when the run ends.

    The session posts to the chat URL only, never following a redirect, so without a proxy
    the key can be one of its default headers (merged into each request by aiohttp at no
    cost of ours). Through a proxy it goes with each request instead: aiohttp hands a
    session's defaults to the proxy too (as the CONNECT request's headers).
    """
    connector = ReuseTrackingConnector(
        limit=settings.max_concurrent, ssl=ssl_option(endpoint.verify)
    )
    proxy, proxy_auth = proxy_credentials(proxy_for(endpoint.chat_url))
    defaults = endpoint.session_headers()
    per_request: dict[str, str] | Callable[[], dict[str, str]]
    if endpoint.fresh_headers:
        per_request = endpoint.request_headers  # asked again for every request
    elif proxy is None:
        defaults.update(endpoint.request_headers())
        per_request = {}
    else:
        per_request = endpoint.request_headers()
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),  # the run's deadlines bound each attempt
        headers=defaults,
        # An API authenticates each request by its key, never by a cookie; a jar would filter
        # cookies for every request and store any a load balancer sets, for nothing.
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        deadlines = deadlines_for(settings.timeout)
        try:
            yield Sender(
                session,
                endpoint.chat_url,
                stats=stats,
                proxy=proxy,
                proxy_auth=proxy_auth,
                key=endpoint.api_key,
                headers=per_request,
                wall=clock.wall,
                deadlines=deadlines,
            )
        finally:
            if deadlines is not None:
                deadlines.close()


def _cancelled_besides(task: asyncio.Task[object] | None) -> bool:
    """Whether ``task``, cancelled by its request's deadline, was also cancelled by someone
    else (an interrupt): takes the deadline's cancellation back, as aiohttp's own timer does.
    Python 3.10 cannot tell the two apart (no ``Task.uncancel``) and takes it for a timeout."""
    uncancel = getattr(task, "uncancel", None)
    return uncancel is not None and uncancel() > 0


def _malformed(raw: bytes) -> str:
    """Why ``raw`` is not a chat completion (``parse_answer``'s message)."""
    try:
        parse_answer(raw)
    except MalformedAnswer as exc:
        return str(exc)
    return "the answer could not be read"
