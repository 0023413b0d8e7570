"""Image bytes as a provider sees them: the format, the pixel size and the token cost.

Read from the bytes alone (no Pillow): the format from its magic bytes, the width and height
from its header. The formats and limits are OpenAI's "Image input requirements" (PNG, JPEG,
WebP and non-animated GIF; up to 20 MB an image, 50 MB of image bytes a request:
https://platform.openai.com/docs/guides/images-vision). An animated GIF is not told apart
from a still one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from holysheep_nb.errors import ConfigError

#: MIME type by format name, for the four formats OpenAI takes.
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}

#: Tokens of an image at ``detail: "low"``, and the base of every ``high`` image.
LOW_DETAIL_TOKENS = 85
#: Tokens of each 512 px tile of a ``high`` image.
TILE_TOKENS = 170
DETAILS = ("low", "high", "auto")


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What the provider takes: bytes per image, image bytes per request, images per request.

    The defaults are OpenAI's (see the module docstring), in decimal megabytes so that a
    file under the limit here is under it however the provider counts. Another provider's
    (Anthropic's 5 MB an image, say) go in ``image_limits=ImageLimits(...)``.
    """

    per_image: int = 20_000_000
    per_request: int = 50_000_000
    images_per_request: int = 500

    def __post_init__(self) -> None:
        for name in ("per_image", "per_request", "images_per_request"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ImageLimits.{name} must be a whole number >= 1, got {value!r}")


def sniff(data: bytes) -> str | None:
    """The format of ``data`` from its magic bytes: ``png``, ``jpeg``, ``gif``, ``webp``, or
    None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def dimensions(data: bytes, kind: str) -> tuple[int, int] | None:
    """``(width, height)`` in pixels from the header of ``data`` (of format ``kind``), or
    None when the header is cut short or malformed."""
    try:
        if kind == "png" and data[12:16] == b"IHDR":
            size = (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
        elif kind == "gif":
            size = (int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little"))
        elif kind == "webp":
            size = _webp_size(data)
        elif kind == "jpeg":
            size = _jpeg_size(data)
        else:
            return None
    except IndexError:
        return None
    return size if size[0] > 0 and size[1] > 0 else None


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy: the key frame's size
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        return width, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:  # lossless: two 14-bit fields, each size - 1
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: the canvas, two 24-bit fields, each size - 1
        width = int.from_bytes(data[24:27], "little") + 1
        return width, int.from_bytes(data[27:30], "little") + 1
    return 0, 0


#: JPEG start-of-frame markers (baseline, progressive, lossless ...); C4, C8 and CC are not.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """The size in the first start-of-frame segment, walking the segments before it."""
    at = 2
    while at + 9 < len(data):
        if data[at] != 0xFF:
            return 0, 0
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _SOF:
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            return int.from_bytes(data[at + 7 : at + 9], "big"), height
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            at += 2
            continue
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return 0, 0


def image_tokens(size: tuple[int, int] | None, detail: str | None) -> int:
    """Input tokens of one image by OpenAI's published rule ("Calculating costs",
    https://platform.openai.com/docs/guides/images-vision, the GPT-4o / GPT-4.1 / o-series
    tile rule).

    ``detail="low"``: 85 tokens. ``high`` (and ``auto`` or unset, counted as ``high``: an
    upper bound, the model may choose low): the image is scaled to fit in 2048 x 2048, then
    so that its shorter side is 768 px (neither step enlarges it); each 512 px tile of the
    result costs 170 tokens, plus 85. 1024 x 1024 -> 765; 2048 x 4096 -> 1105. ``size``
    None (an image by URL, not fetched): 85, the least any image costs. Models billed by
    32 px patches (gpt-4.1-mini ...) count differently; this is an estimate.
    """
    if detail == "low" or size is None:
        return LOW_DETAIL_TOKENS
    width, height = Fraction(size[0]), Fraction(size[1])
    scale = min(Fraction(1), Fraction(2048) / max(width, height))
    width, height = width * scale, height * scale
    scale = min(Fraction(1), Fraction(768) / min(width, height))
    width, height = width * scale, height * scale
    tiles = math.ceil(width / 512) * math.ceil(height / 512)
    return TILE_TOKENS * tiles + LOW_DETAIL_TOKENS


def megabytes(count: int) -> str:
    """``count`` bytes as decimal megabytes, as the limits are given (``20.0 MB``), or as
    bytes when under 0.1 MB."""
    return f"{count / 1_000_000:.1f} MB" if count >= 100_000 else f"{count:,} bytes"
