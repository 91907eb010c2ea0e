"""Turn uploaded images and JSON pixel arrays into MNIST-form model input.

The model only ever saw MNIST: white ink on black, the digit scaled so its longer side is
20 px, its centre of mass at the centre of a 28x28 frame, background exactly 0 and the
stroke core near 1. Real uploads are canvas drawings on transparent backgrounds, photos of
paper, chalk on boards, tiny icons and huge scans, so :func:`to_mnist` redoes what the MNIST
authors did to the NIST scans, starting from whatever the client sent.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterable
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
ByteArray = NDArray[np.uint8]

SIZE: Final = 28
#: MNIST fitted each digit into a 20x20 box inside the 28x28 frame.
BOX: Final = 20
#: MNIST's centre of mass sits at (14, 14) in pixel-index coordinates (measured on the test set).
CENTRE: Final = 14.0

#: Only these decoders may ever run on client bytes: every other PIL plugin is more attack surface.
DECODERS: Final = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")

#: Larger images are box-averaged down to about this many pixels before any numpy work. A digit
#: needs far fewer, and averaging keeps thin strokes as (fainter) ink.
WORK_PIXELS: Final = 256 * 256
#: Strokes are measured and thickened or thinned with the digit at this many pixels on its
#: longer side: fine enough for one-pixel corrections to be small at the 20 px scale.
STROKE_SIDE: Final = 80

#: MNIST's stroke widths at the 20 px scale (twice area over perimeter): 5th percentile 1.2,
#: median 1.9, 95th percentile 2.9. Strokes outside this band (about MNIST's middle third) are
#: thickened or thinned into it: the real-world benchmark reads fine pens and markers best so.
MIN_STROKE: Final = 1.7
MAX_STROKE: Final = 2.3

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

#: A 28x28 image is taken as already framed only with full-strength ink (every MNIST digit's
#: brightest pixel is at least 250).
FRAMED_PEAK: Final = 250
_INDEX: Final = np.arange(SIZE, dtype=np.float64)

_EXIF_ORIENTATION: Final = 0x0112

#: Signatures of formats that are images (or documents) we recognise but do not decode: they
#: deserve "unsupported type" (415) rather than "corrupt file" (422).
_OTHER_FORMATS: Final = (
    (b"%PDF", "application/pdf"),
    (b"%!PS", "application/postscript"),
    (b"\xc5\xd0\xd3\xc6", "application/postscript"),
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
_OWN_FORMATS: Final = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)
_RIFF_TYPES: Final = {b"AVI ": "video/x-msvideo", b"WAVE": "audio/wav", b"ANI ": "application/x-navi-animation"}
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
        own = _own_format(data)
        if own is not None:
            # Our own format's signature, but the plugin could not even read the header.
            raise InvalidInput(UNDECODABLE_IMAGE.format(reason=f"truncated or corrupt {own} header")) from None
        other = sniff_other_format(data)
        if other is not None:
            raise UnsupportedMediaType(UNSUPPORTED_IMAGE_TYPE.format(content_type=other)) from None
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason="not a recognised image format")) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge(IMAGE_BOMB.format(limit=max_pixels)) from None
    except Exception as exc:  # any failure on client bytes is the client's
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason=_reason(exc, "unreadable header"))) from None

    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            IMAGE_TOO_LARGE.format(width=width, height=height, pixels=width * height, limit=max_pixels)
        )
    if width < 1 or height < 1:
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason="the image has no pixels"))
    if image.format == "JPEG" and width * height > 4 * WORK_PIXELS:
        # Let libjpeg scale big photos down while decoding (1/2, 1/4 or 1/8): far faster, and
        # the digit needs no more than WORK_PIXELS anyway.
        scale = math.sqrt(WORK_PIXELS / (width * height))
        image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge(IMAGE_BOMB.format(limit=max_pixels)) from None
    except Exception as exc:  # any failure on client bytes is the client's
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


def _own_format(data: bytes) -> str | None:
    """Which of the decoded formats the bytes claim to be, by their signature."""
    for signature, name in _OWN_FORMATS:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def sniff_other_format(data: bytes) -> str | None:
    """The media type of bytes in a known format this service does not decode, or None."""
    head = data[:64]
    for signature, media_type in _OTHER_FORMATS:
        if head.startswith(signature):
            return media_type
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and head[4:6] != b"\x00\x00":
        return "image/x-icon"
    if data.endswith(b"TRUEVISION-XFILE.\x00"):
        return "image/x-tga"
    if head[4:8] == b"ftyp":
        return _HEIF_BRANDS.get(head[8:12], "video/mp4")
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_TYPES:
        return _RIFF_TYPES[head[8:12]]
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
    """A decoded image of one digit to float32 (28, 28) in [0, 1], white ink on black, like MNIST.

    EXIF orientation; one 8-bit grey channel (alpha flattened on a background that contrasts
    with the ink; the colour axis with the most contrast when luminance has little); polarity
    from the border (Otsu classes); background to 0 and stroke core to 1 (lighting fitted and
    noise smoothed for photos); crop to the ink, ignoring distant specks; stroke width brought
    into MNIST's range; longer side to 20 px; centre of mass to the middle of 28x28. 28x28
    images that are already MNIST-form are used as they are; other 28x28 white-on-black ones
    skip the analysis and go straight to the framing.
    """
    image = _upright(image)
    fast = _mnist_like(image)
    if fast is not None:
        return fast
    return _frame(_digit(_grey(_plain_mode(image))))


def _upright(image: Image.Image) -> Image.Image:
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


def _mnist_like(image: Image.Image) -> FloatArray | None:
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
    # This runs for most requests: ufuncs called directly (the array methods add a Python
    # layer each) and plain lists for the 28-element profiles.
    pixels: ByteArray = np.asarray(image)
    rows, cols = np.maximum.reduce(pixels, axis=1), np.maximum.reduce(pixels, axis=0)
    peak = int(np.maximum.reduce(rows))
    if peak < 128:
        return None
    filled_rows, filled_cols = rows.nonzero()[0].tolist(), cols.nonzero()[0].tolist()
    top, bottom = filled_rows[0], filled_rows[-1] + 1
    left, right = filled_cols[0], filled_cols[-1] + 1
    # Within a 20 px box, the ink cannot be the background: no polarity check is needed.
    if peak >= FRAMED_PEAK and BOX - 1 <= max(bottom - top, right - left) <= BOX:
        row_mass = np.add.reduce(pixels, axis=1, dtype=np.float64)
        mass = float(np.add.reduce(row_mass))
        row = float(row_mass @ _INDEX) / mass
        col = float(np.add.reduce(pixels, axis=0, dtype=np.float64) @ _INDEX) / mass
        if abs(row - CENTRE) < 0.5 and abs(col - CENTRE) < 0.5:
            return np.divide(pixels, np.float32(255), dtype=np.float32)
    border_peak = max(int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1]))
    if border_peak > 0.1 * peak or np.count_nonzero(pixels) > SIZE * SIZE // 2:
        return None
    # The full path's own background-to-0, core-to-1 table for a noiseless black background.
    ink = _ramp(0.0, 0.0, peak / 255)[pixels[top:bottom, left:right]]
    return _frame(ink)


def _plain_mode(image: Image.Image) -> Image.Image:
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
        # Bilevel images are often dithered: local averaging turns dot density back into grey.
        return grey.filter(ImageFilter.BoxBlur(1)) if min(grey.size) >= 64 else grey
    if mode.startswith("I;16") or mode == "I;32":
        return image.convert("I")
    try:
        return image.convert("RGB")
    except (ValueError, OSError):
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason=f"unsupported pixel mode {mode}")) from None


def _shrink(image: Image.Image) -> Image.Image:
    """Box-average big images down to about WORK_PIXELS, in C, before numpy sees them."""
    factor = math.ceil(math.sqrt(image.size[0] * image.size[1] / WORK_PIXELS) - 0.25)
    # PIL averages LA and RGBA premultiplied, so transparent pixels cannot bleed their hidden colour.
    return image.reduce(factor) if factor >= 2 else image


def _grey(image: Image.Image) -> Image.Image:
    """One 8-bit grey channel (mode L, shrunk) with alpha flattened; the ink may be dark or light.

    The choices (which colour axis, which background) are made on a sparse sample; the
    per-pixel work is PIL's, in C, except in the rare case of a colour axis.
    """
    mode = image.mode
    if mode == "L":
        return _shrink(image)
    if mode in ("I", "F"):
        return _from_floats(_stretch(np.asarray(_shrink(image), dtype=np.float32)))
    sample = np.asarray(image.resize((min(image.width, 64), min(image.height, 64)), Image.Resampling.NEAREST))
    alpha = sample[..., -1].astype(np.float32) * np.float32(1 / 255) if mode in ("LA", "RGBA") else None
    if alpha is not None and alpha.min() == 1:
        image, mode, alpha = image.convert(mode[:-1]), mode[:-1], None
        if mode == "L":
            return _shrink(image)
    axis = _colour_axis(sample, alpha) if mode != "LA" else None
    if axis is not None:
        return _project_on(_shrink(image), axis)
    luma = image.getchannel(0) if mode == "LA" else image.convert("L")
    if alpha is None:
        return _shrink(luma)
    sample_luma = np.asarray(luma.resize(sample.shape[1::-1], Image.Resampling.NEAREST), dtype=np.float32)
    sample_luma *= np.float32(1 / 255)
    background = round(255 * _background(sample_luma, alpha))
    return _shrink(Image.composite(luma, Image.new("L", image.size, background), image.getchannel("A")))


def _project_on(image: Image.Image, axis: FloatArray) -> Image.Image:
    """Grey from each pixel's colour projected on a colour axis (alpha flattened, if any)."""
    pixels = np.asarray(image)
    projected = (pixels[..., :3].reshape(-1, 3).astype(np.float32) @ axis).reshape(pixels.shape[:2])
    if image.mode == "RGB":
        return _from_floats(_stretch(np.asarray(projected, dtype=np.float32)))
    alpha = pixels[..., 3].astype(np.float32) * np.float32(1 / 255)
    opaque = alpha > 0.5
    # Stretch by the drawn pixels' range: hidden colours under alpha 0 do not count.
    reference = projected[opaque] if opaque.any() else projected
    low, high = float(reference.min()), float(reference.max())
    grey = np.clip((projected - low) * np.float32(1 / (high - low or 1)), 0, 1).astype(np.float32)
    background = np.float32(_background(grey, alpha))
    return _from_floats(np.asarray(background + alpha * (grey - background), dtype=np.float32))


def _from_floats(values: FloatArray) -> Image.Image:
    """[0, 1] floats to an 8-bit grey image (MNIST itself is 8-bit, and histograms become cheap)."""
    return Image.fromarray(_to_bytes(values))


LUMA: Final = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _to_bytes(values: FloatArray) -> ByteArray:
    """[0, 1] floats to 8-bit levels."""
    scaled = values * np.float32(255)
    scaled += np.float32(0.5)
    return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)


def _stretch(values: FloatArray) -> FloatArray:
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


def _colour_axis(pixels: ByteArray, alpha: FloatArray | None = None) -> FloatArray | None:
    """The colour axis with the most contrast, when it beats luminance clearly; else None (use luminance).

    Red ink on green card can have the same luminance as the card: then the digit is on the
    colour difference. Otherwise luminance is what people see, and what MNIST's scans recorded.
    """
    step = max(1, int(math.sqrt(pixels.shape[0] * pixels.shape[1] / 4096)))
    sample = pixels[::step, ::step, :3].reshape(-1, 3).astype(np.float64)
    if np.ptp(sample[:, 0] - sample[:, 1]) < 8 and np.ptp(sample[:, 1] - sample[:, 2]) < 8:
        return None  # grey, or near enough: luminance says it all
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
    if eigenvalues[-1] <= 2.0 * float(unit_luma @ cov @ unit_luma) + 1e-6:
        return None
    axis = eigenvectors[:, -1]
    if axis @ unit_luma < 0:
        axis = -axis
    return np.asarray(axis, dtype=np.float32)


def _background(colour: FloatArray, alpha: FloatArray) -> float:
    """The grey (0-1) to flatten transparent pixels on: one that contrasts with the ink.

    Canvas drawings are often black strokes on a transparent background whose hidden colour is
    also black (or white on white), so the alpha channel is the drawing: put the opaque pixels on
    the opposite of their own colour. When the opaque pixels are most of the picture they carry
    their own background (a photo with transparent margins): then the margins take its colour.
    """
    covered = float(alpha.sum())
    if covered <= 0:
        return 0.0
    if covered > 0.5 * alpha.size:
        return float(np.median(colour[alpha > 0.5]))
    return 1.0 if float((colour * alpha).sum()) / covered < 0.5 else 0.0


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


def _digit(image: Image.Image) -> FloatArray:
    """The digit's crop (from a mode L image): white ink on an exactly black background, stroke core near 1."""
    hist = np.array(image.histogram())
    grey: ByteArray = np.asarray(image)
    threshold = _otsu(hist)
    light = int(hist[threshold + 1 :].sum())
    if light == 0 or light == grey.size:
        raise InvalidInput(NO_DIGIT)
    if _background_is_light(grey, threshold, light / grey.size):
        grey = np.subtract(255, grey, dtype=np.uint8)
        hist = hist[::-1]
        threshold = 254 - threshold
    floor, noise, core = _levels(hist, threshold)
    if core - floor < MIN_CONTRAST:
        raise InvalidInput(NO_DIGIT)
    if noise == 0 or min(grey.shape) < 16:
        # A clean image (drawn, not photographed): the background is one flat level. Stay in
        # 8 bits and map only the digit's crop to floats, through a 256-entry table.
        ramp = _ramp(floor, noise, core)
        strong, faint = int(np.searchsorted(ramp, 0.5, side="right")), int(np.searchsorted(ramp, 0, side="right"))
        top, bottom, left, right = _digit_box(grey, strong - 1, faint - 1)
        return ramp[grey[top:bottom, left:right]]
    # Phone photos are lit unevenly: subtract a smooth fit of the paper, so a shadow or a bright
    # corner is not taken for ink. A fixed lift keeps the noise below the paper measurable.
    ink = grey.astype(np.float32) * np.float32(1 / 255)
    for _ in range(2):
        ink = ink - _lighting(ink, ink <= (threshold + 0.5) / 255) + np.float32(LIFT)
        hist = _histogram(ink)
        threshold = _otsu(hist)
        floor, noise, core = _levels(hist, threshold)
    if noise > NOISY * (core - floor):
        # Grain (sensor noise, chalk dust, JPEG ringing): average it down before thresholding.
        ink = _blur3(ink)
        hist = _histogram(ink)
        threshold = _otsu(hist)
        floor, noise, core = _levels(hist, threshold)
    if core - floor < MIN_CONTRAST:
        raise InvalidInput(NO_DIGIT)
    low, high = _ramp_ends(floor, noise, core)
    top, bottom, left, right = _digit_box(ink, low + 0.5 * (high - low), low)
    crop = (ink[top:bottom, left:right] - np.float32(low)) * np.float32(1 / (high - low))
    return np.asarray(np.clip(crop, 0, 1), dtype=np.float32)


def _ramp_ends(floor: float, noise: float, core: float) -> tuple[float, float]:
    """The grey levels that map to 0 and to 1.

    Noise and paper texture sit a few standard deviations above the background: below that
    nothing is ink. The stroke core maps to 1, as in MNIST.
    """
    contrast = core - floor
    return floor + min(max(0.06 * contrast, 4.0 * noise), 0.5 * contrast), core


def _ramp(floor: float, noise: float, core: float) -> FloatArray:
    """The 8-bit level -> ink table: 0 up to the noise floor, 1 from the stroke core up."""
    low, high = _ramp_ends(floor, noise, core)
    levels = np.arange(256, dtype=np.float32) * np.float32(1 / 255)
    return np.asarray(np.clip((levels - np.float32(low)) * np.float32(1 / (high - low)), 0, 1), dtype=np.float32)


def _histogram(values: FloatArray) -> NDArray[np.int64]:
    """A 256-bin histogram of float values in [0, 1]."""
    return np.bincount(_to_bytes(values).ravel(), minlength=256)


def _blur3(values: FloatArray) -> FloatArray:
    """A 3x3 box blur (PIL's BoxBlur does not take float images)."""
    padded = np.pad(values, 1, mode="edge")
    rows = padded[:-2] + padded[1:-1] + padded[2:]
    return np.asarray((rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) * np.float32(1 / 9), dtype=np.float32)


def _background_is_light(grey: ByteArray, threshold: int, light_share: float) -> bool:
    """Whether the background is the light class: what the border shows, else what most pixels are."""
    border = np.concatenate((grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]))
    border_light = float(np.count_nonzero(border > threshold)) / border.size
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
    return np.asarray(rows[:, None] + cols[None, :] + coef[4] * np.outer(ys, xs), dtype=np.float32)


def _bounds(mask: NDArray[np.bool_]) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _digit_box(ink: ByteArray | FloatArray, strong: float, faint: float) -> tuple[int, int, int, int]:
    """The ink's bounding box, ignoring small specks well away from the digit.

    The box is found on the strokes' cores (values above ``strong``), where stray noise rarely
    reaches, then widened over the soft edges (above ``faint``) right next to it.
    """
    core = ink > strong
    if not core.any():
        raise InvalidInput(NO_DIGIT)
    top, bottom, left, right = 0, ink.shape[0], 0, ink.shape[1]
    for _ in range(2):
        region = core[top:bottom, left:right]
        new_top, new_bottom, dropped_rows = _main_span(region, axis=1)
        new_left, new_right, dropped_cols = _main_span(region, axis=0)
        top, bottom, left, right = top + new_top, top + new_bottom, left + new_left, left + new_right
        if not (dropped_rows or dropped_cols):
            break  # nothing left out, so the other axis' profile cannot change either
    margin = max(1, round(EDGE * max(bottom - top, right - left)))
    above, below = max(0, top - margin), min(ink.shape[0], bottom + margin)
    rows_filled = np.asarray((ink[above:below, left:right] > faint).any(axis=1), dtype=np.bool_)
    top, bottom = _widen(rows_filled, top - above, top, bottom)
    before, after = max(0, left - margin), min(ink.shape[1], right + margin)
    cols_filled = np.asarray((ink[top:bottom, before:after] > faint).any(axis=0), dtype=np.bool_)
    left, right = _widen(cols_filled, left - before, left, right)
    return top, bottom, left, right


def _widen(filled: NDArray[np.bool_], before: int, start: int, end: int) -> tuple[int, int]:
    """Extend [start, end) over the filled cells just outside it (``filled`` starts ``before`` earlier)."""
    inner_end = before + end - start
    head = filled[:before][::-1]
    tail = filled[inner_end:]
    grow_start = int(np.argmin(head)) if not head.all() else head.size
    grow_end = int(np.argmin(tail)) if not tail.all() else tail.size
    return start - grow_start, end + grow_end


def _main_span(region: NDArray[np.bool_], axis: int) -> tuple[int, int, bool]:
    """The run of non-empty rows (axis=1) or columns (axis=0) holding the digit, and whether any
    other run was left out: heavy runs and runs close to the digit stay, distant specks go."""
    filled = np.asarray(region.any(axis=axis), dtype=np.bool_)
    index = np.flatnonzero(filled)
    first, last = int(index[0]), int(index[-1]) + 1
    if last - first == index.size:
        return first, last, False  # one solid run: the usual case
    mass = region.view(np.uint8).sum(axis=axis, dtype=np.int64)
    edges = np.flatnonzero(np.diff(np.concatenate(([False], filled, [False])).astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    cumulative = np.concatenate(([0], np.cumsum(mass)))
    run_mass = cumulative[ends] - cumulative[starts]
    share = run_mass / run_mass.sum()
    head = tail = int(np.argmax(run_mass))
    changed = True
    while changed:
        changed = False
        extent = ends[tail] - starts[head]
        if head > 0:
            gap = starts[head] - ends[head - 1]
            if share[head - 1] >= SPECK_SHARE or gap <= max(2, 0.25 * extent):
                head -= 1
                changed = True
        if tail < starts.size - 1:
            gap = starts[tail + 1] - ends[tail]
            if share[tail + 1] >= SPECK_SHARE or gap <= max(2, 0.25 * extent):
                tail += 1
                changed = True
    return int(starts[head]), int(ends[tail]), int(starts[head]) != first or int(ends[tail]) != last


def _frame(digit: FloatArray) -> FloatArray:
    """Scale the cropped digit so its longer side is 20 px, then centre it by mass in 28x28.

    On the way the digit passes through STROKE_SIDE px, where its strokes are brought into
    MNIST's range of widths: a fine pen or a fat marker would otherwise reach the model as
    hairlines or blobs it never saw.
    """
    height, width = digit.shape
    longer = max(height, width)
    picture = Image.fromarray(np.ascontiguousarray(digit, dtype=np.float32))
    if longer >= 2 * STROKE_SIDE:
        # Integer box reduction first: exact area averaging, and cheaper than one big resize.
        picture = picture.reduce(longer // STROKE_SIDE)
    scale = STROKE_SIDE / longer
    middle = (max(1, round(width * scale)), max(1, round(height * scale)))
    if picture.size != middle:
        filter_ = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
        picture = picture.resize(middle, filter_)
    strokes = _normalise_strokes(np.asarray(picture, dtype=np.float32))
    top, bottom, left, right = _bounds(strokes > 0)
    strokes = strokes[top:bottom, left:right]
    height, width = strokes.shape
    longer = max(height, width)
    final = (max(1, round(width * BOX / longer)), max(1, round(height * BOX / longer)))
    reduced = Image.fromarray(np.ascontiguousarray(strokes)).resize(final, Image.Resampling.BOX)
    return _centre(np.clip(np.asarray(reduced, dtype=np.float32), 0, 1))


def _normalise_strokes(digit: FloatArray) -> FloatArray:
    """Bring the stroke core back to 1 and the stroke width into MNIST's range, at STROKE_SIDE px.

    The result may be larger than the input (strokes grow outwards): the caller re-crops it.
    """
    peak = float(digit.max())
    if peak <= 0:
        raise InvalidInput(NO_DIGIT)
    strong = digit[digit > 0.5 * peak]
    rank = int(0.8 * (strong.size - 1))
    core = float(np.partition(strong, rank)[rank])
    digit = np.clip(digit * np.float32(1 / core), 0, 1)
    stroke = _stroke_width(digit > 0.5) * BOX / STROKE_SIDE
    if stroke < MIN_STROKE:
        return _morph(digit, (MIN_STROKE - stroke) * STROKE_SIDE / BOX / 2, np.maximum)
    if stroke > MAX_STROKE:
        return _morph(digit, (stroke - MAX_STROKE) * STROKE_SIDE / BOX / 2, np.minimum)
    return digit


def _stroke_width(mask: NDArray[np.bool_]) -> float:
    """Mean stroke width in pixels: twice the area over the perimeter (a long thin stroke's)."""
    inner = np.count_nonzero(mask[1:] != mask[:-1]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1])
    outer = np.count_nonzero(mask[0]) + np.count_nonzero(mask[-1]) + np.count_nonzero(mask[:, 0])
    perimeter = inner + outer + np.count_nonzero(mask[:, -1])
    return 2.0 * np.count_nonzero(mask) / perimeter if perimeter else 0.0


def _morph(digit: FloatArray, pixels: float, pick: np.ufunc) -> FloatArray:
    """Dilate (np.maximum) or erode (np.minimum) each stroke side by a possibly fractional pixel count.

    Grey-level 3x3 steps in numpy (PIL's rank filters are slow on float images); the fraction
    blends in part of one more step, so the width changes smoothly rather than in whole pixels.
    """
    whole = int(pixels)
    fraction = pixels - whole
    steps = whole + (fraction > 0.05)
    result = np.pad(digit, steps)  # room to grow; outside the crop is background either way
    previous = result
    for _ in range(steps):
        previous = result
        padded = np.pad(result, 1)
        rows = pick(pick(padded[:-2], padded[1:-1]), padded[2:])
        result = pick(pick(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])
    if fraction > 0.05:
        result = previous + np.float32(fraction) * (result - previous)
    return np.asarray(result, dtype=np.float32)


def _centre(digit: FloatArray) -> FloatArray:
    """Paste into 28x28 with the centre of mass at (14, 14), as MNIST did (whole-pixel shift)."""
    height, width = digit.shape
    mass = float(digit.sum())
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    if mass <= 0:
        raise InvalidInput(NO_DIGIT)
    row = float(digit.sum(axis=1) @ np.arange(height, dtype=np.float32)) / mass
    col = float(digit.sum(axis=0) @ np.arange(width, dtype=np.float32)) / mass
    # Whole pixels, rounding halves up (round() would round them to even), kept inside the frame.
    top = min(max(math.floor(CENTRE - row + 0.5), 0), SIZE - height)
    left = min(max(math.floor(CENTRE - col + 0.5), 0), SIZE - width)
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
    if not isinstance(value, np.ndarray) and _has_bool(value, array.ndim):
        # numpy quietly turns True into 1 when it sits among numbers.
        raise InvalidInput(PIXELS_TYPE)
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise InvalidInput(PIXELS_NOT_FINITE)
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 255:
        raise InvalidInput(PIXELS_RANGE.format(low=low, high=high))
    # Scale to [0, 1], as the model was trained.
    scaled = (values / 255).astype(np.float32)
    return scaled if batch else scaled[None]


def _has_bool(value: object, ndim: int) -> bool:
    """Whether a nested list of the right shape holds a boolean (type-checked per row, in C)."""
    rows: Iterable[Iterable[object]] = value  # type: ignore[assignment]
    if ndim == 3:
        rows = itertools.chain.from_iterable(rows)  # type: ignore[arg-type]
    kinds: set[type] = set()
    for row in rows:
        kinds.update(map(type, row))
    return bool in kinds or np.bool_ in kinds


def _object_error(value: object, expected: str) -> str:
    """Why numpy fell back to an object array: huge integers, or mixed/ragged content."""
    leaves = _leaves(value)
    if any(isinstance(leaf, bool) or not isinstance(leaf, (int, float)) for leaf in leaves):
        return PIXELS_TYPE
    if any(isinstance(leaf, int) for leaf in leaves):
        numbers: list[int | float] = leaves  # type: ignore[assignment]
        return PIXELS_RANGE.format(low=_as_float(min(numbers)), high=_as_float(max(numbers)))
    return PIXELS_SHAPE.format(expected=expected, got="a ragged array")


def _as_float(number: int | float) -> float:
    """A Python number as a float, huge integers as infinities (float() would raise)."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


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
