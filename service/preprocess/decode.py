"""Decoding client bytes: only our own decoders, within the pixel limit, at reduced size where the format allows."""

from __future__ import annotations

import io
import math
from typing import Final

from PIL import Image, ImageFile, UnidentifiedImageError

from service.errors import (
    EMPTY_IMAGE,
    IMAGE_BOMB,
    IMAGE_TOO_LARGE,
    UNDECODABLE_IMAGE,
    UNSUPPORTED_IMAGE_TYPE,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)
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


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode PNG, JPEG, WebP, BMP, GIF or TIFF bytes (first frame), refusing anything risky."""
    if not data:
        raise InvalidInput(EMPTY_IMAGE)
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
    if width * height > max_pixels:
        raise PayloadTooLarge(
            IMAGE_TOO_LARGE.format(width=width, height=height, pixels=width * height, limit=max_pixels)
        )
    if width < 1 or height < 1:
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason="the image has no pixels"))
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
