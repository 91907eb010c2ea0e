"""Accuracy against the size of the drawing page's canvas: how few pixels can the page send?

The page sends its canvas as drawn (280x280 CSS pixels, times devicePixelRatio). Each MNIST test
digit here is drawn the way the page draws it (``benchmarks.canvas``: the page's round brush along
the digit's centre lines, black on an opaque white RGBA canvas, antialiased) at every size in
``--sizes``, encoded as the PNG the page would send, and run through the service's own
preprocessing (``service.preprocess.image_to_input``) and the model. The same digits at every size,
so the sizes are compared pair by pair: which digits a size gets wrong that 280 px gets right.

    python benchmarks/page_size.py                       # 2,000 test digits, the served model
    python benchmarks/page_size.py --count 10000 --markdown docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if not __package__:  # run as `python benchmarks/<script>.py`: see benchmarks/__init__.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.canvas import BRUSH, FILL, canvas_png, centre_lines
from benchmarks.common import git_commit, machine, service_default_model, update_section
from harness import ROOT

SIZES = (560, 280, 196, 140, 112, 84, 56, 28)
#: The page's canvas today, at devicePixelRatio 1: what the other sizes are compared with.
REFERENCE = 280
MAX_PIXELS = 24_000_000
#: The model runs on this many images at a time.
CHUNK = 256


@dataclass
class SizeResult:
    size: int
    correct: np.ndarray  # bool per digit
    png_bytes: list[int]
    preprocess_ms: list[float]

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())


class Model:
    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        # Open-set models add a digit_score output; the digit comes from the probabilities.
        self.output = "probabilities" if "probabilities" in names else names[0]

    def digits(self, images: np.ndarray) -> np.ndarray:
        found = [
            np.argmax(self.session.run([self.output], {self.input: images[i : i + CHUNK]})[0], axis=1)
            for i in range(0, len(images), CHUNK)
        ]
        return np.concatenate(found)


def measure(images: np.ndarray, labels: np.ndarray, sizes: Sequence[int], model: Model) -> list[SizeResult]:
    from service import preprocess

    inputs = {size: np.zeros((len(images), 28, 28, 1), dtype=np.float32) for size in sizes}
    png_bytes: dict[int, list[int]] = {size: [] for size in sizes}
    timings: dict[int, list[float]] = {size: [] for size in sizes}
    started = time.monotonic()
    for n, digit in enumerate(images):
        points = centre_lines(digit)
        for size in sizes:
            png = canvas_png(points, size)
            t0 = time.perf_counter()
            x = preprocess.image_to_input(png, MAX_PIXELS)
            timings[size].append((time.perf_counter() - t0) * 1000)
            inputs[size][n] = np.asarray(x, dtype=np.float32).reshape(28, 28, 1)
            png_bytes[size].append(len(png))
        if (n + 1) % 250 == 0:
            print(f"{n + 1}/{len(images)} digits, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return [SizeResult(size, model.digits(inputs[size]) == labels, png_bytes[size], timings[size]) for size in sizes]


def mnist_accuracy(images: np.ndarray, labels: np.ndarray, model: Model) -> float:
    """The same digits as MNIST has them (28x28 PNGs), through the same preprocessing."""
    import io

    from PIL import Image

    from service import preprocess

    inputs = np.zeros((len(images), 28, 28, 1), dtype=np.float32)
    for n, digit in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(digit, "L").save(buffer, format="PNG")
        inputs[n] = np.asarray(preprocess.image_to_input(buffer.getvalue(), MAX_PIXELS)).reshape(28, 28, 1)
    return float((model.digits(inputs) == labels).mean())


def markdown(results: list[SizeResult], mnist: float, meta: list[str]) -> str:
    reference = next((r for r in results if r.size == REFERENCE), results[0])
    n = len(reference.correct)
    lines = [
        *meta,
        "",
        f"| canvas px | PNG bytes (median) | preprocessing ms (median) | accuracy | wrong "
        f"| vs {reference.size} px: newly wrong / newly right |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lost = int(np.sum(reference.correct & ~r.correct))
        gained = int(np.sum(~reference.correct & r.correct))
        lines.append(
            f"| {r.size} | {statistics.median(r.png_bytes):,.0f} | {statistics.median(r.preprocess_ms):.2f} "
            f"| {100 * r.accuracy:.2f}% | {n - int(r.correct.sum())} "
            f"| {'reference' if r is reference else f'{lost} / {gained}'} |"
        )
    lines += ["", f"The same {n:,} digits as MNIST's own 28×28 PNGs, same preprocessing and model: {100 * mnist:.2f}%."]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000, help="MNIST test digits (the first COUNT)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="canvas sides in px")
    parser.add_argument("--model", type=Path, help="ONNX model (default: the one the service loads)")
    parser.add_argument("--mnist-dir", help="MNIST IDX files (default: $MNIST_DATA_DIR or ../shared/datasets/mnist)")
    parser.add_argument("--markdown", type=Path, help="Markdown file whose 'page-size' section gets the table")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from training.data import load_mnist  # numpy only: no TensorFlow

    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/page_size.py", *(sys.argv[1:] if argv is None else argv)])
    started = dt.datetime.now(dt.UTC)
    model_path = args.model or service_default_model()
    model_path = model_path if model_path.is_absolute() else ROOT / model_path
    directory = args.mnist_dir or os.environ.get("MNIST_DATA_DIR") or ROOT.parent / "shared" / "datasets" / "mnist"
    test = load_mnist(directory).test
    images = np.asarray(test.images[: args.count], dtype=np.uint8)
    labels = np.asarray(test.labels[: args.count])
    model = Model(model_path)
    t0 = time.monotonic()
    results = measure(images, labels, args.sizes, model)
    mnist = mnist_accuracy(images, labels, model)
    shown = model_path.relative_to(ROOT) if model_path.is_relative_to(ROOT) else model_path
    meta = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC in {(time.monotonic() - t0) / 60:.0f} min on {machine()}; "
        f"commit `{git_commit()}`; model `{shown}`.",
        "",
        f"- Command: `{command}`",
        f"- The first {len(images):,} MNIST test digits, each drawn as the page draws: brush {BRUSH * 280:g}/280 of "
        f"the side, the digit's taller side {FILL:.0%} of the canvas, black on opaque white, RGBA PNG; "
        "preprocessing timed in this process (one thread, the machine shared).",
    ]
    report = markdown(results, mnist, meta)
    print(report)
    if args.markdown:
        update_section(args.markdown, "page-size", report)
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
