"""What users really send, as benchmark bodies: the page's canvas, a transparent canvas, a phone photo, a scan.

Every input shows the same MNIST test digit (so one check per server says whether the answer is
right), drawn by ``benchmarks.canvas`` along its centre lines, and is built here, deterministically,
with a fixed seed:

- ``canvas``: the drawing page's own PNG: 280x280 RGBA, black ink on an opaque white canvas, the
  page's brush (what ``service/static/app.js`` sends from a screen with devicePixelRatio 1).
- ``transparent``: the same strokes from a canvas app that never paints the paper: RGBA PNG, black
  ink whose alpha is its coverage, on fully transparent pixels.
- ``phone``: a 12 MP (4000x3000) phone photo of the digit written with a pen on paper: uneven
  light, a slight blur, sensor noise, JPEG quality 92.
- ``scan``: an A4 page scanned at 200 dpi (1654x2339) in greyscale with the digit 1.5 cm tall on
  it, PNG.
- ``mnist``: the 28x28 MNIST test PNG itself, the best case (the service's shortcut for MNIST form).

``decode_costs`` measures, in this process, what decoding the same bytes costs (the limit no server
can pass) and what the service's own preprocessing costs on them.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from benchmarks.canvas import canvas_png, centre_lines, ink_mask

SEED = 20261201
KINDS = ("canvas", "transparent", "phone", "scan", "mnist")
#: The page's canvas side in CSS pixels (index.html: width="280"), sent as is at devicePixelRatio 1.
PAGE_SIDE = 280
PHONE_SIZE = (4000, 3000)
#: A4 at 200 dpi.
SCAN_SIZE = (1654, 2339)
SCAN_DPI = 200


@dataclass(frozen=True)
class Input:
    kind: str
    description: str
    data: bytes
    content_type: str
    label: int

    @property
    def extension(self) -> str:
        return self.content_type.split("/")[1].replace("jpeg", "jpg")

    @property
    def size(self) -> tuple[int, int]:
        with Image.open(io.BytesIO(self.data)) as image:
            return image.size


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _on_paper(
    coverage: np.ndarray,
    size: tuple[int, int],
    at: tuple[int, int],
    paper: np.ndarray,
    ink: np.ndarray,
    light: np.ndarray,
    noise: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Ink (coverage placed at ``at``) on paper under ``light``, with sensor noise: float32 (h, w, channels)."""
    width, height = size
    mask = np.zeros((height, width), dtype=np.float32)
    left, top = at
    mask[top : top + coverage.shape[0], left : left + coverage.shape[1]] = coverage
    channels = paper.shape[0]
    pixels = np.empty((height, width, channels), dtype=np.float32)
    for c in range(channels):
        pixels[..., c] = (paper[c] * (1 - mask) + ink[c] * mask) * light
        pixels[..., c] += rng.normal(0, noise, (height, width)).astype(np.float32)
    return pixels


def _light(size: tuple[int, int], strength: float) -> np.ndarray:
    """Uneven light: brighter at the top left, darker towards the far corner, as under a desk lamp."""
    width, height = size
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    return np.asarray(1.0 - strength * (0.6 * x + 0.4 * y) ** 1.5, dtype=np.float32)


def _uint8(pixels: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def phone_jpeg(points: np.ndarray, rng: np.random.Generator) -> bytes:
    # The digit 900 px tall (a quarter of the photo's height), written with a pen a 30th as wide.
    side = round(900 / 0.65)
    # The lens blurs the ink's edges; the sensor's noise, added after, is what makes the file big.
    mask = Image.fromarray(_uint8(ink_mask(points, side, brush=1 / 30) * 255), "L")
    coverage = np.asarray(mask.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float32) / 255
    pixels = _on_paper(
        coverage,
        PHONE_SIZE,
        (1400, 700),
        paper=np.array([214, 206, 192], dtype=np.float32),
        ink=np.array([34, 38, 62], dtype=np.float32),
        light=_light(PHONE_SIZE, 0.35),
        noise=5.0,
        rng=rng,
    )
    return _encode(Image.fromarray(_uint8(pixels), "RGB"), "JPEG", quality=92)


def scanned_page(points: np.ndarray, rng: np.random.Generator) -> bytes:
    # 1.5 cm tall at 200 dpi is 118 px; a ballpoint's 0.5 mm line is 4 px.
    height_px = round(1.5 / 2.54 * SCAN_DPI)
    side = round(height_px / 0.65)
    coverage = ink_mask(points, side, brush=4 / side)
    pixels = _on_paper(
        coverage,
        SCAN_SIZE,
        (700, 520),
        paper=np.array([244], dtype=np.float32),
        ink=np.array([40], dtype=np.float32),
        light=_light(SCAN_SIZE, 0.04),
        noise=1.5,
        rng=rng,
    )
    return _encode(Image.fromarray(_uint8(pixels[..., 0]), "L"), "PNG", dpi=(SCAN_DPI, SCAN_DPI))


def real_inputs(digit: np.ndarray, label: int, kinds: tuple[str, ...] = KINDS) -> list[Input]:
    """The inputs named by ``kinds``, each showing ``digit`` (28x28 uint8 MNIST test image)."""
    rng = np.random.default_rng(SEED)
    points = centre_lines(digit)
    makers: dict[str, tuple[str, Callable[[], bytes], str]] = {
        "canvas": (
            f"the drawing page's canvas, {PAGE_SIDE}×{PAGE_SIDE} RGBA PNG, opaque white",
            lambda: canvas_png(points, PAGE_SIDE),
            "image/png",
        ),
        "transparent": (
            f"a transparent canvas, {PAGE_SIDE}×{PAGE_SIDE} RGBA PNG, ink in the alpha channel",
            lambda: canvas_png(points, PAGE_SIDE, transparent=True),
            "image/png",
        ),
        "phone": (
            f"a 12 MP phone photo, {PHONE_SIZE[0]}×{PHONE_SIZE[1]} JPEG",
            lambda: phone_jpeg(points, rng),
            "image/jpeg",
        ),
        "scan": (
            f"a scanned A4 page, {SCAN_SIZE[0]}×{SCAN_SIZE[1]} greyscale PNG at {SCAN_DPI} dpi",
            lambda: scanned_page(points, rng),
            "image/png",
        ),
        "mnist": (
            "the 28×28 MNIST test PNG (best case)",
            lambda: _encode(Image.fromarray(digit, "L"), "PNG"),
            "image/png",
        ),
    }
    inputs = []
    for kind in kinds:
        description, make, content_type = makers[kind]
        inputs.append(Input(kind, description, make(), content_type, label))
    return inputs


# --------------------------------------------------------------------------- in-process costs


def best_ms(call: Callable[[], object], budget_s: float = 1.0, repeats: int = 7) -> float:
    """The best of ``repeats`` timings of ``call``, each over enough calls to last ``budget_s`` / repeats."""
    started = time.perf_counter()
    call()
    once = max(time.perf_counter() - started, 1e-6)
    number = max(1, round(budget_s / repeats / once))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(number):
            call()
        best = min(best, (time.perf_counter() - started) / number)
    return best * 1000


def full_decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


def reduced_decode(data: bytes) -> None:
    """Decode at the smallest size the format allows: libjpeg's 1/8 DCT scaling for a JPEG."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG":
            image.draft(None, (max(28, image.width // 8), max(28, image.height // 8)))
        image.load()


@dataclass(frozen=True)
class Cost:
    decode_ms: float  # Pillow, the whole image
    reduced_decode_ms: float  # Pillow at the smallest size the format allows (JPEG only differs)
    preprocess_ms: float  # the service's image_to_input: decode, then everything up to the model input

    @property
    def decode_limit_ms(self) -> float:
        """The cheapest decode: no server that reads these bytes can spend less per request."""
        return min(self.decode_ms, self.reduced_decode_ms)

    @property
    def beyond_decode(self) -> float:
        """Preprocessing beyond the cheapest decode, as a fraction of that decode."""
        return (self.preprocess_ms - self.decode_limit_ms) / self.decode_limit_ms


def decode_costs(inputs: list[Input], max_pixels: int) -> dict[str, Cost]:
    """Decode-only and preprocessing costs of each input in this process (best of several timings)."""
    from service import preprocess

    def timed(data: bytes) -> Cost:
        decode = best_ms(lambda: full_decode(data))
        # Only a JPEG decodes smaller than it is; for the others the two are one measurement.
        reduced = best_ms(lambda: reduced_decode(data)) if data[:3] == b"\xff\xd8\xff" else decode
        return Cost(decode, reduced, best_ms(lambda: preprocess.image_to_input(data, max_pixels)))

    return {i.kind: timed(i.data) for i in inputs}


# --------------------------------------------------------------------------- before/after, in process


def compare(before_ref: str, rounds: int = 3, budget_s: float = 0.15) -> str:
    """Decode limit and beyond-decode cost of ``before_ref``'s preprocessing and the working tree's, interleaved.

    The three calls (decode alone, the old ``image_to_input``, today's) take turns, round after
    round, and each keeps its best time, so the load of a shared machine falls on all three alike.
    """
    from benchmarks.common import load_test_digits
    from benchmarks.preprocess_cost import load_before
    from service import preprocess as after

    before = load_before(before_ref)
    digits = load_test_digits(1)
    lines = [
        f"| kind | decode ms | before ({before_ref}): beyond ms | ratio | after: beyond ms | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for item in real_inputs(digits.images[0], digits.labels[0]):
        data = item.data
        calls: dict[str, Callable[[], object]] = {
            "decode": lambda d=data: reduced_decode(d),  # type: ignore[misc]
            "before": lambda d=data: before.image_to_input(d, 24_000_000),  # type: ignore[misc]
            "after": lambda d=data: after.image_to_input(d, 24_000_000),  # type: ignore[misc]
        }
        once = min(best_ms(call, 0, 1) for call in calls.values()) / 1000
        number = max(1, round(budget_s / once))
        best = dict.fromkeys(calls, float("inf"))
        for _ in range(3 * rounds):
            for name, call in calls.items():
                started = time.perf_counter()
                for _ in range(number):
                    call()
                best[name] = min(best[name], (time.perf_counter() - started) / number * 1000)
        limit = best["decode"]
        old, new = best["before"] - limit, best["after"] - limit
        lines.append(f"| {item.kind} | {limit:.3f} | {old:.3f} | {old / limit:.2f} | {new:.3f} | {new / limit:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=compare.__doc__)
    parser.add_argument("--before", default="main", help="git commit whose preprocessing to time beside the tree's")
    parser.add_argument("--rounds", type=int, default=3)
    print(compare(parser.parse_args().before, parser.parse_args().rounds))
