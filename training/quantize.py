"""Static int8 quantization of an exported model with onnxruntime, calibrated on training images.

The int8 model is written beside the fp32 one (``<name>-int8.onnx`` and its ``.json``), with its
test accuracy and its speed relative to the fp32 model measured on this machine.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from training import metadata as meta
from training import negatives
from training.data import load_mnist
from training.evaluate import compute_metrics, onnx_predict, to_model_input
from training.export import SCORE_NAME, sha256_bytes

#: Share of the calibration images that are generated negatives, for open-set models: their
#: activations must fall inside the int8 ranges too, or digit_score would clip on them.
NEGATIVE_SHARE = 0.2

log = logging.getLogger(__name__)


class _Calibration:
    """Feeds calibration batches to onnxruntime's quantizer."""

    def __init__(self, images: np.ndarray, input_name: str, batch_size: int = 100) -> None:
        self._batches = iter(
            [{input_name: to_model_input(images[i : i + batch_size])} for i in range(0, len(images), batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # part of the CalibrationDataReader protocol; one pass is enough
        pass


def seconds_per_image(model_path: Path, images: np.ndarray, batch: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` onnxruntime time per image on one thread, at a given batch size."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    inputs = to_model_input(images)
    session.run(None, {name: inputs[:batch]})
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(0, len(inputs), batch):
            session.run(None, {name: inputs[i : i + batch]})
        best = min(best, (time.perf_counter() - started) / len(inputs))
    return best


def digit_scores(model_path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return np.concatenate(
        [
            session.run([SCORE_NAME], {"image": to_model_input(images[i : i + 1000])})[0]
            for i in range(0, len(images), 1000)
        ]
    )


def open_set_test(fp32: Path, int8: Path, images: np.ndarray, open_set: dict[str, Any]) -> dict[str, float]:
    """Test digits refused by the int8 model at the fp32 model's threshold, and how far the scores moved."""
    before, after = digit_scores(fp32, images), digit_scores(int8, images)
    return {
        "digits_refused": float(np.mean(after < open_set["threshold"])),
        "fp32_digits_refused": float(np.mean(before < open_set["threshold"])),
        "max_abs_digit_score_change": float(np.max(np.abs(after - before))),
    }


def quantize(
    model_path: Path, data_dir: str | None = None, calibration_images: int = 2000, seed: int = 0
) -> dict[str, Any]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    mnist = load_mnist(data_dir)
    rng = np.random.default_rng(seed)
    metadata = json.loads(model_path.with_suffix(".json").read_text())
    open_set = metadata.get("open_set")
    n_negatives = int(calibration_images * NEGATIVE_SHARE) if open_set else 0
    calibration = mnist.train.images[rng.choice(len(mnist.train), calibration_images - n_negatives, replace=False)]
    if n_negatives:
        made = negatives.generate(n_negatives, seed=seed + 1000, digits=mnist.train.images, labels=mnist.train.labels)
        calibration = rng.permutation(np.concatenate([calibration, made.images]))
    input_name = metadata["inputs"][0]["name"]
    out_path = model_path.with_name(model_path.stem + "-int8.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            _Calibration(calibration, input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # 7-bit weights: without AVX-VNNI (this machine) onnxruntime's u8s8 kernels can
            # saturate their 16-bit sums. Measured on the open-set model: 8-bit weights lost 0.28
            # points of test accuracy (99.11%), 7-bit 0.01 (99.38%); MinMax vs percentile and
            # with or without negatives in the calibration set made no difference.
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # Quantize the convolutions and the classifier; the softmax stays float, so the
            # probabilities keep their full resolution instead of steps of 1/255.
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        )
    test = mnist.test
    fp32 = compute_metrics(onnx_predict(model_path, test.images), test.labels)
    int8 = compute_metrics(onnx_predict(out_path, test.images), test.labels)
    timing = {
        f"batch_{batch}": {
            "fp32_ms_per_image": seconds_per_image(model_path, test.images[:1024], batch) * 1000,
            "int8_ms_per_image": seconds_per_image(out_path, test.images[:1024], batch) * 1000,
        }
        for batch in (1, 32, 256)
    }
    for row in timing.values():
        row["int8_speedup"] = row["fp32_ms_per_image"] / row["int8_ms_per_image"]
    data = out_path.read_bytes()
    int8_meta = {
        **metadata,
        # The same model served at another precision: same name (clients and KServe routes keep
        # working when the service switches), a version that says which build it is.
        "version": f"{metadata['version']}-int8",
        "precision": "int8",
        "file": out_path.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "sha256": sha256_bytes(data),
        "quantization": {
            "source": model_path.name,
            "source_sha256": metadata["sha256"],
            "method": (
                "onnxruntime quantize_static, QDQ, per-channel int8 weights (reduce_range: 7 bits), "
                "uint8 activations, MinMax"
            ),
            "calibration_images": calibration_images,
            "calibration_set": f"random training images (seed {seed})"
            + (f", {NEGATIVE_SHARE:.0%} of them generated negatives" if n_negatives else ""),
            "fp32_test_accuracy": fp32.accuracy,
            "accuracy_change_points": (int8.accuracy - fp32.accuracy) * 100,
            "timing_one_thread": timing,
        },
        "metrics": {"test": int8.to_dict()},
    }
    int8_meta.pop("parity", None)
    if open_set:
        int8_meta["open_set"] = {**open_set, "test": open_set_test(model_path, out_path, test.images, open_set)}
    meta.write(out_path.with_suffix(".json"), int8_meta)
    log.info("int8 accuracy %.4f (fp32 %.4f); timing %s", int8.accuracy, fp32.accuracy, timing)
    return int8_meta
