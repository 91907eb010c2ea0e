"""MNIST digits drawn the way the drawing page draws them: a round brush along the strokes.

The page (``service/static/app.js``) paints a white canvas (``#ffffff``), draws black strokes with
a round brush ``20/280`` of the canvas side wide, and sends ``canvas.toDataURL('image/png')``: an
RGBA PNG. Here an MNIST test digit's strokes are reduced to their centre lines (Zhang–Suen
thinning at 4x MNIST's resolution) and redrawn at any canvas size with that brush, antialiased
over one pixel at its edge as a browser's canvas antialiases a filled path.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

#: The page's brush, as a fraction of the canvas side (app.js: BRUSH = 20 / 280).
BRUSH = 20 / 280
#: How much of the canvas side the digit's taller side takes: a digit drawn to fill most of the
#: 280 px pad with a margin, as MNIST's digits fill 20 of their 28 px.
FILL = 0.65
#: Thinning resolution, in times MNIST's 28 px: fine enough that centre lines are smooth.
THIN_SCALE = 4
#: MNIST ink at or above this level (of 255) is stroke when the centre lines are found.
INK_LEVEL = 0.35


def _thin(mask: np.ndarray) -> np.ndarray:
    """Zhang–Suen thinning of a boolean mask: one-pixel-wide centre lines."""
    image = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = image
            n = [
                p[:-2, 1:-1],  # P2 (north), then clockwise
                p[:-2, 2:],
                p[1:-1, 2:],
                p[2:, 2:],
                p[2:, 1:-1],
                p[2:, :-2],
                p[1:-1, :-2],
                p[:-2, :-2],
            ]
            centre = p[1:-1, 1:-1]
            neighbours = sum(x.astype(np.int32) for x in n)
            ring = n + [n[0]]
            transitions = sum(((ring[i] == 0) & (ring[i + 1] == 1)).astype(np.int32) for i in range(8))
            if step == 0:
                a, b = n[0] * n[2] * n[4], n[2] * n[4] * n[6]
            else:
                a, b = n[0] * n[2] * n[6], n[0] * n[4] * n[6]
            delete = (centre == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & (a == 0) & (b == 0)
            if delete.any():
                image[1:-1, 1:-1][delete] = 0
                changed = True
        if not changed:
            return image[1:-1, 1:-1].astype(bool)


def centre_lines(digit: np.ndarray) -> np.ndarray:
    """The centre lines of a 28x28 MNIST digit as (x, y) points in canvas units (0..1), digit centred."""
    big = Image.fromarray(digit).resize((28 * THIN_SCALE, 28 * THIN_SCALE), Image.Resampling.BICUBIC)
    ink = np.asarray(big, dtype=np.float32) / 255 >= INK_LEVEL
    ys, xs = np.nonzero(_thin(ink))
    if len(xs) == 0:
        ys, xs = np.nonzero(ink)
    points = np.stack([xs, ys], axis=1).astype(np.float64) + 0.5
    low, high = points.min(axis=0), points.max(axis=0)
    scale = FILL / max(float((high - low).max()), 1.0)
    return np.asarray((points - (low + high) / 2) * scale + 0.5)


def ink_mask(points: np.ndarray, size: int, brush: float = BRUSH) -> np.ndarray:
    """Coverage (0..1) of a ``size`` px square canvas by a round brush (``brush`` x side) along ``points``.

    A pixel is covered by how far its centre lies inside the brush's edge, clipped to one pixel:
    the antialiasing a browser's canvas gives a filled path.
    """
    radius = brush * size / 2
    reach = int(np.ceil(radius + 1))
    distance = np.full((size, size), np.inf, dtype=np.float32)
    for x, y in points * size:
        left, right = max(0, int(x) - reach), min(size, int(x) + reach + 1)
        top, bottom = max(0, int(y) - reach), min(size, int(y) + reach + 1)
        cols = np.arange(left, right, dtype=np.float32) + 0.5 - x
        rows = np.arange(top, bottom, dtype=np.float32)[:, None] + 0.5 - y
        window = distance[top:bottom, left:right]
        np.minimum(window, np.sqrt(rows * rows + cols * cols), out=window)
    return np.asarray(np.clip(radius - distance + 0.5, 0, 1))


def canvas_png(points: np.ndarray, size: int, *, transparent: bool = False) -> bytes:
    """The PNG the page would send: RGBA, black ink on white paper (or on nothing, ``transparent``)."""
    coverage = ink_mask(points, size)
    rgba = np.zeros((size, size, 4), dtype=np.uint8)
    if transparent:
        # A canvas app that never paints the paper: black ink whose alpha is its coverage.
        rgba[..., 3] = np.rint(coverage * 255).astype(np.uint8)
    else:
        rgba[..., :3] = np.rint((1 - coverage) * 255).astype(np.uint8)[..., None]
        rgba[..., 3] = 255
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()
