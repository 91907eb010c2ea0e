"""service.preprocess.resample gives PIL's own resize of float images, to the bit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from service.preprocess.resample import BILINEAR, BOX, resize
from tests.service.imaging import glyph_mask


def pil_resize(values: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(values).resize(size, resample), dtype=np.float32)


@pytest.mark.parametrize("resample", [BOX, BILINEAR])
def test_equals_pil_on_random_sizes(resample: Image.Resampling) -> None:
    rng = np.random.default_rng(20261202)
    for _ in range(600):
        height, width = (int(n) for n in rng.integers(1, 130, 2))
        size = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
        if rng.random() < 0.3:  # upscaling too, as framing does for small digits
            size = (int(rng.integers(1, 200)), int(rng.integers(1, 200)))
        # Sparse ink on zeros, as a crop is, and dense noise.
        values = rng.random((height, width), dtype=np.float32) * (rng.random((height, width)) < rng.random())
        expected = pil_resize(values, size, resample)
        got = resize(values, size, resample)
        assert got.dtype == np.float32
        assert np.array_equal(got, expected), (values.shape, size, float(np.abs(got - expected).max()))


def test_equals_pil_on_framing_sizes() -> None:
    """The sizes framing uses: a digit up to STROKE_SIDE (80) px, and grown by stroke dilation, to 20 px."""
    mask = np.asarray(glyph_mask(96), dtype=np.float32) / np.float32(255)
    for height in range(20, 97, 3):
        for width in range(5, 97, 7):
            crop = np.ascontiguousarray(mask[:height, :width] * np.float32(0.93))
            longer = max(height, width)
            size = (max(1, round(width * 20 / longer)), max(1, round(height * 20 / longer)))
            assert np.array_equal(resize(crop, size), pil_resize(crop, size, BOX))


def test_same_size_is_returned_unchanged() -> None:
    values = np.ones((5, 7), dtype=np.float32)
    assert resize(values, (7, 5)) is values
