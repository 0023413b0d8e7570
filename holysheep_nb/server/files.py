"""The local server's ``/v1/files``: upload, list, retrieve, download and delete files.

Shapes as OpenAI's Files API reference documents them: an upload is a multipart form with a
``purpose`` field and a ``file`` part, and comes back as a ``file`` object (``id``,
``bytes``, ``created_at``, ``filename``, ``purpose``, ``status``); ``GET /v1/files/{id}/content``
gives the bytes back; ``DELETE`` answers ``{"id", "object": "file", "deleted": true}``. An
unknown id is a 404 ``No such File object``. Files live in memory for the server's life.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from holysheep_nb.server.replies import error_response, json_response

__all__ = ["FileStore", "StoredFile"]

#: The purposes OpenAI accepts for an upload.
PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})


@dataclass(frozen=True)
class StoredFile:
    """One file: its bytes and the metadata the ``file`` object shows."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def as_json(self) -> dict[str, Any]:
        """The ``file`` object of OpenAI's Files API."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }


class FileStore:
    """The files of one server, and the handlers of the ``/v1/files`` routes.

    ``provider`` is read per request (the personality shapes the error bodies); ``uploads``
    counts ``POST /v1/files`` calls that stored a file (tests prove a re-attach by it).
    """

    def __init__(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self.uploads = 0
        self._ids = itertools.count(1)
        self._prefix = os.urandom(6).hex()
        self.provider = "openai"

    def reset(self) -> None:
        """Forget every file and zero the counter."""
        self.files.clear()
        self.uploads = 0

    def add(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        """Store ``data`` as a new file (the server's own output and error files too)."""
        stored = StoredFile(
            f"file-{self._prefix}{next(self._ids):012x}", filename, purpose, data, int(time.time())
        )
        self.files[stored.id] = stored
        return stored

    def missing(self, file_id: str) -> web.Response:
        """OpenAI's 404 for an id it does not know."""
        return error_response(
            404, f"No such File object: {file_id}", provider=self.provider, param="id"
        )

    async def upload(self, request: web.Request) -> web.Response:
        """``POST /v1/files``: a multipart form with ``purpose`` and ``file``."""
        if not request.content_type.startswith("multipart/"):
            return error_response(
                400, "Expected a multipart/form-data upload.", provider=self.provider
            )
        purpose = filename = None
        data: bytes | None = None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "purpose":
                purpose = (await part.read()).decode()
            elif part.name == "file":
                filename = part.filename or "upload"
                data = bytes(await part.read())
        if purpose not in PURPOSES:
            return error_response(
                400,
                f"'{purpose}' is not one of {sorted(PURPOSES)} - 'purpose'",
                provider=self.provider,
                param="purpose",
            )
        if data is None or filename is None:
            return error_response(
                400, "Missing required file part 'file'.", provider=self.provider, param="file"
            )
        self.uploads += 1
        return json_response(200, self.add(filename, purpose, data).as_json())

    async def listing(self, request: web.Request) -> web.Response:
        """``GET /v1/files``: every file, newest first."""
        data = [f.as_json() for f in reversed(self.files.values())]
        return json_response(200, {"object": "list", "data": data, "has_more": False})

    async def retrieve(self, request: web.Request) -> web.Response:
        """``GET /v1/files/{file_id}``: the file object."""
        file_id = request.match_info["file_id"]
        stored = self.files.get(file_id)
        return self.missing(file_id) if stored is None else json_response(200, stored.as_json())

    async def content(self, request: web.Request) -> web.Response:
        """``GET /v1/files/{file_id}/content``: the bytes, as uploaded or written."""
        file_id = request.match_info["file_id"]
        stored = self.files.get(file_id)
        if stored is None:
            return self.missing(file_id)
        return web.Response(status=200, body=stored.data, content_type="application/octet-stream")

    async def delete(self, request: web.Request) -> web.Response:
        """``DELETE /v1/files/{file_id}``: forget the file."""
        file_id = request.match_info["file_id"]
        if self.files.pop(file_id, None) is None:
            return self.missing(file_id)
        return json_response(200, {"id": file_id, "object": "file", "deleted": True})
