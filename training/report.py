"""Figures (learning curves, confusion matrix, misclassified digits) and the model card."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # Files only: no display on servers and CI.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training.config import keeps_last_weights  # noqa: E402
from training.data import Split  # noqa: E402
from training.evaluate import Metrics  # noqa: E402

log = logging.getLogger(__name__)


def write_reports(
    output_dir: Path,
    name: str,
    history: dict[str, list[float]],
    metrics: Metrics,
    test: Split,
    probabilities: np.ndarray,
) -> None:
    plot_history(history, output_dir / f"{name}-curves.png")
    plot_confusion(np.asarray(metrics.confusion), output_dir / f"{name}-confusion.png")
    plot_misclassified(test, probabilities, output_dir / f"{name}-misclassified.png")


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        ax.plot(epochs, history.get(metric, []), marker="o", label="training")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(confusion: np.ndarray, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 5.5))
    # A log colour scale, so the few errors stand out against the large diagonal.
    image = ax.imshow(confusion + 1, cmap="Blues", norm=matplotlib.colors.LogNorm())
    for (i, j), value in np.ndenumerate(confusion):
        if value:
            colour = "white" if i == j else "black"
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (test set)")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_misclassified(test: Split, probabilities: np.ndarray, path: Path, limit: int = 48) -> None:
    predicted = probabilities.argmax(1)
    wrong = np.flatnonzero(predicted != test.labels)[:limit]
    columns = 8
    rows = max(1, int(np.ceil(len(wrong) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, wrong, strict=False):
        ax.imshow(test.images[index], cmap="gray")
        ax.set_title(f"true {test.labels[index]}  pred {predicted[index]}", fontsize=7)
    fig.suptitle(f"misclassified test digits ({int(np.sum(predicted != test.labels))} in all)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _row(meta: dict[str, Any]) -> str:
    test = meta["metrics"]["test"]
    training = meta["training"]
    return (
        f"| `{meta['file']}` | {meta['parameters']:,} | {test['accuracy']:.2%} | {test['loss']:.4f} | "
        f"{training['epochs_run']} | {training['training_seconds'] / 60:.1f} min |"
    )


def _provenance(meta: dict[str, Any]) -> str:
    if "quantization" in meta:
        q = meta["quantization"]
        return (
            f"- int8 copy of `{q['source']}` ({q['method']}; {q['calibration_images']} calibration images): "
            f"{q['accuracy_change_points']:+.2f} points of test accuracy"
        )
    parity = meta["parity"]
    return f"- parity with Keras on {parity['images']} test images: max abs diff {parity['max_abs_diff']:.2g}"


#: MODEL_CARD.md keeps everything from this line on as it is: the benchmarks' measured figures
#: (open set, real world, serving cost) are written there by hand, with their commands.
MEASURED_MARKER = "<!-- Measured by the benchmarks: kept as is when training rewrites the card. -->"


def _kept(training: dict[str, Any]) -> str:
    if keeps_last_weights(training["schedule"]):
        return "the last weights, at the end of the time schedule's decay"
    return f"best on validation: {training['best_epoch']}"


def _start(training: dict[str, Any]) -> list[str]:
    if not training.get("init_from"):
        return []
    sha = training.get("init_from_sha256", "")[:16]
    return [f"- fine-tuned from `{training['init_from']}` (sha256 `{sha}…`), not trained from scratch"]


def _outputs(meta: dict[str, Any]) -> str:
    shapes = ", ".join(f"`{o['name']}` [{', '.join(map(str, o['shape']))}]" for o in meta["outputs"])
    return f"- ONNX opset {meta['opset']}, input `image` [N, 28, 28, 1] float32, outputs {shapes}"


def _open_set(meta: dict[str, Any]) -> list[str]:
    if "open_set" not in meta:
        return ["- closed set: no `digit_score`; the service treats every image as a digit"]
    o, c = meta["open_set"], meta.get("calibration", {})
    lines = [f"- open set: `digit_score` threshold (default strictness) {o['threshold']:.4g}, {o['threshold_rule']}"]
    if "validation" in o:
        v = o["validation"]
        lines.append(
            f"  - validation: {v['digits_refused']:.2%} of digits and {v['negatives_refused']:.2%} of "
            f"negatives (training kinds) refused, AUROC {v['auroc']:.4f}"
        )
    if "test" in o:
        lines.append(f"  - MNIST test digits refused: {o['test']['digits_refused']:.2%}")
    if "ece_15_bins" in c:
        e = c["ece_15_bins"]["test"]
        lines.append(
            f"- calibration: temperature {c['temperature']:.4g} (fitted on validation); MNIST test ECE "
            f"(15 bins) {e['before']:.3%} before, {e['after']:.3%} after"
        )
    return lines


def _pair_section(meta: dict[str, Any]) -> list[str]:
    """The pair model's section (``python -m training.pairs``): its own metadata record."""
    training, data = meta["training"], meta["data"]
    shapes = ", ".join(f"`{name}` [{', '.join(map(str, shape))}]" for name, shape in meta["outputs"].items())
    kinds = ", ".join(f"{kind} {share:.0%}" for kind, share in data["kinds"].items())
    lines = [
        f"## `{meta['file'].removesuffix('.onnx')}`",
        "",
        "Reads a mark that may be two touching digits whole, for `POST /read` (docs/read.md):",
        "`first` and `second` are each digit's ten probabilities, `pair_score` is P(the mark is",
        "exactly two whole digits). Trained on compositions of MNIST training digits; validated and",
        "tested on compositions of the validation and test digits.",
        "",
        f"- version {meta['version']}, sha256 `{meta['sha256'][:16]}…`",
        f"- input `{meta['input']['name']}` [{', '.join(map(str, meta['input']['shape']))}] float32, outputs {shapes}",
        f"- {data['training_samples']:,} training samples ({kinds}), seed {data['seed']}",
        f"- {training['epochs_run']} epochs, {training['steps']} steps, batch {training['batch_size']}, "
        f"learning rate {training['learning_rate']}, trained in {training['seconds'] / 60:.1f} min on "
        f"{training['cpu']}, {training['cpus']} CPU cores",
        f"- parity with Keras: max abs diff {meta['metrics']['onnx_max_abs_diff']:.2g}",
        f"- `pair_score` threshold {meta['pair_threshold']:.4g}, chosen on validation",
        "",
        "| split | pairs read exactly | pairs accepted | non-pairs refused |",
        "| --- | ---: | ---: | ---: |",
    ]
    for split in ("validation", "test"):
        m = meta["metrics"][split]
        lines.append(f"| {split} | {m['pairs_exact']:.2%} | {m['pairs_accepted']:.2%} | {m['non_pairs_refused']:.2%} |")
    return [*lines, ""]


def write_model_card(output_dir: Path) -> Path:
    """MODEL_CARD.md from every model's metadata in ``output_dir``, improved first."""
    every = [json.loads(p.read_text()) for p in sorted(output_dir.glob("*.json"))]
    metas = [m for m in every if "accuracy" in m.get("metrics", {}).get("test", {}) and "sha256" in m]
    metas.sort(key=lambda m: m["metrics"]["test"]["accuracy"], reverse=True)
    pair_models = [m for m in every if "pair_threshold" in m]
    lines = [
        "# Model card: MNIST digit classifiers",
        "",
        "Generated by `python -m training train` from each model's metadata. Figures are on the 10,000",
        "MNIST test images, which were used for nothing but this final evaluation: epochs and",
        "checkpoints were chosen on the validation split (the last 5,000 training images).",
        "",
        "| model | parameters | test accuracy | test loss | epochs | training time |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *[_row(m) for m in metas],
        "",
        "Intended use: classifying one handwritten digit (0–9) per image, after the service's",
        "MNIST-style preprocessing. The open-set models also say whether the image shows a digit",
        "at all (`digit_score`, a calibrated probability; below the threshold the service answers",
        "`is_digit: false`). They were trained to refuse letters, symbols, marks, textures, pieces",
        "of digits and touching pairs; other kinds of non-digits may still be taken for digits.",
        "The baseline always answers one of ten classes.",
        "",
    ]
    for meta in metas:
        name = meta["file"].removesuffix(".onnx")
        training = meta["training"]
        test = meta["metrics"]["test"]
        lines += [
            f"## `{name}`",
            "",
            f"- version {meta['version']}, created {meta['created']}, sha256 `{meta['sha256'][:16]}…`",
            _outputs(meta),
            f"- {training['epochs_run']} epochs ({_kept(training)}), batch "
            f"{training['batch_size']}, learning rate {training['learning_rate']} ({training['schedule']}), "
            f"augmentation {'on' if training['augment'] else 'off'}, seed {training['seed']}",
            f"- trained in {training['training_seconds'] / 60:.1f} min on {training['machine']}",
            *_start(training),
            _provenance(meta),
            *_open_set(meta),
            "",
            "| class | precision | recall | F1 |",
            "| ---: | ---: | ---: | ---: |",
            *[
                f"| {c} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} |"
                for c, v in test["per_class"].items()
            ],
            "",
        ]
        if "quantization" not in meta:  # the int8 copy has no training run of its own
            lines += [
                f"![learning curves]({name}-curves.png)",
                f"![confusion matrix]({name}-confusion.png)",
                f"![misclassified digits]({name}-misclassified.png)",
                "",
            ]
            if (output_dir / f"{name}-reliability.png").exists():
                lines += [
                    "Reliability diagram on MNIST test, before and after the temperature, drawn by",
                    "`benchmarks/open_set.py` (its figures: [docs/open-set.md](../docs/open-set.md)):",
                    "",
                    f"![reliability diagram]({name}-reliability.png)",
                    "",
                ]
    for meta in pair_models:
        lines += _pair_section(meta)
    path = output_dir / "MODEL_CARD.md"
    kept = ""
    if path.exists() and MEASURED_MARKER in path.read_text():
        kept = path.read_text()[path.read_text().index(MEASURED_MARKER) :]
    path.write_text("\n".join(lines) + ("\n" + kept if kept else ""))
    return path
