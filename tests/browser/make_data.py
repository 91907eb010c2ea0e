"""Regenerate the images in ``data/`` from the MNIST test set: ``python -m tests.browser.make_data``.

- ``four.png``: test image 4 (a "4"), inverted to dark ink on white and scaled up 4x, as a
  photo or scan of a digit would arrive.
- ``nine.png``: test image 7 (a "9") exactly as MNIST stores it: 28x28, white ink on black.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import load_mnist

DATA = Path(__file__).resolve().parent / "data"


def main() -> None:
    test = load_mnist(os.environ.get("MNIST_DATA_DIR", "../shared/datasets/mnist")).test
    four, nine = test.images[4], test.images[7]
    assert (int(test.labels[4]), int(test.labels[7])) == (4, 9)
    DATA.mkdir(exist_ok=True)
    scan = Image.fromarray((255 - four).astype(np.uint8)).resize((112, 112), Image.Resampling.BILINEAR)
    scan.save(DATA / "four.png", optimize=True)
    Image.fromarray(nine).save(DATA / "nine.png", optimize=True)


if __name__ == "__main__":
    main()
