"""The lane of each request, chosen from its images' headers (service/lanes.py), on real image bytes.

A request is decoded in the batcher thread when it is light (few encoded bytes, little decoding
work), else in a decoder process. The work is read from each header once, by
``preprocess.image_cost``, and the batcher's decode reuses that cost instead of reading it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from PIL import Image, ImageDraw

from service import errors, lanes, preprocess
from service.config import Settings
from service.inference import Classified
from service.preprocess import decode as decode_module
from service.work import ImagesWork
from tests.service.costly import bmp_rle
from tests.service.imaging import MAX_PIXELS, encode


def marked(size: tuple[int, int], mode: str = "L") -> Image.Image:
    """Black with an upright white bar in the middle: a mark the pipeline reads as ink."""
    image = Image.new(mode, size, 0)
    width, height = size
    ink = 255 if mode == "L" else (255,) * len(mode)
    ImageDraw.Draw(image).rectangle((width * 2 // 5, height // 4, width * 3 // 5, height * 3 // 4), fill=ink)
    return image


def rle8_marked(width: int, height: int) -> bytes:
    """An RLE8 BMP (Pillow writes none) of the same mark: runs of palette index 0 (black) and 255 (white)."""

    def runs(length: int, index: int) -> bytes:
        out = b""
        while length > 0:
            out += bytes((min(length, 255), index))
            length -= 255
        return out

    left, right = width * 2 // 5, width * 3 // 5
    rows = b""
    for y in range(height):  # bottom-up, as BMP stores them
        lit = height // 4 <= y <= height * 3 // 4
        rows += (runs(left, 0) + runs(right - left, 255) + runs(width - right, 0) if lit else runs(width, 0)) + b"\0\0"
    return bmp_rle(width, height, 8, rows + b"\x00\x01")


#: (name, image bytes, lane): real files of every format the service decodes, either side of the
#: light limit (1,000,000 pixels of work, 64 KiB of encoded bytes).
CASES: list[tuple[str, Callable[[], bytes], str]] = [
    ("png-small", lambda: encode(marked((200, 200))), "batcher"),
    ("png-1.1mp", lambda: encode(marked((1100, 1000))), "decoder"),
    ("png-rgba-small", lambda: encode(marked((300, 200), "RGBA")), "batcher"),
    # Baseline JPEGs are decoded at reduced size: 3 MP costs 1/16 of its pixels.
    ("jpeg-baseline-3mp", lambda: encode(marked((2000, 1500)), "JPEG", quality=50), "batcher"),
    # Progressive ones keep every coefficient of the full size: 3 MP is 3 MP of work.
    ("jpeg-progressive-3mp", lambda: encode(marked((2000, 1500)), "JPEG", quality=50, progressive=True), "decoder"),
    ("jpeg-progressive-small", lambda: encode(marked((300, 300)), "JPEG", progressive=True), "batcher"),
    ("webp-lossy-small", lambda: encode(marked((300, 300), "RGB"), "WEBP"), "batcher"),
    ("webp-lossy-1.1mp", lambda: encode(marked((1100, 1000), "RGB"), "WEBP"), "decoder"),
    ("webp-lossless-1.1mp", lambda: encode(marked((1100, 1000), "RGB"), "WEBP", lossless=True), "decoder"),
    ("bmp-small", lambda: encode(marked((200, 200)), "BMP"), "batcher"),
    # RLE BMPs are decoded in Python, 16 times the work a pixel: 20,000 pixels are light, 80,000 not.
    ("bmp-rle8-320k", lambda: rle8_marked(200, 100), "batcher"),
    ("bmp-rle8-80k", lambda: rle8_marked(400, 200), "decoder"),
    ("gif-small", lambda: encode(marked((200, 200)), "GIF"), "batcher"),
    ("gif-1.1mp", lambda: encode(marked((1100, 1000)), "GIF"), "decoder"),
    ("tiff-small", lambda: encode(marked((200, 200)), "TIFF"), "batcher"),
    ("tiff-deflate-1.1mp", lambda: encode(marked((1100, 1000)), "TIFF", compression="tiff_deflate"), "decoder"),
    # Over 64 KiB encoded: planned in a thread and decoded in a process, whatever its pixels.
    ("bmp-over-64kib", lambda: encode(marked((300, 300)), "BMP"), "decoder"),
]


class Recorder:
    """A batcher's ``submit`` that runs the work at once, and a decoder lane that records its calls."""

    def __init__(self) -> None:
        self.lanes: list[str] = []
        self.costs: list[lanes.Costs] = []

    async def submit(self, prepare: Callable[[], np.ndarray]) -> Classified:
        images = prepare()  # a Reroute goes back to Lanes.classify, as from the batcher thread
        if isinstance(prepare, lanes.LightOrReroute):
            self.lanes.append("batcher")
        return images, np.zeros((len(images), 10), np.float32), np.ones(len(images), np.float32)

    async def decode(self, work: lanes.Work, costs: lanes.Costs) -> np.ndarray:
        self.lanes.append("decoder")
        self.costs.append(costs)
        return np.zeros((len(work.datas), 28, 28), np.float32)


def classify(data: bytes, recorder: Recorder, max_pixels: int = MAX_PIXELS) -> Classified:
    planner = lanes.Lanes(Settings())
    planner.decoders.decode = recorder.decode  # type: ignore[method-assign]
    return asyncio.run(planner.classify(ImagesWork([data], max_pixels, label=None), recorder.submit))


@pytest.mark.parametrize(("name", "make", "lane"), CASES, ids=[case[0] for case in CASES])
def test_each_format_goes_to_its_lane(name: str, make: Callable[[], bytes], lane: str) -> None:
    data = make()
    assert (len(data) > lanes.LIGHT_BYTES) == (name == "bmp-over-64kib")  # the premise: small files
    recorder = Recorder()
    images = classify(data, recorder)[0]
    assert recorder.lanes == [lane]
    if lane == "batcher":  # decoded there, with the cost read for the plan, into a real digit input
        assert images.shape == (1, 28, 28) and images.max() == pytest.approx(1.0, abs=0.01)
        np.testing.assert_array_equal(images[0], preprocess.image_to_input(data, MAX_PIXELS))
    else:  # the decoder lane is given the costs read for the plan
        assert recorder.costs == [[preprocess.image_cost(data)]]


def test_work_is_read_from_the_cost() -> None:
    def work(data: bytes, max_pixels: int = MAX_PIXELS) -> int:
        return lanes.image_work(lanes.header_cost(data), max_pixels)

    per_image = lanes.PER_IMAGE_WORK
    assert work(encode(marked((300, 200)))) == 300 * 200 + per_image
    assert work(rle8_marked(200, 100)) == 16 * 200 * 100 + per_image
    jpeg = marked((2000, 1500))
    assert work(encode(jpeg, "JPEG")) == 2000 * 1500 // lanes.JPEG_DRAFT_DIVISOR + per_image
    assert work(encode(jpeg, "JPEG", progressive=True)) == 2000 * 1500 + per_image
    # Small baseline JPEGs are decoded at full size, and cost it.
    assert work(encode(marked((500, 500)), "JPEG")) == 500 * 500 + per_image
    # Refused before any pixel is decoded: over the limit, or a header that is no image.
    assert work(encode(marked((300, 200))), max_pixels=300 * 200 - 1) == per_image
    assert lanes.header_cost(b"not an image") is None
    assert work(b"not an image") == per_image


def test_a_refused_header_is_refused_in_the_batcher_as_decoding_refuses_it() -> None:
    for data in (b"not an image", b"", b"%PDF-1.7\n", encode(marked((200, 200)))[:20]):
        with pytest.raises(errors.ServiceError) as direct:
            preprocess.image_to_input(data, MAX_PIXELS)
        recorder = Recorder()
        with pytest.raises(errors.ServiceError) as planned:
            classify(data, recorder)
        assert (planned.value.status_code, planned.value.detail) == (direct.value.status_code, direct.value.detail)


def test_an_image_over_the_limit_gets_the_same_413_in_the_batcher() -> None:
    data = encode(marked((300, 200)))
    with pytest.raises(errors.PayloadTooLarge) as refused:
        classify(data, Recorder(), max_pixels=300 * 200 - 1)
    assert refused.value.detail == errors.IMAGE_TOO_LARGE.format(
        width=300, height=200, pixels=300 * 200, limit=300 * 200 - 1
    )


@pytest.fixture
def header_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Every call of ``image_cost``, by the lanes or by the decoder: the length of the bytes it read."""
    calls: list[int] = []
    real = preprocess.image_cost

    def counted(data: bytes) -> preprocess.ImageCost:
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(preprocess, "image_cost", counted)
    monkeypatch.setattr(decode_module, "image_cost", counted)
    yield calls


def test_each_header_is_read_once_in_the_batcher(header_reads: list[int]) -> None:
    datas = [
        encode(marked((200, 200))),
        encode(marked((300, 300)), "JPEG"),
        rle8_marked(100, 100),
        encode(marked((200, 200), "RGB"), "WEBP"),
    ]
    recorder = Recorder()
    planner = lanes.Lanes(Settings())
    images = asyncio.run(planner.classify(ImagesWork(datas, MAX_PIXELS), recorder.submit))[0]
    assert recorder.lanes == ["batcher"]
    assert images.shape == (4, 28, 28)
    assert sorted(header_reads) == sorted(map(len, datas))  # once each, not twice
    # Without costs (how any other caller decodes), each header is read where it is decoded.
    header_reads.clear()
    ImagesWork(datas, MAX_PIXELS)()
    assert sorted(header_reads) == sorted(map(len, datas))


def test_a_costly_request_is_planned_once(header_reads: list[int]) -> None:
    datas = [encode(marked((1100, 1000))), encode(marked((200, 200)))]
    recorder = Recorder()
    planner = lanes.Lanes(Settings())
    planner.decoders.decode = recorder.decode  # type: ignore[method-assign]
    asyncio.run(planner.classify(ImagesWork(datas, MAX_PIXELS), recorder.submit))
    assert recorder.lanes == ["decoder"]
    assert sorted(header_reads) == sorted(map(len, datas))  # read in the batcher; the plan came back with it


def test_the_fixture_counts_what_decoding_reads(header_reads: list[int]) -> None:
    # The premise of the two tests above: the decoder's own header read is counted too.
    data = encode(marked((200, 200)))
    preprocess.image_to_input(data, MAX_PIXELS)
    assert header_reads == [len(data)]
