"""Train one architecture, evaluate it on the test set, export it and write the artefacts."""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training import calibrate, export, negatives, report, warmstart
from training import metadata as meta
from training.config import TrainConfig, keeps_last_weights
from training.data import Mnist, Split, load_mnist
from training.evaluate import Metrics, compute_metrics, to_model_input
from training.model import NOT_A_DIGIT, build_model, build_serving, random_affine

log = logging.getLogger(__name__)


def make_train_dataset(split: Split, config: TrainConfig) -> tf.data.Dataset:
    """Shuffled, batched, endlessly repeated training data, augmented per batch if enabled.

    Negatives (label NOT_A_DIGIT) are augmented exactly like the digits, so that a shift or a
    tilt can never be what tells them apart.
    """
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
    if config.schedule in ("constant", "time"):
        return config.learning_rate  # "time": TimeBudget sets it before every step
    if config.schedule != "cosine":
        raise ValueError(f"unknown schedule {config.schedule!r}; choose cosine, time or constant")
    total = steps_per_epoch * config.epochs
    warmup = min(int(steps_per_epoch * config.warmup_epochs), total // 2)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 100,
        warmup_target=config.learning_rate,
        warmup_steps=warmup,
        decay_steps=total - warmup,
        alpha=0.01,
    )


class TimeBudget(keras.callbacks.Callback):  # type: ignore[misc]
    """Stop after ``seconds`` of training; with the "time" schedule, also drive the learning rate.

    On a machine shared with other work, the number of steps that fit in a fixed time is not
    known in advance, and a step-based cosine schedule cut short by a deadline stops at a high
    learning rate. The "time" schedule makes the cosine a function of the elapsed share of the
    budget instead: linear warm-up over ``warmup`` of it, then cosine decay to 1% of the peak,
    ending when the time is up, however loaded the machine is. The price: the number of steps,
    hence the exact weights, depend on the machine's load (recorded in the metadata).
    """

    def __init__(self, seconds: float, peak: float | None = None, warmup: float = 0.03) -> None:
        super().__init__()
        self.seconds = seconds
        self.peak = peak
        self.warmup = warmup
        self.started = time.perf_counter()
        self.stopped_at: int | None = None
        self.steps = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.started = time.perf_counter()

    def learning_rate(self, progress: float) -> float:
        assert self.peak is not None
        if progress < self.warmup:
            return self.peak * (0.01 + 0.99 * progress / self.warmup)
        decay = (progress - self.warmup) / (1 - self.warmup)
        return self.peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(decay, 1.0))))

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.steps += 1
        if not self.seconds:
            return
        progress = (time.perf_counter() - self.started) / self.seconds
        if self.peak is not None:
            self.model.optimizer.learning_rate.assign(self.learning_rate(min(progress, 1.0)))
        if progress >= 1.0 and not self.model.stop_training:
            log.info("time budget of %.0f s spent after %d steps: stopping", self.seconds, self.steps)
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.model.stop_training and self.stopped_at is None:
            self.stopped_at = epoch + 1


@dataclass(frozen=True)
class OpenSetData:
    """Generated negatives for training and validation (label NOT_A_DIGIT)."""

    train: negatives.Negatives
    validation: negatives.Negatives


def make_open_set_data(config: TrainConfig, train_split: Split, validation: Split) -> OpenSetData:
    started = time.perf_counter()
    made = OpenSetData(
        train=negatives.generate(
            config.negatives, seed=config.seed, digits=train_split.images, labels=train_split.labels
        ),
        # Another seed, and pieces and pairs cut from validation digits, never training ones.
        validation=negatives.generate(
            config.validation_negatives, seed=config.seed + 1, digits=validation.images, labels=validation.labels
        ),
    )
    log.info(
        "generated %d + %d negatives in %.1f s",
        config.negatives,
        config.validation_negatives,
        time.perf_counter() - started,
    )
    return made


def _with_negatives(split: Split, made: negatives.Negatives) -> Split:
    return Split(
        np.concatenate([split.images, made.images]),
        np.concatenate([split.labels, np.full(len(made), NOT_A_DIGIT, np.uint8)]),
    )


def fit(config: TrainConfig, data: Mnist, open_set: OpenSetData | None) -> tuple[keras.Model, dict[str, Any], float]:
    """Train the Keras model; return it (best validation checkpoint), its history and the seconds spent."""
    assert config.epochs is not None
    train_split = data.train
    if config.train_limit:
        train_split = Split(train_split.images[: config.train_limit], train_split.labels[: config.train_limit])
    validation = data.validation
    if open_set is not None:
        train_split = _with_negatives(train_split, open_set.train)
        validation = _with_negatives(validation, open_set.validation)
    steps_per_epoch = max(1, len(train_split) // config.batch_size)
    model = build_model(config.model, config.dropout, bool(config.open_set))
    if config.init_from:
        sample = to_model_input(data.train.images[: warmstart.SAMPLE_IMAGES])
        warmstart.load_exported_weights(model, Path(config.init_from), sample)
    model.summary(print_fn=log.info)
    model.compile(
        optimizer=keras.optimizers.Adam(make_learning_rate(config, steps_per_epoch)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=bool(config.open_set)),
        metrics=["accuracy"],
    )
    if config.schedule == "time" and not config.max_training_seconds:
        raise ValueError("the 'time' schedule needs max_training_seconds")
    budget = TimeBudget(
        config.max_training_seconds or 0.0,
        peak=config.learning_rate if config.schedule == "time" else None,
        warmup=min(config.warmup_epochs / config.epochs, 0.5) if config.epochs else 0.03,
    )
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "best.weights.h5"
        callbacks: list[keras.callbacks.Callback] = [
            keras.callbacks.ModelCheckpoint(
                str(checkpoint), monitor="val_loss", save_best_only=True, save_weights_only=True
            ),
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.patience, start_from_epoch=config.early_stopping_start or 0
            ),
            budget,
        ]
        validation_data = (to_model_input(validation.images), validation.labels.astype(np.int32))
        started = time.perf_counter()
        history = model.fit(
            make_train_dataset(train_split, config),
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch,
            validation_data=validation_data if len(validation) else None,
            callbacks=callbacks if len(validation) else [budget],
            verbose=2 if config.extra.get("quiet") else 1,
        )
        seconds = time.perf_counter() - started
        if checkpoint.exists() and not keeps_last_weights(config.schedule):
            model.load_weights(str(checkpoint))
    log.info("trained in %.1f s on %d images per epoch", seconds, len(train_split))
    if config.save_keras:
        model.save(config.save_keras)
    details = dict(history.history)
    details["_train_images"] = len(train_split)
    details["_stopped_by_budget"] = budget.stopped_at
    details["_steps"] = budget.steps
    return model, details, seconds


def train(config: TrainConfig, data: Mnist | None = None) -> dict[str, Any]:
    """Train, calibrate, evaluate, export, check parity and write artefacts; return the metadata."""
    config = config.resolved()
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    data = data or load_mnist(config.data_dir, validation_size=config.validation_size)
    open_set = make_open_set_data(config, data.train, data.validation) if config.open_set else None
    model, history, seconds = fit(config, data, open_set)
    return finish(config, data, open_set, model, history, seconds)


def finish(
    config: TrainConfig,
    data: Mnist,
    open_set: OpenSetData | None,
    model: keras.Model,
    history: dict[str, Any],
    training_seconds: float,
) -> dict[str, Any]:
    """Calibrate on validation, evaluate on test, export, gate on parity, write the artefacts."""
    train_images = history.pop("_train_images")
    stopped_by_budget = history.pop("_stopped_by_budget")
    steps = history.pop("_steps")
    test_inputs = to_model_input(data.test.images)
    calibration = None
    served = model
    parity_inputs = test_inputs[: config.parity_images]
    if open_set is not None:
        logits = {
            "validation": np.asarray(model.predict(to_model_input(data.validation.images), 1000, verbose=0)),
            "negatives": np.asarray(model.predict(to_model_input(open_set.validation.images), 1000, verbose=0)),
            "test": np.asarray(model.predict(test_inputs, 1000, verbose=0)),
        }
        calibration = calibrate.calibrate(logits["validation"], data.validation.labels, logits["negatives"])
        log.info("calibration on validation: %s", calibration)
        served = build_serving(model, calibration.temperature, calibration.platt_a, calibration.platt_b)
        # Both outputs are gated, on digits and on negatives (where digit_score is low).
        parity_inputs = np.concatenate([parity_inputs, to_model_input(open_set.validation.images[:500])])
        probabilities = calibration.probabilities(logits["test"]).astype(np.float32)
    else:
        probabilities = np.asarray(model.predict(test_inputs, batch_size=1000, verbose=0))
    metrics = compute_metrics(probabilities, data.test.labels)
    log.info("test set:\n%s", metrics.table())

    onnx_bytes = export.export_onnx(served, config.opset)
    parity = export.check_parity(served, onnx_bytes, parity_inputs, config.parity_tolerance)
    metadata = meta.build_metadata(config, model, onnx_bytes, metrics, parity, history, training_seconds)
    metadata["training"]["train_images"] = train_images
    metadata["training"]["validation_images"] = len(data.validation)
    metadata["training"]["stopped_by_time_budget_after_epoch"] = stopped_by_budget
    metadata["training"]["steps_run"] = steps
    if config.init_from:
        metadata["training"]["init_from_sha256"] = export.sha256_bytes(Path(config.init_from).read_bytes())
    if open_set is not None and calibration is not None:
        metadata.update(open_set_metadata(config, data, open_set, calibration, logits))
    write_artefacts(Path(config.output_dir), config, onnx_bytes, metadata, history, metrics, data.test, probabilities)
    return metadata


def open_set_metadata(
    config: TrainConfig,
    data: Mnist,
    open_set: OpenSetData,
    calibration: calibrate.Calibration,
    logits: dict[str, np.ndarray],
) -> dict[str, Any]:
    """The ``open_set`` and ``calibration`` sections: what was fitted, on what, and what it gives."""
    scores = {k: calibration.digit_score(v) for k, v in logits.items()}
    threshold = calibration.threshold
    raw = {k: calibrate.softmax(v[:, :10].astype(np.float64)) for k, v in logits.items() if k != "negatives"}
    calibrated = {k: calibration.probabilities(v) for k, v in logits.items() if k != "negatives"}
    labels = {"validation": data.validation.labels, "test": data.test.labels}
    return {
        "open_set": {
            "output": export.SCORE_NAME,
            "threshold": threshold,
            "method": (
                "outlier exposure: an eleventh 'not a digit' class trained on generated negatives "
                "(training/negatives/); digit_score = sigmoid(a * (logsumexp(z[:10]) - z[10]) + b), "
                "Platt-scaled on validation digits and negatives weighted equally"
            ),
            "threshold_rule": (
                f"refuse at most {calibrate.MAX_DIGIT_REFUSAL:.2%} of validation digits, "
                f"never above {calibrate.MAX_THRESHOLD}"
            ),
            "platt": {"a": calibration.platt_a, "b": calibration.platt_b},
            "negatives": {
                "train": config.negatives,
                "validation": config.validation_negatives,
                "train_kinds": list(negatives.TRAIN_KINDS),
                "held_out_kinds": list(negatives.HELD_OUT_KINDS),
                "train_families": list(negatives.TRAIN_FAMILIES),
                "held_out_families": list(negatives.HELD_OUT_FAMILIES),
                "fonts": negatives.font_inventory(),
            },
            "validation": {
                "digits_refused": float(np.mean(scores["validation"] < threshold)),
                "negatives_refused": float(np.mean(scores["negatives"] < threshold)),
                "auroc": calibrate.auroc(scores["validation"], scores["negatives"]),
            },
            "test": {"digits_refused": float(np.mean(scores["test"] < threshold))},
        },
        "calibration": {
            "temperature": calibration.temperature,
            "fitted_on": "validation split (digits), NLL of the ten-way softmax",
            "ece_15_bins": {
                split: {
                    "before": calibrate.expected_calibration_error(raw[split], labels[split]),
                    "after": calibrate.expected_calibration_error(calibrated[split], labels[split]),
                }
                for split in ("validation", "test")
            },
        },
    }


def write_artefacts(
    output_dir: Path,
    config: TrainConfig,
    onnx_bytes: bytes,
    metadata: dict[str, Any],
    history: dict[str, list[float]],
    metrics: Metrics,
    test: Split,
    probabilities: np.ndarray,
) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    name = config.name
    assert name is not None
    meta.validate(metadata)  # before anything is written
    (output_dir / f"{name}.onnx").write_bytes(onnx_bytes)
    meta.write(output_dir / f"{name}.json", metadata)
    report.write_reports(output_dir, name, history, metrics, test, probabilities)
    report.write_model_card(output_dir)
    log.info("wrote %s", ", ".join(sorted(p.name for p in output_dir.glob(f"{name}*"))))
