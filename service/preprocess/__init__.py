"""Turn uploaded images into MNIST-form model input.

The model only ever saw MNIST: white ink on black, the digit scaled so its longer side is
20 px, its centre of mass at the centre of a 28x28 frame, background exactly 0 and the
stroke core near 1. Real uploads are canvas drawings on transparent backgrounds, photos of
paper, chalk on boards, tiny icons and huge scans, so :func:`to_mnist` redoes what the MNIST
authors did to the NIST scans, starting from whatever the client sent.

One module per job, in the order an image goes through them:

- ``sniff``: which format the bytes claim to be, before any decoder runs;
- ``cost``: the image's cost from its header (size, frames, decoder), and the limits it must keep;
- ``decode``: decoding, only with our own decoders and within the limits;
- ``grey``: grey, alpha and colour, down to one 8-bit channel at the working size;
- ``levels``: polarity, levels and lighting, to white ink on an exactly black background;
- ``crop``: the digit's box, ignoring distant specks;
- ``frame``: stroke width, the 20 px box and the centre of mass in 28x28;
- ``pipeline``: the whole way (``to_mnist``), and the shortcut for MNIST-form uploads;
- ``form``: the constants of MNIST form that all of them share.

Segmentation of several digits (for ``/read``) belongs here too, as a ``segment`` module that
crops each digit and hands it to ``frame``. JSON ``pixels`` are parsing, not image processing:
they live in :mod:`service.pixels` (re-exported here so existing callers keep working).
"""

from __future__ import annotations

from service.pixels import pixels_to_input
from service.preprocess.cost import ImageCost, check_cost, image_cost
from service.preprocess.decode import DECODERS, decode_image
from service.preprocess.form import BOX, CENTRE, SIZE, WORK_PIXELS, ByteArray, FloatArray
from service.preprocess.frame import MAX_STROKE, MIN_STROKE, STROKE_SIDE
from service.preprocess.pipeline import image_to_input, to_mnist
from service.preprocess.sniff import sniff_other_format

__all__ = [
    "BOX",
    "CENTRE",
    "DECODERS",
    "MAX_STROKE",
    "MIN_STROKE",
    "SIZE",
    "STROKE_SIDE",
    "WORK_PIXELS",
    "ByteArray",
    "ImageCost",
    "FloatArray",
    "check_cost",
    "decode_image",
    "image_cost",
    "image_to_input",
    "pixels_to_input",
    "sniff_other_format",
    "to_mnist",
]
