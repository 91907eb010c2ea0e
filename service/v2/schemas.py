"""The protocol's request and response objects as pydantic models, for the OpenAPI schema and its examples.

The handlers do not validate with them (the parser in ``parse`` is faster and says more); they
document the interface in ``/docs``.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from service.routes import JSON
from service.schemas import PNG_BASE64_EXAMPLE, PROBABILITIES_EXAMPLE
from service.v2.messages import TENSOR_INPUT, UNKNOWN_INPUT
from service.v2.spec import BINARY, DIGIT, EXTENSIONS, IMAGE, IMAGE_BYTES, PLATFORM, PROBABILITIES, SERVER_NAME


class V2Error(BaseModel):
    """Every v2 error, as the protocol defines it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": UNKNOWN_INPUT.format(
                        model="mnist-improved",
                        name="input0",
                        expected=TENSOR_INPUT.format(other="mnist-improved-bytes"),
                    )
                }
            ]
        }
    )
    error: str


class ServerMetadata(BaseModel):
    name: str = Field(examples=[SERVER_NAME])
    version: str = Field(examples=["1.0.0"])
    extensions: list[str] = Field(examples=[list(EXTENSIONS)])


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 marks the batch dimension.")


class ModelMetadata(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "mnist-improved",
                    "versions": ["1"],
                    "platform": PLATFORM,
                    "inputs": [{"name": IMAGE, "datatype": "FP32", "shape": [-1, 28, 28, 1]}],
                    "outputs": [
                        {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, 10]},
                        {"name": DIGIT, "datatype": "INT64", "shape": [-1]},
                        {"name": "is_digit", "datatype": "BOOL", "shape": [-1]},
                        {"name": "digit_score", "datatype": "FP32", "shape": [-1]},
                    ],
                }
            ]
        }
    )
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


Parameter = str | int | float | bool


class RequestInput(BaseModel):
    """One input tensor: ``image`` (FP32 [N, 28, 28, 1], 0–1) or ``image_bytes`` (BYTES [N, 1] or [N], base64 files)."""

    name: Literal["image", "image_bytes"]
    datatype: Literal["FP32", "BYTES"]
    shape: list[int] = Field(min_length=1, max_length=4)
    parameters: dict[str, Parameter] | None = Field(
        None, description="binary_data_size: the tensor's bytes follow the JSON (binary tensor data extension)."
    )
    data: list[Any] | None = Field(
        None, description="Row-major values, flat or nested; for image_bytes, base64 strings of image files."
    )


class RequestOutput(BaseModel):
    name: Literal["probabilities", "digit", "is_digit", "digit_score"]
    parameters: dict[str, Parameter] | None = Field(None, description="binary_data: return it as binary data.")


class InferenceRequest(BaseModel):
    """Exactly one input tensor; outputs default to all four."""

    id: str | None = Field(None, description="Echoed back in the response.")
    parameters: dict[str, Parameter] | None = Field(
        None, description="binary_data_output: return every output as binary data."
    )
    inputs: list[RequestInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Parameter] | None = None
    data: list[float] | list[bool] | None = None


class InferenceResponse(BaseModel):
    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "model_name": "mnist-improved",
                    "model_version": "1",
                    "id": "42",
                    "outputs": [
                        {"name": PROBABILITIES, "datatype": "FP32", "shape": [1, 10], "data": PROBABILITIES_EXAMPLE},
                        {"name": DIGIT, "datatype": "INT64", "shape": [1], "data": [7]},
                        {"name": "is_digit", "datatype": "BOOL", "shape": [1], "data": [True]},
                        {"name": "digit_score", "datatype": "FP32", "shape": [1], "data": [1.0]},
                    ],
                }
            ]
        },
    )
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Parameter] | None = None
    outputs: list[ResponseOutput]


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` inlined, as OpenAPI's openapi_extra needs."""
    definitions = schema.pop("$defs", {})

    def resolve(node: object) -> object:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)  # type: ignore[assignment]
    return resolved


def _example_digit() -> list[float]:
    """The example PNG (a 7) as model input, 0–1, flat: an FP32 example that is a real digit."""
    with Image.open(io.BytesIO(base64.b64decode(PNG_BASE64_EXAMPLE))) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float32) / 255
    values: list[float] = np.round(pixels, 3).ravel().tolist()
    return values


def infer_spec() -> dict[str, Any]:
    examples = {
        "image_bytes": {
            "summary": "Encoded image files, base64 (JSON): POST to the model mnist-improved-bytes",
            "value": {
                "id": "42",
                "inputs": [{"name": IMAGE_BYTES, "datatype": "BYTES", "shape": [1, 1], "data": [PNG_BASE64_EXAMPLE]}],
            },
        },
        "image": {
            "summary": "MNIST-form FP32 tensor, flat row-major (JSON): POST to the model mnist-improved",
            "value": {
                "id": "43",
                "inputs": [{"name": IMAGE, "datatype": "FP32", "shape": [1, 28, 28, 1], "data": _example_digit()}],
                "outputs": [{"name": DIGIT}],
            },
        },
    }
    binary_description = (
        "Binary tensor data extension: the JSON request, then each input's bytes (FP32 little-endian; "
        "BYTES as a 4-byte little-endian length before each element). The Inference-Header-Content-Length "
        "header gives the JSON's length in bytes."
    )
    return {
        "requestBody": {
            "required": True,
            "content": {
                JSON: {"schema": _inline(InferenceRequest.model_json_schema()), "examples": examples},
                BINARY: {"schema": {"type": "string", "format": "binary"}, "description": binary_description},
            },
        },
    }


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": V2Error, "description": description}
    for code, description in {
        400: "Malformed request: invalid JSON, unknown input or output, wrong datatype or shape, data not "
        "matching the shape, non-numeric values, an undecodable image or no digit.",
        404: "Unknown model or version.",
        413: "Body or batch over its limit.",
        503: "Model not ready, or inference failed; retry.",
        504: "The request took longer than the limit.",
    }.items()
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {code: ERRORS[code] for code in (404, 503)}
NOT_READY: dict[int | str, dict[str, Any]] = {503: {"model": V2Error, "description": "Not ready, or shutting down."}}
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {BINARY: {"schema": {"type": "string", "format": "binary"}}},
        "description": "The outputs; as JSON, or (when binary outputs were asked for) the JSON response "
        "followed by the outputs' bytes, its length in Inference-Header-Content-Length.",
    },
    **ERRORS,
}


# --- Triton's extensions: model configuration, statistics, repository index -----------------------


class ConfigTensor(BaseModel):
    name: str
    data_type: str = Field(examples=["TYPE_FP32"])
    dims: list[int] = Field(description="Without the batch dimension.")


class ModelConfig(BaseModel):
    """Triton's model configuration (a subset of its fields is shown; the answer carries more)."""

    model_config = ConfigDict(extra="allow")
    name: str
    platform: str = Field(examples=[PLATFORM])
    max_batch_size: int
    input: list[ConfigTensor]
    output: list[ConfigTensor]


class StatDuration(BaseModel):
    count: int
    ns: int = Field(description="Cumulative nanoseconds.")


class InferStatistics(BaseModel):
    success: StatDuration
    fail: StatDuration
    queue: StatDuration
    compute_input: StatDuration
    compute_infer: StatDuration
    compute_output: StatDuration
    cache_hit: StatDuration
    cache_miss: StatDuration


class ModelStatistics(BaseModel):
    name: str
    version: str
    last_inference: int = Field(description="Milliseconds since the epoch; 0 before the first inference.")
    inference_count: int = Field(description="Images classified.")
    execution_count: int
    inference_stats: InferStatistics
    batch_stats: list[dict[str, Any]]


class ModelStatisticsResponse(BaseModel):
    model_stats: list[ModelStatistics]


class RepositoryModel(BaseModel):
    name: str
    version: str
    state: str = Field(examples=["READY"])
    reason: str
