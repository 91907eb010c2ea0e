"""The shipped model: its file matches its metadata, and on the full test set it scores what it says."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.conftest import ROOT

MODELS = ROOT / "models"
SHIPPED = MODELS / "mnist-improved.onnx"


def metadata(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(path.with_suffix(".json").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", ["mnist-improved", "mnist-improved-int8", "mnist-baseline"])
def test_sha256_matches_metadata(name: str) -> None:
    path = MODELS / f"{name}.onnx"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == metadata(path)["sha256"]


def test_metadata_documents_the_contract() -> None:
    meta = metadata(SHIPPED)
    assert meta["inputs"] == [{"name": "image", "dtype": "float32", "shape": ["N", 28, 28, 1]}]
    assert meta["outputs"] == [{"name": "probabilities", "dtype": "float32", "shape": ["N", 10]}]
    assert meta["metrics"]["test"]["accuracy"] >= 0.996
    assert meta["parity"]["max_abs_diff"] <= 1e-4


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
        assert metrics.accuracy >= 0.996


def test_int8_build_is_the_improved_model_within_a_tenth_of_a_point() -> None:
    """The int8 build is served by default only because it loses at most 0.1 points of accuracy."""
    fp32, int8 = metadata(SHIPPED), metadata(MODELS / "mnist-improved-int8.onnx")
    assert int8["name"] == fp32["name"] and int8["quantization"]["source_sha256"] == fp32["sha256"]
    assert int8["metrics"]["test"]["accuracy"] >= fp32["metrics"]["test"]["accuracy"] - 0.001
