"""``python -m training train|evaluate``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from training.config import ARCH_DEFAULTS, TrainConfig
from training.data import MnistError

#: Help for the options whose name does not say it all; types and defaults come from TrainConfig.
HELP = {
    "model": "architecture",
    "epochs": "passes over the training images (digits and negatives)",
    "learning_rate": "peak Adam learning rate",
    "schedule": "learning-rate schedule",
    "augment": "random affine augmentation",
    "shift": "fraction of the image size",
    "zoom": "fraction of the image size",
    "patience": "early-stopping patience, epochs",
    "early_stopping_start": "first epoch early stopping may stop at",
    "open_set": "train the 'not a digit' class and export digit_score",
    "negatives": "generated negatives for training",
    "validation_negatives": "generated negatives for validation (calibration, threshold)",
    "max_training_seconds": "stop training after this many seconds, keeping the best checkpoint (0: never)",
    "init_from": "fine-tune: start from the weights of this exported .onnx model of the same architecture",
    "save_keras": "also save the trained Keras model to this .keras path",
    "train_limit": "use only N training digits (0: all)",
    "data_dir": "directory of the MNIST IDX files (default: $MNIST_DATA_DIR, else download)",
    "name": "artefact name (default: mnist-<model>)",
    "opset": "ONNX opset of the export",
}
CHOICES: dict[str, list[str]] = {"model": sorted(ARCH_DEFAULTS), "schedule": ["cosine", "time", "constant"]}
_TYPES: dict[str, type] = {"int": int, "float": float, "str": str}


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, its type and default read from the dataclass itself."""
    defaults = TrainConfig()
    for spec in dataclasses.fields(TrainConfig):
        if spec.name == "extra":
            continue
        flag = "--" + spec.name.replace("_", "-")
        default = getattr(defaults, spec.name)
        help_text = HELP.get(spec.name, spec.name.replace("_", " "))
        if default is None and any(spec.name in d for d in ARCH_DEFAULTS.values()):
            by_arch = ", ".join(f"{arch}: {d[spec.name]}" for arch, d in ARCH_DEFAULTS.items())
            help_text = f"{help_text}; default by architecture ({by_arch})".lstrip("; ")
        base = str(spec.type).replace(" | None", "")
        if base == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            parser.add_argument(
                flag, type=_TYPES[base], default=default, choices=CHOICES.get(spec.name), help=help_text
            )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train a model, evaluate it, export it to ONNX and write its artefacts",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_options(train)

    evaluate = commands.add_parser("evaluate", help="evaluate an ONNX model on the MNIST test set")
    evaluate.add_argument("model", help="path of the .onnx file")
    evaluate.add_argument(
        "--data-dir", help="directory of the MNIST IDX files (default: $MNIST_DATA_DIR, else download)"
    )
    quantize = commands.add_parser(
        "quantize", help="write an int8 copy of an ONNX model (static quantization, calibrated on training images)"
    )
    quantize.add_argument("model", help="path of the fp32 .onnx file (its .json metadata beside it)")
    quantize.add_argument(
        "--data-dir", help="directory of the MNIST IDX files (default: $MNIST_DATA_DIR, else download)"
    )
    quantize.add_argument("--calibration-images", type=int, default=2000)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if args.command == "train":
            from training.train import train

            fields = {f.name for f in dataclasses.fields(TrainConfig)}
            config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
            metadata = train(config)
            accuracy = metadata["metrics"]["test"]["accuracy"]
            print(f"test accuracy {accuracy:.4%}, wrote {config.output_dir}/{metadata['file']}")
        elif args.command == "evaluate":
            from training.evaluate import evaluate_onnx

            print(evaluate_onnx(args.model, args.data_dir).table())
        else:
            from pathlib import Path

            from training.quantize import quantize

            meta = quantize(Path(args.model), args.data_dir, args.calibration_images)
            q = meta["quantization"]
            print(
                f"int8 test accuracy {meta['metrics']['test']['accuracy']:.4%} "
                f"({q['accuracy_change_points']:+.2f} points); wrote {meta['file']}"
            )
            for batch, row in q["timing_one_thread"].items():
                print(
                    f"{batch}: fp32 {row['fp32_ms_per_image']:.4f} ms/image, int8 {row['int8_ms_per_image']:.4f}"
                    f" ms/image, speed-up {row['int8_speedup']:.2f}x"
                )
    except MnistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
