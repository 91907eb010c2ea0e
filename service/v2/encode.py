"""Building an inference response: output tensors, as JSON data or as binary data after the JSON.

Transport-neutral: :func:`output_tensors` gives the numpy arrays, :func:`response_body` the HTTP
body; the gRPC service takes the arrays.
"""

from __future__ import annotations

import numpy as np
import orjson

from service.inference import Classifier
from service.v2.spec import DIGIT, INPUTS, OUTPUTS, PLATFORM, PROBABILITIES


def output_tensors(probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """Every output, by name, as the little-endian arrays the protocol sends."""
    return {
        PROBABILITIES: np.ascontiguousarray(probabilities, dtype="<f4"),
        DIGIT: probabilities.argmax(axis=1).astype("<i8"),
    }


def response_body(
    header: dict[str, object], tensors: dict[str, np.ndarray], outputs: list[tuple[str, bool]]
) -> tuple[bytes, int | None]:
    """The response JSON (``header`` plus the outputs, in the order they were requested), then the
    binary outputs; with the JSON's length when there are binary outputs (None: the body is JSON)."""
    described: list[dict[str, object]] = []
    chunks: list[bytes] = []
    for name, binary in outputs:
        tensor = tensors[name]
        item: dict[str, object] = {"name": name, "datatype": OUTPUTS[name][0], "shape": list(tensor.shape)}
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


def model_metadata(classifier: Classifier) -> dict[str, object]:
    def tensors(spec: dict[str, tuple[str, list[int]]]) -> list[dict[str, object]]:
        return [{"name": n, "datatype": d, "shape": s} for n, (d, s) in spec.items()]

    return {
        "name": classifier.name,
        "versions": [classifier.version],
        "platform": PLATFORM,
        "inputs": tensors(INPUTS),
        "outputs": tensors(OUTPUTS),
    }
