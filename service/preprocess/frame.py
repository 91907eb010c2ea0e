"""Framing and stroke width: the cropped digit to MNIST's 20 px box, centred by mass in 28x28.

On the way, strokes are brought into MNIST's range of widths: a fine pen or a fat marker
would otherwise reach the model as hairlines or blobs it never saw.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from PIL import Image

from service.errors import NO_DIGIT, InvalidInput
from service.preprocess.crop import bounds
from service.preprocess.form import BOX, CENTRE, SIZE, BoolArray, FloatArray

#: Strokes are measured and thickened or thinned with the digit at this many pixels on its
#: longer side: fine enough for one-pixel corrections to be small at the 20 px scale.
STROKE_SIDE: Final = 80

#: MNIST's stroke widths at the 20 px scale (twice area over perimeter): 5th percentile 1.2,
#: median 1.9, 95th percentile 2.9. Strokes outside this band (about MNIST's middle third) are
#: thickened or thinned into it: the real-world benchmark reads fine pens and markers best so.
MIN_STROKE: Final = 1.7
MAX_STROKE: Final = 2.3

#: Pixels above this share of the peak are the strokes (not their soft edges) ...
STROKE_SHARE: Final = 0.5
#: ... and the level at this rank among them is the stroke core, which maps to 1 (as in MNIST,
#: where the core is full-strength and only the edges are soft).
CORE_RANK: Final = 0.8
#: After rescaling, the stroke mask for measuring width is the ink above this level.
STROKE_LEVEL: Final = 0.5
#: Fractions of a morphological step below this are not worth the extra 3x3 pass.
MIN_STEP_FRACTION: Final = 0.05


def frame(digit: FloatArray) -> FloatArray:
    """Scale the cropped digit so its longer side is 20 px, then centre it by mass in 28x28.

    On the way the digit passes through STROKE_SIDE px, where its strokes are brought into
    MNIST's range of widths.
    """
    return frame_picture(float_picture(digit))


def float_picture(values: FloatArray) -> Image.Image:
    """A mode F image on float32 values: ``Image.fromarray`` without its dispatch on the array's type
    (65,000 against 81,000 instructions a call by callgrind, on the page's canvas)."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    return Image.frombuffer("F", (values.shape[1], values.shape[0]), values, "raw", "F", 0, 1)


def frame_picture(picture: Image.Image) -> FloatArray:
    """:func:`frame` for a crop that is already a mode F image (as the clean path's crop is made)."""
    width, height = picture.size
    longer = max(height, width)
    if longer >= 2 * STROKE_SIDE:
        # Integer box reduction first: exact area averaging, and cheaper than one big resize.
        picture = picture.reduce(longer // STROKE_SIDE)
    scale = STROKE_SIDE / longer
    middle = (max(1, round(width * scale)), max(1, round(height * scale)))
    if picture.size != middle:
        filter_ = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
        picture = picture.resize(middle, filter_)
    strokes = normalise_strokes(np.asarray(picture, dtype=np.float32))
    top, bottom, left, right = bounds(strokes > 0)
    strokes = strokes[top:bottom, left:right]
    height, width = strokes.shape
    longer = max(height, width)
    final = (max(1, round(width * BOX / longer)), max(1, round(height * BOX / longer)))
    reduced = float_picture(strokes).resize(final, Image.Resampling.BOX)
    return centre(np.clip(np.asarray(reduced, dtype=np.float32), 0, 1))


def normalise_strokes(digit: FloatArray) -> FloatArray:
    """Bring the stroke core back to 1 and the stroke width into MNIST's range, at STROKE_SIDE px.

    The result may be larger than the input (strokes grow outwards): the caller re-crops it.
    """
    peak = float(digit.max())
    if peak <= 0:
        raise InvalidInput(NO_DIGIT)
    strong = digit[digit > STROKE_SHARE * peak]
    rank = int(CORE_RANK * (strong.size - 1))
    core = float(np.partition(strong, rank)[rank])
    digit = np.clip(digit * np.float32(1 / core), 0, 1)
    stroke = stroke_width(digit > STROKE_LEVEL) * BOX / STROKE_SIDE
    if stroke < MIN_STROKE:
        return morph(digit, (MIN_STROKE - stroke) * STROKE_SIDE / BOX / 2, np.maximum)
    if stroke > MAX_STROKE:
        return morph(digit, (stroke - MAX_STROKE) * STROKE_SIDE / BOX / 2, np.minimum)
    return digit


def stroke_width(mask: BoolArray) -> float:
    """Mean stroke width in pixels: twice the area over the perimeter (a long thin stroke's)."""
    inner = np.count_nonzero(mask[1:] != mask[:-1]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1])
    outer = np.count_nonzero(mask[0]) + np.count_nonzero(mask[-1]) + np.count_nonzero(mask[:, 0])
    perimeter = inner + outer + np.count_nonzero(mask[:, -1])
    return 2.0 * np.count_nonzero(mask) / perimeter if perimeter else 0.0


def morph(digit: FloatArray, pixels: float, pick: np.ufunc) -> FloatArray:
    """Dilate (np.maximum) or erode (np.minimum) each stroke side by a possibly fractional pixel count.

    Grey-level 3x3 steps in numpy (PIL's rank filters are slow on float images); the fraction
    blends in part of one more step, so the width changes smoothly rather than in whole pixels.
    """
    whole = int(pixels)
    fraction = pixels - whole
    partial = fraction > MIN_STEP_FRACTION
    steps = whole + partial
    result = zero_padded(digit, steps)  # room to grow; outside the crop is background either way
    previous = result
    for _ in range(steps):
        previous = result
        padded = zero_padded(result, 1)
        rows = pick(pick(padded[:-2], padded[1:-1]), padded[2:])
        result = pick(pick(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])
    if partial:
        result = previous + np.float32(fraction) * (result - previous)
    return np.asarray(result, dtype=np.float32)


def zero_padded(values: FloatArray, width: int) -> FloatArray:
    """``np.pad(values, width)`` (zeros all round) without its Python machinery: 24 us a call on 80x60."""
    height, breadth = values.shape
    padded = np.zeros((height + 2 * width, breadth + 2 * width), dtype=values.dtype)
    padded[width : width + height, width : width + breadth] = values
    return padded


def centre(digit: FloatArray) -> FloatArray:
    """Paste into 28x28 with the centre of mass at (14, 14), as MNIST did (whole-pixel shift)."""
    height, width = digit.shape
    mass = float(digit.sum())
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    if mass <= 0:
        raise InvalidInput(NO_DIGIT)
    row = float(digit.sum(axis=1) @ np.arange(height, dtype=np.float32)) / mass
    col = float(digit.sum(axis=0) @ np.arange(width, dtype=np.float32)) / mass
    # Whole pixels, rounding halves up (round() would round them to even), kept inside the frame.
    top = min(max(math.floor(CENTRE - row + 0.5), 0), SIZE - height)
    left = min(max(math.floor(CENTRE - col + 0.5), 0), SIZE - width)
    out[top : top + height, left : left + width] = digit[: SIZE - top, : SIZE - left]
    return out
