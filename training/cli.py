"""``python -m training train|evaluate``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from training.config import ARCH_DEFAULTS, TrainConfig
from training.data import MnistError


def _parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train a model, evaluate it, export it to ONNX and write its artefacts",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    train.add_argument("--model", choices=sorted(ARCH_DEFAULTS), default=defaults.model)
    arch = "; ".join(f"{k}: {v}" for k, v in ARCH_DEFAULTS.items())
    train.add_argument("--epochs", type=int, help=f"default by architecture ({arch})")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--learning-rate", type=float, help="peak Adam learning rate; default by architecture")
    train.add_argument("--schedule", choices=["cosine", "constant"], help="default by architecture")
    train.add_argument("--warmup-epochs", type=float, default=defaults.warmup_epochs)
    train.add_argument("--dropout", type=float, default=defaults.dropout)
    train.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, help="random affine augmentation; default by architecture"
    )
    train.add_argument("--rotation-deg", type=float, default=defaults.rotation_deg)
    train.add_argument("--shift", type=float, default=defaults.shift, help="fraction of the image size")
    train.add_argument("--zoom", type=float, default=defaults.zoom, help="fraction of the image size")
    train.add_argument("--patience", type=int, default=defaults.patience, help="early-stopping patience, epochs")
    train.add_argument(
        "--early-stopping-start", type=int, help="first epoch early stopping may stop at; default by architecture"
    )
    train.add_argument("--validation-size", type=int, default=defaults.validation_size)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument(
        "--train-limit", type=int, default=defaults.train_limit, help="use only N training images (0: all)"
    )
    train.add_argument("--data-dir", help="directory of the MNIST IDX files (default: $MNIST_DATA_DIR, else download)")
    train.add_argument("--output-dir", default=defaults.output_dir)
    train.add_argument("--name", help="artefact name (default: mnist-<model>)")
    train.add_argument("--opset", type=int, default=defaults.opset, help="ONNX opset of the export")
    train.add_argument("--parity-images", type=int, default=defaults.parity_images)

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
