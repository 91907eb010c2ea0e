"""The metadata written beside every model, checked against ``models/metadata.schema.json``.

The schema file is the contract between this package and the service, which validates the same
file when it loads a model. Nothing is written unless the metadata validates.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from training import export
from training.config import TrainConfig
from training.evaluate import Metrics

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "models" / "metadata.schema.json"
#: Version of the written model: bump when the architecture or training changes.
#: 2.0.0: open set (the eleventh "not a digit" class), calibrated outputs, digit_score.
MODEL_VERSION = "2.0.0"


class MetadataError(ValueError):
    """The metadata does not satisfy models/metadata.schema.json."""


def validate(metadata: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> None:
    """Raise MetadataError unless ``metadata`` satisfies the schema."""
    import jsonschema

    schema = json.loads(schema_path.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(metadata), key=lambda e: list(e.path))
    if errors:
        problems = "; ".join(f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors[:5])
        raise MetadataError(f"model metadata does not match {schema_path.name}: {problems}. Nothing was written.")


def write(path: Path, metadata: dict[str, Any]) -> None:
    """Validate, then write ``metadata`` as JSON to ``path``."""
    validate(metadata)
    path.write_text(json.dumps(metadata, indent=2) + "\n")


def build_metadata(
    config: TrainConfig,
    model: Any,
    onnx_bytes: bytes,
    metrics: Metrics,
    parity: export.Parity,
    history: dict[str, list[float]],
    training_seconds: float,
) -> dict[str, Any]:
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    epochs_run = len(history.get("loss", []))
    best_epoch = int(np.argmin(history["val_loss"])) + 1 if history.get("val_loss") else epochs_run
    outputs = [{"name": export.OUTPUT_NAME, "dtype": "float32", "shape": ["N", 10]}]
    if config.open_set:
        outputs.append({"name": export.SCORE_NAME, "dtype": "float32", "shape": ["N"]})
    return {
        "name": config.name,
        "version": MODEL_VERSION if config.open_set else "1.0.0",
        "architecture": config.model,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "file": f"{config.name}.onnx",
        "sha256": export.sha256_bytes(onnx_bytes),
        "opset": config.opset,
        "parameters": int(model.count_params()),
        "inputs": [{"name": export.INPUT_NAME, "dtype": "float32", "shape": ["N", 28, 28, 1]}],
        "outputs": outputs,
        "preprocessing": {
            "size": [28, 28],
            "polarity": "white ink on a black background, like MNIST",
            "scale": "pixel / 255, float32 in [0, 1]",
            "layout": "NHWC, one channel",
            "framing": "digit scaled so its longer side is 20 px, centre of mass at the centre of 28x28",
        },
        "training": {
            **{k: v for k, v in config.to_dict().items() if k not in ("extra", "data_dir", "output_dir", "save_keras")},
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "training_seconds": round(training_seconds, 1),
            "history": {k: [round(float(v), 6) for v in vs] for k, vs in history.items() if k != "learning_rate"},
            "machine": f"{platform.machine()}, {_cpu_count()} CPU cores",
        },
        "metrics": {"test": metrics.to_dict()},
        "parity": {
            "images": parity.images,
            "max_abs_diff": parity.max_abs_diff,
            "argmax_mismatches": parity.argmax_mismatches,
            "tolerance": config.parity_tolerance,
            "outputs": [o["name"] for o in outputs],
        },
        "libraries": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "tf2onnx": tf2onnx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
        },
    }


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
