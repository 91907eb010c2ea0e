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


@pytest.mark.parametrize("name", ["mnist-improved", "mnist-baseline"])
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
@pytest.mark.parametrize("name", ["mnist-improved", "mnist-baseline"])
def test_accuracy_on_the_full_test_set_equals_metadata(name: str) -> None:
    from training.evaluate import evaluate_onnx

    path = MODELS / f"{name}.onnx"
    metrics = evaluate_onnx(path, os.environ["MNIST_DATA_DIR"], progress=False)
    recorded = metadata(path)["metrics"]["test"]
    assert metrics.accuracy == pytest.approx(recorded["accuracy"], abs=1e-9)
    assert metrics.loss == pytest.approx(recorded["loss"], abs=1e-4)
    if name == "mnist-improved":
        assert metrics.accuracy >= 0.996
