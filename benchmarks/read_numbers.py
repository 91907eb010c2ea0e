"""How well ``/read`` reads written numbers: MNIST test digits composed into numbers, drawn as uploads.

Each number is made of MNIST *test* digits, each upscaled with crisp strokes (realworld's
``stroke_mask``), set side by side on a drifting baseline with varied sizes and spacing, then
drawn in one of realworld's styles (canvas, paper, phone photo, chalk, ...) and encoded as a
client sends it. The bytes go through the service's own /read pipeline (decode, segment,
frame, one batched model run, best reading) in this process. Sets:

- ``numbers``: 2-8 digits, separate (their ink 0.1-0.5 of a digit's height apart);
- ``touching``: two digits whose ink touches or overlaps slightly;
- ``broken``: 2-5 digits, about half of them broken in two (a gap erased across a stroke);
- ``two-lines``: two numbers of 2-6 digits, one under the other.

A number is read exactly when the whole text (lines joined by a newline) is right. The dev
split (``--split dev``) uses one half of the test set and its own seed: tune on it. The report
split uses the other half and another seed.

    python benchmarks/read_numbers.py --data-dir ../shared/datasets/mnist --split report --markdown docs/read.md
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

if not __package__:  # run as `python benchmarks/<script>.py`: see benchmarks/__init__.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks import styles  # noqa: E402
from benchmarks.common import run_facts  # noqa: E402
from benchmarks.realworld import MAX_PIXELS  # noqa: E402
from benchmarks.styles import encode, paint, random_colour, stroke_mask, to_uint8  # noqa: E402
from harness import ROOT  # noqa: E402
from service.errors import ServiceError  # noqa: E402
from service.inference import Classifier  # noqa: E402
from service.read.components import label  # noqa: E402
from service.read.decode import DEFAULT, Weights  # noqa: E402
from service.read.pairs import PairModel  # noqa: E402
from service.read.reader import ReadWork, digits_of, read  # noqa: E402
from training.data import load_mnist  # noqa: E402

SEEDS = {"dev": 20261201, "report": 20261202}
Rng = np.random.Generator


# --- Composing a number ---------------------------------------------------------------------------


@dataclass
class Pen:
    """How a style draws strokes (realworld's stroke_mask options)."""

    level: float = 0.5
    grow: float = 0.0  # share of the digit's size to dilate by (a marker)
    fine: bool = False  # redraw with a fine pen


def digit_mask(digit: np.ndarray, size: int, pen: Pen, rng: Rng) -> np.ndarray:
    grow = max(1, round(size * pen.grow)) if pen.grow else 0
    return stroke_mask(digit, size, level=pen.level, grow=grow, pen=rng.uniform(0.08, 0.15) if pen.fine else 0)


def compose(masks: list[np.ndarray], height: float, rng: Rng, gap: tuple[float, float]) -> np.ndarray:
    """Digits side by side: each ``gap`` (times the height) from the last by their ink, on a drifting baseline.

    The gap is measured between the inks row by row, as a writer spaces digits; a negative
    gap overlaps the strokes.
    """
    slope = rng.uniform(-0.12, 0.12)
    total_width = sum(m.shape[1] for m in masks) + int(height * (gap[1] + 0.2) * len(masks))
    canvas_height = int(3 * height + abs(slope) * total_width) + max(m.shape[0] for m in masks)
    canvas = np.zeros((canvas_height, total_width + 2 * int(height)), np.float32)
    base = canvas_height // 2 + int(height / 2)
    x = int(height * 0.5)
    for i, mask in enumerate(masks):
        h, w = mask.shape
        bottom = int(base + slope * x + rng.uniform(-0.06, 0.06) * height)
        top = max(0, bottom - h)
        if i:
            left = _touching_left(canvas, mask, top, x) + int(round(rng.uniform(*gap) * height))
            left = max(left, 0)
        else:
            left = x
        region = canvas[top : top + h, left : left + w]
        np.maximum(region, mask[: region.shape[0], : region.shape[1]], out=region)
        x = left + w
    ys, xs = np.nonzero(canvas > 0.02)
    return canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _touching_left(canvas: np.ndarray, mask: np.ndarray, top: int, right_edge: int) -> int:
    """The mask's left column at which its ink would just touch the ink already on the canvas."""
    h = mask.shape[0]
    rows = canvas[top : top + h] > 0.3
    ink = mask[: rows.shape[0]] > 0.3
    has_old, has_new = rows.any(axis=1), ink.any(axis=1)
    both = has_old & has_new
    if not both.any():
        return right_edge
    old_right = rows.shape[1] - 1 - np.argmax(rows[:, ::-1], axis=1)
    new_left = np.argmax(ink, axis=1)
    return int((old_right - new_left)[both].max()) + 1


def break_digit(mask: np.ndarray, rng: Rng) -> np.ndarray:
    """The digit with a gap erased across one stroke, so it falls in two pieces (or unchanged)."""
    h, w = mask.shape
    ys, xs = np.mgrid[0:h, 0:w]
    for _ in range(8):
        angle = rng.uniform(-0.6, 0.6) + (np.pi / 2 if rng.random() < 0.3 else 0.0)
        at = rng.uniform(0.2, 0.8)
        width = max(2.0, 0.05 * h)
        distance = (ys - at * h) * np.cos(angle) - (xs - w / 2) * np.sin(angle)
        broken = np.where(np.abs(distance) < width / 2, 0, mask).astype(np.float32)
        parts = label(broken > 0.5, broken)
        if parts.count >= 2 and np.sort(parts.mass)[-2] >= 0.08 * parts.mass.sum():
            return broken
    return mask


# --- Sets -----------------------------------------------------------------------------------------


def make_number(
    kind: str, pool: np.ndarray, images: np.ndarray, labels: np.ndarray, rng: Rng, pen: Pen, height: int
) -> tuple[np.ndarray, str]:
    """A number's ink mask and its text (lines joined by a newline)."""
    if kind == "two-lines":
        first, text_1 = make_number("numbers-2-6", pool, images, labels, rng, pen, height)
        second, text_2 = make_number("numbers-2-6", pool, images, labels, rng, pen, height)
        gap = int(rng.uniform(0.25, 0.8) * height)
        width = max(first.shape[1], second.shape[1]) + int(0.3 * height)
        canvas = np.zeros((first.shape[0] + gap + second.shape[0], width), np.float32)
        offset_1, offset_2 = (int(rng.integers(0, width - m.shape[1] + 1)) for m in (first, second))
        canvas[: first.shape[0], offset_1 : offset_1 + first.shape[1]] = first
        canvas[first.shape[0] + gap :, offset_2 : offset_2 + second.shape[1]] = second
        return canvas, f"{text_1}\n{text_2}"
    count = {"numbers": (2, 8), "numbers-2-6": (2, 6), "touching": (2, 2), "broken": (2, 5)}[kind]
    n = int(rng.integers(count[0], count[1] + 1))
    chosen = rng.choice(pool, size=n, replace=False)
    sizes = [int(height * rng.uniform(0.8, 1.2)) for _ in chosen]
    masks = [digit_mask(images[i], s, pen, rng) for i, s in zip(chosen, sizes, strict=True)]
    if kind == "broken":
        masks = [break_digit(m, rng) if rng.random() < 0.5 else m for m in masks]
    spacing: tuple[float, float] = (-0.06, 0.0) if kind == "touching" else (0.1, 0.5)
    return compose(masks, height, rng, spacing), "".join(str(int(labels[i])) for i in chosen)


# --- Styles: the number's mask drawn as realworld draws one digit ----------------------------------


def framed(mask: np.ndarray, rng: Rng, low: float = 0.3, high: float = 0.8) -> np.ndarray:
    """The mask in a frame with a margin of ``low``-``high`` of the mask's height on every side."""
    margin = [int(mask.shape[0] * rng.uniform(low, high)) for _ in range(4)]
    return np.pad(mask, ((margin[0], margin[1]), (margin[2], margin[3])))


def canvas_black(mask: np.ndarray, rng: Rng) -> tuple[bytes, str]:
    mask = framed(mask, rng)
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[..., 3] = to_uint8(mask * 255)
    return encode(Image.fromarray(rgba), "PNG")


def canvas_white(mask: np.ndarray, rng: Rng) -> tuple[bytes, str]:
    mask = framed(mask, rng)
    rgba = np.full((*mask.shape, 4), 255 if rng.random() < 0.5 else 0, np.uint8)
    rgba[..., :3][mask > 0] = 255
    rgba[..., 3] = to_uint8(mask * 255)
    return encode(Image.fromarray(rgba), "PNG")


def paper(mask: np.ndarray, rng: Rng) -> tuple[bytes, str]:
    return styles.scanned_paper(framed(mask, rng), rng)


def phone_photo(mask: np.ndarray, rng: Rng) -> tuple[bytes, str]:
    """Uneven light, colour cast, blur, sensor noise, JPEG q70; the number fills 50-85% of the width."""
    mask = framed(mask, rng, 0.2, 1.0)
    height, width = mask.shape
    if width < 1.3 * height:
        extra = int(1.3 * height) - width
        mask = np.pad(mask, ((0, 0), (extra // 2, extra - extra // 2)))
    mask, light, cast = styles.phone_optics(mask, rng)
    # The ink's colour is drawn before the paper's here, the other way round from styles.phone_photo:
    # kept so, so that every number reads as it did when docs/read.md was measured.
    ink = random_colour(rng, 20, 90) * styles.PHONE_INK_TINT
    return styles.phone_sensor(paint(mask, rng.uniform(200, 250) * cast, ink) * light[..., None], rng)


def chalkboard(mask: np.ndarray, rng: Rng) -> tuple[bytes, str]:
    mask = framed(mask, rng)
    grain = rng.uniform(0.55, 1.0, mask.shape).astype(np.float32)
    board = np.array([40, 75, 50], dtype=np.float32) * rng.uniform(0.7, 1.3)
    texture = rng.normal(0, 6, (*mask.shape, 1)).astype(np.float32)
    pixels = paint(mask * grain, board + texture, np.array([225, 230, 220], dtype=np.float32))
    return encode(Image.fromarray(to_uint8(pixels)), "JPEG", quality=85)


def coloured(mask: np.ndarray, rng: Rng) -> tuple[bytes, str]:
    mask = framed(mask, rng)
    while True:
        background, ink = random_colour(rng), random_colour(rng)
        if np.linalg.norm(background - ink) > 150:
            break
    return encode(Image.fromarray(to_uint8(paint(mask, background, ink))), "PNG")


def on_white(mask: np.ndarray, rng: Rng) -> tuple[bytes, str]:
    """Black on white (the thick and thin styles: the pen is what differs)."""
    mask = framed(mask, rng)
    return encode(Image.fromarray(to_uint8(paint(mask, np.float32(255), np.float32(0)))), "PNG")


def jpeg_heavy(mask: np.ndarray, rng: Rng) -> tuple[bytes, str]:
    mask = framed(mask, rng)
    pixels = paint(mask, np.float32(rng.uniform(200, 255)), np.float32(rng.uniform(0, 60)))
    return encode(Image.fromarray(to_uint8(pixels)), "JPEG", quality=int(rng.integers(15, 41)))


def palette_gif(mask: np.ndarray, rng: Rng) -> tuple[bytes, str]:
    mask = framed(mask, rng)
    pixels = paint(mask, random_colour(rng, 150, 256), random_colour(rng, 0, 100))
    image = Image.fromarray(to_uint8(pixels)).quantize(colors=int(rng.integers(8, 17)))
    return encode(image, "GIF")


#: style -> (pen, digit height range in px, painter)
STYLES: dict[str, tuple[Pen, tuple[int, int], Callable[[np.ndarray, Rng], tuple[bytes, str]]]] = {
    "canvas-black": (Pen(level=0.4), (50, 110), canvas_black),
    "canvas-white": (Pen(level=0.4), (50, 110), canvas_white),
    "paper": (Pen(), (40, 100), paper),
    "phone-photo": (Pen(level=0.5), (60, 140), phone_photo),
    "chalkboard": (Pen(level=0.45), (50, 110), chalkboard),
    "coloured": (Pen(), (40, 90), coloured),
    "thick": (Pen(level=0.3, grow=0.03), (50, 100), on_white),
    "thin": (Pen(fine=True), (50, 100), on_white),
    "jpeg-heavy": (Pen(), (30, 60), jpeg_heavy),
    "palette-gif": (Pen(), (40, 90), palette_gif),
}
SETS = ("numbers", "touching", "broken", "two-lines")


# --- Evaluation -----------------------------------------------------------------------------------


@dataclass
class Sample:
    """One rendered number read back: what the tuning needs to re-decide without the model."""

    truth: str
    work: ReadWork | None
    probabilities: np.ndarray | None
    digit_scores: np.ndarray | None  # None for a model without an open-set output
    cpu_ms: float
    inputs: np.ndarray | None = None


@cache
def classifier(path: Path) -> Classifier:
    return Classifier(path)


@cache
def pair_model(path: Path | None) -> PairModel | None:
    return PairModel(path) if path is not None else None


def split_pool(split: str, total: int) -> np.ndarray:
    """The test digits a split draws from: two halves of one fixed shuffle."""
    shuffle = np.random.default_rng(SEEDS["dev"]).permutation(total)
    return shuffle[: total // 2] if split == "dev" else shuffle[total // 2 :]


def text_of(sample: Sample, weights: Weights = DEFAULT) -> str | None:
    if sample.work is None or sample.probabilities is None:
        return None  # refused (422): read wrong
    assert sample.inputs is not None
    choices = read(sample.work, sample.probabilities, sample.digit_scores, weights)
    lines = digits_of(sample.work, choices, sample.probabilities, sample.digit_scores, sample.inputs)
    return "\n".join("".join(str(int(d.probabilities.argmax())) for d in line) for line in lines)


def evaluate(
    kind: str, style: str, count: int, split: str, model_path: Path, data_dir: str | None, pairs: Path | None = None
) -> list[Sample]:
    """Render ``count`` numbers of one set in one style and read each through /read's pipeline."""
    test = load_mnist(data_dir).test
    pool = split_pool(split, len(test.labels))
    model = classifier(model_path)
    pair_reader = pair_model(pairs)
    rng = np.random.default_rng([SEEDS[split], SETS.index(kind), list(STYLES).index(style)])
    pen, heights, painter = STYLES[style]
    samples = []
    for _ in range(count):
        mask, truth = make_number(kind, pool, test.images, test.labels, rng, pen, int(rng.integers(*heights)))
        data, _ = painter(mask, rng)
        start = time.process_time()  # this process's CPU: the machine is shared
        work: ReadWork | None = ReadWork(data, MAX_PIXELS, model.open_set, pair_reader)
        probabilities = scores = inputs = None
        try:
            assert work is not None
            inputs = work()
            probabilities, scores = model.run(inputs)
            scores = scores if model.open_set else None  # as /read: 1.0 for every mark, so no effect
            read(work, probabilities, scores)
        except ServiceError:
            work = None
        samples.append(Sample(truth, work, probabilities, scores, 1000 * (time.process_time() - start), inputs))
    return samples


def exact(samples: list[Sample], weights: Weights = DEFAULT) -> float:
    return sum(text_of(s, weights) == s.truth for s in samples) / max(1, len(samples))


def _evaluate_job(job: tuple[str, str, int, str, Path, str | None, Path | None]) -> tuple[str, str, float, float]:
    kind, style, count, split, model_path, data_dir, pairs = job
    samples = evaluate(kind, style, count, split, model_path, data_dir, pairs)
    return kind, style, exact(samples), float(np.mean([s.cpu_ms for s in samples]))


def markdown(results: list[tuple[str, str, float, float]], summary: dict[str, str]) -> str:
    styles = list(dict.fromkeys(style for _, style, _, _ in results))
    kinds = list(dict.fromkeys(kind for kind, _, _, _ in results))
    rate = {(k, s): r for k, s, r, _ in results}
    cpu = {(k, s): c for k, s, _, c in results}
    lines = [
        f"- Date: {summary['date']}",
        f"- Command: `{summary['command']}`",
        f"- Model: `{summary['model']}` (sha256 `{summary['sha256']}...`), split `{summary['split']}`, "
        f"{summary['count']} numbers per set and style",
        "",
        "Exact-read rate (the whole text right):",
        "",
        "| set | " + " | ".join(styles) + " | **all** | CPU ms / image |",
        "| --- | " + " | ".join("---:" for _ in styles) + " | ---: | ---: |",
    ]
    for kind in kinds:
        cells = [f"{rate[(kind, s)]:.0%}" for s in styles]
        overall = np.mean([rate[(kind, s)] for s in styles])
        lines.append(
            f"| {kind} | "
            + " | ".join(cells)
            + f" | **{overall:.1%}** | {np.mean([cpu[(kind, s)] for s in styles]):.0f} |"
        )
    lines += [
        "",
        f"CPU time: decode, segment, frame, one model run and the reading, per image, on {summary['machine']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="MNIST IDX files (default: MNIST_DATA_DIR or the cache)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mnist-improved-int8.onnx")
    parser.add_argument(
        "--pair-model", default=str(ROOT / "models" / "mnist-pairs.onnx"), help="'' for none: cuts only"
    )
    parser.add_argument("--split", choices=tuple(SEEDS), default="report", help="dev: tune on it; report: report it")
    parser.add_argument("--count", type=int, default=100, help="numbers per set and style (default 100)")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--styles", default=",".join(STYLES))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    pairs = Path(args.pair_model) if args.pair_model else None
    jobs = [
        (kind, style, args.count, args.split, args.model, args.data_dir, pairs)
        for kind in args.sets.split(",")
        for style in args.styles.split(",")
    ]
    results = []
    # Spawned, not forked: onnxruntime's threads do not survive a fork.
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        for kind, style, rate, cpu_ms in pool.map(_evaluate_job, jobs):
            results.append((kind, style, rate, cpu_ms))
            print(f"{kind:10s} {style:13s} exact {rate:7.2%}  {cpu_ms:6.1f} CPU ms/image", flush=True)
    for kind in dict.fromkeys(k for k, _, _, _ in results):
        print(f"{kind:10s} all           exact {np.mean([r for k, _, r, _ in results if k == kind]):7.2%}")
    if args.markdown is not None:
        summary = {
            **run_facts("benchmarks/read_numbers.py", args.model),
            "split": args.split,
            "count": str(args.count),
            "machine": f"{platform.machine()} with {os.cpu_count()} CPU cores, {args.jobs} job(s) at a time",
        }
        args.markdown.write_text(markdown(results, summary))
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
