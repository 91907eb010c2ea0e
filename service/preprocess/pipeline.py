"""The whole way from file bytes to MNIST form, and the shortcut for images already close to it."""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from service.preprocess.cost import ImageCost
from service.preprocess.decode import decode_image
from service.preprocess.form import BOX, CENTRE, SIZE, ByteArray, FloatArray
from service.preprocess.frame import frame, frame_picture
from service.preprocess.grey import flatten, plain_mode
from service.preprocess.levels import digit_picture, ramp

_EXIF_ORIENTATION: Final = 0x0112

#: A 28x28 image is taken as already framed only with full-strength ink (every MNIST digit's
#: brightest pixel is at least 250).
FRAMED_PEAK: Final = 250
#: ... and with its centre of mass within half a pixel of MNIST's (MNIST centred to whole pixels).
CENTRED: Final = 0.5
#: Other 28x28 grey images take the shortcut only if their ink reaches at least half strength ...
SHORTCUT_PEAK: Final = 128
#: ... their border is dark (no brighter than this share of the peak: the background is black) ...
DARK_BORDER: Final = 0.1
#: ... and at most half their pixels are lit (more would be a light background, not ink).
MAX_LIT: Final = SIZE * SIZE // 2
#: Ones and pixel indices, the two columns whose products with an image are its mass and moments.
_ONE_INDEX: Final = np.stack((np.ones(SIZE), np.arange(SIZE, dtype=np.float64)), axis=1)


def image_to_input(data: bytes, max_pixels: int, cost: ImageCost | None = None) -> FloatArray:
    """Image file bytes to one MNIST-form (28, 28) float32 array (``cost``: its header's, if already read)."""
    return to_mnist(decode_image(data, max_pixels, cost))


def to_mnist(image: Image.Image) -> FloatArray:
    """A decoded image of one digit to float32 (28, 28) in [0, 1], white ink on black, like MNIST.

    EXIF orientation; one 8-bit grey channel (alpha flattened on a background that contrasts
    with the ink; the colour axis with the most contrast when luminance has little); polarity
    from the border (Otsu classes); background to 0 and stroke core to 1 (lighting fitted and
    noise smoothed for photos); crop to the ink, ignoring distant specks; stroke width brought
    into MNIST's range; longer side to 20 px; centre of mass to the middle of 28x28. 28x28
    images that are already MNIST-form are used as they are; other 28x28 white-on-black ones
    skip the analysis and go straight to the framing.
    """
    image = upright(image)
    fast = mnist_like(image)
    if fast is not None:
        return fast
    flat = flatten(plain_mode(image))
    return frame_picture(digit_picture(flat.picture, flat.cut, flat.background))


def upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, so phone photos are the right way up."""
    # Cheap check first: most uploads carry no EXIF at all, and exif_transpose copies the image.
    if "exif" not in image.info and image.format != "TIFF":
        return image
    try:
        if image.getexif().get(_EXIF_ORIENTATION, 1) in (1, None):
            return image
        return ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block is no reason to refuse the image
        return image


def mnist_like(image: Image.Image) -> FloatArray | None:
    """The shortcut for 28x28 grey images with white ink on a black background.

    An image that is already framed as MNIST framed its digits (longer side 19-20 px, centre
    of mass at the middle, full-strength ink: every MNIST test image but one) goes to the model
    as MNIST itself did, scaled by 1/255: exactly the form the model was trained on, and the
    commonest upload of programmatic clients. Others (a client's own 28x28 drawing, not quite
    centred or sized) skip the analysis of the full path, whose background is already 0 and ink
    already found, and share its framing (stroke width, 20 px box, centre of mass).
    """
    if image.size != (SIZE, SIZE) or image.mode != "L":
        return None
    # This runs for most requests, so the checks are PIL's C ones where they exist (extrema,
    # bounding box), and the centre one product: callgrind counted 0.211 M instructions per
    # MNIST PNG with numpy's profiles and float64 reductions (10 to 20 k each on 28 elements).
    peak = image.getextrema()[1]
    if not isinstance(peak, int) or peak < SHORTCUT_PEAK:
        return None
    box = image.getbbox()
    assert box is not None  # the peak is lit
    left, top, right, bottom = box
    pixels: ByteArray = np.asarray(image)
    # Within a 20 px box, the ink cannot be the background: no polarity check is needed.
    if peak >= FRAMED_PEAK and BOX - 1 <= max(bottom - top, right - left) <= BOX:
        levels = pixels.astype(np.float64)
        if centred(levels):
            return np.divide(levels, np.float32(255), dtype=np.float32)
    rows, cols = np.maximum.reduce(pixels, axis=1), np.maximum.reduce(pixels, axis=0)
    border_peak = max(int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1]))
    if border_peak > DARK_BORDER * peak or np.count_nonzero(pixels) > MAX_LIT:
        return None
    # The full path's own background-to-0, core-to-1 table for a noiseless black background.
    ink = ramp(0.0, 0.0, peak / 255)[pixels[top:bottom, left:right]]
    return frame(ink)


def centred(levels: NDArray[np.float64]) -> bool:
    """Whether a 28x28 image's centre of mass is within CENTRED of MNIST's, on each axis.

    One product gives the mass and both first moments (``[1, index]`` on either side): exact,
    as the sums of 8-bit levels are integers far below float64's 2**53.
    """
    moments = _ONE_INDEX.T @ levels @ _ONE_INDEX
    mass = float(moments[0, 0])
    return abs(float(moments[1, 0]) / mass - CENTRE) < CENTRED and abs(float(moments[0, 1]) / mass - CENTRE) < CENTRED
