"""Fine-tuning from an exported model: the unfolded weights start exactly where the export stands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from tests.conftest import DATA  # noqa: E402

BASE = Path(__file__).resolve().parents[2] / "training" / "base" / "mnist-improved-1.0.0.onnx"


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    from training.evaluate import to_model_input

    with np.load(DATA / "mnist_sample.npz") as data:
        return to_model_input(data["images"]), data["labels"]


def test_the_open_set_model_starts_as_the_exported_classifier(sample: tuple[np.ndarray, np.ndarray]) -> None:
    import onnxruntime as ort

    from training.model import build_model
    from training.warmstart import load_exported_weights

    images, labels = sample
    model = build_model("improved", open_set=True)
    load_exported_weights(model, BASE, images[:100])
    session = ort.InferenceSession(str(BASE), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"image": images})[0]
    logits = np.asarray(model(images, training=False))
    # On images the batch-normalisation statistics were not taken from, too.
    np.testing.assert_array_equal(logits[:, :10].argmax(1), expected.argmax(1))
    assert (expected.argmax(1) == labels).mean() > 0.97
    # The new class starts at zero, far below any digit's logit.
    assert np.all(logits[:, 10] == 0) and np.all(logits[:, :10].max(1) > 5)
    # In training mode (batch statistics) it reads the same: fine-tuning does not start from scratch.
    trained_mode = np.asarray(model(images[:128], training=True))
    assert (trained_mode[:, :10].argmax(1) == expected[:128].argmax(1)).mean() > 0.97


def test_another_architecture_is_refused(sample: tuple[np.ndarray, np.ndarray]) -> None:
    from training.model import build_model
    from training.warmstart import WarmStartError, load_exported_weights

    with pytest.raises(WarmStartError, match="convolutions"):
        load_exported_weights(build_model("baseline"), BASE, sample[0][:10])


def test_training_with_init_from_records_its_start(tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]) -> None:
    from tests.training.test_pipeline import TINY_RUN, tiny_mnist
    from training.config import TrainConfig
    from training.export import sha256_bytes
    from training.train import train

    config = TrainConfig(
        model="improved",
        learning_rate=1e-4,
        schedule="cosine",
        init_from=str(BASE),
        output_dir=str(tmp_path),
        **TINY_RUN,
    )
    metadata = train(config, data=tiny_mnist())
    written = json.loads((tmp_path / "mnist-improved.json").read_text())
    assert written["training"]["init_from"] == str(BASE)
    assert written["training"]["init_from_sha256"] == sha256_bytes(BASE.read_bytes())
    # One low-rate epoch on 150 digits keeps what the start knew (from scratch it would be near chance).
    assert metadata["metrics"]["test"]["accuracy"] > 0.95
