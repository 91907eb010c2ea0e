"""PIL's BOX and BILINEAR resize of float images, as two matrix products with cached weights.

``Image.fromarray(values).resize(size, filter)`` and back costs three PIL and numpy layers
(about 25 us on a 80x60 crop) for a few thousand multiply-adds; the same filter as a weight
matrix per axis is two small matrix products. The weights are PIL's own (``precompute_coeffs``
in its ``Resample.c``: the filter sampled at each input pixel's centre, normalised per output
pixel), the sums are in double and each pass is rounded to float32, as PIL stores it, so the
result is PIL's to the bit (``tests/service/test_preprocess.py`` pins it on many sizes).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from service.preprocess.form import FloatArray

BOX: Final = Image.Resampling.BOX
BILINEAR: Final = Image.Resampling.BILINEAR
#: Each filter's half-width in input pixels at scale 1 (PIL's ``support``).
SUPPORT: Final = {BOX: 0.5, BILINEAR: 1.0}
#: Random images tried to tell PIL's pass order at a size (one nearly always does).
PROBES: Final = 16


def _box(x: float) -> float:
    return 1.0 if -0.5 < x <= 0.5 else 0.0


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


@lru_cache(maxsize=4096)
def weights(inside: int, outside: int, resample: Image.Resampling) -> NDArray[np.float64]:
    """The (outside, inside) matrix of PIL's weights for resizing one axis from ``inside`` to ``outside`` px."""
    function = _box if resample == BOX else _bilinear
    scale = inside / outside
    filterscale = max(scale, 1.0)
    support = SUPPORT[resample] * filterscale
    step = 1.0 / filterscale
    matrix = np.zeros((outside, inside))
    for out in range(outside):
        centre = (out + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        count = min(int(centre + support + 0.5), inside) - first
        taps = [function((x + first - centre + 0.5) * step) for x in range(count)]
        total = 0.0
        for tap in taps:  # summed in PIL's order, so the normalised weights are its own
            total += tap
        if total != 0.0:
            taps = [tap / total for tap in taps]
        matrix[out, first : first + count] = taps
    matrix.flags.writeable = False
    return matrix


@lru_cache(maxsize=4096)
def taps(inside: int, outside: int, resample: Image.Resampling) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Each output pixel's input pixels and weights, as (outside, taps) arrays (unused taps weigh 0)."""
    matrix = weights(inside, outside, resample)
    used = matrix != 0
    count = max(1, int(used.sum(axis=1).max()))
    first = np.minimum(used.argmax(axis=1), inside - count)
    index = first[:, None] + np.arange(count)
    weight = np.take_along_axis(matrix, index, axis=1)
    index.flags.writeable = weight.flags.writeable = False
    return index, weight


@lru_cache(maxsize=4096)
def vertical_first(shape: tuple[int, int], size: tuple[int, int], resample: Image.Resampling) -> bool:
    """Whether PIL resizes these sizes vertically first (newer Pillows choose the order by the sizes).

    The two orders round differently in the last float32 bit. Pillow's rule is its own, so it is
    asked once per size: resizes of random images until one tells the two orders apart.
    """
    generator = np.random.default_rng(0)
    for _ in range(PROBES):
        probe = generator.random(shape, dtype=np.float32)
        reference = np.asarray(Image.fromarray(probe).resize(size, resample), dtype=np.float32)
        horizontal = np.array_equal(reference, _passes(probe, size, resample, vertical=False))
        if horizontal != np.array_equal(reference, _passes(probe, size, resample, vertical=True)):
            return not horizontal
    return False  # the order makes no difference at these sizes


def resize(values: FloatArray, size: tuple[int, int], resample: Image.Resampling = BOX) -> FloatArray:
    """``values`` (float32, height x width) resized to ``size`` (width, height) exactly as PIL would."""
    height, width = values.shape
    if size == (width, height):
        return values
    vertical = size[0] != width and size[1] != height and vertical_first(values.shape, size, resample)
    return _passes(values, size, resample, vertical)


def _passes(values: FloatArray, size: tuple[int, int], resample: Image.Resampling, vertical: bool) -> FloatArray:
    width, height = size
    if vertical:
        values = _vertical(values, height, resample)
    if width != values.shape[1]:
        # Products in double, summed tap by tap in PIL's order (a matrix product's order and
        # fused multiply-adds would differ from it in the last bit).
        index, weight = taps(values.shape[1], width, resample)
        values = np.add.reduce(values[:, index] * weight, axis=2).astype(np.float32)
    if not vertical:
        values = _vertical(values, height, resample)
    return values


def _vertical(values: FloatArray, height: int, resample: Image.Resampling) -> FloatArray:
    if height == values.shape[0]:
        return values
    index, weight = taps(values.shape[0], height, resample)
    resized: FloatArray = np.add.reduce(values[index] * weight[:, :, None], axis=1).astype(np.float32)
    return resized
