"""End to end on a few hundred images: train one epoch, export, pass the parity gate, write artefacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from tests.conftest import DATA  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import Mnist, Split  # noqa: E402

#: The settings that keep a one-epoch run on the committed sample to seconds.
TINY_RUN: dict[str, Any] = {
    "epochs": 1,
    "batch_size": 32,
    "parity_images": 25,
    "negatives": 40,
    "validation_negatives": 30,
    "extra": {"quiet": True},
}


def tiny_mnist() -> Mnist:
    with np.load(DATA / "mnist_sample.npz") as data:
        images, labels = data["images"], data["labels"]
    return Mnist(
        train=Split(images[:150], labels[:150]),
        validation=Split(images[150:175], labels[150:175]),
        test=Split(images[175:], labels[175:]),
    )


@pytest.mark.parametrize("architecture", ["baseline", "improved"])
def test_one_epoch_exports_a_verified_model(tmp_path: Path, architecture: str) -> None:
    import onnxruntime as ort

    from training.export import INPUT_NAME, OUTPUT_NAME, SCORE_NAME
    from training.train import train

    config = TrainConfig(model=architecture, output_dir=str(tmp_path), **TINY_RUN)
    metadata = train(config, data=tiny_mnist())

    onnx_path = tmp_path / f"mnist-{architecture}.onnx"
    written = json.loads((tmp_path / f"mnist-{architecture}.json").read_text())
    assert written["sha256"] == metadata["sha256"]
    assert written["parity"]["max_abs_diff"] <= 1e-4 and written["parity"]["argmax_mismatches"] == 0
    assert set(written["metrics"]["test"]["per_class"]) == {str(d) for d in range(10)}
    for report in ("curves", "confusion", "misclassified"):
        assert (tmp_path / f"mnist-{architecture}-{report}.png").stat().st_size > 1000
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert card.count(f"mnist-{architecture}") >= 1
    # The improved model's "time" schedule keeps its last weights; the baseline's its best checkpoint.
    kept = "the last weights" if architecture == "improved" else "best on validation: 1"
    assert f"1 epochs ({kept}" in card

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert (model_input.name, model_input.shape) == (INPUT_NAME, ["N", 28, 28, 1])
    outputs = [(o.name, o.shape) for o in session.get_outputs()]
    out = session.run(None, {INPUT_NAME: np.zeros((5, 28, 28, 1), np.float32)})
    if architecture == "baseline":
        assert outputs == [(OUTPUT_NAME, ["N", 10])] and "open_set" not in written
        assert out[0].shape == (5, 10)
        return
    # The open-set contract: calibrated probabilities over the ten digits, and digit_score (N,).
    assert outputs == [(OUTPUT_NAME, ["N", 10]), (SCORE_NAME, ["N"])]
    assert [o["name"] for o in written["outputs"]] == [OUTPUT_NAME, SCORE_NAME]
    assert written["parity"]["outputs"] == [OUTPUT_NAME, SCORE_NAME]
    probabilities, score = out
    assert probabilities.shape == (5, 10) and score.shape == (5,)
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    assert np.all((score >= 0) & (score <= 1))
    assert 0 <= written["open_set"]["threshold"] <= 0.5
    assert written["calibration"]["temperature"] > 0
    assert written["open_set"]["negatives"]["train"] == 40


def test_parity_gate_refuses_a_model_that_disagrees(tmp_path: Path) -> None:
    from training.export import ParityError, check_parity, export_onnx
    from training.model import build_model

    model = build_model("baseline")
    onnx_bytes = export_onnx(model, opset=17)
    images = np.random.default_rng(0).random((20, 28, 28, 1), dtype=np.float32)
    check_parity(model, onnx_bytes, images, tolerance=1e-4)
    # Change the Keras weights after export: the ONNX file no longer matches.
    model.layers[-1].set_weights([w * 3 for w in model.layers[-1].get_weights()])
    with pytest.raises(ParityError, match="Nothing was written"):
        check_parity(model, onnx_bytes, images, tolerance=1e-4)
