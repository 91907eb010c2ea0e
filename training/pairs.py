"""The pair reader: a small second model that reads two touching digits at once, for ``/read``.

``/read`` splits a mark that is two touching digits with cut paths, then reads each piece. Where
the digits share ink, no cut leaves two clean pieces: last session's failure analysis found no
path spelling the truth in 27 of 37 touching pairs read wrong. Instead of cutting, this model
reads the whole mark: ``image`` (N, 28, 56, 1), the mark framed as :func:`frame_pair` frames it,
gives ``first`` and ``second`` (N, 10), the two digits' probabilities, and ``pair_score`` (N,),
P(the image is exactly two whole digits). It is trained on compositions of MNIST *training*
digits made here (the benchmark's generator and its styles are never seen), with negatives
that are not two digits: one digit, three, a digit and a piece of another.

    python -m training.pairs --data-dir ../shared/datasets/mnist --max-training-seconds 1200

writes ``models/mnist-pairs.onnx`` and its metadata ``models/mnist-pairs.json``, after checking
that onnxruntime agrees with Keras on held-out pairs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image, ImageFilter

from training import report

log = logging.getLogger(__name__)
Rng = np.random.Generator

#: The model's input: a pair is about twice as wide as tall.
HEIGHT, WIDTH = 28, 56
#: Ink is fitted into this box (MNIST fits a digit into 20x20 of 28x28), centred in the input.
BOX_HEIGHT, BOX_WIDTH = 20, 52
#: Digits are composed at this many times MNIST's 28 px, so an overlap can be a fraction of a pixel.
SCALE: Final = 2
#: Ink above this level (0-1) is where two digits touch.
INK: Final = 0.3
#: The right digit starts this share of the height left of where the inks would first touch
#: (negative: a gap). Touching pairs overlap up to about 12%; spaced pairs are trained too, so
#: the model does not learn one spacing.
TOUCHING: Final = (-0.02, 0.12)
SPACED: Final = (-0.35, -0.02)
#: Each digit's height varies by this share, and its baseline by this share of the height.
SIZE_JITTER: Final = 0.12
DRIFT: Final = 0.08
#: Each digit leans by up to this many degrees.
ROTATION: Final = 8.0
#: Share of digits redrawn as a pen draws (MNIST's strokes are soft, scanned pencil): cut at a
#: level, maybe thickened or thinned a pixel, edges softened. Uploads reach /read that way.
PEN: Final = 0.6
PEN_LEVEL: Final = (0.2, 0.6)
#: The sample kinds and their shares. Only the first two are pairs (pair_score 1).
KINDS: Final = {
    "touching": 0.52,
    "spaced": 0.14,
    "single": 0.09,
    "triple": 0.09,
    "pair_and_piece": 0.08,
    "digit_and_piece": 0.08,
}
OUTPUTS: Final = ("first", "second", "pair_score")
INPUT_NAME: Final = "image"


# --- Composing -------------------------------------------------------------------------------------


def _digit(image: np.ndarray, rng: Rng) -> np.ndarray:
    """A 28x28 uint8 MNIST digit at SCALE, jittered in size and lean, cropped to its ink, floats 0-1."""
    size = int(round(28 * SCALE * (1 + rng.uniform(-SIZE_JITTER, SIZE_JITTER))))
    picture = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR)
    picture = picture.rotate(rng.uniform(-ROTATION, ROTATION), Image.Resampling.BILINEAR)
    big = np.asarray(picture, np.float32) / 255
    if rng.random() < PEN:
        big = _pen(big, rng)
    ys, xs = np.nonzero(big > 0.05)
    if not len(ys):
        return np.zeros((1, 1), np.float32)
    return np.asarray(big[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])


def _pen(ink: np.ndarray, rng: Rng) -> np.ndarray:
    """The digit as a pen of even width draws it: cut at a level, grown or thinned a pixel, soft edges."""
    strokes = ink > rng.uniform(*PEN_LEVEL)
    picture = Image.fromarray(strokes.astype(np.uint8) * 255)
    change = rng.integers(-1, 2)
    if change:
        picture = picture.filter(ImageFilter.MaxFilter(3) if change > 0 else ImageFilter.MinFilter(3))
    picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    return np.asarray(picture, np.float32) / 255


def _touch_shift(canvas: np.ndarray, piece: np.ndarray, dy: int) -> int:
    """The column of ``canvas`` at which ``piece``, its top at row ``dy``, would just touch its ink."""
    top, bottom = max(0, dy), min(canvas.shape[0], dy + piece.shape[0])
    if bottom <= top:
        return int(canvas.shape[1])
    old = canvas[top:bottom] > INK
    new = piece[top - dy : bottom - dy] > INK
    both = old.any(axis=1) & new.any(axis=1)
    if not both.any():
        return int(np.flatnonzero(canvas.max(axis=0) > INK)[-1]) + 1 if bool((canvas > INK).any()) else 0
    old_right = old.shape[1] - 1 - np.argmax(old[:, ::-1], axis=1)
    new_left = np.argmax(new, axis=1)
    return int((old_right - new_left)[both].max()) + 1


def compose(pieces: list[np.ndarray], rng: Rng, overlaps: list[tuple[float, float]]) -> np.ndarray:
    """Ink pieces side by side on a drifting baseline, each ``overlaps[k]`` (of the height) into the last."""
    height = max(p.shape[0] for p in pieces)
    rows = int(height * (1.6 + 2 * DRIFT))
    cols = sum(p.shape[1] for p in pieces) + 2 * height
    canvas = np.zeros((rows, cols), np.float32)
    base = (rows + height) // 2
    x = 0
    for k, piece in enumerate(pieces):
        h, w = piece.shape
        bottom = base + int(round(rng.uniform(-DRIFT, DRIFT) * height))
        top = max(0, min(rows - h, bottom - h))
        if k:
            x = _touch_shift(canvas, piece, top) - int(round(rng.uniform(*overlaps[k - 1]) * height))
            x = max(0, x)
        region = canvas[top : top + h, x : x + w]
        np.maximum(region, piece[: region.shape[0], : region.shape[1]], out=region)
        x += w
    return canvas


def frame_pair(ink: np.ndarray) -> np.ndarray:
    """Ink (float 0-1, any size) fitted into BOX_HEIGHT x BOX_WIDTH, centred in HEIGHT x WIDTH.

    The service frames a mark the same way (service/read/pairs.py), after bringing its strokes
    into MNIST's band.
    """
    ys, xs = np.nonzero(ink > 0.05)
    out = np.zeros((HEIGHT, WIDTH), np.float32)
    if not len(ys):
        return out
    crop = np.ascontiguousarray(ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], np.float32)
    h, w = crop.shape
    scale = min(BOX_HEIGHT / h, BOX_WIDTH / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    filter_ = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    small = np.clip(np.asarray(Image.fromarray(crop).resize(size, filter_), np.float32), 0, 1)
    top, left = (HEIGHT - size[1]) // 2, (WIDTH - size[0]) // 2
    out[top : top + size[1], left : left + size[0]] = small
    return out


def _part(piece: np.ndarray, rng: Rng, low: float, high: float) -> np.ndarray:
    """The left or right ``low``-``high`` share of a digit's columns: a piece of a neighbour."""
    w = piece.shape[1]
    keep = max(1, int(round(w * rng.uniform(low, high))))
    return piece[:, :keep] if rng.random() < 0.5 else piece[:, w - keep :]


def sample(rng: Rng, kind: str, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """One framed sample of ``kind`` and its label (first digit, second digit, is a pair)."""
    i, j, k = (int(n) for n in rng.integers(len(images), size=3))
    a, b, c = (_digit(images[n], rng) for n in (i, j, k))
    if kind in ("touching", "spaced"):
        overlap = TOUCHING if kind == "touching" else SPACED
        return frame_pair(compose([a, b], rng, [overlap])), (int(labels[i]), int(labels[j]), 1)
    if kind == "single":
        return frame_pair(a), (0, 0, 0)
    if kind == "triple":
        return frame_pair(compose([a, b, c], rng, [TOUCHING, TOUCHING])), (0, 0, 0)
    if kind == "pair_and_piece":
        sliver = _part(c, rng, 0.15, 0.45)
        parts = [sliver, a, b] if rng.random() < 0.5 else [a, b, sliver]
        return frame_pair(compose(parts, rng, [TOUCHING, TOUCHING])), (0, 0, 0)
    piece = _part(b, rng, 0.15, 0.45)
    parts = [piece, a] if rng.random() < 0.5 else [a, piece]
    return frame_pair(compose(parts, rng, [TOUCHING])), (0, 0, 0)


def make_set(count: int, seed: int, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``count`` samples (uint8, N x HEIGHT x WIDTH) in KINDS' shares and their labels (N x 3); by seed."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(list(KINDS), size=count, p=np.array(list(KINDS.values())) / sum(KINDS.values()))
    x = np.zeros((count, HEIGHT, WIDTH), np.uint8)
    y = np.zeros((count, 3), np.int32)
    for n, kind in enumerate(kinds):
        framed, label = sample(rng, str(kind), images, labels)
        x[n] = np.round(framed * 255).astype(np.uint8)
        y[n] = label
    return x, y


def _make_set_job(job: tuple[int, int, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return make_set(*job)


def make_set_parallel(
    count: int, seed: int, images: np.ndarray, labels: np.ndarray, jobs: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`make_set` in ``jobs`` processes, each its own seed: reproducible for a given ``jobs``."""
    if jobs <= 1:
        return make_set(count, seed, images, labels)
    from concurrent.futures import ProcessPoolExecutor

    sizes = [count // jobs + (1 if n < count % jobs else 0) for n in range(jobs)]
    with ProcessPoolExecutor(jobs) as pool:
        parts = list(pool.map(_make_set_job, [(size, seed * 1000 + n, images, labels) for n, size in enumerate(sizes)]))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# --- The model ---------------------------------------------------------------------------------------


def build(dropout: float = 0.25) -> Any:
    """Raw logits (N, 21): ten for the first digit, ten for the second, one for "a pair"."""
    import keras
    from keras import layers

    from training.model import conv_bn

    inputs = keras.Input((HEIGHT, WIDTH, 1), name=INPUT_NAME)
    x = conv_bn(inputs, 24)  # 26x54
    x = conv_bn(x, 32)  # 24x52
    x = layers.MaxPooling2D(2)(x)  # 12x26
    x = layers.Dropout(dropout / 2)(x)
    x = conv_bn(x, 64)  # 10x24
    x = conv_bn(x, 64)  # 8x22
    x = layers.MaxPooling2D(2)(x)  # 4x11
    x = layers.Dropout(dropout / 2)(x)
    x = conv_bn(x, 128, padding="same")  # 4x11: where each digit is matters, so no global pooling
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, layers.Dense(21, name="logits")(x), name="pair_reader")


def pair_loss(y_true: Any, logits: Any) -> Any:
    """Cross-entropy of both digits (pairs only) plus the binary cross-entropy of "a pair"."""
    import keras

    ops = keras.ops
    y = ops.cast(y_true, "int32")
    is_pair = ops.cast(y[:, 2], "float32")
    first = keras.losses.sparse_categorical_crossentropy(y[:, 0], logits[:, :10], from_logits=True)
    second = keras.losses.sparse_categorical_crossentropy(y[:, 1], logits[:, 10:20], from_logits=True)
    pair = keras.losses.binary_crossentropy(ops.expand_dims(is_pair, -1), logits[:, 20:21], from_logits=True)
    return is_pair * (first + second) + pair


def serving(trained: Any) -> Any:
    """The exported graph: ``image`` -> ``first`` (N, 10), ``second`` (N, 10), ``pair_score`` (N,)."""
    import keras
    from keras import layers

    inputs = keras.Input((HEIGHT, WIDTH, 1), name=INPUT_NAME)
    logits = trained(inputs)
    first = layers.Lambda(lambda z: keras.ops.softmax(z[:, :10], axis=-1), name="first")(logits)
    second = layers.Lambda(lambda z: keras.ops.softmax(z[:, 10:20], axis=-1), name="second")(logits)
    score = layers.Lambda(lambda z: keras.ops.sigmoid(z[:, 20]), name="pair_score")(logits)
    return keras.Model(inputs, [first, second, score], name="pair_reader_served")


@dataclass
class Scores:
    """How the model does on a set: pairs read exactly, and non-pairs refused, at ``threshold``."""

    pairs_exact: float
    pairs_accepted: float
    non_pairs_refused: float
    threshold: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 5) for k, v in self.__dict__.items()}


def score(outputs: list[np.ndarray], y: np.ndarray, threshold: float) -> Scores:
    first, second, pair = outputs
    is_pair = y[:, 2] == 1
    right = (first.argmax(1) == y[:, 0]) & (second.argmax(1) == y[:, 1]) & (pair >= threshold)
    return Scores(
        pairs_exact=float(right[is_pair].mean()),
        pairs_accepted=float((pair[is_pair] >= threshold).mean()),
        non_pairs_refused=float((pair[~is_pair] < threshold).mean()),
        threshold=threshold,
    )


# --- Training and export -------------------------------------------------------------------------------


def _run_onnx(onnx_bytes: bytes, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in session.run(list(OUTPUTS), {INPUT_NAME: x})]


def export(model: Any, x: np.ndarray, tolerance: float = 1e-4) -> tuple[bytes, float]:
    """ONNX bytes of the serving ``model``, named to the contract; raises unless onnxruntime agrees on ``x``."""
    import onnx

    from training.export import name_io

    model.predict(x[:1], verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        model.export(str(raw), format="onnx", opset_version=17, verbose=False)
        graph_model = onnx.load(str(raw))
    name_io(graph_model, list(OUTPUTS))
    onnx.checker.check_model(graph_model, full_check=True)
    data = bytes(graph_model.SerializeToString())
    expected = [np.asarray(o) for o in model.predict(x, batch_size=500, verbose=0)]
    actual = _run_onnx(data, x)
    diff = max(float(np.max(np.abs(e.reshape(a.shape) - a))) for e, a in zip(expected, actual, strict=True))
    if diff > tolerance:
        raise RuntimeError(f"onnxruntime disagrees with Keras by {diff:.3g} (tolerance {tolerance:g}); nothing written")
    return data, diff


def train(args: argparse.Namespace) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from training.data import load_mnist
    from training.train import TimeBudget

    keras.utils.set_random_seed(args.seed)
    mnist = load_mnist(args.data_dir)
    started = time.perf_counter()
    x_train, y_train = make_set_parallel(args.samples, args.seed, mnist.train.images, mnist.train.labels, args.jobs)
    x_val, y_val = make_set(args.validation_samples, args.seed + 1, mnist.validation.images, mnist.validation.labels)
    x_test, y_test = make_set(args.test_samples, args.seed + 2, mnist.test.images, mnist.test.labels)
    generated = time.perf_counter() - started
    log.info("generated %d training samples in %.0f s", len(x_train), generated)

    def as_input(x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32) / 255)[..., None]

    model = build()
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss=pair_loss)
    budget = TimeBudget(args.max_training_seconds, peak=args.learning_rate, warmup=0.03)
    dataset = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=args.seed, reshuffle_each_iteration=True)
        .batch(args.batch_size)
        .map(lambda x, y: (tf.cast(x, tf.float32)[..., None] / 255, y), num_parallel_calls=2)
        .prefetch(2)
    )
    fit_started = time.perf_counter()
    history = model.fit(
        dataset, epochs=args.epochs, validation_data=(as_input(x_val), y_val), callbacks=[budget], verbose=2
    )
    trained_seconds = time.perf_counter() - fit_started
    served = serving(model)
    val_out = [np.asarray(o) for o in served.predict(as_input(x_val), batch_size=500, verbose=0)]
    # The threshold: the lowest that refuses at least 95% of validation non-pairs.
    non_pair = val_out[2][y_val[:, 2] == 0]
    threshold = float(np.quantile(non_pair, 0.95)) if len(non_pair) else 0.5
    threshold = min(max(threshold, 0.05), 0.95)
    data, diff = export(served, as_input(x_test[:1000]))
    test = score(_run_onnx(data, as_input(x_test)), y_test, threshold)
    val = score(val_out, y_val, threshold)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    metadata = {
        "name": out.stem,
        "file": out.name,
        "version": args.version,
        "sha256": hashlib.sha256(data).hexdigest(),
        "input": {"name": INPUT_NAME, "shape": ["N", HEIGHT, WIDTH, 1], "dtype": "float32"},
        "outputs": {"first": ["N", 10], "second": ["N", 10], "pair_score": ["N"]},
        "pair_threshold": round(threshold, 5),
        "metrics": {"validation": val.as_dict(), "test": test.as_dict(), "onnx_max_abs_diff": diff},
        "data": {
            "kinds": KINDS,
            "training_samples": len(x_train),
            "digits": "MNIST training digits (validation and test sets: MNIST validation and test digits)",
            "seed": args.seed,
        },
        "training": {
            "epochs_run": len(history.history["loss"]),
            "steps": budget.steps,
            "seconds": round(trained_seconds, 1),
            "generation_seconds": round(generated, 1),
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "final_loss": round(float(history.history["loss"][-1]), 5),
            "final_val_loss": round(float(history.history["val_loss"][-1]), 5),
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
    }
    out.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n")
    report.write_model_card(out.parent)
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pairs", description=__doc__)
    parser.add_argument("--data-dir", help="directory of the MNIST IDX files (default: $MNIST_DATA_DIR)")
    parser.add_argument("--out", default="models/mnist-pairs.onnx")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--samples", type=int, default=300_000)
    parser.add_argument("--validation-samples", type=int, default=10_000)
    parser.add_argument("--test-samples", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--max-training-seconds", type=float, default=1200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    metadata = train(args)
    test = metadata["metrics"]["test"]
    print(
        f"test pairs read exactly {test['pairs_exact']:.2%}, non-pairs refused {test['non_pairs_refused']:.2%}; "
        f"wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
