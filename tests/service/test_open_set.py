"""is_digit and digit_score, through the real app, on tiny ONNX models built here (with and without digit_score).

The models are made so that what they answer is known: ``digit_score`` is the mean of the input
pixels (0-1), and the probabilities are a fixed softmax whose best digit is 9. The metadata beside
each follows ``models/metadata.schema.json``, as training writes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper

from service.app import create_app
from service.config import Settings
from service.inference import Classifier, ModelLoadError

THRESHOLD = 0.5
#: Logits of the fixed answer: softmax of 0..9 puts most weight on 9.
LOGITS = np.arange(10, dtype=np.float32)


def build_model(path: Path, *, digit_score: bool, probabilities_name: str = "probabilities") -> None:
    """An ONNX model taking image (N, 28, 28, 1): fixed probabilities, and (optionally) the pixels' mean."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 28, 28, 1])
    outputs = [helper.make_tensor_value_info(probabilities_name, TensorProto.FLOAT, ["N", 10])]
    weights = helper.make_tensor("weights", TensorProto.FLOAT, [784, 10], np.zeros(7840, np.float32))
    bias = helper.make_tensor("bias", TensorProto.FLOAT, [10], LOGITS)
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "weights", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [probabilities_name], axis=1),
    ]
    if digit_score:
        outputs.append(helper.make_tensor_value_info("digit_score", TensorProto.FLOAT, ["N"]))
        nodes.append(helper.make_node("ReduceMean", ["flat"], ["digit_score"], axes=[1], keepdims=0))
    graph = helper.make_graph(nodes, "tiny", [image], outputs, initializer=[weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    write_metadata(path, with_open_set=digit_score, probabilities_name=probabilities_name)


def write_metadata(
    path: Path, *, with_open_set: bool, probabilities_name: str = "probabilities", **changes: Any
) -> None:
    outputs = [{"name": probabilities_name, "dtype": "float32", "shape": ["N", 10]}]
    metadata: dict[str, Any] = {
        "name": "tiny",
        "version": "0.0.1",
        "architecture": "test",
        "created": "2026-12-01T00:00:00+00:00",
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "opset": 17,
        "inputs": [{"name": "image", "dtype": "float32", "shape": ["N", 28, 28, 1]}],
        "outputs": outputs,
        "preprocessing": {},
        "training": {},
        "metrics": {"test": {}},
    }
    if with_open_set:
        outputs.append({"name": "digit_score", "dtype": "float32", "shape": ["N"]})
        metadata["open_set"] = {"output": "digit_score", "threshold": THRESHOLD, "method": "test"}
        metadata["calibration"] = {"temperature": 1.0}
    metadata.update(changes)
    path.with_suffix(".json").write_text(json.dumps(metadata))


def pixels(mean: float) -> list[list[float]]:
    """A 28x28 MNIST-form image whose pixels average ``mean`` (a share of the pixels at 255)."""
    flat = np.zeros(784)
    flat[: round(mean * 784)] = 255
    values: list[list[float]] = flat.reshape(28, 28).tolist()
    return values


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    paths = {"open": folder / "open.onnx", "closed": folder / "closed.onnx", "old": folder / "old.onnx"}
    build_model(paths["open"], digit_score=True)
    build_model(paths["closed"], digit_score=False)
    build_model(paths["old"], digit_score=False, probabilities_name="dense_3")
    return paths


def serve(model: Path, **settings: Any) -> TestClient:
    return TestClient(create_app(Settings(workers=1, model_path=model, **settings)), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def open_client(models: dict[str, Path]) -> Iterator[TestClient]:
    with serve(models["open"]) as client:
        yield client


def test_is_digit_is_the_score_against_the_model_threshold(open_client: TestClient) -> None:
    for mean, expected in ((0.75, True), (0.25, False)):
        body = open_client.post("/predict", json={"pixels": pixels(mean)}).json()
        assert body["digit_score"] == pytest.approx(mean, abs=1e-3)
        assert body["is_digit"] is expected
        assert body["digit"] == 9  # the best guess stays, digit or not
        assert body["confidence"] == pytest.approx(float(np.exp(9) / np.exp(LOGITS).sum()), abs=1e-5)


def test_batch_says_it_per_image(open_client: TestClient) -> None:
    body = open_client.post("/predict/batch", json={"pixels": [pixels(0.25), pixels(0.75), pixels(0.5)]}).json()
    assert [p["is_digit"] for p in body["predictions"]] == [False, True, True]  # >= the threshold is a digit
    assert [p["digit_score"] for p in body["predictions"]] == pytest.approx([0.25, 0.75, 0.5], abs=1e-3)


def test_strictness_setting_overrides_the_model_threshold(models: dict[str, Path]) -> None:
    with serve(models["open"], strictness=0.2) as client:
        assert client.post("/predict", json={"pixels": pixels(0.25)}).json()["is_digit"] is True
        runtime = client.get("/model").json()["runtime"]
        assert runtime["strictness"] == 0.2 and runtime["digit_score_output"] == "digit_score"
    with serve(models["open"], strictness=0.9) as client:
        assert client.post("/predict", json={"pixels": pixels(0.75)}).json()["is_digit"] is False


@pytest.mark.parametrize("name", ["closed", "old"])
def test_models_without_digit_score_always_see_a_digit(models: dict[str, Path], name: str) -> None:
    with serve(models[name]) as client:
        body = client.post("/predict", json={"pixels": pixels(0.05)}).json()
        assert body["is_digit"] is True and body["digit_score"] == 1.0
        assert body["digit"] == 9
        assert client.get("/model").json()["runtime"]["digit_score_output"] is None


def test_openapi_documents_the_score(open_client: TestClient) -> None:
    schemas = open_client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("SinglePrediction", "Prediction"):
        properties = schemas[name]["properties"]
        assert "probability that the image shows a digit" in properties["digit_score"]["description"]
        assert "DIGITS_STRICTNESS" in properties["is_digit"]["description"]
        assert {"is_digit", "digit_score"} <= set(schemas[name]["required"])


def test_metadata_is_validated_against_the_schema(models: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(models["open"].read_bytes())
    write_metadata(model, with_open_set=True, open_set={"output": "digit_score", "threshold": 1.5})
    with pytest.raises(ModelLoadError, match=r"metadata.schema.json: at open_set/threshold: 1.5 is greater than"):
        Classifier(model)
    write_metadata(model, with_open_set=True, metrics={})
    with pytest.raises(ModelLoadError, match="at metrics: 'test' is a required property"):
        Classifier(model)


def test_metadata_and_graph_must_agree_on_digit_score(models: dict[str, Path], tmp_path: Path) -> None:
    closed = tmp_path / "closed.onnx"
    closed.write_bytes(models["closed"].read_bytes())
    write_metadata(closed, with_open_set=True)  # claims a digit_score output the graph lacks
    with pytest.raises(ModelLoadError, match="has no output 'digit_score'"):
        Classifier(closed)
    opened = tmp_path / "open.onnx"
    opened.write_bytes(models["open"].read_bytes())
    write_metadata(opened, with_open_set=False)  # a digit_score with no threshold to compare it with
    with pytest.raises(ModelLoadError, match="no open_set threshold"):
        Classifier(opened)


def test_the_shipped_models_metadata_validates() -> None:
    root = Path(__file__).resolve().parent.parent.parent / "models"
    for model in ("mnist-baseline.onnx", "mnist-improved.onnx", "mnist-improved-int8.onnx"):
        classifier = Classifier(root / model)
        assert classifier.threshold == (classifier.metadata["open_set"]["threshold"] if classifier.open_set else 0.0)
