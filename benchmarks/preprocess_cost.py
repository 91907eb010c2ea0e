"""Decode cost against preprocessing cost, in process, on the images users really send.

For each kind of upload (the drawing page's 280x280 canvas PNG, a transparent-canvas PNG, a
12 MP phone JPEG, a 300 dpi scanned page, the 28x28 MNIST PNG) it times decoding alone
(``decode_image``: the same decode the pipeline does, JPEG DCT scaling included) and the whole
``image_to_input``, and reports what preprocessing adds beyond decoding, absolute and as a
ratio of the decode (the target is at most 0.3).

``--before REF`` also imports ``service/preprocess.py`` (or the package) as it was at a git
commit and times it interleaved with the working tree's, call by call, so both are measured
under the same load:

    python benchmarks/preprocess_cost.py --before fd26f33
    python benchmarks/preprocess_cost.py --costly     # the costly inputs: refused or bounded
    python benchmarks/preprocess_cost.py --rates      # decode ms per megapixel, per format
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image, ImageDraw

if not __package__:  # run as `python benchmarks/<script>.py`: see benchmarks/__init__.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from harness import ROOT  # noqa: E402
from service import preprocess  # noqa: E402
from service.errors import ServiceError  # noqa: E402

MAX_PIXELS = 24_000_000
#: A "4" as a polyline in unit coordinates, as the tests draw it.
GLYPH = [(0.55, 1.0), (0.55, 0.0), (0.0, 0.68), (0.75, 0.68)]


def strokes(size: tuple[int, int], box: tuple[int, int, int], pen: int) -> Image.Image:
    """An anti-aliased ink mask (mode L, 255 = ink): the glyph ``box`` = (left, top, height) drawn 4x and reduced."""
    left, top, height = box
    big = Image.new("L", (size[0] * 4, size[1] * 4), 0)
    draw = ImageDraw.Draw(big)
    points = [(4 * (left + x * 0.75 * height), 4 * (top + y * height)) for x, y in GLYPH]
    draw.line(points, fill=255, width=4 * pen, joint="curve")
    return big.reduce(4)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def canvas_png() -> bytes:
    """The drawing page's upload: 280x280 RGBA, black 20 px strokes on opaque white (toDataURL)."""
    ink = strokes((280, 280), (70, 40, 200), 20)
    page = Image.new("RGBA", (280, 280), (255, 255, 255, 255))
    page.paste((0, 0, 0, 255), (0, 0), ink)
    return encode(page, "PNG")


def transparent_png() -> bytes:
    """A canvas app's upload: 280x280 RGBA, black strokes on a fully transparent background."""
    ink = strokes((280, 280), (70, 40, 200), 20)
    page = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    page.putalpha(ink)
    return encode(page, "PNG")


def phone_jpeg() -> bytes:
    """A 12 MP phone photo (4032x3024) of a digit on paper: uneven light, sensor noise, quality 90."""
    width, height = 4032, 3024
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:height:8, 0:width:8]
    light = 170 + 50 * np.exp(-(((xs - 1500) / 3000) ** 2 + ((ys - 1000) / 2500) ** 2))
    paper = np.asarray(Image.fromarray(light.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR))
    ink = np.asarray(strokes((width, height), (1500, 900, 1200), 90), dtype=np.float32) / 255
    grey = paper * (1 - 0.75 * ink) + rng.normal(0, 4, (height, width)).astype(np.float32)
    tint = np.clip(np.stack([grey, grey * 0.97, grey * 0.92], -1), 0, 255).astype(np.uint8)
    return encode(Image.fromarray(tint), "JPEG", quality=90)


def scanned_page() -> bytes:
    """An A4 page scanned at 300 dpi (2480x3508), grey PNG: near-white paper, one handwritten digit."""
    width, height = 2480, 3508
    rng = np.random.default_rng(1)
    ink = np.asarray(strokes((width, height), (900, 1200, 400), 28), dtype=np.float32) / 255
    grey = 244 - 210 * ink + rng.normal(0, 1.5, (height, width)).astype(np.float32)
    return encode(Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)), "PNG")


def mnist_png() -> bytes:
    """The 28x28 MNIST PNG: a committed test sample, already MNIST-form."""
    names = sorted((ROOT / "tests" / "data" / "realworld").glob("mnist_png_*.png"))
    return names[0].read_bytes()


KINDS: dict[str, Callable[[], bytes]] = {
    "canvas 280x280 RGBA PNG": canvas_png,
    "transparent canvas PNG": transparent_png,
    "12 MP phone JPEG": phone_jpeg,
    "300 dpi scanned page PNG": scanned_page,
    "MNIST 28x28 PNG": mnist_png,
}


def load_before(ref: str) -> ModuleType:
    """``service.preprocess`` as it was at ``ref`` (a module or a package), imported beside today's."""
    directory = Path(tempfile.mkdtemp(prefix="preprocess-before-"))
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", ref, "service/"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in listing:
        if name.endswith(".py"):
            target = directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(subprocess.run(["git", "show", f"{ref}:{name}"], cwd=ROOT, capture_output=True).stdout)
    # Import the old tree as a package of its own name, so it cannot shadow today's service.
    (directory / "service").rename(directory / "service_before")
    for path in (directory / "service_before").rglob("*.py"):
        path.write_text(
            path.read_text()
            .replace("from service.", "from service_before.")
            .replace("from service ", "from service_before ")
        )
    sys.path.insert(0, str(directory))
    spec = importlib.util.find_spec("service_before.preprocess")
    assert spec is not None
    return importlib.import_module("service_before.preprocess")


def timed(call: Callable[[], object]) -> float:
    """CPU seconds of one call: on a shared machine, wall-clock would count other processes' turns."""
    start = time.process_time()
    try:
        call()
    except Exception:  # noqa: BLE001 - the old code raises its own copy of ServiceError
        pass
    return time.process_time() - start


def measure(modules: dict[str, ModuleType], data: bytes, repeat: int) -> dict[str, tuple[float, float]]:
    """Median decode and full times (ms) per module, their calls interleaved so load hits all alike."""
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in modules}
    for module in modules.values():  # warm up: plugin registration, caches
        timed(lambda m=module: m.image_to_input(data, MAX_PIXELS))  # type: ignore[misc]
    for _ in range(repeat):
        for name, module in modules.items():
            times[name][0].append(timed(lambda m=module: m.decode_image(data, MAX_PIXELS).load()))  # type: ignore[misc]
            times[name][1].append(timed(lambda m=module: m.image_to_input(data, MAX_PIXELS)))  # type: ignore[misc]
    return {
        name: (1000 * statistics.median(decode), 1000 * statistics.median(full))
        for name, (decode, full) in times.items()
    }


def table(modules: dict[str, ModuleType], repeat: int) -> str:
    lines = [
        "| kind | bytes | code | decode ms | beyond decode ms | ratio |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for kind, make in KINDS.items():
        data = make()
        count = repeat if len(data) < 1_000_000 else max(5, repeat // 10)
        for name, (decode, full) in measure(modules, data, count).items():
            beyond = max(0.0, full - decode)
            lines.append(f"| {kind} | {len(data):,} | {name} | {decode:.3f} | {beyond:.3f} | {beyond / decode:.2f} |")
    return "\n".join(lines)


def costly_table() -> str:
    from tests.service.costly import COSTLY

    for fmt in ("PNG", "GIF", "BMP", "TIFF", "WEBP", "JPEG"):  # PIL loads each plugin on first use
        timed(lambda fmt=fmt: preprocess.image_to_input(encode(Image.new("RGB", (8, 8)), fmt), MAX_PIXELS))  # type: ignore[misc]
    lines = ["| costly input | bytes | CPU ms | outcome |", "| --- | ---: | ---: | --- |"]
    for name, make in COSTLY.items():
        data = make()
        start = time.process_time()
        try:
            preprocess.image_to_input(data, MAX_PIXELS)
            outcome = "decoded"
        except ServiceError as error:
            outcome = f"{error.status_code} {error.detail[:60]}"
        lines.append(f"| {name} | {len(data):,} | {1000 * (time.process_time() - start):.1f} | {outcome} |")
    return "\n".join(lines)


def rates_table(side: int = 2000) -> str:
    """Decode ms per megapixel of each format and variant, on 4 MP of realistic content (graded, noisy)."""
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(side), np.arange(side)) % 256
    grey = (ramp + rng.integers(0, 8, (side, side))).astype(np.uint8)
    rgb = Image.fromarray(np.stack([grey, grey[::-1], grey.T], -1))
    cases = {
        "PNG grey": encode(rgb.convert("L"), "PNG"),
        "PNG RGB": encode(rgb, "PNG"),
        "PNG RGBA": encode(rgb.convert("RGBA"), "PNG"),
        "TIFF RGB deflate": encode(rgb, "TIFF", compression="tiff_deflate"),
        "TIFF float deflate": encode(rgb.convert("F"), "TIFF", compression="tiff_deflate"),
        "TIFF bilevel G4": encode(rgb.convert("1"), "TIFF", compression="group4"),
        "GIF": encode(rgb.convert("P"), "GIF"),
        "BMP RGB": encode(rgb, "BMP"),
        "WebP lossless": encode(rgb, "WEBP", lossless=True),
        "WebP lossy": encode(rgb, "WEBP", quality=80),
        "JPEG (decoded at 1/8)": encode(rgb, "JPEG", quality=90),
        "progressive JPEG (at 1/8)": encode(rgb, "JPEG", quality=90, progressive=True),
    }
    lines = ["| format | MB | decode ms per MP |", "| --- | ---: | ---: |"]
    for name, data in cases.items():
        # PIL directly, so that the limits being chosen do not refuse the file.
        def decode(data: bytes = data) -> None:
            image = Image.open(io.BytesIO(data))
            if image.format == "JPEG":
                image.draft(None, (side // 8, side // 8))
            image.load()

        best = min(timed(decode) for _ in range(3))
        lines.append(f"| {name} | {len(data) / 1e6:.2f} | {1000 * best / (side * side / 1e6):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="git commit whose preprocessing to time beside the working tree's")
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per kind and code (fewer for big files)")
    parser.add_argument("--costly", action="store_true", help="time the costly inputs instead")
    parser.add_argument("--rates", action="store_true", help="decode ms per megapixel of each format instead")
    args = parser.parse_args(argv)
    if args.rates:
        print(rates_table())
        return 0
    if args.costly:
        print(costly_table())
        return 0
    modules: dict[str, ModuleType] = {}
    if args.before:
        modules[f"before ({args.before})"] = load_before(args.before)
    modules["after (working tree)"] = preprocess
    print(table(modules, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
