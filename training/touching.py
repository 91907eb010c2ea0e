"""Touching digits, made from MNIST *training* digits: what ``/read`` must split, as training data.

People write numbers fast, so neighbouring digits touch. ``/read`` cuts such a mark between its
digits and classifies each piece; a piece is rarely a clean digit: it keeps a sliver of its
neighbour, or loses a bit of its own stroke where the cut went through shared ink. And the
uncut mark must not pass for one digit (``41`` read as a 4). This module makes both:

- :func:`pair`: two digits whose ink touches or overlaps a little, as ``benchmarks/read_numbers.py``
  composes its touching set (but from training digits, at MNIST's resolution). Framed whole, it is
  a negative (:mod:`training.negatives` uses it for ``multi_digit``);
- :func:`pieces`: each digit of such a pair cut out along a straight line near where the two meet
  (the service's cut follows the least ink, which is near there), labelled with that digit, kept
  only when the piece holds most of its digit and little of the neighbour. They are extra positives.

Both are framed by :func:`training.negatives.to_mnist_form`, as the service frames a candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image

Rng = np.random.Generator

#: Digits are composed at this many times MNIST's 28 px, so an overlap can be a fraction of a
#: 28-px pixel, as it is in an upload of a 60-120 px tall number.
SCALE: Final = 2
#: The right digit's ink starts this share of the digit height left of where the inks would
#: first touch (negative: a gap). The benchmark's touching set overlaps 0-6%; a little more
#: either way keeps the model from learning one exact spacing.
OVERLAP: Final = (-0.02, 0.08)
#: The right digit's baseline moves by up to this share of the height (a drifting baseline).
DRIFT: Final = 0.08
#: A cut line leans by up to this many columns per row either way (cut paths bend round strokes).
LEAN: Final = 0.25
#: A piece is a positive only when it holds at least this share of its own digit's ink ...
MIN_OWN: Final = 0.85
#: ... and at most this share of its ink is the neighbour's. Beyond these it is a bad cut that
#: the reading should reject, as digit pieces are (training.negatives' ``digit_piece``).
MAX_OTHER: Final = 0.2
#: Ink level of a stroke's core (0-1), for where the inks touch.
INK: Final = 0.3


@dataclass(frozen=True)
class Pair:
    """Two composed digits: each one's ink on the shared canvas, and where they meet."""

    left: np.ndarray  # (H, W) float32, 0-1: the left digit's ink only
    right: np.ndarray  # the right digit's ink only
    meet: int  # column of the canvas about where the two inks meet

    @property
    def ink(self) -> np.ndarray:
        return np.asarray(np.maximum(self.left, self.right), np.float32)


def _digit(image: np.ndarray) -> np.ndarray:
    """A 28x28 uint8 digit at SCALE, cropped to its ink, as floats 0-1."""
    size = 28 * SCALE
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR)
    big: np.ndarray = np.asarray(resized, np.float32) / 255
    ys, xs = np.nonzero(big > 0.05)
    return np.asarray(big[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])


def _touch_shift(left: np.ndarray, right: np.ndarray, dy: int) -> int:
    """The column (of ``left``'s canvas) where ``right``, ``dy`` rows lower, would just touch its ink."""
    rows = range(max(0, dy), min(left.shape[0], dy + right.shape[0]))
    shift = 0
    for y in rows:
        a = np.flatnonzero(left[y] > INK)
        b = np.flatnonzero(right[y - dy] > INK)
        if len(a) and len(b):
            shift = max(shift, int(a[-1]) - int(b[0]) + 1)
    return shift


def pair(rng: Rng, a: np.ndarray, b: np.ndarray) -> Pair:
    """Digits ``a`` and ``b`` (28x28 uint8) side by side, their inks touching or overlapping a little."""
    left, right = _digit(a), _digit(b)
    height = max(left.shape[0], right.shape[0])
    dy = int(round(rng.uniform(-DRIFT, DRIFT) * height)) + (left.shape[0] - right.shape[0]) // 2
    x = _touch_shift(left, right, dy) - int(round(rng.uniform(*OVERLAP) * height))
    x = max(x, 1)
    top = min(0, dy)
    rows = max(left.shape[0], dy + right.shape[0]) - top
    cols = max(left.shape[1], x + right.shape[1])
    first = np.zeros((rows, cols), np.float32)
    second = np.zeros((rows, cols), np.float32)
    first[-top : -top + left.shape[0], : left.shape[1]] = left
    second[dy - top : dy - top + right.shape[0], x : x + right.shape[1]] = right
    return Pair(first, second, (x + left.shape[1]) // 2)


def _cut(p: Pair, rng: Rng) -> np.ndarray:
    """A boolean mask of the canvas left of a straight cut line through where the digits meet."""
    rows, cols = p.left.shape
    left_ink = np.flatnonzero(p.left.max(0) > INK)
    right_ink = np.flatnonzero(p.right.max(0) > INK)
    # Between where the right digit starts and the left one ends (the shared columns), or at the gap.
    low, high = sorted((int(right_ink[0]), int(left_ink[-1]) + 1))
    column = rng.uniform(low - SCALE, high + SCALE)
    lean = rng.uniform(-LEAN, LEAN)
    ys, xs = np.mgrid[0:rows, 0:cols]
    return np.asarray(xs < column + lean * (ys - rows / 2))


def pieces(rng: Rng, a: np.ndarray, b: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """The pieces of a touching pair of ``a`` and ``b`` that are good cuts: (ink, 0 for a / 1 for b)."""
    p = pair(rng, a, b)
    keep = _cut(p, rng)
    found = []
    for side, (own, other, region) in enumerate(((p.left, p.right, keep), (p.right, p.left, ~keep))):
        own_in = float(own[region].sum())
        other_in = float(other[region].sum())
        if own_in >= MIN_OWN * float(own.sum()) and other_in <= MAX_OTHER * (own_in + other_in):
            found.append((np.where(region, p.ink, 0).astype(np.float32), side))
    return found


def make_pieces(count: int, *, seed: int, digits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``count`` cut pieces in MNIST form (uint8 28x28) and their digit labels; reproducible by seed."""
    from training.negatives import to_mnist_form  # negatives builds its pairs with this module

    rng = np.random.default_rng(seed)
    images = np.zeros((count, 28, 28), np.uint8)
    out = np.zeros(count, np.uint8)
    made = 0
    while made < count:
        i, j = (int(k) for k in rng.integers(len(digits), size=2))
        for ink, side in pieces(rng, digits[i], digits[j]):
            if made < count and float(ink.max()) > 0.05:
                images[made] = to_mnist_form(ink)
                out[made] = labels[j if side else i]
                made += 1
    return images, out
