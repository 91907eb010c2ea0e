"""The shipped model: its file matches its metadata, and on the full test set it scores what it says."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

MODELS = ROOT / "models"
SHIPPED = MODELS / "mnist-improved.onnx"
#: MNIST test accuracy the shipped improved models must keep.
SHIPPED_FLOOR = 0.996


def metadata(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(path.with_suffix(".json").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", ["mnist-improved", "mnist-improved-int8", "mnist-baseline"])
def test_sha256_matches_metadata(name: str) -> None:
    path = MODELS / f"{name}.onnx"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == metadata(path)["sha256"]


@pytest.mark.parametrize("name", ["mnist-improved", "mnist-improved-int8"])
def test_metadata_documents_the_contract(name: str) -> None:
    meta = metadata(MODELS / f"{name}.onnx")
    assert meta["inputs"] == [{"name": "image", "dtype": "float32", "shape": ["N", 28, 28, 1]}]
    assert meta["outputs"] == [
        {"name": "probabilities", "dtype": "float32", "shape": ["N", 10]},
        {"name": "digit_score", "dtype": "float32", "shape": ["N"]},
    ]
    assert meta["open_set"]["output"] == "digit_score" and 0 < meta["open_set"]["threshold"] <= 0.5
    assert meta["calibration"]["temperature"] > 0
    # Issue 13's floor for the served model (the shipped open-set model: 99.70% fp32, 99.69% int8).
    assert meta["metrics"]["test"]["accuracy"] >= SHIPPED_FLOOR
    if "parity" in meta:
        assert meta["parity"]["max_abs_diff"] <= 1e-4
        assert meta["parity"]["outputs"] == ["probabilities", "digit_score"]


@pytest.mark.parametrize("name", ["mnist-improved", "mnist-improved-int8"])
def test_onnx_graph_has_the_contracts_outputs(name: str, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(MODELS / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    assert [(o.name, o.shape, o.type) for o in session.get_outputs()] == [
        ("probabilities", ["N", 10], "tensor(float)"),
        ("digit_score", ["N"], "tensor(float)"),
    ]
    images, labels = mnist_sample
    probabilities, score = session.run(None, {"image": (images[:100, :, :, None] / 255).astype(np.float32)})
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    assert np.mean(probabilities.argmax(1) == labels[:100]) >= 0.98
    # Real digits are digits; a filled square is not, nor are the held-out non-digits that training
    # never saw (training.negatives draws them; without the held-out fonts, shapes only).
    threshold = metadata(MODELS / f"{name}.onnx")["open_set"]["threshold"]
    assert np.mean(score >= threshold) >= 0.98
    square = np.zeros((1, 28, 28, 1), np.float32)
    square[0, 4:24, 4:24] = 1
    assert session.run(["digit_score"], {"image": square})[0][0] < threshold
    from training.negatives import generate

    held_out = generate(60, seed=7, held_out=True).images
    (held_out_score,) = session.run(["digit_score"], {"image": (held_out[..., None] / 255).astype(np.float32)})
    assert np.mean(held_out_score < threshold) >= 0.85


@pytest.mark.mnist
@pytest.mark.skipif(not os.environ.get("MNIST_DATA_DIR"), reason="set MNIST_DATA_DIR to the full MNIST files")
@pytest.mark.parametrize("name", ["mnist-improved", "mnist-improved-int8", "mnist-baseline"])
def test_accuracy_on_the_full_test_set_equals_metadata(name: str) -> None:
    from training.evaluate import evaluate_onnx

    path = MODELS / f"{name}.onnx"
    metrics = evaluate_onnx(path, os.environ["MNIST_DATA_DIR"], progress=False)
    recorded = metadata(path)["metrics"]["test"]
    assert metrics.accuracy == pytest.approx(recorded["accuracy"], abs=1e-9)
    assert metrics.loss == pytest.approx(recorded["loss"], abs=1e-4)
    if name.startswith("mnist-improved"):
        assert metrics.accuracy >= SHIPPED_FLOOR


def test_int8_build_is_the_improved_model_within_a_tenth_of_a_point() -> None:
    """The int8 build is served by default only because it loses at most 0.1 points of accuracy."""
    fp32, int8 = metadata(SHIPPED), metadata(MODELS / "mnist-improved-int8.onnx")
    assert int8["name"] == fp32["name"] and int8["quantization"]["source_sha256"] == fp32["sha256"]
    assert int8["metrics"]["test"]["accuracy"] >= fp32["metrics"]["test"]["accuracy"] - 0.001
