"""The real-world styles of benchmarks/realworld.py: one MNIST test digit drawn as clients send digits.

Each style upscales the digit smoothly, gives it crisp strokes and draws it the way one kind of
client sends it (canvas drawings, phone photos of paper, chalk on a board, tiny icons, huge scans,
palette GIFs, heavy JPEG), then encodes the file bytes as that client would.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

Rng = np.random.Generator
#: A style draws one MNIST digit (28x28 uint8) and returns the file bytes and their extension;
#: ``scale`` shrinks the picture (the committed test samples must be small files).
Style = Callable[[np.ndarray, Rng, float], tuple[bytes, str]]


# --- Drawing helpers ------------------------------------------------------------------------------


def stroke_mask(digit: np.ndarray, size: int, *, level: float = 0.5, grow: int = 0, pen: float = 0) -> np.ndarray:
    """The digit's ink as a float mask whose longer side is ``size`` px, with crisp strokes.

    Bicubic upscaling keeps the exact shape of the test digit; the steep contrast curve around
    ``level`` turns MNIST's blurry 28x28 strokes into the sharp edges of a pen or a brush (a lower
    level gives bolder strokes). ``grow`` dilates by that many pixels (a marker). ``pen`` redraws
    the strokes' centre lines (a morphological skeleton) with a pen that many pixels wide: the
    same digit written with a fine pen.
    """
    ys, xs = np.nonzero(digit)
    crop = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32) / 255
    crop = np.pad(crop, 2)
    scale = size / (max(crop.shape) - 4)
    width, height = max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))
    smooth = np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.BICUBIC))
    mask = np.clip((smooth - level) * 4 + 0.5, 0, 1).astype(np.float32)
    if pen:
        mask = fine_pen(crop, (width, height), scale, pen)
    if grow:
        mask = np.asarray(Image.fromarray(mask).filter(ImageFilter.MaxFilter(2 * grow + 1)), dtype=np.float32)
    ys, xs = np.nonzero(mask > 0.02)
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def fine_pen(crop: np.ndarray, size: tuple[int, int], scale: float, ridge: float) -> np.ndarray:
    """The strokes' middles: where the (slightly blurred) ink is within ``ridge`` of its local peak.

    A light blur at MNIST's own resolution first rounds MNIST's flat-topped, saturated strokes,
    so the middle is thin everywhere instead of keeping whole plateaus.
    """
    kernel = np.exp(-0.5 * (np.arange(-2, 3) / 0.6) ** 2)
    kernel /= kernel.sum()
    blurred = np.apply_along_axis(np.convolve, 0, np.pad(crop, 2), kernel, mode="same")
    blurred = np.apply_along_axis(np.convolve, 1, blurred, kernel, mode="same")[2:-2, 2:-2]
    picture = Image.fromarray(blurred.astype(np.float32)).resize(size, Image.Resampling.BICUBIC)
    peak = np.asarray(picture.filter(ImageFilter.MaxFilter(2 * max(1, round(scale)) + 1)), dtype=np.float32)
    height = np.asarray(picture, dtype=np.float32)
    closeness = np.where(height > 0.25 * height.max(), height / np.maximum(peak, 1e-6), 0)
    return np.clip((closeness - (1 - ridge)) * 4 / ridge + 0.5, 0, 1).astype(np.float32)


def place(mask: np.ndarray, height: int, width: int, rng: Rng, *, centred: bool = False) -> np.ndarray:
    """Put the mask somewhere in a (height, width) frame (anywhere it fits, or centred)."""
    frame = np.zeros((height, width), dtype=np.float32)
    mh, mw = mask.shape
    mh, mw = min(mh, height), min(mw, width)
    if centred:
        top, left = (height - mh) // 2, (width - mw) // 2
    else:
        top, left = int(rng.integers(0, height - mh + 1)), int(rng.integers(0, width - mw + 1))
    frame[top : top + mh, left : left + mw] = mask[:mh, :mw]
    return frame


def paint(mask: np.ndarray, background: np.ndarray | np.floating, ink: np.ndarray | np.floating) -> np.ndarray:
    """Ink over background, both (..., 3) or scalars, by the mask."""
    m = mask if np.ndim(background) == 0 and np.ndim(ink) == 0 else mask[..., None]
    return np.asarray(background * (1 - m) + ink * m)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **options: object) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    ext = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff"}[fmt]
    return buffer.getvalue(), ext


def sized(rng: Rng, low: int, high: int, scale: float) -> int:
    """A random size in [low, high] pixels, times scale."""
    return max(16, round(int(rng.integers(low, high + 1)) * scale))


def random_colour(rng: Rng, low: int = 0, high: int = 256) -> np.ndarray:
    return rng.integers(low, high, size=3).astype(np.float32)


# --- Styles ---------------------------------------------------------------------------------------


def canvas_black(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """Browser canvas: black round strokes on a transparent (hidden black) background."""
    side = sized(rng, 280, 400, scale)
    mask = place(stroke_mask(digit, int(side * rng.uniform(0.5, 0.8)), level=0.4), side, side, rng)
    rgba = np.zeros((side, side, 4), dtype=np.uint8)
    rgba[..., 3] = to_uint8(mask * 255)
    return encode(Image.fromarray(rgba), "PNG")


def canvas_white(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """Canvas in a dark-mode app: white strokes on transparent, hidden colour black or white."""
    side = sized(rng, 280, 400, scale)
    mask = place(stroke_mask(digit, int(side * rng.uniform(0.5, 0.8)), level=0.4), side, side, rng)
    rgba = np.full((side, side, 4), 255 if rng.random() < 0.5 else 0, dtype=np.uint8)
    rgba[..., :3][mask > 0] = 255
    rgba[..., 3] = to_uint8(mask * 255)
    return encode(Image.fromarray(rgba), "PNG")


def paper(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """A clean scan: dark pen on white paper."""
    side = sized(rng, 200, 400, scale)
    return scanned_paper(place(stroke_mask(digit, int(side * rng.uniform(0.5, 0.8))), side, side, rng), rng)


def scanned_paper(mask: np.ndarray, rng: Rng) -> tuple[bytes, str]:
    """``mask`` (ink coverage, 0-1) in dark pen on white paper, scanned clean to a PNG."""
    ink = np.array([20, 25, 60], dtype=np.float32) * rng.uniform(0, 1.5)
    pixels = paint(mask, np.float32(rng.uniform(235, 255)), ink)
    pixels += rng.normal(0, 2, pixels.shape).astype(np.float32)
    return encode(Image.fromarray(to_uint8(pixels)), "PNG")


def phone_photo(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """A phone photo of paper: uneven light, colour cast, blur, sensor noise, JPEG q70, off-centre."""
    width, height = sized(rng, 800, 1200, scale), sized(rng, 600, 900, scale)
    if rng.random() < 0.5:
        width, height = height, width
    size = int(min(width, height) * rng.uniform(0.3, 0.6))
    mask = place(stroke_mask(digit, size, level=rng.uniform(0.4, 0.6)), height, width, rng)
    mask, light, cast = phone_optics(mask, rng)
    paper_rgb = rng.uniform(200, 250) * cast
    ink = random_colour(rng, 20, 90) * PHONE_INK_TINT
    return phone_sensor(paint(mask, paper_rgb, ink) * light[..., None], rng)


#: A phone photo's ink is a little bluer than the pen's colour: the white balance follows the paper.
PHONE_INK_TINT = np.array([0.8, 0.8, 1.0], dtype=np.float32)


def phone_optics(mask: np.ndarray, rng: Rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a phone's lens and light do to ``mask``: the mask blurred, the uneven light (H, W), the colour cast."""
    height, width = mask.shape
    blurred = Image.fromarray(to_uint8(mask * 255)).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    ys = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    xs = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    gx, gy = rng.uniform(-0.15, 0.15, size=2)
    light = 0.85 + gx * xs + gy * ys - rng.uniform(0.05, 0.15) * (xs * xs + ys * ys) / 2
    cast = np.array([1.0, rng.uniform(0.92, 1.0), rng.uniform(0.75, 0.95)], dtype=np.float32)
    return np.asarray(blurred, dtype=np.float32) / 255, light, cast


def phone_sensor(pixels: np.ndarray, rng: Rng) -> tuple[bytes, str]:
    """The sensor's noise on a phone photo's ``pixels``, and the phone's JPEG at quality 70."""
    pixels += rng.normal(0, rng.uniform(2, 6), pixels.shape).astype(np.float32)
    return encode(Image.fromarray(to_uint8(pixels)), "JPEG", quality=70)


def chalkboard(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """Chalk on a green board: light, grainy strokes on a dark, textured colour."""
    side = sized(rng, 300, 500, scale)
    mask = place(stroke_mask(digit, int(side * rng.uniform(0.5, 0.8)), level=0.45), side, side, rng)
    grain = rng.uniform(0.55, 1.0, mask.shape).astype(np.float32)
    board = np.array([40, 75, 50], dtype=np.float32) * rng.uniform(0.7, 1.3)
    texture = rng.normal(0, 6, (side, side, 1)).astype(np.float32)
    pixels = paint(mask * grain, board + texture, np.array([225, 230, 220], dtype=np.float32))
    return encode(Image.fromarray(to_uint8(pixels)), "JPEG", quality=85)


def coloured(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """Coloured ink on a coloured background (any hues, at least some colour difference)."""
    side = sized(rng, 150, 350, scale)
    mask = place(stroke_mask(digit, int(side * rng.uniform(0.5, 0.8))), side, side, rng)
    while True:
        background, ink = random_colour(rng), random_colour(rng)
        if np.linalg.norm(background - ink) > 150:
            break
    return encode(Image.fromarray(to_uint8(paint(mask, background, ink))), "PNG")


def small(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """A tiny image (16-24 px), either polarity, grey."""
    side = int(rng.integers(16, 25))
    mask = place(stroke_mask(digit, int(side * rng.uniform(0.7, 0.95)), level=0.35), side, side, rng, centred=True)
    dark_on_light = rng.random() < 0.5
    pixels = paint(mask, np.float32(255 if dark_on_light else 0), np.float32(0 if dark_on_light else 255))
    return encode(Image.fromarray(to_uint8(pixels)), "PNG")


def large(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """A big scan (500-900 px), dark on white."""
    side = sized(rng, 500, 900, scale)
    mask = place(stroke_mask(digit, int(side * rng.uniform(0.6, 0.85))), side, side, rng)
    return encode(Image.fromarray(to_uint8(paint(mask, np.float32(250), np.float32(10)))), "PNG")


def wide_frame(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """Off-centre in a wide or tall frame (aspect 2.5-4)."""
    short = sized(rng, 120, 240, scale)
    long = int(short * rng.uniform(2.5, 4))
    height, width = (short, long) if rng.random() < 0.5 else (long, short)
    mask = place(stroke_mask(digit, int(short * rng.uniform(0.6, 0.9))), height, width, rng)
    return encode(Image.fromarray(to_uint8(paint(mask, np.float32(245), np.float32(30)))), "PNG")


def thick(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """Marker pen: strokes two to three times MNIST's width."""
    side = sized(rng, 200, 320, scale)
    size = int(side * rng.uniform(0.55, 0.75))
    grow = max(1, round(size * rng.uniform(0.02, 0.04)))
    mask = place(stroke_mask(digit, size, level=0.3, grow=grow), side, side, rng)
    return encode(Image.fromarray(to_uint8(paint(mask, np.float32(255), np.float32(0)))), "PNG")


def thin(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """Fine pen: strokes a third to a half of MNIST's width."""
    side = sized(rng, 200, 320, scale)
    size = int(side * rng.uniform(0.55, 0.75))
    mask = place(stroke_mask(digit, size, pen=rng.uniform(0.08, 0.15)), side, side, rng)
    return encode(Image.fromarray(to_uint8(paint(mask, np.float32(255), np.float32(0)))), "PNG")


def jpeg_heavy(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """Heavily compressed JPEG (quality 15-40), small-ish."""
    side = sized(rng, 64, 200, scale)
    mask = place(stroke_mask(digit, int(side * rng.uniform(0.55, 0.85))), side, side, rng)
    pixels = paint(mask, np.float32(rng.uniform(200, 255)), np.float32(rng.uniform(0, 60)))
    return encode(Image.fromarray(to_uint8(pixels)), "JPEG", quality=int(rng.integers(15, 41)))


def palette_gif(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """A palette GIF (8-16 colours, dithered) of a coloured drawing."""
    side = sized(rng, 100, 300, scale)
    mask = place(stroke_mask(digit, int(side * rng.uniform(0.55, 0.85))), side, side, rng)
    pixels = paint(mask, random_colour(rng, 150, 256), random_colour(rng, 0, 100))
    image = Image.fromarray(to_uint8(pixels)).quantize(colors=int(rng.integers(8, 17)))
    return encode(image, "GIF")


def tight_crop(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """Cropped to the digit (0-2 px margin): the ink touches the borders. Either polarity."""
    mask = np.pad(stroke_mask(digit, int(rng.integers(60, 161))), int(rng.integers(0, 3)))
    dark_on_light = rng.random() < 0.5
    pixels = paint(mask, np.float32(255 if dark_on_light else 0), np.float32(0 if dark_on_light else 255))
    return encode(Image.fromarray(to_uint8(pixels)), "PNG")


def mnist_png(digit: np.ndarray, rng: Rng, scale: float = 1.0) -> tuple[bytes, str]:
    """The MNIST image itself as a 28x28 PNG: what a client who already preprocessed sends."""
    return encode(Image.fromarray(digit), "PNG")


STYLES: dict[str, Style] = {
    "canvas-black": canvas_black,
    "canvas-white": canvas_white,
    "paper": paper,
    "phone-photo": phone_photo,
    "chalkboard": chalkboard,
    "coloured": coloured,
    "small": small,
    "large": large,
    "wide-frame": wide_frame,
    "thick": thick,
    "thin": thin,
    "jpeg-heavy": jpeg_heavy,
    "palette-gif": palette_gif,
    "tight-crop": tight_crop,
    "mnist-png": mnist_png,
}


SAMPLE_SCALE = {"small": 1.0, "tight-crop": 1.0, "mnist-png": 1.0, "phone-photo": 0.25, "large": 0.25, "paper": 0.2}
SAMPLE_BYTES = 8_000


def special_samples(digit: np.ndarray, kind: str, rng: Rng) -> tuple[bytes, str]:
    """Valid files in the unusual encodings the service must still read."""
    mask = place(stroke_mask(digit, 70), 96, 96, rng, centred=True)
    grey = Image.fromarray(to_uint8(paint(mask, np.float32(245), np.float32(20))))
    if kind == "cmyk":
        return encode(grey.convert("RGB").convert("CMYK"), "JPEG", quality=85)
    if kind == "gray16":
        # 12-bit data in a 16-bit PNG, as scientific cameras write it: PIL's own 8-bit
        # conversion would clip it, the service must scale by the real range.
        deep = np.rint(paint(mask, np.float32(3900), np.float32(300))).astype(np.uint16)
        return encode(Image.fromarray(deep), "PNG")
    if kind == "palette-alpha":
        # Black palette entries whose alpha ramps up with the ink: black on transparent black.
        levels = np.rint(mask * 15).astype(np.uint8)
        image = Image.fromarray(levels, mode=None).convert("P")
        image.putpalette([0, 0, 0] * 16)
        return encode(image, "PNG", transparency=bytes(round(i * 255 / 15) for i in range(16)))
    if kind == "la":
        # White ink on transparent white: only the alpha channel carries the digit.
        la = np.stack((np.full(mask.shape, 255, np.uint8), to_uint8(mask * 255)), axis=-1)
        return encode(Image.fromarray(la), "PNG")
    if kind == "animated":
        blank = Image.new("L", grey.size, 245)
        buffer = io.BytesIO()
        grey.save(buffer, "GIF", save_all=True, append_images=[blank, grey.rotate(90)], duration=200, loop=0)
        return buffer.getvalue(), "gif"
    if kind == "exif-rotated":
        # Stored turned a quarter left; orientation 6 tells viewers to turn it right again.
        exif = Image.Exif()
        exif[0x0112] = 6
        return encode(grey.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=85, exif=exif.tobytes())
    if kind == "webp":
        return encode(grey, "WEBP", quality=80)
    if kind == "bmp":
        return encode(grey.resize((40, 40), Image.Resampling.BOX), "BMP")
    if kind == "tiff":
        return encode(grey, "TIFF", compression="tiff_deflate")
    raise ValueError(kind)


SPECIALS = ("cmyk", "gray16", "palette-alpha", "la", "animated", "exif-rotated", "webp", "bmp", "tiff")
