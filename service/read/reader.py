"""One /read request's work: image bytes to candidate inputs, and the model's scores to a reading."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service import preprocess
from service.read.decode import DEFAULT, Weights, best_readings
from service.read.ink import FloatArray, Ink, ink_of
from service.read.segment import Layout, frame_candidates, layout_of


@dataclass
class ReadWork:
    """Decode, segment and frame one image (a Prepare for the batcher); keeps what decoding needs."""

    data: bytes
    max_pixels: int
    #: The served model has a digit_score output (segment.atoms_of tries more cuts then).
    open_set: bool = False
    ink: Ink | None = field(default=None, init=False)
    layout: Layout | None = field(default=None, init=False)

    def __call__(self) -> FloatArray:
        ink = ink_of(self.data, self.max_pixels)
        layout = layout_of(ink.values, self.open_set)
        # The candidate holding every mark of a one-line image is framed exactly as /predict
        # frames the image: a single digit gets /predict's answer.
        whole = preprocess.to_mnist(ink.decoded) if any(c.whole for c in layout.candidates) else None
        self.ink, self.layout = ink, layout
        return frame_candidates(layout, ink.values, whole)


def read(
    work: ReadWork,
    probabilities: NDArray[np.float32],
    digit_scores: NDArray[np.float32] | None,
    weights: Weights = DEFAULT,
) -> list[list[int]]:
    """The candidates read, per line."""
    assert work.layout is not None
    return best_readings(work.layout, probabilities, digit_scores, weights)


def upload_box(ink: Ink, box: tuple[int, int, int, int]) -> dict[str, Any]:
    """An ink-map box (top, bottom, left, right) in the uploaded image's pixels, rounded outwards."""
    top, bottom, left, right = box
    width, height = ink.upload_size
    x0, x1 = int(np.floor(left * ink.scale_x)), min(width, int(np.ceil(right * ink.scale_x)))
    y0, y1 = int(np.floor(top * ink.scale_y)), min(height, int(np.ceil(bottom * ink.scale_y)))
    return {"x": x0, "y": y0, "width": max(1, x1 - x0), "height": max(1, y1 - y0)}
