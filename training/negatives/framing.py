"""Frame raw ink as the service frames an upload: what makes a generated negative look like one.

Longer side 20 px, strokes brought into MNIST's width band at 80 px, centre of mass at (14, 14)
of 28x28 (service/preprocess/frame.py does the same to uploads).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

Rng = np.random.Generator
Ink = np.ndarray  # float32 (H, W) in [0, 1], 1 = ink

SIZE = 28
#: MNIST fitted each digit into a 20x20 box inside 28x28, centre of mass at (14, 14).
BOX = 20
CENTRE = 14.0
#: The service measures and corrects stroke width with the longer side at 80 px, and brings
#: strokes into 1.7-2.3 px at the 20 px scale (MNIST's middle third). The same here, so a
#: negative's strokes look like an upload's.
STROKE_SIDE = 80
MIN_STROKE, MAX_STROKE = 1.7, 2.3


def stroke_width(mask: np.ndarray) -> float:
    """Twice the area over the perimeter: a long thin stroke's width (the service's measure)."""
    padded = np.pad(mask, 1)
    perimeter = np.count_nonzero(padded[1:] != padded[:-1]) + np.count_nonzero(padded[:, 1:] != padded[:, :-1])
    return 2.0 * np.count_nonzero(mask) / perimeter if perimeter else 0.0


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def to_mnist_form(ink: Ink) -> np.ndarray:
    """Frame ink as the service frames an upload: uint8 28x28, longer side 20, centred by mass.

    Raises ValueError for an empty canvas.
    """
    if float(ink.max(initial=0)) <= 0.05:
        raise ValueError("no ink")
    top, bottom, left, right = _bounds(ink > 0.05)
    crop = np.ascontiguousarray(ink[top:bottom, left:right], dtype=np.float32)
    longer = max(crop.shape)
    scale = STROKE_SIDE / longer
    middle = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    picture = Image.fromarray(crop).resize(middle, Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR)
    strokes = np.clip(np.asarray(picture, dtype=np.float32) / max(float(np.asarray(picture).max()), 1e-6), 0, 1)
    width = stroke_width(strokes > 0.5) * BOX / STROKE_SIDE
    # Whole-pixel dilation or erosion at 80 px (a quarter pixel at 20 px per step).
    steps = 0
    if width < MIN_STROKE:
        steps = round((MIN_STROKE - width) * STROKE_SIDE / BOX / 2)
    elif width > MAX_STROKE:
        steps = -round((width - MAX_STROKE) * STROKE_SIDE / BOX / 2)
    if steps:
        picture = Image.fromarray(np.pad(strokes, abs(steps) + 1))
        rank = ImageFilter.MaxFilter(3) if steps > 0 else ImageFilter.MinFilter(3)
        for _ in range(abs(steps)):
            picture = picture.filter(rank)
        eroded = np.asarray(picture, dtype=np.float32)
        strokes = eroded if eroded.max() > 0.05 else strokes  # never erode a mark away entirely
    top, bottom, left, right = _bounds(strokes > 0.02)
    strokes = np.ascontiguousarray(strokes[top:bottom, left:right])
    h, w = strokes.shape
    longer = max(h, w)
    final = (max(1, round(w * BOX / longer)), max(1, round(h * BOX / longer)))
    small = np.clip(np.asarray(Image.fromarray(strokes).resize(final, Image.Resampling.BOX)), 0, 1)
    return _centre(small)


def _centre(digit: np.ndarray) -> np.ndarray:
    h, w = digit.shape
    mass = float(digit.sum())
    row = float(digit.sum(1) @ np.arange(h)) / mass
    col = float(digit.sum(0) @ np.arange(w)) / mass
    top = min(max(math.floor(CENTRE - row + 0.5), 0), SIZE - h)
    left = min(max(math.floor(CENTRE - col + 0.5), 0), SIZE - w)
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top : top + h, left : left + w] = digit
    return np.round(out * 255).astype(np.uint8)


#: Generators draw on a square canvas of this side (pen widths in marks.py are in its pixels).
CANVAS = 96
