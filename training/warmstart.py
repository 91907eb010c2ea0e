"""Start a model from the weights of an exported improved model: fine-tuning, as outlier exposure does.

Hendrycks et al. (ICLR 2019) fine-tune an already trained classifier on the outliers rather than
train from scratch, and so keep its accuracy. The trained classifier this project has is the
ONNX file it shipped, with each batch normalisation folded into its convolution: ``conv(x, W') + b``.
:func:`load_exported_weights` unfolds it into the Keras architecture:

- the convolution kernel is ``W'``;
- the batch normalisation is given the per-channel mean ``mu`` and deviation ``sigma`` of
  ``conv(x, W')`` on sample training images, with ``gamma = sigma`` and ``beta = mu + b``.

At inference that is exactly ``conv(x, W') + b``; in training, normalising by the batch's own
statistics gives nearly the same, so fine-tuning starts where the shipped model stands instead
of at a batch normalisation that rescales everything. The dense layer's columns are copied; a
column the exported model lacks (the "not a digit" class) starts at zero. Before it returns,
the Keras model's ten digit logits are checked against the exported graph's on the sample.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from training import calibrate

log = logging.getLogger(__name__)

#: Training images whose activations give each unfolded batch normalisation its statistics.
SAMPLE_IMAGES = 2048
#: The largest difference in softmax probabilities allowed between the exported model and the
#: Keras model that starts from it: the unfolding is exact up to float32 rounding.
START_TOLERANCE = 1e-4


class WarmStartError(ValueError):
    """The exported model does not fit the Keras architecture, or the copy does not reproduce it."""


def _exported_weights(graph: onnx.GraphProto) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """The (kernel, bias) of every Conv in graph order, and the classifier's MatMul weight and bias."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    convs = []
    matmul = bias = None
    for node in graph.node:
        if node.op_type == "Conv":
            if len(node.input) != 3:
                raise WarmStartError(f"convolution {node.name!r} has no folded bias")
            convs.append((values[node.input[1]], values[node.input[2]]))
        elif node.op_type == "MatMul" and node.input[1] in values:
            matmul = values[node.input[1]]
        elif node.op_type == "Add" and matmul is not None and bias is None:
            bias = next(values[name] for name in node.input if name in values)
    if matmul is None or bias is None:
        raise WarmStartError("no classifier (MatMul then Add) in the exported graph")
    return convs, matmul, bias


def load_exported_weights(model: keras.Model, path: Path, sample: np.ndarray) -> None:
    """Set ``model``'s weights from the exported ONNX model at ``path``; ``sample``: model inputs."""
    graph = onnx.load(str(path)).graph
    convs, matmul, bias = _exported_weights(graph)
    conv_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    norm_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if len(convs) != len(conv_layers) or len(norm_layers) != len(conv_layers) or len(dense) != 1:
        raise WarmStartError(
            f"{path.name} has {len(convs)} convolutions; the architecture has {len(conv_layers)} "
            f"convolutions, {len(norm_layers)} batch normalisations and {len(dense)} dense layers"
        )
    for (kernel, folded_bias), conv, norm in zip(convs, conv_layers, norm_layers, strict=True):
        hwio = kernel.transpose(2, 3, 1, 0)  # ONNX OIHW -> Keras HWIO
        if hwio.shape != tuple(conv.kernel.shape):
            raise WarmStartError(f"{conv.name}: kernel {hwio.shape} does not fit {tuple(conv.kernel.shape)}")
        conv.kernel.assign(hwio)
        # First the exact identity plus the folded bias (at inference), so every layer reproduces
        # the exported model and one pass gives every convolution's conv(x, W').
        norm.gamma.assign(np.ones_like(folded_bias))
        norm.beta.assign(folded_bias)
        norm.moving_mean.assign(np.zeros_like(folded_bias))
        norm.moving_variance.assign(np.full_like(folded_bias, 1 - norm.epsilon))
    raws = keras.Model(model.inputs, [conv.output for conv in conv_layers])(sample, training=False)
    for (_, folded_bias), norm, raw in zip(convs, norm_layers, raws, strict=True):
        # The same function at inference, now with the activations' own statistics.
        values = np.asarray(raw)
        mean = values.mean(axis=(0, 1, 2))
        deviation = np.maximum(values.std(axis=(0, 1, 2)), 1e-3)
        norm.gamma.assign(deviation)
        norm.beta.assign(mean + folded_bias)
        norm.moving_mean.assign(mean)
        norm.moving_variance.assign(deviation**2 - norm.epsilon)
    layer = dense[0]
    columns = min(matmul.shape[1], layer.units)
    kernel_value = np.zeros(tuple(layer.kernel.shape), np.float32)
    bias_value = np.zeros(layer.units, np.float32)
    kernel_value[:, :columns] = matmul[:, :columns]
    bias_value[:columns] = bias[:columns]
    layer.kernel.assign(kernel_value)
    layer.bias.assign(bias_value)
    _check_start(model, graph, path, sample)
    log.info("started from %s (%d convolutions, %d classifier columns)", path, len(convs), columns)


def _check_start(model: keras.Model, graph: onnx.GraphProto, path: Path, sample: np.ndarray) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = np.asarray(session.run([graph.output[0].name], {graph.input[0].name: sample})[0])
    got = np.asarray(model(sample, training=False))
    if model.layers[-1].get_config().get("activation") != "softmax":
        got = calibrate.softmax(got[:, : expected.shape[1]])  # open-set logits: the ten digits' softmax
    if got.shape != expected.shape:
        raise WarmStartError(f"{path.name} gives {expected.shape[1]} outputs; the model gives {got.shape[1]}")
    worst = float(np.max(np.abs(got - expected)))
    if worst > START_TOLERANCE:
        raise WarmStartError(f"the copied weights differ from {path.name} by {worst:.2e} (> {START_TOLERANCE})")
    log.info("the copied weights reproduce %s to %.1e", path.name, worst)
