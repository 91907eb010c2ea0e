"""A whole uploaded image as an ink map: the same decoding, polarity, levels and lighting as ``/predict``.

``/predict`` crops the one digit out of this map; ``/read`` keeps all of it, to find every digit.
The steps are preprocess's own (EXIF orientation, grey channel and alpha, Otsu polarity,
background level and noise, lighting fit, grain smoothing); :func:`ink_values` repeats the
order of ``preprocess._digit`` without its final crop. preprocess's private helpers are only
called from this module, so the day preprocess exposes the uncropped map, this file is the one
to change.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service import preprocess
from service.errors import NO_DIGIT, InvalidInput
from service.preprocess import frame as pframe
from service.preprocess import grey as pgrey
from service.preprocess import levels as plevels
from service.preprocess import pipeline as ppipeline

FloatArray = preprocess.FloatArray

#: Ink at or above this level (0-1, stroke core 1) is a stroke's core: what components are made of.
#: preprocess finds a digit's box on the same level.
STRONG = 0.5


@dataclass
class Ink:
    """An image's ink (white on black, background 0, stroke core 1) at preprocess's working size."""

    values: FloatArray
    #: Uploaded-image pixels (after EXIF orientation) per ink-map pixel, across and down.
    scale_x: float
    scale_y: float
    #: The decoded image, for the ``/predict`` path of a single digit.
    decoded: Image.Image

    @property
    def upload_size(self) -> tuple[int, int]:
        height, width = self.values.shape
        return round(width * self.scale_x), round(height * self.scale_y)


def ink_of(data: bytes, max_pixels: int) -> Ink:
    """Decode image bytes (same limits and errors as ``/predict``) into an ink map."""
    decoded = preprocess.decode_image(data, max_pixels)
    upright = ppipeline.upright(decoded)
    grey = pgrey.grey(pgrey.plain_mode(upright))
    values = ink_values(grey)
    width, height = _uploaded_size(data, decoded)
    if upright.size != decoded.size:
        width, height = height, width  # EXIF turned it a quarter
    return Ink(values, width / grey.width, height / grey.height, decoded)


def _uploaded_size(data: bytes, decoded: Image.Image) -> tuple[int, int]:
    """The uploaded image's size: big JPEGs are decoded scaled down (``draft``), so ask the header."""
    if decoded.format != "JPEG":
        return decoded.size
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as header:
            return header.size
    except Exception:  # already decoded once: cannot happen, but the decoded size is a fine answer
        return decoded.size


def ink_values(image: Image.Image) -> FloatArray:
    """A mode L image to float32 ink in [0, 1], in the order of ``preprocess._digit`` but uncropped."""
    p = plevels
    hist = np.array(image.histogram())
    grey: preprocess.ByteArray = np.asarray(image)
    threshold = p.otsu(hist)
    light = int(hist[threshold + 1 :].sum())
    if light == 0 or light == grey.size:
        raise InvalidInput(NO_DIGIT)
    if p.background_is_light(grey, threshold, light / grey.size):
        grey = np.subtract(255, grey, dtype=np.uint8)
        hist = hist[::-1]
        threshold = 254 - threshold
    floor, noise, core = p.levels(hist, threshold)
    if core - floor < p.MIN_CONTRAST:
        raise InvalidInput(NO_DIGIT)
    if noise == 0 or min(grey.shape) < 16:
        values: FloatArray = p.ramp(floor, noise, core)[grey]
    else:
        ink = grey.astype(np.float32) * np.float32(1 / 255)
        for _ in range(2):
            ink = ink - p.lighting(ink, ink <= (threshold + 0.5) / 255) + np.float32(p.LIFT)
            hist = p.histogram(ink)
            threshold = p.otsu(hist)
            floor, noise, core = p.levels(hist, threshold)
        if noise > p.NOISY * (core - floor):
            ink = p.blur3(ink)
            hist = p.histogram(ink)
            threshold = p.otsu(hist)
            floor, noise, core = p.levels(hist, threshold)
        if core - floor < p.MIN_CONTRAST:
            raise InvalidInput(NO_DIGIT)
        low, high = p.ramp_ends(floor, noise, core)
        values = np.clip((ink - np.float32(low)) * np.float32(1 / (high - low)), 0, 1).astype(np.float32)
    if not (values > STRONG).any():
        raise InvalidInput(NO_DIGIT)
    return values


def frame(crop: FloatArray) -> FloatArray:
    """One digit's ink crop to the model's 28x28 input, exactly as ``/predict`` frames its crop."""
    return pframe.frame(crop)
