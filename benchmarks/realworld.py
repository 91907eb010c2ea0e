"""Accuracy of the service on MNIST test digits re-rendered as real-world uploads.

Each MNIST *test* digit is upscaled smoothly, given crisp strokes, and drawn the way clients
send digits: canvas drawings on transparent backgrounds, phone photos of paper, chalk on a
board, tiny icons, huge scans, palette GIFs, heavy JPEG. Every rendering is encoded to file
bytes as a client would send them, then goes through the service's own ``image_to_input`` and
the ONNX model. The content is exactly the test digit, so the gap to the model's plain MNIST
test accuracy is what the preprocessing loses.

    python benchmarks/realworld.py --data-dir ../shared/datasets/mnist
    python benchmarks/realworld.py --data-dir ../shared/datasets/mnist --model models/mnist-improved.onnx \
        --markdown docs/realworld.md
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as `python benchmarks/<script>.py`: see benchmarks/__init__.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.common import run_facts  # noqa: E402
from benchmarks.styles import (  # noqa: E402
    SAMPLE_BYTES,
    SAMPLE_SCALE,
    SPECIALS,
    STYLES,
    Rng,
    Style,
    special_samples,
    to_uint8,
)
from service.errors import ServiceError  # noqa: E402
from service.preprocess import image_to_input  # noqa: E402
from training.data import load_mnist  # noqa: E402

MAX_PIXELS = 24_000_000
SEED = 20261123
# --- Evaluation -----------------------------------------------------------------------------------


class Model:
    def __init__(self, path: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, images: np.ndarray) -> np.ndarray:
        labels = []
        for start in range(0, len(images), 256):
            batch = images[start : start + 256, :, :, None].astype(np.float32)
            labels.append(self.session.run(None, {self.input_name: batch})[0].argmax(axis=1))
        return np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)


@dataclass
class Result:
    style: str
    digits: np.ndarray  # indices into the MNIST test set
    predicted: np.ndarray
    inputs: np.ndarray
    correct: int
    raw_correct: int  # the model on the same digits as MNIST gives them
    refused: int
    preprocess_ms: float

    @property
    def n(self) -> int:
        return len(self.digits)


def style_digits(name: str, count: int, total: int) -> np.ndarray:
    """The test digits a style draws: consecutive slices of one fixed shuffle, so the styles
    together cover the whole test set (not only its easiest part) and each style's digits are fixed."""
    shuffle = np.random.default_rng(SEED).permutation(total)
    start = list(STYLES).index(name) * count
    return np.take(shuffle, np.arange(start, start + count), mode="wrap")


@cache
def load_model(path: Path) -> Model:
    return Model(path)


def evaluate_style(name: str, test_images: np.ndarray, test_labels: np.ndarray, count: int, model_path: Path) -> Result:
    """Render one style's digits, read them back through the service's preprocessing, classify them."""
    model = load_model(model_path)
    digits = style_digits(name, count, len(test_labels))
    images, labels = test_images[digits], test_labels[digits]
    rng = np.random.default_rng([SEED, list(STYLES).index(name)])
    inputs = np.zeros((len(images), 28, 28), dtype=np.float32)
    refused = 0
    preprocess_s = 0.0
    for i, digit in enumerate(images):
        data, _ = STYLES[name](digit, rng, 1.0)
        # CPU time of this process: wall-clock would count whatever else the machine is doing.
        start = time.process_time()
        try:
            inputs[i] = image_to_input(data, MAX_PIXELS)
        except ServiceError:
            refused += 1  # counted wrong: a blank input, which no digit looks like
        preprocess_s += time.process_time() - start
    predicted = model.predict(inputs)
    raw = model.predict(images.astype(np.float32) / 255)
    return Result(
        style=name,
        digits=digits,
        predicted=predicted,
        inputs=inputs,
        correct=int((predicted == labels).sum()),
        raw_correct=int((raw == labels).sum()),
        refused=refused,
        preprocess_ms=1000 * preprocess_s / len(images),
    )


#: Picture scale for the committed test samples: small files, still the same style.
def _scaled(style: Style, scale: float, digit: np.ndarray, rng: Rng) -> tuple[bytes, str]:
    return style(digit, rng, scale)


def _special(kind: str, digit: np.ndarray, rng: Rng) -> tuple[bytes, str]:
    return special_samples(digit, kind, rng)


def save_samples(directory: Path, images: np.ndarray, labels: np.ndarray, model: Model, per_style: int) -> None:
    """Write small sample files the model reads right, plus labels.json, for the service tests."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED + 1)
    # Every shipped model must read every sample right: the service tests run with whichever is there.
    models = [model] + [Model(path) for path in sorted((ROOT / "models").glob("mnist-*.onnx"))]
    raw_right = np.logical_and.reduce([m.predict(images.astype(np.float32) / 255) == labels for m in models])
    chosen: dict[str, int] = {}
    jobs: list[tuple[str, Callable[[np.ndarray, Rng], tuple[bytes, str]], int]] = [
        (name, partial(_scaled, style, SAMPLE_SCALE.get(name, 0.4)), 1 if name == "mnist-png" else per_style)
        for name, style in STYLES.items()
    ]
    jobs += [(kind, partial(_special, kind), 1) for kind in SPECIALS]
    for name, render, count in jobs:
        digits_done: set[int] = set()
        for i in rng.permutation(len(images))[:500]:
            label = int(labels[i])
            if len(digits_done) == count:
                break
            if label in digits_done or not raw_right[i]:
                continue
            data, ext = render(images[i], rng)
            if len(data) > SAMPLE_BYTES:
                continue
            pixels = image_to_input(data, MAX_PIXELS)[None]
            if any(int(m.predict(pixels)[0]) != label for m in models):
                continue
            file_name = f"{name.replace('-', '_')}_{label}.{ext}"
            (directory / file_name).write_bytes(data)
            chosen[file_name] = label
            digits_done.add(label)
        if len(digits_done) < count:
            print(f"warning: only {len(digits_done)} {name} samples under {SAMPLE_BYTES} bytes")
    (directory / "labels.json").write_text(json.dumps(dict(sorted(chosen.items())), indent=2) + "\n")
    print(f"wrote {len(chosen)} samples to {directory}")


def markdown(results: list[Result], summary: dict[str, str]) -> str:
    correct = sum(r.correct for r in results)
    raw = sum(r.raw_correct for r in results)
    total = sum(r.n for r in results)
    lines = [
        "# Real-world accuracy",
        "",
        "MNIST test digits re-rendered as real-world uploads (canvas drawings, phone photos, chalk,",
        "tiny and huge images, palette GIFs, heavy JPEG, ...), encoded to file bytes as a client sends",
        "them, then read by the service's own preprocessing (`service.preprocess.image_to_input`) and",
        "the ONNX model. Each style draws its own slice of one fixed shuffle of the test set, so the",
        "styles together cover all of it; *MNIST form* is the model on the same digits as MNIST gives",
        "them, so *gap* is what the rendering and the preprocessing lose. Generated by",
        "`benchmarks/realworld.py`; each style is described in its docstring there.",
        "",
        f"- Date: {summary['date']}",
        f"- Command: `{summary['command']}`",
        f"- Model: `{summary['model']}` (sha256 `{summary['sha256']}...`)",
        f"- Plain MNIST test accuracy of the model (10,000 test images): **{summary['mnist_accuracy']}**",
        f"- Real-world accuracy, all styles ({total:,} renderings): **{correct / total:.2%}** "
        f"(the same digits in MNIST form: {raw / total:.2%})",
        "",
        "| style | real-world | MNIST form | gap (points) | errors | refused | decode + preprocess, CPU ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.style} | {r.correct / r.n:.2%} | {r.raw_correct / r.n:.2%} "
            f"| {100 * (r.raw_correct - r.correct) / r.n:+.1f} | {r.n - r.correct} | {r.refused} "
            f"| {r.preprocess_ms:.2f} |"
        )
    lines.append(
        f"| **all** | **{correct / total:.2%}** | {raw / total:.2%} | {100 * (raw - correct) / total:+.2f} "
        f"| {total - correct} | {sum(r.refused for r in results)} | |"
    )
    lines += [
        "",
        f"Times are CPU time per image for decoding the file and preprocessing it, on {summary['machine']}.",
        "",
        "What this does not measure: the renderings are synthetic (the test digits themselves, redrawn),",
        "so real photos' ruled or squared paper, other marks or several digits in the frame, strong",
        "perspective and hard shadows are not covered (the preprocessing ignores only small specks).",
        "",
    ]
    return "\n".join(lines)


def report(r: Result) -> None:
    print(
        f"{r.style:14s} {r.correct / r.n:7.2%}  (MNIST form {r.raw_correct / r.n:7.2%})  errors {r.n - r.correct:4d}"
        f"  refused {r.refused:3d}  decode+preprocess {r.preprocess_ms:.2f} CPU ms/image",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="MNIST IDX files (default: MNIST_DATA_DIR or the cache)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mnist-improved.onnx")
    parser.add_argument("--per-style", type=int, default=1000, help="test digits per style (default 1000)")
    parser.add_argument("--styles", default=",".join(STYLES), help="comma-separated subset of styles")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the results table here")
    parser.add_argument("--save-samples", type=Path, default=None, help="write small test samples here and stop")
    parser.add_argument("--samples-per-style", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="styles evaluated in parallel")
    parser.add_argument("--show-errors", type=Path, default=None, help="save a PNG grid of failures per style")
    args = parser.parse_args(argv)

    test = load_mnist(args.data_dir).test
    model = Model(args.model)
    mnist_accuracy = float((model.predict(test.images.astype(np.float32) / 255) == test.labels).mean())
    print(f"model {args.model.name}: MNIST test accuracy {mnist_accuracy:.2%} (10,000 images)")

    if args.save_samples is not None:
        save_samples(args.save_samples, test.images, test.labels, model, args.samples_per_style)
        return 0

    results = []
    names = args.styles.split(",")
    # Styles are independent: one process each, as many at a time as asked.
    # Spawned, not forked: the parent already runs an onnxruntime session with its own threads.
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [
            pool.submit(evaluate_style, name, test.images, test.labels, args.per_style, args.model) for name in names
        ]
        for future in futures:
            r = future.result()
            results.append(r)
            report(r)
            if args.show_errors is not None:
                save_errors(args.show_errors, r, test.images, test.labels)
    correct = sum(r.correct for r in results)
    raw = sum(r.raw_correct for r in results)
    total = sum(r.n for r in results)
    print(
        f"{'overall':14s} {correct / total:7.2%}  (MNIST form {raw / total:7.2%}; {correct}/{total}); "
        f"MNIST test {mnist_accuracy:.2%}, gap {100 * (mnist_accuracy - correct / total):+.2f} points"
    )

    if args.markdown is not None:
        summary = {
            **run_facts("benchmarks/realworld.py", args.model),
            "mnist_accuracy": f"{mnist_accuracy:.2%}",
            "machine": f"{platform.machine()} with {os.cpu_count()} CPU cores, {args.jobs} style(s) at a time",
        }
        args.markdown.write_text(markdown(results, summary))
        print(f"wrote {args.markdown}")
    return 0


def save_errors(directory: Path, result: Result, images: np.ndarray, labels: np.ndarray) -> None:
    """A strip per failure: the MNIST original beside what the preprocessing made of the rendering."""
    directory.mkdir(parents=True, exist_ok=True)
    wrong = np.flatnonzero(result.predicted != labels[result.digits])[:40]
    if len(wrong) == 0:
        return
    rows = [np.concatenate((images[result.digits[i]] / 255, np.ones((28, 2)), result.inputs[i]), axis=1) for i in wrong]
    grid = np.concatenate([np.pad(row, 1, constant_values=0.5) for row in rows], axis=0)
    big = Image.fromarray(to_uint8(grid * 255)).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.Resampling.NEAREST)
    big.save(directory / f"{result.style}.png")
    info = {
        int(result.digits[i]): {"label": int(labels[result.digits[i]]), "predicted": int(result.predicted[i])}
        for i in wrong
    }
    (directory / f"{result.style}.json").write_text(json.dumps(info))


if __name__ == "__main__":
    raise SystemExit(main())
