"""Two touching digits read at once: the pair model (``training/pairs.py``) on marks ``/read`` may cut.

Where two digits touch, ``/read`` cuts the mark along the least ink and reads each piece; but
where they share ink no cut leaves two clean pieces. So a mark that may be two digits is also
read whole by the pair model: ``first`` and ``second`` (each digit's ten probabilities) and
``pair_score``, P(the mark is exactly two whole digits). :mod:`service.read.decode` weighs that
reading against the cut ones. The mark is framed as training framed its pairs: strokes brought
into MNIST's band (as /predict does), then fitted into 20 x 52 px, centred in 28 x 56.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from service.inference import ModelLoadError, cpu_session, verified_bytes
from service.preprocess.crop import bounds
from service.preprocess.frame import STROKE_SIDE, normalise_strokes
from service.read.ink import FloatArray

#: The model's input, and the box the ink is fitted into (training.pairs' HEIGHT, WIDTH, BOX_*).
HEIGHT, WIDTH = 28, 56
BOX_HEIGHT, BOX_WIDTH = 20, 52
OUTPUTS: Final = ("first", "second", "pair_score")


@dataclass(frozen=True)
class PairReadings:
    """The pair model's reading of some of a layout's candidates, each as two digits."""

    candidates: list[int]  # indices into Layout.candidates
    first: NDArray[np.float32]  # (P, 10)
    second: NDArray[np.float32]  # (P, 10)
    scores: NDArray[np.float32]  # (P,) pair_score
    images: NDArray[np.float32]  # (P, HEIGHT, WIDTH): what the model saw
    splits: list[int]  # column of each candidate's crop where its first digit ends (split_column)

    @classmethod
    def none(cls) -> PairReadings:
        empty = np.zeros((0, 10), np.float32)
        return cls([], empty, empty, np.zeros(0, np.float32), np.zeros((0, HEIGHT, WIDTH), np.float32), [])


class PairModel:
    """One onnxruntime session of the pair model, verified against its metadata's sha256."""

    def __init__(self, path: Path, *, verify_sha256: bool = True) -> None:
        meta_path = path.with_suffix(".json")
        try:
            self.metadata = json.loads(meta_path.read_text())
            data, _ = verified_bytes(path, self.metadata.get("sha256"), verify_sha256)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"pair model {path} or its metadata {meta_path} cannot be read: {exc}") from exc
        self.session = cpu_session(data, path, 1, 1)
        inputs = self.session.get_inputs()
        names = {o.name for o in self.session.get_outputs()}
        if len(inputs) != 1 or list(inputs[0].shape)[1:] != [HEIGHT, WIDTH, 1] or not set(OUTPUTS) <= names:
            raise ModelLoadError(f"{path} does not take [N, {HEIGHT}, {WIDTH}, 1] images to {', '.join(OUTPUTS)}")
        self.input_name: str = inputs[0].name
        self.version: str = str(self.metadata.get("version", "unknown"))
        #: Readings under this pair_score are not offered: chosen on the validation split to refuse 95%
        #: of what is not two digits (a star, a scribble must not become two digits).
        self.threshold = float(self.metadata.get("pair_threshold", 0.5))

    def run(self, images: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        if not len(images):
            return np.zeros((0, 10), np.float32), np.zeros((0, 10), np.float32), np.zeros(0, np.float32)
        first, second, scores = self.session.run(list(OUTPUTS), {self.input_name: images[..., None]})
        return np.asarray(first), np.asarray(second), np.asarray(scores).reshape(-1)


def frame_pair(crop: FloatArray) -> FloatArray:
    """A mark's ink crop to the pair model's input: strokes into MNIST's band, fitted, centred."""
    height, width = crop.shape
    # Strokes are measured and corrected at STROKE_SIDE px tall: a pair's height plays the part
    # of a digit's longer side, so the stroke ends up as wide as /predict's at 20 px.
    scale = STROKE_SIDE / height
    size = (max(1, round(width * scale)), STROKE_SIDE)
    picture = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32))
    picture = picture.resize(size, Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR)
    strokes = normalise_strokes(np.asarray(picture, dtype=np.float32))
    top, bottom, left, right = bounds(strokes > 0.05)
    strokes = np.ascontiguousarray(strokes[top:bottom, left:right])
    h, w = strokes.shape
    fit = min(BOX_HEIGHT / h, BOX_WIDTH / w)
    final = (max(1, round(w * fit)), max(1, round(h * fit)))
    small = Image.fromarray(strokes).resize(final, Image.Resampling.BOX if fit < 1 else Image.Resampling.BILINEAR)
    out = np.zeros((HEIGHT, WIDTH), np.float32)
    y, x = (HEIGHT - final[1]) // 2, (WIDTH - final[0]) // 2
    out[y : y + final[1], x : x + final[0]] = np.clip(np.asarray(small, dtype=np.float32), 0, 1)
    return out


def split_column(crop: FloatArray) -> int:
    """Where in a pair's crop the first digit ends: the least ink in the middle of its columns."""
    profile = crop.sum(axis=0)
    width = len(profile)
    low, high = int(width * 0.3), max(int(width * 0.3) + 1, int(np.ceil(width * 0.7)))
    return low + int(np.argmin(profile[low:high]))
