"""Decoding client bytes: only our own decoders, within the pixel limit, at reduced size where the format allows."""

from __future__ import annotations

import io
import math
from typing import Final

from PIL import Image, ImageFile, PngImagePlugin, UnidentifiedImageError

from service.errors import (
    EMPTY_IMAGE,
    IMAGE_BOMB,
    UNDECODABLE_IMAGE,
    UNSUPPORTED_IMAGE_TYPE,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from service.preprocess.cost import ImageCost, check_cost, image_cost
from service.preprocess.form import WORK_PIXELS
from service.preprocess.sniff import own_format, sniff_other_format

#: Only these decoders may ever run on client bytes: every other PIL plugin is more attack surface.
DECODERS: Final = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")

#: JPEGs over this many pixels are decoded by libjpeg at 1/2, 1/4 or 1/8 scale (its DCT scaling),
#: to no fewer than WORK_PIXELS: below it the smallest useful scale (1/2) saves little.
DRAFT_PIXELS: Final = 4 * WORK_PIXELS

# A truncated upload must be refused, not silently padded with grey. Set once, here: every
# decoder this package runs is imported after it.
ImageFile.LOAD_TRUNCATED_IMAGES = False
#: PIL keeps a PNG's inflated text chunks, up to 64 MB of them by default: 60 KB of zTXt chunks
#: cost 1.2 s and 60 MB. Real files carry a few KB (XMP metadata up to about 100 KB).
PNG_TEXT_BYTES: Final = 1024 * 1024
PngImagePlugin.MAX_TEXT_MEMORY = PNG_TEXT_BYTES


def decode_image(data: bytes, max_pixels: int, cost: ImageCost | None = None) -> Image.Image:
    """Decode PNG, JPEG, WebP, BMP, GIF or TIFF bytes (first frame), refusing anything risky.

    The header is read and its cost checked first (:mod:`service.preprocess.cost`), so an image
    over any limit is refused before PIL parses it. ``cost`` is that header's ``image_cost``
    when the caller has read it already (the decoder lanes plan with it), so it is not read twice.
    """
    if not data:
        raise InvalidInput(EMPTY_IMAGE)
    if cost is None:
        cost = image_cost(data)
    check_cost(cost, max_pixels)
    try:
        image = Image.open(io.BytesIO(data), formats=DECODERS)
    except UnidentifiedImageError:
        own = own_format(data)
        if own is not None:
            # Our own format's signature, but the plugin could not even read the header.
            raise InvalidInput(UNDECODABLE_IMAGE.format(reason=f"truncated or corrupt {own} header")) from None
        other = sniff_other_format(data)
        if other is not None:
            raise UnsupportedMediaType(UNSUPPORTED_IMAGE_TYPE.format(content_type=other)) from None
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason="not a recognised image format")) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge(IMAGE_BOMB.format(limit=max_pixels)) from None
    except Exception as exc:  # any failure on client bytes is the client's
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason=failure_reason(exc, "unreadable header"))) from None

    width, height = image.size
    if (width, height) != (cost.width, cost.height):
        # PIL read the size elsewhere than our header parser (another directory, a frame):
        # the limits hold for what PIL will decode.
        check_cost(ImageCost(cost.format, width, height, cost.frames, cost.variant), max_pixels)
    if image.format == "JPEG" and width * height > DRAFT_PIXELS:
        # Let libjpeg scale big photos down while decoding: far faster, and the digit needs no
        # more than WORK_PIXELS anyway.
        scale = math.sqrt(WORK_PIXELS / (width * height))
        image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge(IMAGE_BOMB.format(limit=max_pixels)) from None
    except Exception as exc:  # any failure on client bytes is the client's
        reason = failure_reason(exc, f"corrupt {image.format} data" if image.format else "corrupt data")
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason=reason)) from None
    return image


def failure_reason(exc: BaseException, default: str) -> str:
    """A short, path-free reason for a decoder failure."""
    if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
        return "the file is truncated"
    if isinstance(exc, MemoryError):
        return "the image needs too much memory"
    return default
