"""Tests of service.preprocess.cost: an image's cost read from its header, and refusals before decoding.

The costly inputs (tests/service/costly.py) are small files of every accepted format that
decode to tens of megapixels, or make PIL loop in Python: each is refused before any PIL code
runs, or decoded within a bound of time and memory.
"""

from __future__ import annotations

import io
import time
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from service import preprocess
from service.errors import IMAGE_OVER_LIMIT, IMAGE_TOO_COMPLEX, InvalidInput, PayloadTooLarge, ServiceError
from service.preprocess import ImageCost, decode_image, image_cost, image_to_input
from service.preprocess import cost as cost_module
from tests.service.costly import COSTLY, bmp_rle, bmp_rle8_wide, png_many_chunks
from tests.service.imaging import MAX_PIXELS, encode, glyph_image

#: Refused from the header alone: PIL never even parses them.
REFUSED = [
    "png-rgba-24mp",
    "png-many-chunks",
    "bmp-rle8-wide",
    "bmp-rle4-runs",
    "gif-lzw-24mp",
    "gif-huge-screen",
    "webp-lossless-24mp",
    "webp-lossy-big",
    "tiff-deflate-24mp",
    "tiff-float-16mp",
    "jpeg-progressive-24mp",
]
#: Accepted, but decoded within bounds (only the first frame; text chunks capped).
BOUNDED = ["png-text-bomb", "apng-many-frames", "gif-many-frames", "jpeg-24mp"]


@pytest.fixture(scope="module")
def costly() -> dict[str, bytes]:
    return {name: make() for name, make in COSTLY.items()}


@pytest.fixture
def no_pil(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make any use of PIL's parsers or decoders fail the test."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("PIL ran on bytes that should have been refused from the header")

    monkeypatch.setattr(Image, "open", forbidden)
    monkeypatch.setattr(ImageFile.ImageFile, "load", forbidden)
    yield


def test_every_costly_input_is_listed() -> None:
    assert sorted(REFUSED + BOUNDED) == sorted(COSTLY)


@pytest.mark.parametrize("name", REFUSED)
def test_costly_images_are_refused_before_pil_runs(name: str, costly: dict[str, bytes], no_pil: None) -> None:
    start = time.perf_counter()
    with pytest.raises(PayloadTooLarge) as info:
        decode_image(costly[name], MAX_PIXELS)
    assert time.perf_counter() - start < 0.1  # header only (today's code took 0.2-5.6 s on these)
    assert info.value.status_code == 413
    assert "send at most" in info.value.detail or "re-save it" in info.value.detail


@pytest.mark.parametrize("name", BOUNDED)
def test_accepted_costly_images_decode_within_bounds(name: str, costly: dict[str, bytes]) -> None:
    image_to_input(encode(glyph_image()), MAX_PIXELS)  # warm up: PIL registers its plugins on first use
    tracemalloc.start()
    start = time.perf_counter()
    try:
        image_to_input(costly[name], MAX_PIXELS)
    except ServiceError as error:
        assert error.status_code in (413, 422)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # PIL kept up to 64 MB of inflated PNG text in Python objects (1.2 s): now 1 MiB at most.
    assert peak < 8 * 1024 * 1024
    assert elapsed < 1.0


def test_the_wide_rle_bmp_gets_its_sizes_in_the_message() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        decode_image(bmp_rle8_wide(), MAX_PIXELS)
    limit = cost_module.BMP_RLE_PIXELS
    kind = "an RLE-compressed BMP"
    assert info.value.detail == IMAGE_OVER_LIMIT.format(
        width=24_000_000, height=1, side=cost_module.MAX_SIDE, limit=limit, kind=kind
    )
    assert "24,000,000 × 1 px" in info.value.detail


def test_too_many_png_chunks_are_refused() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        image_cost(png_many_chunks())
    assert info.value.detail == IMAGE_TOO_COMPLEX.format(kind="PNG", parts="chunks", limit=cost_module.MAX_PNG_CHUNKS)


def rle8(width: int, height: int) -> bytes:
    """A real RLE8 BMP: each row one run of colour 1, then end of line; end of bitmap."""
    row = bytes((width, 1)) + b"\x00\x00" if width <= 255 else b""
    return bmp_rle(width, height, 8, row * height + b"\x00\x01")


def test_small_rle_bmps_are_still_decoded() -> None:
    image = decode_image(rle8(200, 100), MAX_PIXELS)
    assert image.size == (200, 100)
    assert image_cost(rle8(200, 100)) == ImageCost("BMP", 200, 100, 1, "rle", 1)


def test_a_12_mp_phone_jpeg_and_a_300_dpi_scan_are_accepted() -> None:
    photo = encode(Image.new("RGB", (4032, 3024), (200, 190, 180)), "JPEG", quality=80)
    scan = encode(Image.new("RGB", (2480, 3508), (250, 250, 250)), "PNG")
    grey_scan = encode(Image.new("L", (3307, 4677), 250), "PNG")  # A4 at 400 dpi, grey
    for data in (photo, scan, grey_scan):
        cost = image_cost(data)
        preprocess.check_cost(cost, MAX_PIXELS)  # no refusal
    assert image_cost(photo).decoded_pixels == 4032 * 3024 // 64


def test_side_limit_and_operator_limit() -> None:
    wide = encode(Image.new("L", (10_001, 2), 0), "PNG")
    with pytest.raises(PayloadTooLarge, match="10,001 × 2 px"):
        decode_image(wide, MAX_PIXELS)
    assert decode_image(encode(Image.new("L", (10_000, 2), 0), "PNG"), MAX_PIXELS).size == (10_000, 2)


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00",
        b"\xff\xd8\xff\xe0\x00\x10JFIF",
        b"GIF89a\x01",
        b"BM\x00",
        b"II*\x00\x08\x00\x00\x00",
    ],
    ids=["png", "jpeg", "gif", "bmp", "tiff"],
)
def test_cut_headers_are_undecodable(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="truncated or corrupt"):
        image_cost(data)


def test_header_cost_is_cheap() -> None:
    data = encode(
        Image.new("RGB", (4032, 3024), (200, 190, 180)), "JPEG", quality=80, exif=b"Exif\x00\x00" + bytes(60000)
    )
    start = time.perf_counter()
    for _ in range(100):
        image_cost(data)
    assert (time.perf_counter() - start) / 100 < 0.002


# --- The header agrees with PIL -------------------------------------------------------------------

ENCODABLE = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "GIF": ["L", "P"],
    "BMP": ["1", "L", "P", "RGB"],
    "TIFF": ["1", "L", "LA", "RGB", "RGBA", "CMYK", "I;16", "F"],
    "JPEG": ["L", "RGB", "CMYK"],
    "WEBP": ["RGB", "RGBA"],
}


@given(
    fmt=st.sampled_from(sorted(ENCODABLE)),
    mode_index=st.integers(0, 7),
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    option=st.integers(0, 2),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_header_size_and_format_agree_with_pil(fmt: str, mode_index: int, width: int, height: int, option: int) -> None:
    mode = ENCODABLE[fmt][mode_index % len(ENCODABLE[fmt])]
    pixels = np.random.default_rng(width * height).integers(0, 256, (height, width), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    choices: dict[str, list[dict[str, object]]] = {
        "JPEG": [{}, {"progressive": True}, {"quality": 30}],
        "WEBP": [{}, {"lossless": True}, {"quality": 5}],
        "TIFF": [{}, {"compression": "tiff_deflate"}, {"big_tiff": True}],
        "GIF": [{}, {"save_all": True, "append_images": [image, image]}, {}],
        "PNG": [{}, {"save_all": True, "append_images": [image]}, {"optimize": True}],
        "BMP": [{}, {}, {}],
    }
    options = choices[fmt][option]
    data = encode(image, fmt, **options)
    cost = image_cost(data)
    opened = Image.open(io.BytesIO(data))
    assert (cost.format, cost.width, cost.height) == (opened.format, *opened.size)
    assert cost.frames == getattr(opened, "n_frames", 1)
    if fmt == "JPEG":
        assert (cost.variant == "progressive") == ("progressive" in opened.info)
    if fmt == "WEBP" and "lossless" in options:
        assert cost.variant == "lossless"
    # What PIL holds per pixel never exceeds the cost's estimate.
    assert {"1": 1, "L": 1, "P": 1, "I;16": 2}.get(opened.mode, 4) <= cost.bytes_per_pixel
