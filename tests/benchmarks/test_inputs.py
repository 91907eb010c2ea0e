"""The benchmark's real inputs and the page-size renderer: what they draw is what the page would send."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from benchmarks.canvas import BRUSH, canvas_png, centre_lines, ink_mask
from benchmarks.inputs import KINDS, PHONE_SIZE, SCAN_SIZE, real_inputs


def test_a_dot_covers_the_area_of_the_pages_brush() -> None:
    size = 280
    coverage = ink_mask(np.array([[0.5, 0.5]]), size)
    radius = BRUSH * size / 2
    assert coverage.sum() == pytest.approx(math.pi * radius**2, rel=0.02)
    assert coverage.max() == 1.0 and coverage[0, 0] == 0.0


def test_the_canvas_png_is_the_pages_format(mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = mnist_sample
    points = centre_lines(images[0])
    assert points.min() >= 0 and points.max() <= 1
    with Image.open(io.BytesIO(canvas_png(points, 280))) as opaque:
        assert (opaque.format, opaque.mode, opaque.size) == ("PNG", "RGBA", (280, 280))
        pixels = np.asarray(opaque)
    assert (pixels[..., 3] == 255).all()  # the page paints its paper white first
    assert set(np.unique(pixels[..., :3])) >= {0, 255}
    with Image.open(io.BytesIO(canvas_png(points, 280, transparent=True))) as clear:
        alpha = np.asarray(clear)[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255


def test_every_real_input_is_read_as_its_digit_by_the_service(mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    """Each input, through the service's own preprocessing and the shipped model, shows the digit it was drawn from."""
    import onnxruntime as ort

    from service import preprocess
    from service.config import DEFAULT_MODEL

    images, labels = mnist_sample
    inputs = real_inputs(images[0], int(labels[0]))
    assert [i.kind for i in inputs] == list(KINDS)
    sizes = {i.kind: i.size for i in inputs}
    assert sizes["phone"] == PHONE_SIZE and sizes["scan"] == SCAN_SIZE and sizes["mnist"] == (28, 28)
    assert len(next(i for i in inputs if i.kind == "phone").data) > 1_000_000  # a phone photo's size, not a toy's
    session = ort.InferenceSession(str(DEFAULT_MODEL), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for i in inputs:
        x = np.asarray(preprocess.image_to_input(i.data, 24_000_000), dtype=np.float32).reshape(1, 28, 28, 1)
        probabilities = session.run(["probabilities"], {name: x})[0]
        assert int(np.argmax(probabilities)) == i.label, i.kind
