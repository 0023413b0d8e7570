"""What an error body says: OpenAI's ``error`` object (and OpenRouter's, with metadata), an
HTML error page's title, or plain text, as one short valid line; and whether it speaks of
the whole run (a quota, a flagged input, a refused ``response_format``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, overload

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")
_MAX_DETAIL = 200


@dataclass(frozen=True, slots=True)
class ProviderError:
    """What an error body said: OpenAI's ``error`` object, or OpenRouter's with metadata."""

    message: str
    code: str = ""
    type: str = ""
    param: str = ""
    metadata: dict[str, Any] | None = None

    @property
    def quota_exhausted(self) -> bool:
        """A 429 that waiting will not clear: the account's quota or credits are spent.

        OpenAI: ``code``/``type`` ``insufficient_quota``; others say ``quota`` or
        ``billing`` in the code, or "exceeded your current quota" in the message.
        """
        marks = f"{self.code} {self.type}".lower()
        return (
            "quota" in marks
            or "billing" in marks
            or "exceeded your current quota" in self.message.lower()
        )

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
        """A 400 that rejects ``response_format`` (DeepSeek and other servers without
        structured output), so the request can go again without it."""
        text = f"{self.param} {self.message}".lower()
        return "response_format" in text or "json_schema" in text

    @property
    def flagged_reasons(self) -> str:
        """OpenRouter's ``metadata.reasons`` as one line, or the message."""
        reasons = (self.metadata or {}).get("reasons")
        if isinstance(reasons, list) and reasons:
            return ", ".join(str(reason) for reason in reasons)
        return self.message


def parse_error(raw: bytes) -> ProviderError:
    """The ``ProviderError`` of an error body: JSON error object, HTML title, or text."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ProviderError(summarise_body(raw))
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        metadata = error.get("metadata")
        return ProviderError(
            message=provider_message(data) or summarise_body(raw),
            code=str(error.get("code") or ""),
            type=str(error.get("type") or ""),
            param=str(error.get("param") or ""),
            metadata=metadata if isinstance(metadata, dict) else None,
        )
    return ProviderError(provider_message(data) or summarise_body(raw))


def provider_message(data: object) -> str:
    """The ``error.message`` of an OpenAI-style error object, or ''."""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return one_line(error["message"])
        if isinstance(error, str):
            return one_line(error)
    return ""


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
