"""Costly images of every accepted format: small files that are slow or memory-hungry to decode.

Each is what an attacker would send: a few KB that unpack to tens of megapixels, or that make a
decoder loop in Python, or carry thousands of frames or chunks. Built here, byte by byte where
PIL cannot write them, so the tests and ``benchmarks/preprocess_cost.py`` share them.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

from PIL import Image


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, colour_type: int, idat: bytes, extra: bytes = b"") -> bytes:
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + extra + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_rgba_24mp() -> bytes:
    """4898 x 4898 RGBA of zeros: about 100 KB that decode to 96 MB."""
    width = height = 4898
    raw = zlib.compressobj(9)
    row = bytes(1 + 4 * width)
    body = b"".join(raw.compress(row) for _ in range(height)) + raw.flush()
    return _png(width, height, 6, body)


def png_text_bomb() -> bytes:
    """A 1x1 PNG whose zTXt chunks each inflate to 1 MB of text (PIL keeps up to 64 MB of it)."""
    text = zlib.compress(bytes(1_000_000), 9)
    chunks = b"".join(_png_chunk(b"zTXt", b"k%d\x00\x00" % i + text) for i in range(60))
    return _png(1, 1, 0, zlib.compress(b"\x00\x00"), chunks)


def png_many_chunks() -> bytes:
    """A 1x1 PNG with 20,000 tiny ancillary chunks before its pixels, each parsed in Python."""
    chunks = b"".join(_png_chunk(b"tEXt", b"k\x00v") for _ in range(20_000))
    return _png(1, 1, 0, zlib.compress(b"\x00\x00"), chunks)


def apng_many_frames() -> bytes:
    """A 1x1 animated PNG declaring 10,000 frames."""
    actl = _png_chunk(b"acTL", struct.pack(">II", 10_000, 0))
    return _png(1, 1, 0, zlib.compress(b"\x00\x00"), actl)


def bmp_rle8_wide() -> bytes:
    """24,000,000 x 1 RLE8: about 1 KB, 2.5 s in PIL's Python decoder (its end-of-line padding)."""
    return bmp_rle(24_000_000, 1, 8, b"\x01\x00" + b"\x00\x00" + b"\x00\x01")


def bmp_rle4_runs() -> bytes:
    """4000 x 4000 RLE4 of 255-pixel runs: PIL's RLE4 decoder loops once per pixel, in Python."""
    row = b"\xff\x12" * 15 + b"\xaf\x12" + b"\x00\x00"
    return bmp_rle(4000, 4000, 4, row * 4000 + b"\x00\x01")


def bmp_rle(width: int, height: int, bits: int, data: bytes) -> bytes:
    """A BMP of RLE8 (bits 8) or RLE4 (bits 4) data, with a grey palette."""
    colours = 1 << bits
    palette = b"".join(bytes((i, i, i, 0)) for i in range(colours))
    offset = 14 + 40 + len(palette)
    info = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, bits, 1 if bits == 8 else 2, len(data), 2835, 2835, colours, 0
    )
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data


def gif_lzw_24mp() -> bytes:
    """4898 x 4898 GIF of one colour: LZW packs it into a few hundred KB at most."""
    return _encode(Image.new("P", (4898, 4898), 0), "GIF")


def gif_many_frames() -> bytes:
    """A 2x2 GIF with 5,000 frames."""
    frames = [Image.new("P", (2, 2), i % 2) for i in range(5000)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=10, optimize=False)
    return buffer.getvalue()


def gif_huge_screen() -> bytes:
    """A GIF whose logical screen is 65,535 x 300 while its only frame is 1 x 1."""
    lzw = b"\x02\x02\x44\x01\x00"
    screen = struct.pack("<HHBBB", 65_535, 300, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
    return b"GIF89a" + screen + descriptor + lzw + b"\x3b"


def webp_lossless_24mp() -> bytes:
    """4898 x 4898 lossless WebP of one colour: about 3 KB that decode to 96 MB in 0.3-0.4 s."""
    return _encode(Image.new("RGB", (4898, 4898), 0), "WEBP", lossless=True)


def webp_lossy_big() -> bytes:
    """8000 x 3000 lossy WebP of one colour (VP8 has no reduced-size decoding in PIL)."""
    return _encode(Image.new("RGB", (8000, 3000), 0), "WEBP", quality=10)


def tiff_deflate_24mp() -> bytes:
    """4898 x 4898 RGB TIFF of zeros, deflate-compressed."""
    return _encode(Image.new("RGB", (4898, 4898), 0), "TIFF", compression="tiff_deflate")


def tiff_float_16mp() -> bytes:
    """4000 x 4000 32-bit float TIFF (64 MB decoded), deflate-compressed."""
    return _encode(Image.new("F", (4000, 4000), 0.0), "TIFF", compression="tiff_deflate")


def jpeg_24mp() -> bytes:
    """6000 x 4000 JPEG of one colour: DCT-scaled decoding makes it cheap."""
    return _encode(Image.new("RGB", (6000, 4000), 0), "JPEG", quality=50)


def jpeg_progressive_24mp() -> bytes:
    """6000 x 4000 progressive JPEG: libjpeg buffers every coefficient of every scan."""
    return _encode(Image.new("RGB", (6000, 4000), 0), "JPEG", quality=50, progressive=True)


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


#: Every costly input, by name.
COSTLY: dict[str, Callable[[], bytes]] = {
    "png-rgba-24mp": png_rgba_24mp,
    "png-text-bomb": png_text_bomb,
    "png-many-chunks": png_many_chunks,
    "apng-many-frames": apng_many_frames,
    "bmp-rle8-wide": bmp_rle8_wide,
    "bmp-rle4-runs": bmp_rle4_runs,
    "gif-lzw-24mp": gif_lzw_24mp,
    "gif-many-frames": gif_many_frames,
    "gif-huge-screen": gif_huge_screen,
    "webp-lossless-24mp": webp_lossless_24mp,
    "webp-lossy-big": webp_lossy_big,
    "tiff-deflate-24mp": tiff_deflate_24mp,
    "tiff-float-16mp": tiff_float_16mp,
    "jpeg-24mp": jpeg_24mp,
    "jpeg-progressive-24mp": jpeg_progressive_24mp,
}
