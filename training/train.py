"""Train one architecture, evaluate it on the test set, export it and write the artefacts."""

from __future__ import annotations

import json
import logging
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training import export, report
from training.config import TrainConfig
from training.data import Mnist, Split, load_mnist
from training.evaluate import Metrics, compute_metrics, to_model_input
from training.model import build_model, random_affine

log = logging.getLogger(__name__)

#: Version of the written model: bump when the architecture or training changes.
MODEL_VERSION = "1.0.0"


def make_train_dataset(split: Split, config: TrainConfig) -> tf.data.Dataset:
    """Shuffled, batched, endlessly repeated training data, augmented per batch if enabled."""
    images = to_model_input(split.images)
    labels = split.labels.astype(np.int32)
    dataset = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(labels), seed=config.seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(config.batch_size, drop_remainder=True)
    )
    if config.augment:
        seed = config.seed

        def augment(step: tf.Tensor, batch: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
            x, y = batch
            # A fresh, reproducible random stream for every batch: (seed, step).
            stream = tf.stack([tf.constant(seed, tf.int64), step])
            x = random_affine(x, rotation_deg=config.rotation_deg, shift=config.shift, zoom=config.zoom, seed=stream)
            return x, y

        dataset = dataset.enumerate().map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_learning_rate(
    config: TrainConfig, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    assert config.learning_rate is not None and config.epochs is not None
    if config.schedule == "constant":
        return config.learning_rate
    if config.schedule != "cosine":
        raise ValueError(f"unknown schedule {config.schedule!r}; choose cosine or constant")
    total = steps_per_epoch * config.epochs
    warmup = min(int(steps_per_epoch * config.warmup_epochs), total // 2)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 100,
        warmup_target=config.learning_rate,
        warmup_steps=warmup,
        decay_steps=total - warmup,
        alpha=0.01,
    )


def train(config: TrainConfig, data: Mnist | None = None) -> dict[str, Any]:
    """Train, evaluate, export, check parity and write artefacts; return the metadata."""
    config = config.resolved()
    assert config.epochs is not None
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()

    data = data or load_mnist(config.data_dir, validation_size=config.validation_size)
    train_split = data.train
    if config.train_limit:
        train_split = Split(train_split.images[: config.train_limit], train_split.labels[: config.train_limit])
    steps_per_epoch = max(1, len(train_split) // config.batch_size)

    model = build_model(config.model, config.dropout)
    model.summary(print_fn=log.info)
    model.compile(
        optimizer=keras.optimizers.Adam(make_learning_rate(config, steps_per_epoch)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    output_dir = Path(config.output_dir)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "best.weights.h5"
        callbacks: list[keras.callbacks.Callback] = [
            keras.callbacks.ModelCheckpoint(
                str(checkpoint), monitor="val_loss", save_best_only=True, save_weights_only=True
            ),
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.patience, start_from_epoch=config.early_stopping_start or 0
            ),
        ]
        validation = (to_model_input(data.validation.images), data.validation.labels.astype(np.int32))
        started = time.perf_counter()
        history = model.fit(
            make_train_dataset(train_split, config),
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch,
            validation_data=validation if len(data.validation) else None,
            callbacks=callbacks if len(data.validation) else [],
            verbose=2 if config.extra.get("quiet") else 1,
        )
        training_seconds = time.perf_counter() - started
        if checkpoint.exists():
            model.load_weights(str(checkpoint))
    log.info("trained in %.1f s", training_seconds)

    test_inputs = to_model_input(data.test.images)
    metrics = compute_metrics(np.asarray(model.predict(test_inputs, batch_size=1000, verbose=0)), data.test.labels)
    log.info("test set:\n%s", metrics.table())

    onnx_bytes = export.export_onnx(model, config.opset)
    parity = export.check_parity(model, onnx_bytes, test_inputs[: config.parity_images], config.parity_tolerance)
    metadata = build_metadata(config, model, onnx_bytes, metrics, parity, history.history, training_seconds)
    metadata["training"]["train_images"] = len(train_split)
    metadata["training"]["validation_images"] = len(data.validation)
    write_artefacts(output_dir, config, onnx_bytes, metadata, history.history, metrics, data.test, model)
    return metadata


def build_metadata(
    config: TrainConfig,
    model: keras.Model,
    onnx_bytes: bytes,
    metrics: Metrics,
    parity: export.Parity,
    history: dict[str, list[float]],
    training_seconds: float,
) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import tf2onnx

    epochs_run = len(history.get("loss", []))
    best_epoch = int(np.argmin(history["val_loss"])) + 1 if history.get("val_loss") else epochs_run
    return {
        "name": config.name,
        "version": MODEL_VERSION,
        "architecture": config.model,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "file": f"{config.name}.onnx",
        "sha256": export.sha256_bytes(onnx_bytes),
        "opset": config.opset,
        "parameters": int(model.count_params()),
        "inputs": [{"name": export.INPUT_NAME, "dtype": "float32", "shape": ["N", 28, 28, 1]}],
        "outputs": [{"name": export.OUTPUT_NAME, "dtype": "float32", "shape": ["N", 10]}],
        "preprocessing": {
            "size": [28, 28],
            "polarity": "white ink on a black background, like MNIST",
            "scale": "pixel / 255, float32 in [0, 1]",
            "layout": "NHWC, one channel",
            "framing": "digit scaled so its longer side is 20 px, centre of mass at the centre of 28x28",
        },
        "training": {
            **{k: v for k, v in config.to_dict().items() if k not in ("extra", "data_dir", "output_dir")},
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


def write_artefacts(
    output_dir: Path,
    config: TrainConfig,
    onnx_bytes: bytes,
    metadata: dict[str, Any],
    history: dict[str, list[float]],
    metrics: Metrics,
    test: Split,
    model: keras.Model,
) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    name = config.name
    assert name is not None
    (output_dir / f"{name}.onnx").write_bytes(onnx_bytes)
    (output_dir / f"{name}.json").write_text(json.dumps(metadata, indent=2) + "\n")
    probabilities = np.asarray(model.predict(to_model_input(test.images), batch_size=1000, verbose=0))
    report.write_reports(output_dir, name, history, metrics, test, probabilities)
    report.write_model_card(output_dir)
    log.info("wrote %s", ", ".join(sorted(p.name for p in output_dir.glob(f"{name}*"))))
