"""What this server serves over the protocol: its name, extensions, and its models and their tensors.

One ONNX classifier is served under two model names, so that every model lists only inputs that a
generic tool (perf_analyzer, a Triton or KServe client) fills on its own:

- ``<name>`` (``mnist-improved`` for the shipped model): the FP32 ``image`` tensor, already in
  MNIST form. For compatibility it also accepts ``image_bytes``, which it no longer lists;
- ``<name>-bytes``: the BYTES ``image_bytes`` tensor ``[N, 1]`` (or ``[N]``), encoded image files
  preprocessed like ``/predict``.

Versions are Triton's integers: the served version is the major number of the model's version
(``1`` for ``1.0.0-int8``); the full version names it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

SERVER_NAME: Final = "mnist-digits"
#: Triton's extensions this server has: the repository index (not loading or unloading: it serves
#: one model file), model configuration, statistics and binary tensor data.
EXTENSIONS: Final = ("binary_tensor_data", "model_configuration", "model_repository", "statistics")
PLATFORM: Final = "onnxruntime_onnx"
BINARY: Final = "application/octet-stream"
HEADER_LENGTH: Final = "inference-header-content-length"

IMAGE: Final = "image"
IMAGE_BYTES: Final = "image_bytes"
PROBABILITIES: Final = "probabilities"
DIGIT: Final = "digit"
IS_DIGIT: Final = "is_digit"
DIGIT_SCORE: Final = "digit_score"
PIXELS: Final = 28 * 28
#: The name of the bytes model is the classifier's with this suffix.
BYTES_SUFFIX: Final = "-bytes"


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    #: -1 is the batch dimension.
    shape: tuple[int, ...]

    def as_metadata(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


IMAGE_TENSOR: Final = Tensor(IMAGE, "FP32", (-1, 28, 28, 1))
#: One encoded file per row: [N, 1], not [N], because perf_analyzer cannot send a tensor whose shape
#: is empty once the batch dimension is taken off ("unable to set shape for the input"). [N] is
#: accepted too (the form documented before).
IMAGE_BYTES_TENSOR: Final = Tensor(IMAGE_BYTES, "BYTES", (-1, 1))
INPUTS: Final = {t.name: t for t in (IMAGE_TENSOR, IMAGE_BYTES_TENSOR)}
OUTPUTS: Final = {
    t.name: t
    for t in (
        Tensor(PROBABILITIES, "FP32", (-1, 10)),
        Tensor(DIGIT, "INT64", (-1,)),
        Tensor(IS_DIGIT, "BOOL", (-1,)),
        Tensor(DIGIT_SCORE, "FP32", (-1,)),
    )
}


@dataclass(frozen=True)
class ModelSpec:
    """One model name: the inputs it lists (and the ones it accepts) and its outputs."""

    name: str
    inputs: tuple[Tensor, ...]
    accepted: frozenset[str]
    outputs: tuple[Tensor, ...] = tuple(OUTPUTS.values())


def served_models(classifier_name: str) -> dict[str, ModelSpec]:
    """The model names under which the classifier is served, each with its tensors."""
    bytes_name = classifier_name + BYTES_SUFFIX
    return {
        classifier_name: ModelSpec(classifier_name, (IMAGE_TENSOR,), frozenset({IMAGE, IMAGE_BYTES})),
        bytes_name: ModelSpec(bytes_name, (IMAGE_BYTES_TENSOR,), frozenset({IMAGE_BYTES})),
    }


def protocol_version(model_version: str) -> str:
    """Triton's integer version for a model version: its leading number (``1.0.0-int8`` → ``1``)."""
    major = model_version.split(".", 1)[0]
    return str(int(major)) if major.isdigit() else "1"
