"""Image content parts on the local server: their form checked as OpenAI does, and read.

``content_problem`` finds what OpenAI's chat completions refuse in a message's content array
(``{"type": "text", "text": ...}`` and ``{"type": "image_url", "image_url": {"url": ...,
"detail": ...}}`` parts; images only in user messages; a data URL of PNG, JPEG, GIF or WebP
bytes) and words it as OpenAI does, with the ``param`` path. ``describe_image`` turns one image
part into words the rule-based answers read (``answers.message_text``): the format, the size
and, for an 8-bit non-interlaced PNG, its dominant colour, so that a label set of colours gets
the image's colour (any other image says ``colour not read``); an image by URL is described by
its URL (nothing is fetched). The same
image always gets the same words, so the simulated answer depends on the image alone.

``request_prompt_tokens`` is the ``usage.prompt_tokens`` of a request: its text at four
characters a token plus four a message, and each image by OpenAI's tile rule
(``image_files.image_tokens``, from the size in its header; 85 for an image by URL), the rule
the client's estimate uses, so that an offline ``estimate()`` and the run's report agree.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from holysheep_nb.image_files import DETAILS, dimensions, image_tokens, sniff

__all__ = ["UNREAD", "content_problem", "describe_image", "request_prompt_tokens"]

#: The words of an image whose colour was not read (a JPEG, a large PNG): the answer then
#: guesses no label (``answers.choose_labels``) rather than claim a colour it never saw.
UNREAD = "colour not read"

#: Content part types OpenAI's chat completions know (its "Invalid value" message lists them).
_PART_TYPES = ("text", "image_url", "input_audio", "refusal", "audio", "file")
#: Named colours the dominant colour is rounded to.
_COLOURS = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "grey": (128, 128, 128),
    "red": (255, 0, 0),
    "green": (0, 160, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "orange": (255, 140, 0),
    "purple": (128, 0, 128),
    "cyan": (0, 255, 255),
    "pink": (255, 105, 180),
    "brown": (139, 69, 19),
}
#: At most this many pixels are looked at for the colour (evenly spread), in a PNG of at
#: most this many decoded bytes (pure Python: larger ones get no colour).
_SAMPLED_PIXELS = 4096
_MAX_DECODED = 1_000_000
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> bytes per pixel at 8 bits


def content_problem(messages: Sequence[Mapping[str, Any]]) -> tuple[str, str, str] | None:
    """``(message, param, code)`` of the first content OpenAI would refuse, or None."""
    for index, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        where = f"messages[{index}].content"
        if not content:
            return (
                f"Invalid '{where}': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                where,
                "empty_array",
            )
        for number, part in enumerate(content):
            problem = _part_problem(part, f"{where}[{number}]", message.get("role"))
            if problem is not None:
                return problem
    return None


def _part_problem(part: object, where: str, role: object) -> tuple[str, str, str] | None:
    if not isinstance(part, Mapping):
        return (f"Invalid type for '{where}': expected an object.", where, "invalid_type")
    kind = part.get("type")
    if kind is None:
        return (f"Missing required parameter: '{where}.type'.", f"{where}.type", "missing")
    if kind not in _PART_TYPES:
        known = ", ".join(f"'{name}'" for name in _PART_TYPES[:-1])
        return (
            f"Invalid value: {kind!r}. Supported values are: {known}, and '{_PART_TYPES[-1]}'.",
            f"{where}.type",
            "invalid_value",
        )
    if kind == "text":
        if not isinstance(part.get("text"), str):
            return _required(f"{where}.text", part.get("text"))
        return None
    if kind != "image_url":
        return None
    if role != "user":
        return (
            f"Invalid '{where.split('.')[0]}': Image URLs are only allowed for messages with "
            f"role 'user', but this message with role '{role}' contains an image URL.",
            where.split(".")[0],
            "invalid_value",
        )
    image = part.get("image_url")
    if not isinstance(image, Mapping):
        return _required(f"{where}.image_url", image)
    url = image.get("url")
    if not isinstance(url, str):
        return _required(f"{where}.image_url.url", url)
    detail = image.get("detail")
    if detail is not None and detail not in DETAILS:
        return (
            f"Invalid value: {detail!r}. Supported values are: 'auto', 'low', and 'high'.",
            f"{where}.image_url.detail",
            "invalid_value",
        )
    if url.startswith("data:"):
        data = _data(url)
        if data is None or sniff(data) is None:
            return (
                "You uploaded an unsupported image. Please make sure your image has of one the "
                "following formats: ['png', 'jpeg', 'gif', 'webp'].",
                f"{where}.image_url.url",
                "invalid_image_format",
            )
    elif not url.startswith(("http://", "https://")):
        return (
            f"Invalid '{where}.image_url.url'. Expected a valid URL, but got a value with an "
            "invalid format.",
            f"{where}.image_url.url",
            "invalid_value",
        )
    return None


def _required(param: str, value: object) -> tuple[str, str, str]:
    if value is None:
        return (f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
    expected = "an object" if param.endswith("image_url") else "a string"
    return (
        f"Invalid type for '{param}': expected {expected}, but got {type(value).__name__} instead.",
        param,
        "invalid_type",
    )


def _data(url: str) -> bytes | None:
    head, comma, payload = url.partition(",")
    if not comma or not head.endswith(";base64"):
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


def request_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """The prompt tokens of ``messages``: ``ceil(characters / 4) + 4`` a message for the text
    (a string content, or the text parts of an array), plus each image part's tokens by
    OpenAI's tile rule at its ``detail`` (the size read from a data URL's header; an image by
    URL, not fetched, counts 85)."""
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += -(-len(content) // 4) + 4
            continue
        parts = [part for part in content if isinstance(part, Mapping)] if content else []
        text = sum(len(str(part.get("text") or "")) for part in parts if part.get("type") == "text")
        total += -(-text // 4) + 4
        total += sum(_image_tokens(part) for part in parts if part.get("type") == "image_url")
    return total


def _image_tokens(part: Mapping[str, Any]) -> int:
    image = part.get("image_url")
    if not isinstance(image, Mapping):
        return 0
    url, detail = image.get("url"), image.get("detail")
    size = None
    if isinstance(url, str) and url.startswith("data:"):
        data = _data(url) or b""
        kind = sniff(data)
        size = dimensions(data, kind) if kind is not None else None
    return image_tokens(size, detail if isinstance(detail, str) else None)


def describe_image(part: Mapping[str, Any]) -> str:
    """Words for one ``image_url`` part: ``[image png 8x8 red]``; ``[image https://...]``."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else None
    if not isinstance(url, str):
        return "[image]"
    if not url.startswith("data:"):
        return f"[image {url}]"
    data = _data(url) or b""
    kind = sniff(data)
    if kind is None:
        return "[image]"
    size = dimensions(data, kind)
    words = [kind, f"{size[0]}x{size[1]}" if size else "unknown size"]
    colour = dominant_colour(data) if kind == "png" else None
    words.append(colour if colour is not None else UNREAD)
    return f"[image {' '.join(words)}]"


def dominant_colour(png: bytes) -> str | None:
    """The named colour most pixels of an 8-bit, non-interlaced PNG are closest to, or None
    for another PNG (16-bit, interlaced, damaged)."""
    try:
        pixels = _png_pixels(png)
    except (ValueError, IndexError, zlib.error):
        return None
    if not pixels:
        return None
    counts = Counter(_nearest(pixel) for pixel in pixels)
    return min(counts, key=lambda name: (-counts[name], name))


def _nearest(rgb: tuple[int, int, int]) -> str:
    return min(
        _COLOURS,
        key=lambda name: sum((a - b) ** 2 for a, b in zip(rgb, _COLOURS[name], strict=True)),
    )


def _png_pixels(png: bytes) -> list[tuple[int, int, int]]:
    """Up to ``_SAMPLED_PIXELS`` RGB pixels of the PNG, evenly spread."""
    at, header, palette, idat = 8, b"", b"", bytearray()
    while at + 8 <= len(png):
        length = int.from_bytes(png[at : at + 4], "big")
        kind, body = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"PLTE":
            palette = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        at += 12 + length
    if len(header) < 13:
        raise ValueError("no IHDR")
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, colour_type, interlace = header[8], header[9], header[12]
    if depth != 8 or interlace != 0 or colour_type not in _CHANNELS:
        return []
    if width * height * _CHANNELS[colour_type] > _MAX_DECODED:
        return []
    step = _CHANNELS[colour_type]
    rows = _unfilter(zlib.decompress(bytes(idat)), width * step, height, step)
    stride = max(1, (width * height) // _SAMPLED_PIXELS)
    pixels = []
    for index in range(0, width * height, stride):
        row, column = divmod(index, width)
        value = rows[row][column * step : column * step + step]
        if colour_type == 3:
            value = palette[value[0] * 3 : value[0] * 3 + 3]
        elif colour_type in (0, 4):
            value = bytes((value[0],) * 3)
        pixels.append((value[0], value[1], value[2]))
    return pixels


def _unfilter(data: bytes, row_bytes: int, height: int, step: int) -> list[bytes]:
    """The PNG's scanlines with their filters (None, Sub, Up, Average, Paeth) undone."""
    rows: list[bytes] = []
    previous = bytes(row_bytes)
    for row in range(height):
        start = row * (row_bytes + 1)
        kind, line = data[start], bytearray(data[start + 1 : start + 1 + row_bytes])
        for i in range(row_bytes):
            left = line[i - step] if i >= step else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                corner = previous[i - step] if i >= step else 0
                line[i] = (line[i] + _paeth(left, up, corner)) & 0xFF
        previous = bytes(line)
        rows.append(previous)
    return rows


def _paeth(left: int, up: int, corner: int) -> int:
    guess = left + up - corner
    far_left, far_up, far_corner = abs(guess - left), abs(guess - up), abs(guess - corner)
    if far_left <= far_up and far_left <= far_corner:
        return left
    return up if far_up <= far_corner else corner
