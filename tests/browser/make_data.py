"""Regenerate the images in ``data/`` from the MNIST test set: ``python -m tests.browser.make_data``.

- ``four.png``: test image 4 (a "4"), inverted to dark ink on white and scaled up 4x, as a
  photo or scan of a digit would arrive.
- ``nine.png``: test image 7 (a "9") exactly as MNIST stores it: 28x28, white ink on black.
- ``number-photo.jpg``: the number ``PHOTO_NUMBER`` written with the most typical test image of
  each of its digits (the nearest to its class mean), as a phone photo of paper would arrive:
  dark ink on off-white paper, uneven light, sensor noise, JPEG.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from training.data import load_mnist

DATA = Path(__file__).resolve().parent / "data"
PHOTO_NUMBER = "385"


def photo_of_number(images: np.ndarray, labels: np.ndarray, text: str) -> Image.Image:
    """Digits side by side, each 3x its MNIST size, on lit paper."""
    rng = np.random.default_rng(7)
    scale, step = 84, 66
    ink = np.zeros((150, 60 + step * (len(text) - 1) + scale), np.float32)
    for i, d in enumerate(text):
        same = np.flatnonzero(labels == int(d))
        flat = images[same].reshape(len(same), -1).astype(np.float32)
        index = int(same[np.argmin(((flat - flat.mean(axis=0)) ** 2).sum(axis=1))])
        digit = Image.fromarray(images[index]).resize((scale, scale), Image.Resampling.BICUBIC)
        top = 30 + (i % 2) * 6  # a baseline that drifts a little
        left = 30 + i * step
        region = ink[top : top + scale, left : left + scale]
        np.maximum(region, np.asarray(digit, np.float32) / 255, out=region)
    height, width = ink.shape
    # Light falls off from the top left corner, as under a desk lamp.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    paper = 235 - 40 * (xx / width + yy / height) / 2
    grey = paper * (1 - 0.8 * ink) + rng.normal(0, 4, ink.shape)
    rgb = np.stack([grey, grey * 0.97, grey * 0.92], axis=-1)
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(0.8))


def main() -> None:
    test = load_mnist(os.environ.get("MNIST_DATA_DIR", "../shared/datasets/mnist")).test
    four, nine = test.images[4], test.images[7]
    assert (int(test.labels[4]), int(test.labels[7])) == (4, 9)
    DATA.mkdir(exist_ok=True)
    scan = Image.fromarray((255 - four).astype(np.uint8)).resize((112, 112), Image.Resampling.BILINEAR)
    scan.save(DATA / "four.png", optimize=True)
    Image.fromarray(nine).save(DATA / "nine.png", optimize=True)
    photo = photo_of_number(test.images, test.labels, PHOTO_NUMBER)
    photo.save(DATA / "number-photo.jpg", quality=85, optimize=True)


if __name__ == "__main__":
    main()
