"""Export a Keras model to ONNX with tf2onnx, name its tensors, and gate it on parity."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
#: The open-set model's second output: calibrated P(the image shows a digit), shape (N,).
SCORE_NAME = "digit_score"
BATCH_DIM = "N"


class ParityError(RuntimeError):
    """onnxruntime and Keras disagree on the exported model."""


@dataclass
class Parity:
    images: int
    max_abs_diff: float
    argmax_mismatches: int


def output_names(model: object) -> list[str]:
    """The contract's names of the model's outputs, in the model's order."""
    count = len(model.outputs)  # type: ignore[attr-defined]
    return [OUTPUT_NAME, SCORE_NAME][:count]


def export_onnx(model: object, opset: int) -> bytes:
    """Serialized ONNX of ``model``: float32 ``image`` [N,28,28,1] → ``probabilities`` [N,10]
    (and, for the open-set model, ``digit_score`` [N])."""
    # Keras refuses to export a model that has never been called.
    model.predict(np.zeros((1, 28, 28, 1), np.float32), verbose=0)  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        # Keras 3 exports through tf2onnx; tf2onnx.convert.from_keras does not support Keras 3.
        model.export(str(raw), format="onnx", opset_version=opset, verbose=False)  # type: ignore[attr-defined]
        graph_model = onnx.load(str(raw))
    rename_io(graph_model, output_names(model))
    onnx.checker.check_model(graph_model, full_check=True)
    return bytes(graph_model.SerializeToString())


def rename_io(graph_model: onnx.ModelProto, outputs: list[str] | None = None) -> None:
    """Give the input and outputs their contract names and name the batch dimension ``N``.

    tf2onnx names outputs after the TensorFlow nodes (``output_0``, ``Identity:0``) and the batch
    dimension ``unk__N``; clients and the service read these names, so make them the contract.
    Outputs keep the Keras model's order; their ranks are checked so a swap cannot go unseen.
    """
    outputs = outputs or [OUTPUT_NAME]
    graph = graph_model.graph
    if len(graph.input) != 1 or len(graph.output) != len(outputs):
        raise ValueError(f"expected a model with one input and {len(outputs)} output(s)")
    expected_rank = {OUTPUT_NAME: 2, SCORE_NAME: 1}
    for value, name in zip(graph.output, outputs, strict=True):
        rank = len(value.type.tensor_type.shape.dim)
        if rank != expected_rank[name]:
            raise ValueError(f"output {value.name!r} has rank {rank}; {name!r} must have rank {expected_rank[name]}")
    name_io(graph_model, outputs)


def name_io(graph_model: onnx.ModelProto, outputs: list[str]) -> None:
    """Rename the one input to ``image`` and the outputs to ``outputs`` (in order); batch dimension ``N``."""
    graph = graph_model.graph
    renames = {graph.input[0].name: INPUT_NAME}
    renames.update({value.name: name for value, name in zip(graph.output, outputs, strict=True)})
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for value in (graph.input[0], *graph.output):
        value.name = renames[value.name]
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM


def check_parity(keras_model: object, onnx_bytes: bytes, images: np.ndarray, tolerance: float) -> Parity:
    """Run the same images through Keras and onnxruntime; raise unless they agree."""
    import onnxruntime as ort

    names = output_names(keras_model)
    predicted = keras_model.predict(images, batch_size=500, verbose=0)  # type: ignore[attr-defined]
    expected = [np.asarray(p) for p in (predicted if isinstance(predicted, list | tuple) else [predicted])]
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    actual = session.run(names, {INPUT_NAME: images})
    # Every output is gated: the digit probabilities and, for open-set models, digit_score.
    parity = Parity(
        images=len(images),
        max_abs_diff=max(float(np.max(np.abs(e - a))) for e, a in zip(expected, actual, strict=True)),
        argmax_mismatches=int(np.sum(expected[0].argmax(1) != actual[0].argmax(1))),
    )
    log.info(
        "parity on %d images: max |keras - onnxruntime| = %.3g, argmax mismatches = %d",
        parity.images,
        parity.max_abs_diff,
        parity.argmax_mismatches,
    )
    if parity.max_abs_diff > tolerance or parity.argmax_mismatches:
        raise ParityError(
            f"onnxruntime disagrees with Keras on {parity.images} test images: max abs diff "
            f"{parity.max_abs_diff:.3g} (tolerance {tolerance:g}), {parity.argmax_mismatches} argmax "
            "mismatches. Nothing was written."
        )
    return parity


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
