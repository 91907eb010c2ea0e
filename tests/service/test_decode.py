"""Tests of service.preprocess's decoding and format sniffing: every format, every refusal, every error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from service.errors import EMPTY_IMAGE, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.preprocess import decode_image
from tests.service.imaging import MAX_PIXELS, encode, glyph_image, png_bomb

# --- decode_image ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mode", "options"),
    [
        ("PNG", "L", {}),
        ("JPEG", "RGB", {"quality": 90}),
        ("WEBP", "RGB", {"lossless": True}),
        ("BMP", "RGB", {}),
        ("GIF", "L", {}),
        ("TIFF", "L", {"compression": "tiff_deflate"}),
    ],
)
def test_decodes_every_supported_format(fmt: str, mode: str, options: dict[str, object]) -> None:
    image = decode_image(encode(glyph_image(mode=mode), fmt, **options), MAX_PIXELS)
    assert image.size == (200, 200)
    assert image.format == fmt


def test_empty_bytes_are_invalid() -> None:
    with pytest.raises(InvalidInput) as info:
        decode_image(b"", MAX_PIXELS)
    assert info.value.detail == EMPTY_IMAGE
    assert info.value.status_code == 422


@pytest.mark.parametrize("data", [b"hello, world", b"\x00" * 100, bytes(range(256)), b'{"pixels": []}'])
def test_garbage_is_undecodable(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="could not be decoded") as info:
        decode_image(data, MAX_PIXELS)
    assert info.value.status_code == 422


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files_are_undecodable_not_server_errors(fmt: str, keep: float) -> None:
    noisy = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8))
    data = encode(noisy.convert("RGB") if fmt == "WEBP" else noisy, fmt)
    with pytest.raises(InvalidInput, match="could not be decoded") as info:
        decode_image(data[: int(len(data) * keep)], MAX_PIXELS)
    detail = info.value.detail
    assert "BytesIO" not in detail and "/" not in detail.split("(")[1].split(")")[0]


def test_truncated_files_are_refused_not_padded() -> None:
    # The package turns PIL's padding of truncated files off once, when it is imported, and
    # nothing in it turns it back on.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = encode(glyph_image(), "PNG")
    with pytest.raises(InvalidInput, match="truncated"):
        decode_image(data[: len(data) // 2], MAX_PIXELS)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_corrupt_compressed_data_is_undecodable() -> None:
    data = bytearray(encode(glyph_image(), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 60] = bytes(50)
    with pytest.raises(InvalidInput, match="could not be decoded"):
        decode_image(bytes(data), MAX_PIXELS)


def test_header_only_png_is_undecodable() -> None:
    with pytest.raises(InvalidInput, match="PNG"):
        decode_image(encode(glyph_image(), "PNG")[:20], MAX_PIXELS)


def test_image_over_the_pixel_limit_is_refused_before_decoding() -> None:
    data = encode(Image.new("L", (300, 200), 255), "PNG")
    with pytest.raises(PayloadTooLarge) as info:
        decode_image(data, 300 * 200 - 1)
    assert info.value.status_code == 413
    assert "300x200 = 60,000 pixels" in info.value.detail
    assert decode_image(data, 300 * 200).size == (300, 200)


def test_decompression_bombs_are_too_large() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        decode_image(png_bomb(50_000, 50_000), MAX_PIXELS)
    assert info.value.status_code == 413
    # Beyond PIL's own bomb limit the header is refused even when our limit would allow it.
    with pytest.raises(PayloadTooLarge):
        decode_image(png_bomb(100_000, 100_000), 10**12)


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "image/svg+xml"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', "image/svg+xml"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "application/pdf"),
        (b"8BPS\x00\x01" + bytes(40), "image/vnd.adobe.photoshop"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "image/heic"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1", "image/avif"),
        (b"<!DOCTYPE html><html><body></body></html>", "text/html"),
    ],
)
def test_other_known_formats_are_unsupported_media(data: bytes, media_type: str) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        decode_image(data, MAX_PIXELS)
    assert info.value.status_code == 415
    assert repr(media_type) in info.value.detail


@pytest.mark.parametrize(("fmt", "media_type"), [("ICO", "image/x-icon"), ("PPM", "image/x-portable-anymap")])
def test_formats_pil_could_decode_are_never_decoded(fmt: str, media_type: str) -> None:
    data = encode(glyph_image(frame=(64, 64), height=40, mode="RGB"), fmt)
    assert Image.open(io.BytesIO(data)).format  # PIL itself would read it
    with pytest.raises(UnsupportedMediaType, match=media_type):
        decode_image(data, MAX_PIXELS)


@pytest.mark.parametrize("fmt", ["PCX", "SGI", "IM"])
def test_unrecognisable_pil_formats_are_undecodable(fmt: str) -> None:
    with pytest.raises(InvalidInput, match="could not be decoded"):
        decode_image(encode(glyph_image(frame=(64, 64), height=40, mode="RGB"), fmt), MAX_PIXELS)


def test_big_jpegs_are_decoded_at_reduced_size() -> None:
    photo = glyph_image(height=1500, frame=(2400, 1800), mode="RGB")
    image = decode_image(encode(photo, "JPEG", quality=80), MAX_PIXELS)
    assert 256 <= max(image.size) < 2400
