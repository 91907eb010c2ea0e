"""Test images made with PIL: a glyph drawn at any size, style and place, and ways to compare outputs."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "data" / "realworld"
MAX_PIXELS = 24_000_000

#: A "4" as a polyline in unit coordinates (x, y), about 0.75 wide for 1 tall.
GLYPH = [(0.55, 1.0), (0.55, 0.0), (0.0, 0.68), (0.75, 0.68)]


def glyph_mask(height: int, stroke: float = 0.1) -> Image.Image:
    """An anti-aliased 'L' mask (255 = ink) of the glyph, ``height`` px tall, drawn 4x and reduced."""
    big = 4 * height
    pen = max(1, round(stroke * big))
    pad = pen // 2 + 1
    size = (round(0.75 * big) + 2 * pad, big + 2 * pad)
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    points = [(pad + x * (big - 1), pad + y * (big - 1)) for x, y in GLYPH]
    draw.line(points, fill=255, width=pen, joint="curve")
    for x, y in (points[0], points[-1]):
        draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=255)
    canvas = canvas.crop(canvas.getbbox())
    return canvas.resize((max(1, canvas.width // 4), max(1, canvas.height // 4)), Image.Resampling.BOX)


def glyph_image(
    height: int = 120,
    frame: tuple[int, int] = (200, 200),
    at: tuple[int, int] | None = None,
    ink: int | tuple[int, ...] = 20,
    paper: int | tuple[int, ...] = 240,
    mode: str = "L",
    stroke: float = 0.1,
) -> Image.Image:
    """The glyph painted in ``ink`` on ``paper`` in a (width, height) frame, at (left, top) or centred."""
    mask = glyph_mask(height, stroke)
    image = Image.new(mode, frame, paper)
    left, top = at if at is not None else ((frame[0] - mask.width) // 2, (frame[1] - mask.height) // 2)
    image.paste(Image.new(mode, mask.size, ink), (left, top), mask)
    return image


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def shifted_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference, allowing a one-pixel shift (MNIST centres to whole pixels)."""
    best = np.inf
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            best = min(best, float(np.abs(np.roll(a, (dy, dx), axis=(0, 1)) - b).mean()))
    return best


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    index = np.arange(x.shape[0])
    return float(x.sum(1) @ index / x.sum()), float(x.sum(0) @ index / x.sum())


def ink_box(x: np.ndarray, level: float = 0.0) -> tuple[int, int]:
    rows = np.flatnonzero((x > level).any(1))
    cols = np.flatnonzero((x > level).any(0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def assert_mnist_form(x: np.ndarray) -> None:
    assert x.shape == (28, 28)
    assert x.dtype == np.float32
    assert np.isfinite(x).all()
    assert x.min() >= 0.0
    assert x.max() <= 1.0


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int) -> bytes:
    """A small PNG declaring a huge size, its pixel data a compressed run of zeros: a decompression bomb."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    data = png_chunk(b"IDAT", zlib.compress(bytes(100_000), 9))
    return b"\x89PNG\r\n\x1a\n" + header + data + png_chunk(b"IEND", b"")
