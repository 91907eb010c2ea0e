"""Architectures: shapes, names, and the augmentation staying out of the inference graph."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from training.model import build_model, random_affine  # noqa: E402


@pytest.mark.parametrize("architecture", ["baseline", "improved"])
def test_input_and_output_shapes(architecture: str) -> None:
    model = build_model(architecture)
    assert model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 10)
    out = np.asarray(model.predict(np.zeros((3, 28, 28, 1), np.float32), verbose=0))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_baseline_is_the_classic_architecture() -> None:
    kinds = [type(layer).__name__ for layer in build_model("baseline").layers]
    assert kinds == ["InputLayer", "Conv2D", "MaxPooling2D", "Flatten", "Dropout", "Dense", "Dense"]


def test_improved_has_batch_norm_and_no_random_layers() -> None:
    kinds = {type(layer).__name__ for layer in build_model("improved").layers}
    assert "BatchNormalization" in kinds and "Dropout" in kinds
    assert not any(kind.startswith("Random") for kind in kinds)


def test_augmentation_moves_pixels_but_keeps_the_shape() -> None:
    import tensorflow as tf

    images = np.zeros((4, 28, 28, 1), np.float32)
    images[:, 10:18, 12:16] = 1.0
    seed = tf.constant([1, 2], tf.int64)
    out = random_affine(tf.constant(images), rotation_deg=10, shift=0.1, zoom=0.1, seed=seed).numpy()
    assert out.shape == images.shape
    assert not np.allclose(out, images)
    again = random_affine(tf.constant(images), rotation_deg=10, shift=0.1, zoom=0.1, seed=seed).numpy()
    np.testing.assert_array_equal(out, again)  # seeded: reproducible
