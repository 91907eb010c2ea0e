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
BATCH_DIM = "N"


class ParityError(RuntimeError):
    """onnxruntime and Keras disagree on the exported model."""


@dataclass
class Parity:
    images: int
    max_abs_diff: float
    argmax_mismatches: int


def export_onnx(model: object, opset: int) -> bytes:
    """Serialized ONNX of ``model``: float32 ``image`` [N,28,28,1] → ``probabilities`` [N,10]."""
    # Keras refuses to export a model that has never been called.
    model.predict(np.zeros((1, 28, 28, 1), np.float32), verbose=0)  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        # Keras 3 exports through tf2onnx; tf2onnx.convert.from_keras does not support Keras 3.
        model.export(str(raw), format="onnx", opset_version=opset, verbose=False)  # type: ignore[attr-defined]
        graph_model = onnx.load(str(raw))
    rename_io(graph_model)
    onnx.checker.check_model(graph_model, full_check=True)
    return bytes(graph_model.SerializeToString())


def rename_io(graph_model: onnx.ModelProto) -> None:
    """Give the single input and output meaningful names and name the batch dimension ``N``.

    tf2onnx names the output after the TensorFlow node (``Identity:0``) and the batch dimension
    ``unk__N``; clients and the service read these names, so make them part of the contract.
    """
    graph = graph_model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ValueError("expected a model with one input and one output")
    renames = {graph.input[0].name: INPUT_NAME, graph.output[0].name: OUTPUT_NAME}
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for value in (graph.input[0], graph.output[0]):
        value.name = renames[value.name]
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM


def check_parity(keras_model: object, onnx_bytes: bytes, images: np.ndarray, tolerance: float) -> Parity:
    """Run the same images through Keras and onnxruntime; raise unless they agree."""
    import onnxruntime as ort

    expected = np.asarray(keras_model.predict(images, batch_size=500, verbose=0))  # type: ignore[attr-defined]
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    actual = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    parity = Parity(
        images=len(images),
        max_abs_diff=float(np.max(np.abs(expected - actual))),
        argmax_mismatches=int(np.sum(expected.argmax(1) != actual.argmax(1))),
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
