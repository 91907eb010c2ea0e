"""Turn uploaded images and JSON pixel arrays into MNIST-form model input.

The model only ever saw MNIST: white ink on black, the digit scaled so its longer side is
20 px, its centre of mass at the centre of a 28x28 frame, background exactly 0 and the
stroke core near 1. Real uploads are canvas drawings on transparent backgrounds, photos of
paper, chalk on boards, tiny icons and huge scans, so :func:`to_mnist` redoes what the MNIST
authors did to the NIST scans, starting from whatever the client sent.
"""

from __future__ import annotations

import io
import math
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFile, ImageFilter, ImageOps, UnidentifiedImageError

from service.errors import (
    EMPTY_IMAGE,
    IMAGE_BOMB,
    IMAGE_TOO_LARGE,
    NO_DIGIT,
    PIXELS_NOT_FINITE,
    PIXELS_RANGE,
    PIXELS_SHAPE,
    PIXELS_TYPE,
    UNDECODABLE_IMAGE,
    UNSUPPORTED_IMAGE_TYPE,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)

FloatArray = NDArray[np.float32]

SIZE: Final = 28
#: MNIST fitted each digit into a 20x20 box inside the 28x28 frame.
BOX: Final = 20
#: MNIST's centre of mass sits at (14, 14) in pixel-index coordinates (measured on the test set).
CENTRE: Final = 14.0

#: Only these decoders may ever run on client bytes: every other PIL plugin is more attack surface.
DECODERS: Final = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")

#: Larger images are box-averaged down to this longer side before any numpy work. A digit needs
#: far fewer pixels than this, and averaging keeps thin strokes as (fainter) ink.
WORK_SIDE: Final = 256
#: Strokes are measured and thickened or thinned with the digit at this many pixels on its
#: longer side: fine enough for one-pixel corrections to be small at the 20 px scale.
STROKE_SIDE: Final = 80

#: Below this difference between the ink and the background (on a 0-1 scale) there is no digit.
MIN_CONTRAST: Final = 0.08
#: Background noise, relative to the ink contrast, above which the image is smoothed first.
NOISY: Final = 0.04
#: Where the background sits after the lighting is subtracted (0-1 scale), so noise stays visible.
LIFT: Final = 0.25
#: Ink fragments with less than this share of the ink are specks, if they are also far away.
SPECK_SHARE: Final = 0.03
#: How far (relative to the digit's size) soft stroke edges may reach beyond the strokes' cores.
EDGE: Final = 0.04

_EXIF_ORIENTATION: Final = 0x0112

#: Signatures of formats that are images (or documents) we recognise but do not decode: they
#: deserve "unsupported type" (415) rather than "corrupt file" (422).
_OTHER_FORMATS: Final = (
    (b"%PDF", "application/pdf"),
    (b"%!PS", "application/postscript"),
    (b"\xc5\xd0\xd3\xc6", "application/postscript"),
    (b"\x00\x00\x01\x00", "image/x-icon"),
    (b"\x00\x00\x02\x00", "image/x-icon"),
    (b"8BPS", "image/vnd.adobe.photoshop"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "image/jp2"),
    (b"\xff\x4f\xff\x51", "image/jp2"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "image/jxl"),
    (b"\xff\x0a", "image/jxl"),
    (b"qoif", "image/qoi"),
    (b"icns", "image/icns"),
    (b"DDS ", "image/vnd-ms.dds"),
    (b"v/1\x01", "image/x-exr"),
    (b"#?RADIANCE", "image/vnd.radiance"),
    (b"gimp xcf", "image/x-xcf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
)
_HEIF_BRANDS: Final = {
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"hevc": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif",
    b"avif": "image/avif",
    b"avis": "image/avif",
}


# --- Decoding -------------------------------------------------------------------------------------


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode PNG, JPEG, WebP, BMP, GIF or TIFF bytes (first frame), refusing anything risky."""
    if not data:
        raise InvalidInput(EMPTY_IMAGE)
    # A truncated upload must be refused, not silently padded with grey.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        image = Image.open(io.BytesIO(data), formats=DECODERS)
    except UnidentifiedImageError:
        other = sniff_other_format(data)
        if other is not None:
            raise UnsupportedMediaType(UNSUPPORTED_IMAGE_TYPE.format(content_type=other)) from None
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason="not a recognised image format")) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge(IMAGE_BOMB.format(limit=max_pixels)) from None
    except Exception as exc:  # noqa: BLE001 - any failure on client bytes is the client's
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason=_reason(exc, "unreadable header"))) from None

    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            IMAGE_TOO_LARGE.format(width=width, height=height, pixels=width * height, limit=max_pixels)
        )
    if width < 1 or height < 1:
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason="the image has no pixels"))
    if image.format == "JPEG" and max(width, height) > 2 * WORK_SIDE:
        # Let libjpeg scale big photos down while decoding (1/2, 1/4 or 1/8): far faster, and
        # the digit needs no more than WORK_SIDE pixels anyway.
        scale = WORK_SIDE / max(width, height)
        image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge(IMAGE_BOMB.format(limit=max_pixels)) from None
    except Exception as exc:  # noqa: BLE001 - any failure on client bytes is the client's
        reason = _reason(exc, f"corrupt {image.format} data" if image.format else "corrupt data")
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason=reason)) from None
    return image


def _reason(exc: BaseException, default: str) -> str:
    """A short, path-free reason for a decoder failure."""
    if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
        return "the file is truncated"
    if isinstance(exc, MemoryError):
        return "the image needs too much memory"
    return default


def sniff_other_format(data: bytes) -> str | None:
    """The media type of bytes in a known format this service does not decode, or None."""
    head = data[:64]
    for signature, media_type in _OTHER_FORMATS:
        if head.startswith(signature):
            return media_type
    if head[4:8] == b"ftyp":
        return _HEIF_BRANDS.get(head[8:12], "video/mp4")
    if head[:4] == b"RIFF" and head[8:12] != b"WEBP":
        return "audio/x-wav" if head[8:12] == b"WAVE" else "video/x-msvideo"
    text = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<?xml") or text.startswith(b"<svg") or b"<svg" in text:
        return "image/svg+xml"
    if text.startswith(b"<!doctype html") or text.startswith(b"<html"):
        return "text/html"
    if len(head) >= 2 and head[0] == ord("P") and head[1] in b"1234567" and head[2:3].isspace():
        return "image/x-portable-anymap"
    return None


# --- To MNIST form --------------------------------------------------------------------------------


def image_to_input(data: bytes, max_pixels: int) -> FloatArray:
    """Image file bytes to one MNIST-form (28, 28) float32 array."""
    return to_mnist(decode_image(data, max_pixels))


def to_mnist(image: Image.Image) -> FloatArray:
    """A decoded image of one digit to float32 (28, 28) in [0, 1], white ink on black, like MNIST."""
    image = _upright(image)
    fast = _mnist_like(image)
    if fast is not None:
        return fast
    grey = _grey(_shrink(_plain_mode(image)))
    ink = _ink(grey)
    top, bottom, left, right = _digit_box(ink)
    return _frame(ink[top:bottom, left:right])


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, so phone photos are the right way up."""
    # getexif() is cheap when there is no EXIF block; exif_transpose copies the image.
    if image.getexif().get(_EXIF_ORIENTATION, 1) not in (1, None):
        try:
            return ImageOps.exif_transpose(image)
        except Exception:  # noqa: BLE001 - a broken EXIF block is no reason to refuse the image
            return image
    return image


def _mnist_like(image: Image.Image) -> FloatArray | None:
    """The shortcut for images that are already MNIST-form: 28x28 grey, white ink on black."""
    if image.size != (SIZE, SIZE) or image.mode != "L":
        return None
    pixels = np.asarray(image, dtype=np.float32)
    border = np.concatenate((pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]))
    peak = float(pixels.max())
    if peak < 128 or border.max() > 0.1 * peak or np.count_nonzero(pixels) > SIZE * SIZE // 2:
        return None
    ink = pixels * (1.0 / peak)
    top, bottom, left, right = _bounds(ink > 0)
    if max(bottom - top, right - left) != BOX:
        return None
    return _centre(ink[top:bottom, left:right])


def _plain_mode(image: Image.Image) -> Image.Image:
    """Convert to one of L, La, RGB, RGBa, I, F: the modes the rest of the pipeline handles."""
    mode = image.mode
    if mode in ("L", "RGB", "I", "F", "La", "RGBa"):
        return image
    if mode in ("LA", "PA") or (mode == "P" and "transparency" in image.info) or mode == "RGBA":
        # Premultiplied alpha, so box-averaging transparent pixels cannot bleed their hidden colour.
        if mode == "LA":
            return image.convert("La")
        return (image if mode == "RGBA" else image.convert("RGBA")).convert("RGBa")
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I;16") or mode == "I;32":
        return image.convert("I")
    try:
        return image.convert("RGB")
    except (ValueError, OSError):
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason=f"unsupported pixel mode {mode}")) from None


def _shrink(image: Image.Image) -> Image.Image:
    """Box-average big images down to about WORK_SIDE pixels, in C, before numpy sees them."""
    factor = max(image.size) // WORK_SIDE
    return image.reduce(factor) if factor >= 2 else image


def _grey(image: Image.Image) -> FloatArray:
    """One grey channel in [0, 1] with alpha flattened; ink may be dark or light."""
    mode = image.mode
    if mode == "L":
        return np.asarray(image, dtype=np.float32) * np.float32(1 / 255)
    if mode in ("I", "F"):
        return _stretch(np.asarray(image, dtype=np.float32))
    pixels = np.asarray(image, dtype=np.float32) * np.float32(1 / 255)
    if mode == "RGB":
        return _colour_to_grey(pixels)
    alpha = pixels[..., -1]
    colour = pixels[..., 0] if mode == "La" else _colour_to_grey(pixels[..., :3], premultiplied=alpha)
    return _flatten(colour, alpha)


def _stretch(values: FloatArray) -> FloatArray:
    """Scale 16/32-bit or float pixels by their real range (PIL's own conversion clips them)."""
    finite = np.isfinite(values)
    if not finite.all():
        values = np.where(finite, values, np.float32(0))
    low, high = float(values.min()), float(values.max())
    if high - low <= 0:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - np.float32(low)) * np.float32(1 / (high - low))).astype(np.float32)


def _colour_to_grey(rgb: FloatArray, premultiplied: FloatArray | None = None) -> FloatArray:
    """Luminance, or the colour axis with the most contrast when the ink differs mostly in hue."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    luma: FloatArray = rgb @ weights
    sample = rgb.reshape(-1, 3)
    step = max(1, sample.shape[0] // 4096)
    sample = sample[::step].astype(np.float64)
    if premultiplied is not None:
        weight = premultiplied.reshape(-1)[::step].astype(np.float64)
        if weight.sum() <= 0:
            return luma
    else:
        weight = np.ones(sample.shape[0])
    total = weight.sum()
    mean = (sample * weight[:, None]).sum(0) / total
    centred = sample - mean
    cov = (centred * weight[:, None]).T @ centred / total
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    axis = eigenvectors[:, -1]
    unit_luma = weights / np.linalg.norm(weights)
    luma_var = float(unit_luma @ cov @ unit_luma)
    # Red ink on green card can have the same luminance as the card: then project on the colour
    # difference instead. Otherwise luminance is what people see, and what MNIST's scans recorded.
    if eigenvalues[-1] <= 2.0 * luma_var + 1e-6:
        return luma
    if axis @ unit_luma < 0:
        axis = -axis
    if premultiplied is not None:
        # Premultiplied colour is a * C: the projection of the flattened colour scales the same way.
        projected = rgb @ axis.astype(np.float32)
        low = float(min(0.0, (axis[axis < 0]).sum()))
        high = float(max(0.0, (axis[axis > 0]).sum()))
        return ((projected - np.float32(low) * premultiplied) * np.float32(1 / (high - low))).astype(np.float32)
    return _stretch((rgb @ axis.astype(np.float32)).astype(np.float32))


def _flatten(premultiplied: FloatArray, alpha: FloatArray) -> FloatArray:
    """Composite a premultiplied grey channel on a background that contrasts with the ink.

    Canvas drawings are often black strokes on a transparent background whose hidden colour is
    also black (or white on white), so the alpha channel is the drawing: put the opaque pixels on
    the opposite of their own colour. When the opaque pixels are most of the picture they carry
    their own background (a photo with transparent margins): then the margins take its colour.
    """
    covered = float(alpha.sum())
    if covered >= alpha.size * 0.999:
        return premultiplied
    if covered <= 0:
        return np.zeros(alpha.shape, dtype=np.float32)
    mean_colour = float(premultiplied.sum()) / covered
    if covered > 0.5 * alpha.size:
        opaque = premultiplied[alpha > 0.5] / alpha[alpha > 0.5]
        background = float(np.median(opaque)) if opaque.size else mean_colour
    else:
        background = 1.0 if mean_colour < 0.5 else 0.0
    return (premultiplied + (1 - alpha) * np.float32(background)).astype(np.float32)


def _histogram(values: FloatArray) -> NDArray[np.int64]:
    """A 256-bin histogram of values in [0, 1]: percentiles and Otsu from it cost no sorting."""
    quantised = (np.clip(values, 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.bincount(quantised.ravel(), minlength=256)


def _otsu(hist: NDArray[np.int64]) -> int:
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


def _ink(grey: FloatArray) -> FloatArray:
    """White ink on an exactly black background, stroke core near 1."""
    hist = _histogram(grey)
    threshold = _otsu(hist)
    light = int(hist[threshold + 1 :].sum())
    if light == 0 or light == grey.size:
        raise InvalidInput(NO_DIGIT)
    if _background_is_light(grey, (threshold + 0.5) / 255, light / grey.size):
        ink: FloatArray = np.float32(1) - grey
        hist = hist[::-1]
        threshold = 254 - threshold
    else:
        ink = grey
    floor, noise, core = _levels(hist, threshold)
    if core - floor < MIN_CONTRAST:
        raise InvalidInput(NO_DIGIT)
    if noise > 0 and min(ink.shape) >= 16:
        # Phone photos are lit unevenly: subtract a smooth fit of the paper, so a shadow or a
        # bright corner is not taken for ink. A fixed offset keeps the noise below it measurable.
        for _ in range(2):
            ink = (ink - _lighting(ink, ink <= (threshold + 0.5) / 255) + np.float32(LIFT)).astype(np.float32)
            hist = _histogram(ink)
            threshold = _otsu(hist)
            floor, noise, core = _levels(hist, threshold)
        if noise > NOISY * (core - floor):
            # Grain (sensor noise, chalk dust, JPEG ringing): average it down before thresholding.
            ink = _blur3(ink)
            hist = _histogram(ink)
            threshold = _otsu(hist)
            floor, noise, core = _levels(hist, threshold)
    contrast = core - floor
    if contrast < MIN_CONTRAST:
        raise InvalidInput(NO_DIGIT)
    # Noise and paper texture sit a few standard deviations above the background: below that
    # nothing is ink. The stroke core maps to 1, as in MNIST.
    low = floor + min(max(0.06 * contrast, 4.0 * noise), 0.5 * contrast)
    scaled = (ink - np.float32(low)) * np.float32(1 / (core - low))
    result: FloatArray = np.clip(scaled, 0, 1, out=scaled)
    return result


def _blur3(values: FloatArray) -> FloatArray:
    """A 3x3 box blur (PIL's BoxBlur does not take float images)."""
    padded = np.pad(values, 1, mode="edge")
    rows = padded[:-2] + padded[1:-1] + padded[2:]
    return ((rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) * np.float32(1 / 9)).astype(np.float32)


def _levels(hist: NDArray[np.int64], threshold: int) -> tuple[float, float, float]:
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
    core_bin = threshold + 1 + int(np.searchsorted(strokes, 0.8 * strokes[-1])) if strokes[-1] else floor_bin
    return floor_bin / 255, 1.4826 * mad / 255, core_bin / 255


def _background_is_light(grey: FloatArray, cut: float, light_share: float) -> bool:
    """Whether the background is the light class: what the border shows, else what most pixels are."""
    border = np.concatenate((grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]))
    border_light = float(np.count_nonzero(border > cut)) / border.size
    if border_light >= 0.7:
        return True
    if border_light <= 0.3:
        return False
    return light_share > 0.5


def _lighting(ink: FloatArray, background: NDArray[np.bool_]) -> FloatArray:
    """A smooth (quadratic) fit of the background level, for photos with uneven lighting."""
    height, width = ink.shape
    step = max(1, int(math.sqrt(height * width / 4096)))
    ys = np.linspace(-1, 1, height, dtype=np.float32)
    xs = np.linspace(-1, 1, width, dtype=np.float32)
    keep = background[::step, ::step]
    if np.count_nonzero(keep) < 12:
        return np.full(ink.shape, float(np.median(ink[background])) if background.any() else 0.0, np.float32)
    sample_y, sample_x = np.meshgrid(ys[::step], xs[::step], indexing="ij")
    y, x = sample_y[keep].astype(np.float64), sample_x[keep].astype(np.float64)
    design = np.stack((np.ones_like(x), x, y, x * x, x * y, y * y))
    target = ink[::step, ::step][keep].astype(np.float64)
    # Normal equations of a 6-parameter fit: a 6x6 solve, no LAPACK least-squares machinery.
    gram = design @ design.T + 1e-9 * np.eye(6)
    coef = np.linalg.solve(gram, design @ target).astype(np.float32)
    rows = coef[0] + coef[2] * ys + coef[5] * ys * ys
    cols = coef[1] * xs + coef[3] * xs * xs
    return (rows[:, None] + cols[None, :] + coef[4] * np.outer(ys, xs)).astype(np.float32)


def _bounds(mask: NDArray[np.bool_]) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _digit_box(ink: FloatArray) -> tuple[int, int, int, int]:
    """The ink's bounding box, ignoring small specks well away from the digit.

    The box is found on the strokes' cores (over half the ink level), where stray noise rarely
    reaches, then widened by the soft edges right next to it.
    """
    strong = ink > 0.5
    if not strong.any():
        raise InvalidInput(NO_DIGIT)
    top, bottom, left, right = 0, ink.shape[0], 0, ink.shape[1]
    for _ in range(2):
        region = strong[top:bottom, left:right]
        new_top, new_bottom = _main_span(region.sum(axis=1))
        new_left, new_right = _main_span(region.sum(axis=0))
        top, bottom, left, right = top + new_top, top + new_bottom, left + new_left, left + new_right
    margin = max(1, round(EDGE * max(bottom - top, right - left)))
    rows = ink[max(0, top - margin) : bottom + margin, left:right].any(axis=1)
    top, bottom = _widen(rows, top - max(0, top - margin), top, bottom)
    cols = ink[top:bottom, max(0, left - margin) : right + margin].any(axis=0)
    left, right = _widen(cols, left - max(0, left - margin), left, right)
    return top, bottom, left, right


def _widen(filled: NDArray[np.bool_], before: int, start: int, end: int) -> tuple[int, int]:
    """Extend [start, end) over the filled cells just outside it (``filled`` starts ``before`` earlier)."""
    inner_end = before + end - start
    head = filled[:before][::-1]
    tail = filled[inner_end:]
    grow_start = int(np.argmin(head)) if not head.all() else head.size
    grow_end = int(np.argmin(tail)) if not tail.all() else tail.size
    return start - grow_start, end + grow_end


def _main_span(profile: NDArray[np.int64]) -> tuple[int, int]:
    """The run of non-empty rows (or columns) holding the digit: heavy runs and those close to them."""
    filled = profile > 0
    edges = np.flatnonzero(np.diff(np.concatenate(([False], filled, [False])).astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    if starts.size == 1:
        return int(starts[0]), int(ends[0])
    cumulative = np.concatenate(([0.0], np.cumsum(profile, dtype=np.float64)))
    mass = cumulative[ends] - cumulative[starts]
    share = mass / mass.sum()
    main = int(np.argmax(mass))
    first = last = main
    changed = True
    while changed:
        changed = False
        extent = ends[last] - starts[first]
        if first > 0:
            gap = starts[first] - ends[first - 1]
            if share[first - 1] >= SPECK_SHARE or gap <= max(2, 0.25 * extent):
                first -= 1
                changed = True
        if last < starts.size - 1:
            gap = starts[last + 1] - ends[last]
            if share[last + 1] >= SPECK_SHARE or gap <= max(2, 0.25 * extent):
                last += 1
                changed = True
    return int(starts[first]), int(ends[last])


def _frame(digit: FloatArray) -> FloatArray:
    """Scale the cropped digit so its longer side is 20 px, then centre it by mass in 28x28."""
    height, width = digit.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != (width, height):
        picture = Image.fromarray(np.ascontiguousarray(digit, dtype=np.float32))
        if max(height, width) > 4 * BOX:
            # Reduce in integer steps first: exact box averaging, and far cheaper than one big resize.
            picture = picture.reduce(max(height, width) // (2 * BOX))
        picture = picture.resize(size, Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX)
        digit = np.clip(np.asarray(picture, dtype=np.float32), 0, 1)
    return _centre(digit)


def _centre(digit: FloatArray) -> FloatArray:
    """Paste into 28x28 with the centre of mass at (14, 14), as MNIST did (whole-pixel shift)."""
    height, width = digit.shape
    mass = float(digit.sum())
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    if mass <= 0:
        raise InvalidInput(NO_DIGIT)
    row = float(digit.sum(axis=1) @ np.arange(height, dtype=np.float32)) / mass
    col = float(digit.sum(axis=0) @ np.arange(width, dtype=np.float32)) / mass
    top = min(max(round(CENTRE - row), 0), SIZE - height) if height <= SIZE else 0
    left = min(max(round(CENTRE - col), 0), SIZE - width) if width <= SIZE else 0
    out[top : top + height, left : left + width] = digit[: SIZE - top, : SIZE - left]
    return out


# --- JSON pixels ----------------------------------------------------------------------------------


def pixels_to_input(value: object, *, batch: bool) -> FloatArray:
    """JSON ``pixels`` (28x28, or N x 28 x 28 with ``batch``) to float32 (N, 28, 28) scaled to [0, 1].

    The pixels are used as given: the client says they are already MNIST-form.
    """
    expected = "an N x 28 x 28 array of" if batch else "a 28 x 28 array of"
    try:
        array = np.asarray(value)
    except (ValueError, RecursionError):
        raise InvalidInput(PIXELS_SHAPE.format(expected=expected, got="a ragged or too deeply nested array")) from None
    except (OverflowError, TypeError):
        raise InvalidInput(PIXELS_TYPE) from None
    kind = array.dtype.kind
    if kind == "O":
        raise InvalidInput(_object_error(value, expected))
    if kind not in "iuf" or array.ndim == 0:
        if array.ndim == 0 and kind in "iuf":
            raise InvalidInput(PIXELS_SHAPE.format(expected=expected, got="a single number"))
        raise InvalidInput(PIXELS_TYPE)
    wanted = 3 if batch else 2
    if array.ndim != wanted or array.shape[-2:] != (SIZE, SIZE) or array.shape[0] == 0:
        got = " x ".join(str(n) for n in array.shape) + " array"
        raise InvalidInput(PIXELS_SHAPE.format(expected=expected, got=got))
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise InvalidInput(PIXELS_NOT_FINITE)
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 255:
        raise InvalidInput(PIXELS_RANGE.format(low=low, high=high))
    # Scale to [0, 1], as the model was trained.
    scaled = (values / 255).astype(np.float32)
    return scaled if batch else scaled[None]


def _object_error(value: object, expected: str) -> str:
    """Why numpy fell back to an object array: huge integers, or mixed/ragged content."""
    leaves = _leaves(value)
    if any(isinstance(leaf, bool) or not isinstance(leaf, (int, float)) for leaf in leaves):
        return PIXELS_TYPE
    if any(isinstance(leaf, int) for leaf in leaves):
        numbers = [float(leaf) for leaf in leaves]
        return PIXELS_RANGE.format(low=min(numbers), high=max(numbers))
    return PIXELS_SHAPE.format(expected=expected, got="a ragged array")


def _leaves(value: object) -> list[object]:
    """The non-list items of nested lists, iteratively (the nesting may be adversarially deep)."""
    leaves: list[object] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        else:
            leaves.append(item)
    return leaves
