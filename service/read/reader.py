"""One /read request's work: image bytes to candidate inputs, and the model's scores to a reading."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service import preprocess
from service.read.decode import DEFAULT, Choice, Weights, best_readings
from service.read.ink import FloatArray, Ink, ink_of
from service.read.pairs import PairModel, PairReadings, frame_pair, split_column
from service.read.segment import Layout, candidate_crop, frame_candidates, layout_of


@dataclass
class ReadWork:
    """Decode, segment and frame one image (a Prepare for the batcher); keeps what decoding needs."""

    data: bytes
    max_pixels: int
    #: The served model has a digit_score output (segment.atoms_of tries more cuts then).
    open_set: bool = False
    #: Reads marks that may be two touching digits whole (None: cuts only).
    pair_model: PairModel | None = None
    ink: Ink | None = field(default=None, init=False)
    layout: Layout | None = field(default=None, init=False)
    pairs: PairReadings = field(default_factory=PairReadings.none, init=False)

    def __call__(self) -> FloatArray:
        ink = ink_of(self.data, self.max_pixels)
        layout = layout_of(ink.values, self.open_set)
        # The candidate holding every mark of a one-line image is framed exactly as /predict
        # frames the image: a single digit gets /predict's answer.
        whole = preprocess.to_mnist(ink.decoded) if any(c.whole for c in layout.candidates) else None
        self.ink, self.layout = ink, layout
        if self.pair_model is not None and layout.pairs:
            crops = [candidate_crop(layout, ink.values, k) for k in layout.pairs]
            images = np.stack([frame_pair(crop) for crop in crops])
            first, second, scores = self.pair_model.run(images)
            keep = scores >= self.pair_model.threshold
            chosen = [n for n, yes in enumerate(keep.tolist()) if yes]
            self.pairs = PairReadings(
                [layout.pairs[n] for n in chosen],
                first[keep],
                second[keep],
                scores[keep],
                images[keep],
                [split_column(crops[n]) for n in chosen],
            )
        return frame_candidates(layout, ink.values, whole)


def read(
    work: ReadWork,
    probabilities: NDArray[np.float32],
    digit_scores: NDArray[np.float32] | None,
    weights: Weights = DEFAULT,
) -> list[list[Choice]]:
    """The candidates read, per line (each as one digit, or as two by the pair model)."""
    assert work.layout is not None
    return best_readings(work.layout, probabilities, digit_scores, weights, work.pairs)


@dataclass(frozen=True)
class DigitReading:
    """One digit of a reading: its ten probabilities, digit_score, ink-map box and model input."""

    probabilities: NDArray[np.float32]
    digit_score: float
    box: tuple[int, int, int, int]
    image: NDArray[np.float32]  # (28, 28): a pair's digit gets its half of the pair model's input


def digits_of(
    work: ReadWork,
    lines: list[list[Choice]],
    probabilities: NDArray[np.float32],
    digit_scores: NDArray[np.float32] | None,
    inputs: NDArray[np.float32],
) -> list[list[DigitReading]]:
    """The digits of each line read, left to right: a pair reading gives two, split where its ink is least."""
    assert work.layout is not None and work.ink is not None
    out = []
    for line in lines:
        digits = []
        for choice in line:
            k = choice.candidate
            box = work.layout.candidates[k].box
            if choice.pair is None:
                score = 1.0 if digit_scores is None else float(digit_scores[k])
                digits.append(DigitReading(probabilities[k], score, box, inputs[k]))
                continue
            p, pairs = choice.pair, work.pairs
            top, bottom, left, right = box
            middle = left + pairs.splits[p] - 1  # the crop starts a pixel left of the box
            middle = min(max(middle, left + 1), right - 1)
            score = float(pairs.scores[p])
            image = pairs.images[p]
            half = image.shape[1] // 2  # the pair model's input is two digits' inputs wide
            digits.append(DigitReading(pairs.first[p], score, (top, bottom, left, middle), image[:, :half]))
            digits.append(DigitReading(pairs.second[p], score, (top, bottom, middle, right), image[:, half:]))
        out.append(digits)
    return out


def upload_box(ink: Ink, box: tuple[int, int, int, int]) -> dict[str, Any]:
    """An ink-map box (top, bottom, left, right) in the uploaded image's pixels, rounded outwards."""
    top, bottom, left, right = box
    width, height = ink.upload_size
    x0, x1 = int(np.floor(left * ink.scale_x)), min(width, int(np.ceil(right * ink.scale_x)))
    y0, y1 = int(np.floor(top * ink.scale_y)), min(height, int(np.ceil(bottom * ink.scale_y)))
    return {"x": x0, "y": y0, "width": max(1, x1 - x0), "height": max(1, y1 - y0)}
