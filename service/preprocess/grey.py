"""Grey, alpha and colour: any decoded image to one 8-bit grey channel, shrunk to the working size.

Alpha is flattened on a background that contrasts with the ink; when luminance shows little,
the colour axis with the most contrast is used instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from service.errors import UNDECODABLE_IMAGE, InvalidInput
from service.preprocess.form import WORK_PIXELS, ByteArray, FloatArray

#: Rec. 601 luma weights, as PIL's own RGB -> L conversion uses.
LUMA: Final = np.array([0.299, 0.587, 0.114], dtype=np.float32)

#: Bilevel images at least this large a side are box-blurred once: they are often dithered, and
#: local averaging turns dot density back into grey. Smaller ones are icons drawn pixel by pixel.
DITHER_MIN_SIDE: Final = 64
#: The shrink factor is rounded up from this far below the next integer: an image just over an
#: integer multiple of WORK_PIXELS' side still gets reduced by that multiple.
SHRINK_SLACK: Final = 0.25
#: The colour and background choices are made on a nearest-neighbour sample at most this many
#: pixels a side: enough to see the ink and the paper, cheap on any image.
SAMPLE_SIDE: Final = 64
#: The colour axis is estimated on about this many pixels (a strided sample).
AXIS_SAMPLE_PIXELS: Final = 4096
#: Channel differences (8-bit levels) below which the picture is grey and luminance says it all.
GREY_SPREAD: Final = 8
#: A colour axis must carry this many times luminance's variance to replace it: only a clear win
#: (red ink on green card of the same luminance) is worth departing from what people see.
AXIS_GAIN: Final = 2.0
#: Alpha above this counts as drawn (opaque), below as background.
OPAQUE: Final = 0.5
#: When opaque pixels cover more than this share, the picture carries its own background.
MOSTLY_OPAQUE: Final = 0.5
#: Drawn pixels darker than this (0-1) are dark ink, to be put on a light background.
MID_GREY: Final = 0.5
#: A transparent image is cut to its drawn part plus this many pixels of background all round ...
DRAWN_MARGIN: Final = 2
#: ... and to no less than this many (shrunk) pixels a side: below it, levels skip the lighting fit.
MIN_DRAWN_SIDE: Final = 16


def plain_mode(image: Image.Image) -> Image.Image:
    """Convert to one of L, LA, RGB, RGBA, I, F: the modes the rest of the pipeline handles."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA", "I", "F"):
        return image
    if mode == "La":
        return image.convert("LA")
    if mode in ("RGBa", "PA") or (mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    if mode == "1":
        grey = image.convert("L")
        return grey.filter(ImageFilter.BoxBlur(1)) if min(grey.size) >= DITHER_MIN_SIDE else grey
    if mode.startswith("I;16") or mode == "I;32":
        return image.convert("I")
    try:
        return image.convert("RGB")
    except (ValueError, OSError):
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason=f"unsupported pixel mode {mode}")) from None


def shrink_factor(size: tuple[int, int]) -> int:
    """The integer factor :func:`shrink` reduces an image of ``size`` by (1: not at all)."""
    return max(1, math.ceil(math.sqrt(size[0] * size[1] / WORK_PIXELS) - SHRINK_SLACK))


def shrink(image: Image.Image, factor: int | None = None) -> Image.Image:
    """Box-average big images down to about WORK_PIXELS, in C, before numpy sees them.

    ``factor``: the uncut image's (``shrink_factor`` of its size), for a part cut out of it.
    """
    factor = shrink_factor(image.size) if factor is None else factor
    # PIL averages LA and RGBA premultiplied, so transparent pixels cannot bleed their hidden colour.
    return image.reduce(factor) if factor >= 2 else image


@dataclass(frozen=True)
class Grey:
    """One 8-bit grey channel (mode L, shrunk), and the background pixels cut away from around it."""

    picture: Image.Image
    #: How many pixels (at the picture's scale) were cut away, all of them the ``background`` level:
    #: a transparent image is flattened only where it is drawn on.
    cut: int = 0
    background: int = 0


def grey(image: Image.Image) -> Image.Image:
    """One 8-bit grey channel (mode L, shrunk) with alpha flattened; the ink may be dark or light."""
    return flatten(image, cut=False).picture


def flatten(image: Image.Image, cut: bool = True) -> Grey:
    """:func:`grey`, with a transparent image cut (if ``cut``) to its drawn part plus a margin of background.

    The choices (which colour axis, which background) are made on a sparse sample of the whole
    image; the per-pixel work is PIL's, in C, except in the rare case of a colour axis.
    """
    mode = image.mode
    if mode == "L":
        return Grey(shrink(image))
    if mode in ("I", "F"):
        return Grey(from_floats(stretch(np.asarray(shrink(image), dtype=np.float32))))
    side = (min(image.width, SAMPLE_SIDE), min(image.height, SAMPLE_SIDE))
    sampled = image.resize(side, Image.Resampling.NEAREST)
    sample = np.asarray(sampled)
    has_alpha = mode in ("LA", "RGBA")
    # Opacity in 8 bits first: an opaque canvas (the page's own) never needs alpha as floats.
    opaque = has_alpha and int(np.minimum.reduce(sample[..., -1], axis=None)) == 255
    alpha = sample[..., -1].astype(np.float32) * np.float32(1 / 255) if has_alpha and not opaque else None
    if opaque and mode == "LA":
        return Grey(shrink(image.getchannel(0)))
    # An opaque RGBA canvas: its colour is its RGB (alpha stays None), and PIL's RGBA -> L
    # ignores alpha exactly as RGB -> L would, without the copy to RGB first.
    axis = colour_axis(sample, alpha) if mode != "LA" else None
    if axis is not None:
        return Grey(project_on(shrink(image.convert("RGB") if opaque else image), axis))
    if alpha is None:
        return Grey(shrink(image.convert("L")))
    # Nearest-neighbour sampling picks whole pixels, so the sample's grey is the image's, sampled.
    sample_luma = np.asarray(sampled.getchannel(0) if mode == "LA" else sampled.convert("L"), dtype=np.float32)
    sample_luma *= np.float32(1 / 255)
    background = round(255 * flat_background(sample_luma, alpha))
    factor = shrink_factor(image.size)
    box = drawn_box(image, factor) if cut else None
    removed = 0
    if box is not None:
        full = math.ceil(image.width / factor) * math.ceil(image.height / factor)
        image = image.crop(box)
        removed = full - math.ceil(image.width / factor) * math.ceil(image.height / factor)
    luma = image.getchannel(0) if mode == "LA" else image.convert("L")
    # The drawn image itself is the paste mask (PIL takes an LA or RGBA mask's alpha): no
    # getchannel("A") copy and no composite() copy of the background, bit-identical to them on
    # every (grey, alpha, background) triple.
    flat = Image.new("L", image.size, background)
    flat.paste(luma, None, image)
    return Grey(shrink(flat, factor), removed, background)


def drawn_box(image: Image.Image, factor: int) -> tuple[int, int, int, int] | None:
    """The box of an image's drawn (not fully transparent) pixels, widened by a margin of background.

    The margin keeps the border all background, as the uncut picture's usually is (polarity is read
    from the border), and at least MIN_DRAWN_SIDE px a side; the box is aligned to the shrink
    ``factor``'s blocks, so the shrunk picture is the same pixels as the uncut one's. None when
    nothing would be cut.
    """
    drawn = image.getbbox()
    if drawn is None:
        return None  # nothing drawn: the uncut path says so
    left, top, right, bottom = drawn
    grow_x = max(DRAWN_MARGIN, (MIN_DRAWN_SIDE * factor - (right - left) + 1) // 2)
    grow_y = max(DRAWN_MARGIN, (MIN_DRAWN_SIDE * factor - (bottom - top) + 1) // 2)
    left, top = max(0, left - grow_x) // factor * factor, max(0, top - grow_y) // factor * factor
    right = min(image.width, -(-(right + grow_x) // factor) * factor)
    bottom = min(image.height, -(-(bottom + grow_y) // factor) * factor)
    if (right - left) * (bottom - top) == image.width * image.height:
        return None
    return left, top, right, bottom


def project_on(image: Image.Image, axis: FloatArray) -> Image.Image:
    """Grey from each pixel's colour projected on a colour axis (alpha flattened, if any)."""
    pixels = np.asarray(image)
    projected = (pixels[..., :3].reshape(-1, 3).astype(np.float32) @ axis).reshape(pixels.shape[:2])
    if image.mode == "RGB":
        return from_floats(stretch(np.asarray(projected, dtype=np.float32)))
    alpha = pixels[..., 3].astype(np.float32) * np.float32(1 / 255)
    opaque = alpha > OPAQUE
    # Stretch by the drawn pixels' range: hidden colours under alpha 0 do not count.
    reference = projected[opaque] if opaque.any() else projected
    low, high = float(reference.min()), float(reference.max())
    values = np.clip((projected - low) * np.float32(1 / (high - low or 1)), 0, 1).astype(np.float32)
    background = np.float32(flat_background(values, alpha))
    return from_floats(np.asarray(background + alpha * (values - background), dtype=np.float32))


def from_floats(values: FloatArray) -> Image.Image:
    """[0, 1] floats to an 8-bit grey image (MNIST itself is 8-bit, and histograms become cheap)."""
    return Image.fromarray(to_bytes(values))


def to_bytes(values: FloatArray) -> ByteArray:
    """[0, 1] floats to 8-bit levels."""
    scaled = values * np.float32(255)
    scaled += np.float32(0.5)
    return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)


def stretch(values: FloatArray) -> FloatArray:
    """Scale 16/32-bit or float pixels by their real range (PIL's own conversion clips them)."""
    finite = np.isfinite(values)
    if not finite.all():
        values = np.where(finite, values, np.float32(np.min(values[finite])) if finite.any() else np.float32(0))
    low, high = float(values.min()), float(values.max())
    if not high - low > 0 or not math.isfinite(high - low):
        if math.isfinite(high - low):
            return np.zeros(values.shape, dtype=np.float32)
        values = values.astype(np.float64)  # a float32 range wider than float32 can hold
    scaled = (values - low) * (1 / (high - low))
    return np.asarray(scaled, dtype=np.float32)


def colour_axis(pixels: ByteArray, alpha: FloatArray | None = None) -> FloatArray | None:
    """The colour axis with the most contrast, when it beats luminance clearly; else None (use luminance).

    Red ink on green card can have the same luminance as the card: then the digit is on the
    colour difference. Otherwise luminance is what people see, and what MNIST's scans recorded.
    """
    step = max(1, int(math.sqrt(pixels.shape[0] * pixels.shape[1] / AXIS_SAMPLE_PIXELS)))
    strided = pixels[::step, ::step, :3]
    # The grey check in 16-bit integers (exact, as the float64 differences were; 4x cheaper),
    # so a grey picture, the common case, never pays for the float copy.
    red, green, blue = (strided[..., c].astype(np.int16) for c in range(3))
    if spread(red - green) < GREY_SPREAD and spread(green - blue) < GREY_SPREAD:
        return None  # grey, or near enough: luminance says it all
    sample = strided.reshape(-1, 3).astype(np.float64)
    if alpha is not None:
        weight = alpha[::step, ::step].reshape(-1).astype(np.float64)
    else:
        weight = np.ones(sample.shape[0])
    total = float(weight.sum())
    if total <= 0:
        return None
    mean = weight @ sample / total
    centred = sample - mean
    cov = (centred * weight[:, None]).T @ centred / total
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    unit_luma = LUMA.astype(np.float64) / np.linalg.norm(LUMA)
    # The tiny term keeps a perfectly flat picture (zero variance everywhere) on luminance.
    if eigenvalues[-1] <= AXIS_GAIN * float(unit_luma @ cov @ unit_luma) + 1e-6:
        return None
    axis = eigenvectors[:, -1]
    if axis @ unit_luma < 0:
        axis = -axis
    return np.asarray(axis, dtype=np.float32)


def spread(values: NDArray[np.int16]) -> int:
    """Largest minus smallest value (np.ptp without its Python layer)."""
    return int(np.maximum.reduce(values, axis=None)) - int(np.minimum.reduce(values, axis=None))


def flat_background(colour: FloatArray, alpha: FloatArray) -> float:
    """The grey (0-1) to flatten transparent pixels on: one that contrasts with the ink.

    Canvas drawings are often black strokes on a transparent background whose hidden colour is
    also black (or white on white), so the alpha channel is the drawing: put the opaque pixels on
    the opposite of their own colour. When the opaque pixels are most of the picture they carry
    their own background (a photo with transparent margins): then the margins take its colour.
    """
    covered = float(alpha.sum())
    if covered <= 0:
        return 0.0
    if covered > MOSTLY_OPAQUE * alpha.size:
        return float(np.median(colour[alpha > OPAQUE]))
    return 1.0 if float((colour * alpha).sum()) / covered < MID_GREY else 0.0
