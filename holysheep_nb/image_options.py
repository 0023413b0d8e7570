"""The image options of a call, ``images``, ``image_detail`` and ``image_limits``: one option
group (``job_options.OPTION_GROUPS``), so an unknown name still errors and the docs table and
``RunOptions`` follow. What they do is ``holysheep_nb.images``'s (this module imports no
pandas: the accessor loads it at import).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal

from holysheep_nb.errors import ConfigError
from holysheep_nb.image_files import DETAILS, ImageLimits
from holysheep_nb.option import NO_FLAG, Flag, option

Detail = Literal["low", "high", "auto"]

#: Rows prepared at a time in an image run when ``chunk_size`` is not given: a chunk's
#: images are held as base64 text until sent, so fewer than for text.
IMAGE_CHUNK_SIZE = 64


def _detail(text: str) -> str:
    """``--image-detail``'s value: one of ``DETAILS`` (``ValueError`` else)."""
    if text not in DETAILS:
        raise ValueError(f"expected low, high or auto, got {text!r}")
    return text


@dataclass(frozen=True)
class ImageOptions:
    """The image options of a call (one option group, ``job_options.OPTION_GROUPS``)."""

    images: Hashable | list[Hashable] | None = option(
        None,
        "column(s) of images sent after each row's text: paths, URLs, bytes (in Python: PIL too)",
        flags=(Flag(parse=str, metavar="COL", nargs="+"),),
    )
    image_detail: Detail | None = option(
        None,
        "'low', 'high' or 'auto': each image's detail (none: not sent, auto)",
        flags=(Flag(parse=_detail, metavar="DETAIL"),),
    )
    image_limits: ImageLimits = option(
        doc="bytes per image and per request the provider takes (OpenAI's by default)",
        default_factory=ImageLimits,
        flags=NO_FLAG,
    )

    def __post_init__(self) -> None:
        if self.image_detail is not None and self.image_detail not in DETAILS:
            raise ConfigError(
                f"image_detail must be 'low', 'high' or 'auto', got {self.image_detail!r}"
            )
        if not isinstance(self.image_limits, ImageLimits):
            raise ConfigError(
                f"image_limits must be an ImageLimits, got {type(self.image_limits).__name__}"
            )
        if isinstance(self.images, (list, tuple)) and not self.images:
            raise ConfigError("images= names no column: pass images='photo' or a list of columns")

    @property
    def columns(self) -> tuple[Hashable, ...]:
        """The image columns, in the order their images are sent."""
        if isinstance(self.images, (list, tuple)):
            return tuple(self.images)
        return (self.images,)

    @classmethod
    def take(cls, options: dict[str, Any]) -> ImageOptions | None:
        """The image options taken out of ``options``; None when ``images`` is not given."""
        given = {name: options.pop(name) for name in _NAMES if name in options}
        if given.get("images") is None:
            if any(value is not None for value in given.values()):
                raise ConfigError(
                    "image_detail and image_limits apply to images=: pass images='column'"
                )
            return None
        return cls(**given)


_NAMES = ("images", "image_detail", "image_limits")
