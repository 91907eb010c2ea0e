"""Building answers: an inference response's output tensors, and the model's metadata and configuration.

Transport-neutral: :func:`output_tensors` gives the numpy arrays and :func:`response_body` the HTTP
body; metadata and configuration are plain dicts. The gRPC service takes the arrays and dicts.
"""

from __future__ import annotations

import numpy as np
import orjson

from service.config import Settings
from service.inference import Classifier
from service.routes import Runtime
from service.v2.spec import (
    DIGIT,
    DIGIT_SCORE,
    IS_DIGIT,
    OUTPUTS,
    PLATFORM,
    PROBABILITIES,
    ModelSpec,
    Tensor,
    protocol_version,
    served_models,
)

#: The protocol's datatypes as Triton's model configuration names them.
CONFIG_TYPES = {"FP32": "TYPE_FP32", "INT64": "TYPE_INT64", "BOOL": "TYPE_BOOL", "BYTES": "TYPE_STRING"}


def output_tensors(probabilities: np.ndarray, digit_score: np.ndarray, is_digit: np.ndarray) -> dict[str, np.ndarray]:
    """Every output, by name, as the little-endian arrays the protocol sends (BOOL: one byte each)."""
    return {
        PROBABILITIES: np.ascontiguousarray(probabilities, dtype="<f4"),
        DIGIT: probabilities.argmax(axis=1).astype("<i8"),
        IS_DIGIT: np.ascontiguousarray(is_digit, dtype=np.bool_),
        DIGIT_SCORE: np.ascontiguousarray(digit_score, dtype="<f4"),
    }


def response_body(
    header: dict[str, object], tensors: dict[str, np.ndarray], outputs: list[tuple[str, bool]]
) -> tuple[bytes, int | None]:
    """The response JSON (``header`` and the outputs in the order they were requested), then the
    binary outputs; with the JSON's length when there are binary outputs (None: all JSON)."""
    described: list[dict[str, object]] = []
    chunks: list[bytes] = []
    for name, binary in outputs:
        tensor = tensors[name]
        item: dict[str, object] = {"name": name, "datatype": OUTPUTS[name].datatype, "shape": list(tensor.shape)}
        if binary:
            chunk = tensor.tobytes()
            item["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            item["data"] = tensor.ravel()
        described.append(item)
    content = orjson.dumps({**header, "outputs": described}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return content, None
    return b"".join([content, *chunks]), len(content)


def model_metadata(model: ModelSpec, version: str) -> dict[str, object]:
    """The protocol's model metadata: versions, platform, and the tensors (-1: any batch size)."""
    return {
        "name": model.name,
        "versions": [version],
        "platform": PLATFORM,
        "inputs": [t.as_metadata() for t in model.inputs],
        "outputs": [t.as_metadata() for t in model.outputs],
    }


def _config_tensor(tensor: Tensor) -> dict[str, object]:
    """A tensor in Triton's configuration: dims without the batch dimension.

    A tensor that is only ``[N]`` is ``dims: [1]`` with ``reshape: {shape: []}``, Triton's own
    spelling of it (its configuration does not allow empty dims).
    """
    dims = list(tensor.shape[1:])
    item: dict[str, object] = {"name": tensor.name, "data_type": CONFIG_TYPES[tensor.datatype], "dims": dims or [1]}
    if not dims:
        item["reshape"] = {"shape": []}
    return item


def model_config(model: ModelSpec, classifier: Classifier, settings: Settings) -> dict[str, object]:
    """Triton's model configuration JSON, with what perf_analyzer and tritonclient read from it.

    ``max_batch_size`` is the request limit (the batch dimension is the first of every tensor);
    ``dynamic_batching`` is present because concurrent requests share session runs.
    """
    inputs = [
        {**_config_tensor(t), "format": "FORMAT_NONE", "is_shape_tensor": False, "optional": False}
        for t in model.inputs
    ]
    outputs = [{**_config_tensor(t), "label_filename": "", "is_shape_tensor": False} for t in model.outputs]
    return {
        "name": model.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": settings.max_batch_images,
        "input": inputs,
        "output": outputs,
        "batch_input": [],
        "batch_output": [],
        "dynamic_batching": {
            "preferred_batch_size": [settings.batch_max_size],
            "max_queue_delay_microseconds": round(settings.batch_max_delay_ms * 1000),
            "preserve_ordering": False,
        },
        "instance_group": [{"name": model.name, "kind": "KIND_CPU", "count": settings.workers}],
        "default_model_filename": classifier.path.name,
        "model_transaction_policy": {"decoupled": False},
        "response_cache": {"enable": False},
        "parameters": {
            "model_version": {"string_value": classifier.version},
            "sha256": {"string_value": classifier.sha256},
        },
    }


def repository_index(runtime: Runtime, only_ready: bool) -> list[dict[str, object]]:
    """Every model name served, with its version and state (only the ready ones if asked)."""
    classifier = runtime.classifier
    if classifier is None:
        return []
    state, reason = ("READY", "") if runtime.ready and not runtime.draining else ("UNAVAILABLE", "not ready")
    if only_ready and state != "READY":
        return []
    version = protocol_version(classifier.version)
    return [
        {"name": name, "version": version, "state": state, "reason": reason} for name in served_models(classifier.name)
    ]
