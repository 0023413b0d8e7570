"""Image columns: ``images="photo"`` attaches each row's image(s) to its prompt.

Each image becomes an ``image_url`` content part of the row's user message, after the text
the prompt column or template gives (without one, the image alone is sent). A cell holds a
file path (``str`` or ``pathlib.Path``), bytes, a PIL image, an http(s) URL, a ``data:``
URL, or a list of these; a file, bytes and a PIL image are sent as a base64 data URL with
their MIME type from the magic bytes, a URL as it is. See ``docs/images.md``.

Everything is checked before anything is sent: a missing or unreadable file, bytes of an
unknown format or an image over the provider's limits (``image_files.ImageLimits``) is that
row's error, naming the file; when no row could be sent because of them, a ``ConfigError``.
A missing value (None, NaN) is no image: the row sends its text alone, and a row with
neither text nor image is a missing prompt.

Pillow is not needed: a PIL image is recognised only when the caller's code has imported
PIL, and its ``save`` makes the bytes.

Each image error carries its problem apart from its file (``_ImageError.problem``): the row's
outcome is ``BAD_IMAGE``, the report and ``estimate()`` count rows by problem, not by file.

Length: one idea, a cell to a content part, whose every refusal is written here next to the
check that makes it (about 320 lines).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import stat
import sys
from collections import Counter
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from holysheep_nb.chat import Messages
from holysheep_nb.errors import ConfigError
from holysheep_nb.image_files import (
    MIME_TYPES,
    ImageLimits,
    dimensions,
    image_tokens,
    megabytes,
    sniff,
)
from holysheep_nb.image_options import ImageOptions
from holysheep_nb.prompts import MISSING_PROMPT, Prompt, PromptSource

_SAVED_AS = ("PNG", "JPEG", "GIF", "WEBP")
#: A URL's scheme (``ftp://``, ``s3://``): not a file path, and not one the provider fetches.
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True, slots=True)
class ImageParts:
    """One row's images as content parts, their estimated input tokens (``image_files.
    image_tokens``), how many had no known size (URLs) and a digest of what is sent."""

    parts: tuple[Mapping[str, Any], ...]
    tokens: int
    unsized: int
    digest: str

    def attach(self, messages: Messages) -> Messages:
        """``messages`` with the images after the last message's text (no text part when
        the text is empty)."""
        *head, last = messages
        text = last.get("content") or ""
        parts = ({"type": "text", "text": text}, *self.parts) if text else self.parts
        return (*head, {**last, "content": list(parts)})

    def identity(self, text: str) -> str:
        """What makes two rows ask the same: their text and their images' bytes."""
        return f"{text}\x00images:{self.digest}"


class _ImageError(Exception):
    """A row's image cannot be sent: ``problem`` is the kind (the report's group, the same
    for every file with it), the message names the file."""

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class _Image:
    url: str
    size: tuple[int, int] | None
    nbytes: int


class ImagePromptSource(PromptSource):
    """A ``PromptSource`` whose rows carry images: each prompt has its ``ImageParts``."""

    text_required = False

    def __init__(
        self,
        frame: Any,
        column: Hashable | None,
        template: str | None,
        images: ImageOptions,
    ) -> None:
        super().__init__(frame, column, template)
        self.images = images
        names = self.adapter.columns(frame)
        for name in images.columns:
            if name not in names:
                raise ConfigError(
                    f"images= names no column {name!r}; columns are {list(names)[:20]}"
                )
        self._check_some_row_can_be_sent()

    def chunk(self, start: int, stop: int) -> Iterator[Prompt]:
        """The prompts of rows ``start:stop``, each with its images (or its row error)."""
        has_text = self.column is not None or self.template is not None
        texts = super().chunk(start, stop) if has_text else None
        columns = self.images.columns
        read = self.adapter.values
        for row in zip(*(read(self.frame, name, start, stop) for name in columns), strict=True):
            prompt = next(texts) if texts is not None else Prompt("")
            if prompt.text is None:
                yield prompt
                continue
            try:
                images = row_images(row, columns, self.images)
            except _ImageError as exc:
                yield Prompt(None, str(exc), image_problem=exc.problem)
                continue
            if images is not None:
                yield Prompt(prompt.text, images=images)
            else:
                yield prompt if prompt.text else Prompt(None, MISSING_PROMPT)

    def _check_some_row_can_be_sent(self) -> None:
        """``ConfigError`` when no row could be sent and images are why (rows are read
        until the first that can be: usually one), counting rows by problem."""
        problems: Counter[str] = Counter()
        first: dict[str, str] = {}
        for prompt in self.chunk(0, len(self)):
            if prompt.text is not None:
                return
            if prompt.image_problem is not None:
                problems[prompt.image_problem] += 1
                first.setdefault(prompt.image_problem, prompt.error or "")
        if problems:
            shown = "; ".join(
                f"{problem}: {rows:,} row{'s' if rows != 1 else ''}, e.g. {first[problem]}"
                for problem, rows in problems.most_common()
            )
            raise ConfigError(f"no row has an image that can be sent: {shown}")


def row_images(
    values: Sequence[object], columns: Sequence[Hashable], options: ImageOptions
) -> ImageParts | None:
    """One row's images as content parts (None: it has none), or ``_ImageError``."""
    limits = options.image_limits
    images = [
        image
        for value, name in zip(values, columns, strict=True)
        for image in _images(value, name, limits)
    ]
    if not images:
        return None
    if len(images) > limits.images_per_request:
        over = f"over the provider's limit of {limits.images_per_request} images a request"
        raise _ImageError(over, f"the row has {len(images)} images, {over}")
    total = sum(image.nbytes for image in images)
    if total > limits.per_request:
        over = f"over the provider's limit of {megabytes(limits.per_request)} a request"
        raise _ImageError(over, f"the row's images are {megabytes(total)} together, {over}")
    detail = options.image_detail
    shown: dict[str, str] = {"detail": detail} if detail is not None else {}
    parts = tuple({"type": "image_url", "image_url": {"url": i.url, **shown}} for i in images)
    digest = hashlib.sha256()
    for image in images:
        digest.update(image.url.encode())
        digest.update(b"\n")
    return ImageParts(
        parts,
        tokens=sum(image_tokens(image.size, detail) for image in images),
        unsized=sum(image.size is None for image in images),
        digest=f"{detail}:{digest.hexdigest()}",
    )


def _images(value: object, column: Hashable, limits: ImageLimits) -> list[_Image]:
    if isinstance(value, (list, tuple)):
        return [image for item in value for image in _images(item, column, limits)]
    if _missing(value):
        return []
    return [_image(value, column, limits)]


def _missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, (str, bytes, bytearray, memoryview, os.PathLike)):
        return False
    try:
        return bool(pd.isna(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False


def _image(value: object, column: Hashable, limits: ImageLimits) -> _Image:
    if isinstance(value, str):
        start = value[:8].lower()
        if start.startswith(("http://", "https://")):
            return _Image(value, None, 0)
        if start.startswith("data:"):
            return _from_bytes(
                _data_url_bytes(value, column), f"the data URL in {column!r}", limits, "is"
            )
        scheme = _URL_SCHEME.match(value)
        if scheme is not None:
            problem = "URL scheme not supported (http, https and data URLs only)"
            raise _ImageError(problem, f"{problem}: {value[:80]!r}")
        return _from_file(value, limits)
    if isinstance(value, os.PathLike):
        return _from_file(os.fsdecode(value), limits)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(value), f"the bytes in column {column!r}", limits, "are")
    if _is_pil(value):
        what = f"the PIL image in {column!r}"
        return _from_bytes(_pil_bytes(value, column), what, limits, "is")
    name = type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    raise _ImageError(
        "not an image",
        f"column {column!r} holds {article} {name}, not an image: pass file paths, "
        "bytes, PIL images or http(s) or data URLs",
    )


def _from_file(path: str, limits: ImageLimits) -> _Image:
    try:
        found = os.stat(path)
        if not stat.S_ISREG(found.st_mode):
            raise _ImageError(
                "cannot read image file", f"cannot read image file {path!r}: not a file"
            )
        size = found.st_size
        if size > limits.per_image:
            over = _over_image(limits)
            raise _ImageError(over, f"image file {path!r} is {megabytes(size)}, {over}")
        with open(path, "rb") as file:
            data = file.read(limits.per_image + 1)
    except FileNotFoundError:
        raise _ImageError("image file not found", _not_found(path)) from None
    except OSError as exc:
        raise _ImageError(
            "cannot read image file", f"cannot read image file {path!r}: {exc.strerror or exc}"
        ) from None
    return _from_bytes(data, f"image file {path!r}", limits, "is")


def _not_found(path: str) -> str:
    """The error of a file not found: a relative path says which folder it was read from
    (a notebook's working directory is the notebook's folder, often not the photos')."""
    message = f"image file not found: {path!r}"
    if not os.path.isabs(path):
        message += f" (a relative path is read from the working directory {os.getcwd()!r})"
    return message


def _over_image(limits: ImageLimits) -> str:
    return f"over the provider's limit of {megabytes(limits.per_image)} an image"


def _from_bytes(data: bytes, what: str, limits: ImageLimits, verb: str) -> _Image:
    """``data`` as an image; ``what`` names it in errors, ``verb`` agrees with it."""
    if len(data) > limits.per_image:
        over = _over_image(limits)
        raise _ImageError(over, f"{what} {verb} {megabytes(len(data))}, {over}")
    kind = sniff(data)
    if kind is None:
        problem = "not a PNG, JPEG, GIF or WebP image"
        raise _ImageError(problem, f"{what} {verb} {problem} (unknown format)")
    size = dimensions(data, kind)
    if size is None:
        problem = "damaged image header (no image size in it)"
        raise _ImageError(problem, f"{what} {verb} a damaged {kind.upper()} (no image size in it)")
    url = f"data:{MIME_TYPES[kind]};base64,{base64.b64encode(data).decode('ascii')}"
    return _Image(url, size, len(data))


def _data_url_bytes(url: str, column: Hashable) -> bytes:
    """The bytes of a ``data:image/...;base64,...`` URL (its MIME type is checked again
    against the bytes, and the URL rebuilt from them)."""
    head, comma, payload = url.partition(",")
    problem = "not a base64 data URL"
    if not comma or not head.lower().endswith(";base64"):
        raise _ImageError(problem, f"the data URL in {column!r} is {problem} ({head[:40]!r})")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _ImageError(problem, f"the data URL in {column!r} is not valid base64") from None


def _is_pil(value: object) -> bool:
    module = sys.modules.get("PIL.Image")
    return module is not None and isinstance(value, module.Image)


def _pil_bytes(image: Any, column: Hashable) -> bytes:
    """The PIL image saved in its own format when the provider takes it, else as PNG."""
    kind = image.format if image.format in _SAVED_AS else "PNG"
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=kind)
    except (OSError, ValueError) as exc:
        raise _ImageError(
            "PIL image cannot be saved",
            f"the PIL image in {column!r} cannot be saved as {kind}: {exc}",
        ) from None
    return buffer.getvalue()
