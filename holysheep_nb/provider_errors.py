"""What an error body says, as one short valid line, and whether it speaks of the whole run
(a spent quota, a flagged input, a refused ``response_format``).

The shapes read (``docs/providers.md`` has an example of each):

- OpenAI's ``{"error": {"message", "type", "param", "code"}}``, and OpenRouter's with
  ``metadata``;
- Google's (Gemini's OpenAI-compatible endpoint): the same object inside a JSON list,
  ``[{"error": {"code": 429, "message", "status": "RESOURCE_EXHAUSTED", "details"}}]``,
  whose ``details`` may hold a ``google.rpc.RetryInfo`` with ``retryDelay`` (``"7s"``);
- vLLM's top-level ``{"object": "error", "message", "type", "param", "code"}``;
- Azure's content filter: ``innererror.content_filter_result`` naming each category with
  ``filtered`` and ``severity``;
- an HTML error page (its title), or plain text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, overload

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")
_MAX_DETAIL = 200
#: A protobuf ``Duration`` in its JSON form: seconds with up to nine decimals and an ``s``.
_PROTO_DURATION = re.compile(r"(\d+(?:\.\d{1,9})?)s")
#: Words of a 400 that refuses the request's structured-output schema, as servers put it:
#: OpenAI and DeepSeek name ``response_format`` / ``json_schema``; a gateway in front of a
#: Gemini-style backend names ``response_schema`` (``generation_config.response_schema``);
#: others say "structured output", "Invalid schema" or vLLM's ``guided_json``.
_ABOUT_SCHEMA = re.compile(
    r"response_format|response_?schema|json_schema|structured.output|invalid.schema|guided_json",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ProviderError:
    """What an error body said (see the module docstring for the shapes read).

    ``status`` is Google's status name (``RESOURCE_EXHAUSTED``), ``retry_delay`` the seconds
    of its ``RetryInfo`` (None without one), ``filtered`` Azure's filtered categories with
    their severity (``violence (medium)``), or ''.
    """

    message: str
    code: str = ""
    type: str = ""
    param: str = ""
    metadata: dict[str, Any] | None = None
    status: str = ""
    retry_delay: float | None = None
    filtered: str = ""

    @property
    def quota_exhausted(self) -> bool:
        """A 429 that waiting will not clear: the account's quota or credits are spent.

        Only the provider's ``code`` or ``type`` says so: OpenAI's ``insufficient_quota``,
        others' ``quota`` or ``billing`` codes. The message is not read: Gemini words its
        per-minute 429 (``RESOURCE_EXHAUSTED``) as "You exceeded your current quota, please
        check your plan and billing details", which a minute's wait clears.
        """
        if self.status == "RESOURCE_EXHAUSTED":
            return False
        marks = f"{self.code} {self.type}".lower()
        return "quota" in marks or "billing" in marks

    @property
    def input_flagged(self) -> bool:
        """A 403 about this input, not about the key (OpenRouter's moderation error)."""
        meta = self.metadata or {}
        if "reasons" in meta or "flagged_input" in meta:
            return True
        marks = f"{self.code} {self.type} {self.message}".lower()
        return any(word in marks for word in ("flagged", "moderation", "content_policy"))

    @property
    def about_response_format(self) -> bool:
        """A 400 that refuses the request's structured-output schema, so the request can go
        again without it: DeepSeek's "This response_format type is unavailable now", a
        gateway's ``Unknown name "additional_properties" at
        'generation_config.response_schema'``, OpenAI's "Invalid schema for
        response_format". An error about a tool's schema (``param`` ``tools[...]``) is not."""
        if self.param.startswith("tools") or "function" in self.param:
            return False
        return _ABOUT_SCHEMA.search(f"{self.param} {self.message}") is not None

    @property
    def flagged_reasons(self) -> str:
        """Why an input was flagged, as one line: OpenRouter's ``metadata.reasons``, Azure's
        filtered categories (``violence (medium)``), or the message."""
        reasons = (self.metadata or {}).get("reasons")
        if isinstance(reasons, list) and reasons:
            return ", ".join(str(reason) for reason in reasons)
        return self.filtered or self.message


def parse_error(raw: bytes) -> ProviderError:
    """The ``ProviderError`` of an error body: JSON error object, HTML title, or text."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ProviderError(summarise_body(raw))
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # Google's list of one error object
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) and isinstance(data, dict) and data.get("object") == "error":
        error = data  # vLLM's top-level error object
    if isinstance(error, dict):
        metadata = error.get("metadata")
        inner = error.get("innererror")
        return ProviderError(
            message=provider_message(data) or summarise_body(raw),
            code=str(error.get("code") or ""),
            type=str(error.get("type") or ""),
            param=str(error.get("param") or ""),
            metadata=metadata if isinstance(metadata, dict) else None,
            status=str(error.get("status") or ""),
            retry_delay=_retry_delay(error.get("details")),
            filtered=filtered_categories(
                inner.get("content_filter_result") if isinstance(inner, dict) else None
            ),
        )
    return ProviderError(provider_message(data) or summarise_body(raw))


def provider_message(data: object) -> str:
    """The message of an error object (OpenAI's ``error.message``, vLLM's top-level
    ``message`` beside ``"object": "error"``, Google's inside a list), or ''."""
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return one_line(error["message"])
        if isinstance(error, str):
            return one_line(error)
        if data.get("object") == "error" and isinstance(data.get("message"), str):
            return one_line(data["message"])
    return ""


def filtered_categories(results: object) -> str:
    """Azure's content filter results (``{"violence": {"filtered": true, "severity":
    "medium"}, ...}``) as the filtered categories with their severity: ``violence
    (medium)``; '' when none was filtered."""
    if not isinstance(results, dict):
        return ""
    hits = []
    for category, verdict in results.items():
        if isinstance(verdict, dict) and verdict.get("filtered"):
            severity = verdict.get("severity")
            hits.append(f"{category} ({severity})" if isinstance(severity, str) else category)
    return ", ".join(hits)


def _retry_delay(details: object) -> float | None:
    """Seconds of a ``google.rpc.RetryInfo`` among an error's ``details``, or None."""
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            delay = detail.get("retryDelay")
            match = _PROTO_DURATION.fullmatch(delay.strip()) if isinstance(delay, str) else None
            if match:
                return float(match.group(1))
    return None


def summarise_body(raw: bytes) -> str:
    """A short description of a body that is not the JSON we wanted."""
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return "empty body"
    if text[:1] == "<":
        title = _TITLE.search(text)
        return f"HTML page{': ' + one_line(title.group(1)) if title else ''}"
    return one_line(text)


@overload
def valid_unicode(text: str) -> str: ...
@overload
def valid_unicode(text: None) -> None: ...


def valid_unicode(text: str | None) -> str | None:
    """``text`` with every lone surrogate replaced by U+FFFD.

    JSON may escape half an emoji (``"\\ud83d"``, from a model cut mid-character); Python
    decodes it to a lone surrogate, which no UTF-8 store (a pyarrow-backed pandas string
    column, SQLite, a Parquet file) accepts. A valid pair is kept as its character.
    """
    if text is None or text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def one_line(text: str) -> str:
    """``text`` on one line, valid Unicode, at most 200 characters (an error line's detail)."""
    line = _SPACES.sub(" ", valid_unicode(text)).strip()
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 1] + "…"
