"""Does the served model say "not a digit" when it should, and only then? And is its confidence true?

Everything goes through what the service runs: the ONNX model on onnxruntime, and for every
image file the service's own ``service.preprocess.image_to_input``. Measured:

- MNIST test (10,000, MNIST form): refused share and argmax accuracy; ECE (15 bins) before and
  after the temperature, and a reliability diagram;
- the real-world renderings of ``benchmarks/realworld.py`` (its renderers, its digits): refused
  share and accuracy;
- things that are not digits, drawn by ``training.negatives`` and rendered as real uploads
  (280x280 dark-on-light paper PNGs and transparent canvas PNGs): refused share, with the
  held-out font families and kinds (never seen in training) apart from the training kinds
  (fresh seeds; pieces and pairs cut from MNIST *test* digits);
- AUROC and the false-accept rate at 99.5% true-accept, digits against held-out non-digits.

A model without ``digit_score`` is scored by its top softmax probability instead (the
max-softmax baseline), with no threshold. No TensorFlow is needed.

    python benchmarks/open_set.py --data-dir $MNIST_DATA_DIR --markdown docs/open-set.md \\
        --diagram models/mnist-improved-reliability.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

if not __package__:  # run as `python benchmarks/<script>.py`: see benchmarks/__init__.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks import realworld, styles  # noqa: E402
from benchmarks.common import run_facts  # noqa: E402
from harness import ROOT  # noqa: E402
from service.errors import ServiceError  # noqa: E402
from service.preprocess import image_to_input  # noqa: E402
from training import calibrate, negatives  # noqa: E402
from training.data import load_mnist  # noqa: E402

SEED = 20261201
#: The issue's targets.
TARGETS = {
    "mnist_refused": 0.005,
    "mnist_accuracy": 0.996,
    "realworld_refused": 0.01,
    "realworld_accuracy": 0.99,
    "held_out_refused": 0.95,
    "ece": 0.01,
}


class Model:
    """The ONNX model on one thread: probabilities, and digit_score (or the max-softmax stand-in)."""

    def __init__(self, path: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]
        self.open_set = "digit_score" in self.names
        meta_path = path.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        self.threshold = float(meta.get("open_set", {}).get("threshold", 0.0))
        self.temperature = float(meta.get("calibration", {}).get("temperature", 1.0))

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, 10), score (N,)) for float (N, 28, 28) images in [0, 1]."""
        probabilities, scores = [], []
        for start in range(0, len(images), 500):
            batch = images[start : start + 500, :, :, None].astype(np.float32)
            out = dict(zip(self.names, self.session.run(None, {"image": batch}), strict=True))
            probabilities.append(out["probabilities"])
            scores.append(out["digit_score"] if self.open_set else out["probabilities"].max(1))
        return np.concatenate(probabilities), np.concatenate(scores)

    def refused(self, scores: np.ndarray) -> np.ndarray:
        return scores < self.threshold if self.open_set else np.zeros(len(scores), bool)


@dataclass
class Group:
    """Images of one kind after the service's preprocessing; ``failed`` were refused by it (422)."""

    name: str
    inputs: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    failed: int = 0

    def add(self, data: bytes, label: int = -1) -> None:
        try:
            self.inputs.append(image_to_input(data, realworld.MAX_PIXELS))
            self.labels.append(label)
        except ServiceError:
            self.failed += 1


# --- Non-digits as uploads -------------------------------------------------------------------------


def upload(ink: np.ndarray, rng: np.random.Generator, style: int) -> bytes:
    """Raw generator ink as a client's file: dark pen on light paper, or a transparent canvas."""
    ys, xs = np.nonzero(ink > 0.05)
    crop = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)
    side = 280
    scale = side * rng.uniform(0.5, 0.8) / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    mask = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    mask = styles.place(np.clip(mask, 0, 1), side, side, rng)
    if style == 0:  # paper
        pixels = styles.paint(mask, np.float32(rng.uniform(235, 255)), np.float32(rng.uniform(0, 40)))
        return styles.encode(Image.fromarray(styles.to_uint8(pixels)), "PNG")[0]
    rgba = np.zeros((side, side, 4), dtype=np.uint8)  # canvas: black strokes on transparent
    rgba[..., 3] = styles.to_uint8(mask * 255)
    return styles.encode(Image.fromarray(rgba), "PNG")[0]


def non_digits(count: int, held_out: bool, test_images: np.ndarray, test_labels: np.ndarray) -> dict[str, Group]:
    """``count`` non-digits as uploads, grouped by kind (glyphs by held-out or training family)."""
    rng = np.random.default_rng([SEED, int(held_out)])
    weights = negatives.HELD_OUT_WEIGHTS if held_out else negatives.TRAIN_WEIGHTS
    fonts = negatives.fonts_for(negatives.HELD_OUT_FAMILIES if held_out else negatives.TRAIN_FAMILIES)
    groups: dict[str, Group] = {}
    for i, kind in enumerate(negatives.kind_plan(count, weights, rng)):
        ink, _ = negatives.draw(kind, rng, fonts, test_images, test_labels)
        groups.setdefault(kind, Group(kind)).add(upload(ink, rng, i % 2))
    return groups


# --- Measures ---------------------------------------------------------------------------------------


def uncalibrated(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The softmax before the temperature: softmax(T * log p) undoes softmax(z / T)."""
    return calibrate.softmax(temperature * np.log(np.clip(probabilities.astype(np.float64), 1e-30, 1)))


def reliability_diagram(before: list[dict[str, float]], after: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, rows, title in zip(axes, (before, after), ("before temperature", "after temperature"), strict=True):
        filled = [r for r in rows if r["count"]]
        centres = [(r["low"] + r["high"]) / 2 for r in filled]
        ax.bar(centres, [r["accuracy"] for r in filled], width=1 / len(rows), edgecolor="black", label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.plot([r["confidence"] for r in filled], [r["accuracy"] for r in filled], "o", color="C1", label="mean conf.")
        for c, r in zip(centres, filled, strict=True):
            ax.annotate(str(r["count"]), (c, 0.02), ha="center", fontsize=6, rotation=90)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)", ylabel="accuracy", title=title)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("MNIST test set, 15 bins (counts at the bottom)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise(model: Model, group: Group) -> dict[str, float]:
    if not group.inputs:
        return {"n": group.failed, "refused": 1.0, "accuracy": 0.0, "preprocess_refused": group.failed}
    probabilities, scores = model.run(np.stack(group.inputs))
    refused = model.refused(scores)
    labels = np.array(group.labels)
    n = len(labels) + group.failed
    return {
        "n": n,
        "refused": (int(refused.sum()) + group.failed) / n,
        "accuracy": float(np.sum(probabilities.argmax(1) == labels)) / n if labels.min() >= 0 else 0.0,
        "preprocess_refused": group.failed,
        "scores": scores,  # type: ignore[dict-item]
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    model = Model(args.model)
    test = load_mnist(args.data_dir).test
    started = time.process_time()
    probabilities, mnist_scores = model.run(test.images.astype(np.float32) / 255)
    refused = model.refused(mnist_scores)
    before = uncalibrated(probabilities, model.temperature)
    results: dict[str, object] = {
        "mnist": {
            "n": len(test.labels),
            "refused": float(refused.mean()),
            "accuracy": float(np.mean(probabilities.argmax(1) == test.labels)),
            "accuracy_accepted": float(np.mean(probabilities.argmax(1)[~refused] == test.labels[~refused])),
            "ece_before": calibrate.expected_calibration_error(before, test.labels),
            "ece_after": calibrate.expected_calibration_error(probabilities.astype(np.float64), test.labels),
        }
    }
    if args.diagram:
        reliability_diagram(
            calibrate.reliability(before, test.labels),
            calibrate.reliability(probabilities.astype(np.float64), test.labels),
            args.diagram,
        )
    per_style = {}
    real_scores = []
    for name in styles.STYLES:
        digits = realworld.style_digits(name, args.per_style, len(test.labels))
        rng = np.random.default_rng([realworld.SEED, list(styles.STYLES).index(name)])
        group = Group(name)
        for i in digits:
            group.add(styles.STYLES[name](test.images[i], rng, 1.0)[0], int(test.labels[i]))
        per_style[name] = summarise(model, group)
        real_scores.append(per_style[name].pop("scores", np.zeros(0)))
        seen = per_style[name]
        print(f"realworld {name:14s} refused {seen['refused']:6.2%}  accuracy {seen['accuracy']:6.2%}")
    results["realworld"] = per_style
    for side, held in (("held_out", True), ("train_kinds", False)):
        groups = non_digits(args.non_digits, held, test.images, test.labels)
        kinds = {name: summarise(model, g) for name, g in sorted(groups.items())}
        scores = np.concatenate([k.pop("scores", np.zeros(0)) for k in kinds.values()])
        results[side] = {"kinds": kinds, "scores": scores}
        for name, k in kinds.items():
            print(f"{side:11s} {name:12s} refused {k['refused']:6.2%} of {k['n']}")
    held_scores = results["held_out"]["scores"]  # type: ignore[index]
    real = np.concatenate(real_scores)
    results["separation"] = {
        "auroc_mnist_vs_held_out": calibrate.auroc(mnist_scores, held_scores),
        "far_at_99_5_mnist_vs_held_out": calibrate.false_accept_at(mnist_scores, held_scores),
        "auroc_realworld_vs_held_out": calibrate.auroc(real, held_scores),
        "far_at_99_5_realworld_vs_held_out": calibrate.false_accept_at(real, held_scores),
    }
    results["cpu_seconds"] = time.process_time() - started
    return results


def pooled(kinds: dict[str, dict[str, float]], key: str = "refused") -> float:
    n = sum(k["n"] for k in kinds.values())
    return sum(k[key] * k["n"] for k in kinds.values()) / n


def verdict(value: float, target: float, at_most: bool) -> str:
    ok = value <= target if at_most else value >= target
    return "met" if ok else "**missed**"


def markdown(results: dict[str, object], summary: dict[str, str]) -> str:
    mnist = results["mnist"]
    real = results["realworld"]
    held = results["held_out"]["kinds"]  # type: ignore[index]
    trained = results["train_kinds"]["kinds"]  # type: ignore[index]
    sep = results["separation"]
    real_refused, real_accuracy = pooled(real), pooled(real, "accuracy")  # type: ignore[arg-type]
    held_refused = pooled(held)
    glyph_held = held.get("glyph", {"refused": float("nan")})["refused"]
    marks = {k: v for k, v in held.items() if k != "glyph"}
    t = TARGETS
    lines = [
        "# Open set: refusing what is not a digit, and calibrated confidence",
        "",
        "Generated by `benchmarks/open_set.py`. Every image file goes through the service's own",
        "preprocessing (`service.preprocess.image_to_input`) and the ONNX model on onnxruntime; MNIST",
        "test digits go in MNIST form. *Refused* means `digit_score` below the model's default",
        "strictness (its metadata's `open_set.threshold`, chosen on the validation split), or a 422",
        "from the preprocessing. Held-out non-digits come from font families and kinds of marks that",
        "training never saw; that figure is the honest one.",
        "",
        f"- Date: {summary['date']}",
        f"- Command: `{summary['command']}`",
        f"- Model: `{summary['model']}` (sha256 `{summary['sha256']}...`), threshold {summary['threshold']},"
        f" temperature {summary['temperature']}",
        "",
        "| measure | value | target | |",
        "| --- | ---: | ---: | --- |",
        f"| MNIST test refused | {mnist['refused']:.2%} | ≤ {t['mnist_refused']:.1%} | "  # type: ignore[index]
        f"{verdict(mnist['refused'], t['mnist_refused'], True)} |",  # type: ignore[index]
        f"| MNIST test accuracy (argmax, all 10,000) | {mnist['accuracy']:.2%} | ≥ {t['mnist_accuracy']:.1%} | "  # type: ignore[index]
        f"{verdict(mnist['accuracy'], t['mnist_accuracy'], False)} |",  # type: ignore[index]
        f"| real-world renderings refused | {real_refused:.2%} | ≤ {t['realworld_refused']:.0%} | "
        f"{verdict(real_refused, t['realworld_refused'], True)} |",
        f"| real-world renderings accuracy | {real_accuracy:.2%} | ≥ {t['realworld_accuracy']:.0%} | "
        f"{verdict(real_accuracy, t['realworld_accuracy'], False)} |",
        f"| held-out non-digits refused (all) | {held_refused:.2%} | ≥ {t['held_out_refused']:.0%} | "
        f"{verdict(held_refused, t['held_out_refused'], False)} |",
        f"| — held-out font families (glyphs) | {glyph_held:.2%} | | |",
        f"| — held-out kinds of marks | {pooled(marks) if marks else float('nan'):.2%} | | |",
        f"| non-digits of the training kinds (fresh draws) refused | {pooled(trained):.2%} | | |",
        f"| ECE, MNIST test, 15 bins: before → after temperature | {mnist['ece_before']:.3%} → "  # type: ignore[index]
        f"{mnist['ece_after']:.3%} | ≤ {t['ece']:.0%} | {verdict(mnist['ece_after'], t['ece'], True)} |",  # type: ignore[index]
        f"| AUROC, MNIST test vs held-out non-digits | {sep['auroc_mnist_vs_held_out']:.4f} | | |",  # type: ignore[index]
        f"| false accepts at 99.5% true accepts (MNIST vs held-out) | {sep['far_at_99_5_mnist_vs_held_out']:.2%} | | |",  # type: ignore[index]
        f"| AUROC, real-world vs held-out | {sep['auroc_realworld_vs_held_out']:.4f} | | |",  # type: ignore[index]
        f"| false accepts at 99.5% true accepts (real-world vs held-out) | "
        f"{sep['far_at_99_5_realworld_vs_held_out']:.2%} | | |",  # type: ignore[index]
        "",
        "## Non-digits by kind",
        "",
        "| set | kind | images | refused | of which 422 from preprocessing |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for side, kinds in (("held out", held), ("training kinds", trained)):
        for name, k in kinds.items():
            lines.append(f"| {side} | {name} | {k['n']} | {k['refused']:.1%} | {k['preprocess_refused']} |")
    lines += [
        "",
        "## Real-world renderings by style",
        "",
        "| style | images | refused | accuracy |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, k in real.items():  # type: ignore[attr-defined]
        lines.append(f"| {name} | {k['n']} | {k['refused']:.2%} | {k['accuracy']:.2%} |")
    lines += ["", f"Machine: {summary['machine']}; {results['cpu_seconds']:.0f} CPU seconds.", ""]
    return "\n".join(lines)


def serving_cost(new: Path, old: Path, rounds: int = 3) -> dict[str, dict[str, float]]:
    """One-thread onnxruntime ms per image of two models, interleaved round by round, best of each."""
    from benchmarks.model_cost import macs, ms_per_image

    best: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for label, path in (("old", old), ("new", new)):
            for batch in (1, 32):
                key = f"{label}_batch_{batch}"
                value = ms_per_image(path, batch, seconds=1.0)
                best.setdefault(key, {"ms_per_image": value})
                best[key]["ms_per_image"] = min(best[key]["ms_per_image"], value)
    for label, path in (("old", old), ("new", new)):
        best[label] = {"macs": float(macs(path))}
    for batch in (1, 32):
        best[f"ratio_batch_{batch}"] = {
            "new_over_old": best[f"new_batch_{batch}"]["ms_per_image"] / best[f"old_batch_{batch}"]["ms_per_image"]
        }
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="MNIST IDX files (default: MNIST_DATA_DIR)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mnist-improved-int8.onnx")
    parser.add_argument("--per-style", type=int, default=200, help="real-world renderings per style")
    parser.add_argument("--non-digits", type=int, default=1000, help="non-digits per set (held out, training kinds)")
    parser.add_argument("--markdown", type=Path, default=None, help="write the results here")
    parser.add_argument("--diagram", type=Path, default=None, help="write the reliability diagram PNG here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--cost", type=Path, default=None, help="only compare one-thread cost with this model")
    args = parser.parse_args(argv)
    if args.cost:
        print(json.dumps(serving_cost(args.model, args.cost), indent=1))
        return 0
    results = run(args)
    print(json.dumps({k: v for k, v in results.items() if k in ("mnist", "separation")}, indent=1))
    print(f"held-out refused {pooled(results['held_out']['kinds']):.2%}")  # type: ignore[index]
    model = Model(args.model)
    summary = {
        **run_facts("benchmarks/open_set.py", args.model),
        "threshold": f"{model.threshold:.4g}" if model.open_set else "none (max-softmax score, nothing refused)",
        "temperature": f"{model.temperature:.4g}",
        "machine": f"{platform.machine()} with {os.cpu_count()} CPU cores",
    }
    if args.markdown:
        args.markdown.write_text(markdown(results, summary))
        print(f"wrote {args.markdown}")
    if args.json:
        for side in ("held_out", "train_kinds"):
            results[side].pop("scores")  # type: ignore[attr-defined]
        args.json.write_text(json.dumps({"summary": summary, **results}, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
