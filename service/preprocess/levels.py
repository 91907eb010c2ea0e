"""Polarity, levels and lighting: from one grey channel to white ink on an exactly black background.

The grey levels are split into background and ink by Otsu's threshold; the border says which
class is the background; the background level and its noise map to 0, the stroke core to 1.
Photos first have their uneven lighting fitted and subtracted, and grain smoothed.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from service.errors import NO_DIGIT, InvalidInput
from service.preprocess.crop import digit_box
from service.preprocess.form import BoolArray, ByteArray, FloatArray
from service.preprocess.grey import to_bytes

#: Below this difference between the ink and the background (on a 0-1 scale) there is no digit.
MIN_CONTRAST: Final = 0.08
#: Background noise, relative to the ink contrast, above which the image is smoothed first.
NOISY: Final = 0.04
#: Where the background sits after the lighting is subtracted (0-1 scale), so noise stays visible.
LIFT: Final = 0.25
#: The stroke core is the ink class' level at this rank (0-1): the strokes' soft edges, also
#: ink, sit below it; the brightest few pixels (glare, JPEG overshoot) above it.
CORE_RANK: Final = 0.8
#: The median absolute deviation of a normal distribution times this is its standard deviation.
MAD_TO_SIGMA: Final = 1.4826
#: Nothing is ink below the background plus this share of the contrast, even on a noiseless image
#: (anti-aliasing and compression leave faint levels there) ...
FLOOR_SHARE: Final = 0.06
#: ... or below this many noise standard deviations above it, where paper texture sits ...
NOISE_SIGMAS: Final = 4.0
#: ... but the ink's lower half (of the contrast) always stays ink, however noisy the photo.
MAX_FLOOR_SHARE: Final = 0.5
#: A border with at least this share of light-class pixels is a light background; with at most
#: 1 minus it, a dark one; in between (the digit touches the border) the majority decides.
LIGHT_BORDER: Final = 0.7
#: Images smaller than this a side are never lighting-fitted: too few background pixels for it.
MIN_FIT_SIDE: Final = 16
#: Two rounds of fitting the lighting and re-thresholding: the second round's background is
#: classed on the first round's flattened image, free of the shadow that biased the first.
LIGHTING_ROUNDS: Final = 2
#: The lighting is fitted on a strided sample of about this many pixels.
FIT_SAMPLE_PIXELS: Final = 4096
#: With fewer background samples than this, a 6-parameter fit is underdetermined: use the median.
MIN_FIT_POINTS: Final = 12
#: Ridge term that keeps the normal equations solvable when the samples lie on a line.
FIT_RIDGE: Final = 1e-9
#: The digit's box is found on the ink above this share of the ramp (its cores).
CORE_LEVEL: Final = 0.5


def otsu(hist: NDArray[np.int64]) -> int:
    """Otsu's threshold: bins <= t are one class, bins > t the other."""
    counts = hist.astype(np.float64)
    below = np.cumsum(counts)
    total = below[-1]
    moment = np.cumsum(counts * np.arange(256))
    above = total - below
    spread = (moment[-1] * below - moment * total) ** 2
    denominator = below * above
    score = np.divide(spread, denominator, out=np.full(256, -1.0), where=denominator > 0)
    return int(np.argmax(score))


def levels(hist: NDArray[np.int64], threshold: int) -> tuple[float, float, float]:
    """Background level, background noise (standard deviation) and stroke core level (0-1 scale)."""
    background = hist[: threshold + 1]
    cumulative = np.cumsum(background)
    floor_bin = int(np.searchsorted(cumulative, cumulative[-1] / 2))
    # The median absolute deviation: the strokes' soft edges, which fall into the background
    # class, do not inflate it the way they inflate a standard deviation.
    deviation = np.abs(np.arange(threshold + 1) - floor_bin)
    by_deviation = np.bincount(deviation, weights=background)
    mad = int(np.searchsorted(np.cumsum(by_deviation), cumulative[-1] / 2))
    strokes = np.cumsum(hist[threshold + 1 :])
    core_bin = threshold + 1 + int(np.searchsorted(strokes, CORE_RANK * strokes[-1])) if strokes[-1] else floor_bin
    return floor_bin / 255, MAD_TO_SIGMA * mad / 255, core_bin / 255


def digit(image: Image.Image) -> FloatArray:
    """The digit's crop (from a mode L image): white ink on an exactly black background, stroke core near 1."""
    return np.asarray(digit_picture(image), dtype=np.float32)


def digit_picture(image: Image.Image, cut: int = 0, background: int = 0) -> Image.Image:
    """:func:`digit` as a mode F image, the form :func:`service.preprocess.frame.frame_picture` takes.

    ``cut`` pixels of the ``background`` level were cut away from around ``image`` (see
    :class:`service.preprocess.grey.Grey`): the levels count them, as if they were still there.
    """
    # The dtype given skips numpy's type discovery over the 256-entry list: 79,000 against
    # 99,000 instructions (callgrind, the page's canvas).
    hist = np.array(image.histogram(), dtype=np.int64)
    hist[background] += cut
    grey: ByteArray = np.asarray(image)
    pixels = grey.size + cut
    threshold = otsu(hist)
    light = int(hist[threshold + 1 :].sum())
    if light == 0 or light == pixels:
        raise InvalidInput(NO_DIGIT)
    inverted = background_is_light(grey, threshold, light / pixels)
    if inverted:
        grey = np.subtract(255, grey, dtype=np.uint8)
        hist = hist[::-1]
        threshold = 254 - threshold
    floor, noise, core = levels(hist, threshold)
    if core - floor < MIN_CONTRAST:
        raise InvalidInput(NO_DIGIT)
    if noise == 0 or min(grey.shape) < MIN_FIT_SIDE:
        # A clean image (drawn, not photographed): the background is one flat level. Stay in
        # 8 bits and map only the digit's crop to floats, through a 256-entry table: PIL's
        # point() does it from the uninverted image (table reversed), bit-identical to numpy's
        # table[grey[crop]] plus Image.fromarray, in a third of their time (28 against 87 us
        # on the page's 280 px canvas).
        table = ramp(floor, noise, core)
        strong = int(np.searchsorted(table, CORE_LEVEL, side="right"))
        faint = int(np.searchsorted(table, 0, side="right"))
        top, bottom, left, right = digit_box(grey, strong - 1, faint - 1)
        lookup = table[::-1] if inverted else table
        return image.crop((left, top, right, bottom)).point(lookup.tolist(), "F")
    # Phone photos are lit unevenly: subtract a smooth fit of the paper, so a shadow or a bright
    # corner is not taken for ink. A fixed lift keeps the noise below the paper measurable.
    ink = grey.astype(np.float32) * np.float32(1 / 255)
    for _ in range(LIGHTING_ROUNDS):
        ink = ink - lighting(ink, ink <= (threshold + 0.5) / 255) + np.float32(LIFT)
        hist = histogram(ink)
        threshold = otsu(hist)
        floor, noise, core = levels(hist, threshold)
    if noise > NOISY * (core - floor):
        # Grain (sensor noise, chalk dust, JPEG ringing): average it down before thresholding.
        ink = blur3(ink)
        hist = histogram(ink)
        threshold = otsu(hist)
        floor, noise, core = levels(hist, threshold)
    if core - floor < MIN_CONTRAST:
        raise InvalidInput(NO_DIGIT)
    low, high = ramp_ends(floor, noise, core)
    top, bottom, left, right = digit_box(ink, low + CORE_LEVEL * (high - low), low)
    crop = (ink[top:bottom, left:right] - np.float32(low)) * np.float32(1 / (high - low))
    return Image.fromarray(np.ascontiguousarray(np.clip(crop, 0, 1), dtype=np.float32))


def ramp_ends(floor: float, noise: float, core: float) -> tuple[float, float]:
    """The grey levels that map to 0 and to 1.

    Noise and paper texture sit a few standard deviations above the background: below that
    nothing is ink. The stroke core maps to 1, as in MNIST.
    """
    contrast = core - floor
    return floor + min(max(FLOOR_SHARE * contrast, NOISE_SIGMAS * noise), MAX_FLOOR_SHARE * contrast), core


def ramp(floor: float, noise: float, core: float) -> FloatArray:
    """The 8-bit level -> ink table: 0 up to the noise floor, 1 from the stroke core up."""
    low, high = ramp_ends(floor, noise, core)
    level = np.arange(256, dtype=np.float32) * np.float32(1 / 255)
    return np.asarray(np.clip((level - np.float32(low)) * np.float32(1 / (high - low)), 0, 1), dtype=np.float32)


def histogram(values: FloatArray) -> NDArray[np.int64]:
    """A 256-bin histogram of float values in [0, 1]."""
    return np.bincount(to_bytes(values).ravel(), minlength=256)


def blur3(values: FloatArray) -> FloatArray:
    """A 3x3 box blur (PIL's BoxBlur does not take float images)."""
    padded = np.pad(values, 1, mode="edge")
    rows = padded[:-2] + padded[1:-1] + padded[2:]
    return np.asarray((rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) * np.float32(1 / 9), dtype=np.float32)


def background_is_light(grey: ByteArray, threshold: int, light_share: float) -> bool:
    """Whether the background is the light class: what the border shows, else what most pixels are."""
    border = np.concatenate((grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]))
    border_light = float(np.count_nonzero(border > threshold)) / border.size
    if border_light >= LIGHT_BORDER:
        return True
    if border_light <= 1 - LIGHT_BORDER:
        return False
    return light_share > 0.5


def lighting(ink: FloatArray, background: BoolArray) -> FloatArray:
    """A smooth (quadratic) fit of the background level, for photos with uneven lighting."""
    height, width = ink.shape
    step = max(1, int(math.sqrt(height * width / FIT_SAMPLE_PIXELS)))
    ys = np.linspace(-1, 1, height, dtype=np.float32)
    xs = np.linspace(-1, 1, width, dtype=np.float32)
    keep = background[::step, ::step]
    if np.count_nonzero(keep) < MIN_FIT_POINTS:
        return np.full(ink.shape, float(np.median(ink[background])) if background.any() else 0.0, np.float32)
    sample_y, sample_x = np.meshgrid(ys[::step], xs[::step], indexing="ij")
    y, x = sample_y[keep].astype(np.float64), sample_x[keep].astype(np.float64)
    design = np.stack((np.ones_like(x), x, y, x * x, x * y, y * y))
    target = ink[::step, ::step][keep].astype(np.float64)
    # Normal equations of a 6-parameter fit: a 6x6 solve, no LAPACK least-squares machinery.
    gram = design @ design.T + FIT_RIDGE * np.eye(6)
    coef = np.linalg.solve(gram, design @ target).astype(np.float32)
    rows = coef[0] + coef[2] * ys + coef[5] * ys * ys
    cols = coef[1] * xs + coef[3] * xs * xs
    return np.asarray(rows[:, None] + cols[None, :] + coef[4] * np.outer(ys, xs), dtype=np.float32)
