"""The Open Inference Protocol (KServe v2) over HTTP/REST, with Triton's binary tensor data extension.

Tensors of this service:

- input ``image``: FP32 ``[N, 28, 28, 1]``, already in MNIST form (0–1, white ink on black);
- input ``image_bytes``: BYTES ``[N]``, each element an encoded image file, preprocessed like
  ``/predict`` (base64 strings in JSON; length-prefixed elements as binary data);
- outputs ``probabilities`` FP32 ``[N, 10]`` and ``digit`` INT64 ``[N]``.

A request sends exactly one of the two inputs. Requests share the batch path, limits and metrics
of ``/predict/batch``; errors answer ``{"error": "..."}`` as the protocol asks, with 400 for every
bad input (where ``/predict`` says 415 or 422), 404 for an unknown model or version, and 413 for
the size limits.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import zlib
from collections.abc import Callable, Coroutine
from itertools import chain
from typing import Any, Final, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from service import errors, metrics, parsing
from service.config import Settings
from service.inference import Classifier, Prepare
from service.routes import JSON, ImagesWork, Runtime, json_response, runtime_of
from service.schemas import PNG_BASE64_EXAMPLE, PROBABILITIES_EXAMPLE

SERVER_NAME: Final = "mnist-digits"
EXTENSIONS: Final = ("binary_tensor_data",)
PLATFORM: Final = "onnxruntime_onnx"
BINARY: Final = "application/octet-stream"
HEADER_LENGTH: Final = "inference-header-content-length"

IMAGE: Final = "image"
IMAGE_BYTES: Final = "image_bytes"
PROBABILITIES: Final = "probabilities"
DIGIT: Final = "digit"
INPUTS: Final = {IMAGE: ("FP32", [-1, 28, 28, 1]), IMAGE_BYTES: ("BYTES", [-1])}
OUTPUTS: Final = {PROBABILITIES: ("FP32", [-1, 10]), DIGIT: ("INT64", [-1])}
PIXELS: Final = 28 * 28

# --- Messages: what was wrong and what to send instead -------------------------------------------
EXAMPLE = '{"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": ["<base64 PNG>"]}]}'
UNKNOWN_MODEL = "unknown model {name!r}: this server serves the model {served!r}"
UNKNOWN_VERSION = "model {name!r} has no version {version!r}: the served version is {served!r}"
FIELD_TYPE = "{field} must be {expected}"
ONE_INPUT = (
    "send exactly one input tensor: 'image' (FP32 [N, 28, 28, 1], MNIST form 0-1) or 'image_bytes' "
    "(BYTES [N], encoded image files); got {got}"
)
UNKNOWN_INPUT = "unknown input {name!r}: send 'image' (FP32 [N, 28, 28, 1]) or 'image_bytes' (BYTES [N])"
WRONG_DATATYPE = "input {name!r} must have datatype {expected}; got {got!r}"
WRONG_SHAPE = "input {name!r} must have shape {expected} with N from 1 to {limit}; got {got}"
NO_DATA = (
    "input {name!r} has no data: send it in 'data', or as binary data after the JSON with "
    "parameters.binary_data_size and the Inference-Header-Content-Length header"
)
DATA_AND_BINARY = "input {name!r} has both 'data' and binary_data_size: send its data one way"
DATA_LENGTH = "input {name!r} has {got} values in 'data'; its shape {shape} needs {expected}"
DATA_NESTING = (
    "input {name!r}: 'data' must be a flat list of {expected} values in row-major order, or nested "
    "lists of exactly the shape {shape}"
)
NOT_NUMERIC = "input 'image' must contain only numbers (no strings, booleans or nulls)"
NOT_FINITE = "input 'image' contains NaN or infinite values: send finite numbers from 0 to 1"
OUT_OF_RANGE = (
    "input 'image' values must be from 0 to 1 (MNIST form, white ink on black); got values from "
    "{low:g} to {high:g}: divide 0-255 pixels by 255"
)
BINARY_SIZE = "input {name!r} has binary_data_size {got}; its shape {shape} of {datatype} needs {expected} bytes"
BYTES_ELEMENT = (
    "input 'image_bytes' binary data is malformed at element {index}: each element must be a 4-byte "
    "little-endian length followed by that many bytes, {count} elements in all"
)
HEADER_LENGTH_INVALID = (
    "invalid Inference-Header-Content-Length {value!r}: it must be the length in bytes of the JSON "
    "at the start of the body (the body has {length} bytes)"
)
NO_HEADER_LENGTH = (
    "input {name!r} has binary_data_size, but the request has no Inference-Header-Content-Length "
    "header: send the length in bytes of the JSON part in that header"
)
BINARY_MISMATCH = (
    "the body has {got} bytes of binary data after the JSON, but the inputs' binary_data_size add up to {expected}"
)
UNKNOWN_OUTPUT = "unknown output {name!r}: request 'probabilities' (FP32 [N, 10]) and/or 'digit' (INT64 [N])"
DUPLICATE_OUTPUT = "output {name!r} is requested twice: request each output once"
UNSUPPORTED_PARAMETER = "parameter {name!r} is not supported by this server: {hint}"
CONTENT_ENCODING = "unsupported Content-Encoding {value!r}: send the body uncompressed, gzip or deflate"
COMPRESSED_BODY = "the body is not valid {encoding} data: send it uncompressed or correctly compressed"
#: Parameters that ask for features this server does not have; anything else is ignored.
UNSUPPORTED_PARAMETERS: Final = {
    "classification": "ask for 'probabilities' and take the top classes from them",
    "shared_memory_region": "send the data in the request body",
    "shared_memory_byte_size": "send the data in the request body",
    "shared_memory_offset": "send the data in the request body",
}


# --- Errors in the protocol's form ----------------------------------------------------------------


def error_response(exc: errors.ServiceError) -> Response:
    """``{"error": ...}``; bad inputs are 400 here (the protocol's status), limits stay 413."""
    status = 400 if exc.status_code in (415, 422) else exc.status_code
    response = json_response({"error": exc.detail}, status)
    if isinstance(exc, errors.TooManyRequests):
        response.headers["retry-after"] = str(exc.retry_after)
    elif status >= 500:
        response.headers["retry-after"] = "1"
    if 400 <= status < 500:
        metrics.REJECTED.labels(str(status)).inc()
    return response


class V2Route(APIRoute):
    """A route whose client errors come back in the protocol's ``{"error": ...}`` form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def v2_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except errors.ServiceError as exc:
                return error_response(exc)

        return v2_handler


def bad(message: str) -> errors.BadRequest:
    return errors.BadRequest(message)


# --- Parsing a request ----------------------------------------------------------------------------


async def read_request(request: Request, settings: Settings) -> tuple[dict[str, object], memoryview | None]:
    """The JSON of an inference request and the binary data after it (None without the header)."""
    body = await parsing.read_body(request.headers.get("content-length"), request.stream(), settings.max_body_bytes)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        body = await asyncio.to_thread(decompress, body, encoding, settings.max_body_bytes)
    declared = request.headers.get(HEADER_LENGTH)
    if declared is None:
        return parsing.loads_json(body, EXAMPLE), None
    try:
        length = int(declared)
    except ValueError:
        length = -1
    if not 0 < length <= len(body):
        raise bad(HEADER_LENGTH_INVALID.format(value=declared[:40], length=len(body)))
    view = memoryview(body)
    return parsing.loads_json(bytes(view[:length]), EXAMPLE), view[length:]


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """A gzip or deflate body (tritonclient's request compression), held to the same size limit."""
    if encoding not in ("gzip", "deflate"):
        raise bad(CONTENT_ENCODING.format(value=encoding[:40]))
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if encoding == "gzip" else zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise bad(COMPRESSED_BODY.format(encoding=encoding)) from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise errors.PayloadTooLarge(errors.BODY_TOO_LARGE.format(limit=limit))
    if not inflater.eof:
        raise bad(COMPRESSED_BODY.format(encoding=encoding))
    return data


def _object(value: object, field: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(FIELD_TYPE.format(field=field, expected="an object"))
    return value


def _parameters(value: object, field: str) -> dict[str, object]:
    """A parameters object: names to strings, numbers or booleans, none asking for a missing feature."""
    parameters = _object(value, field)
    for name, item in parameters.items():
        if not isinstance(item, (str, int, float)):
            raise bad(FIELD_TYPE.format(field=f"{field}.{name}"[:120], expected="a string, number or boolean"))
    for name, hint in UNSUPPORTED_PARAMETERS.items():
        if name in parameters:
            raise bad(UNSUPPORTED_PARAMETER.format(name=name, hint=hint))
    return parameters


def _flag(parameters: dict[str, object], name: str, field: str) -> bool | None:
    value = parameters.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise bad(FIELD_TYPE.format(field=f"{field}.{name}", expected="true or false"))


def requested_outputs(body: dict[str, object]) -> list[tuple[str, bool]]:
    """The outputs to return, each with whether it goes as binary data."""
    parameters = _parameters(body.get("parameters"), "parameters")
    all_binary = _flag(parameters, "binary_data_output", "parameters") or False
    requested = body.get("outputs")
    if requested is None or requested == []:
        return [(PROBABILITIES, all_binary), (DIGIT, all_binary)]
    if not isinstance(requested, list):
        raise bad(FIELD_TYPE.format(field="'outputs'", expected='a list of {"name": ...} objects'))
    outputs: list[tuple[str, bool]] = []
    for i, item in enumerate(requested):
        item = _object(item, f"outputs[{i}]")
        name = item.get("name")
        if not isinstance(name, str):
            raise bad(FIELD_TYPE.format(field=f"outputs[{i}].name", expected="a string"))
        if name not in OUTPUTS:
            raise bad(UNKNOWN_OUTPUT.format(name=name[:100]))
        if any(name == seen for seen, _ in outputs):
            raise bad(DUPLICATE_OUTPUT.format(name=name))
        output_parameters = _parameters(item.get("parameters"), f"outputs[{i}].parameters")
        binary = _flag(output_parameters, "binary_data", f"outputs[{i}].parameters")
        outputs.append((name, all_binary if binary is None else binary))
    return outputs


def _shape(value: object, name: str, tail: list[int], limit: int) -> int:
    """The batch size N of a shape that must be ``[N, *tail]``."""
    expected = "[" + ", ".join(["N", *map(str, tail)]) + "]"
    if not isinstance(value, list) or not all(type(d) is int for d in value):
        got = orjson.dumps(value).decode()[:60] if value is not None else "none"
        raise bad(WRONG_SHAPE.format(name=name, expected=expected, limit=limit, got=got))
    if len(value) != len(tail) + 1 or value[1:] != tail or value[0] < 0:
        raise bad(WRONG_SHAPE.format(name=name, expected=expected, limit=limit, got=value))
    count: int = value[0]
    if count == 0:
        raise errors.InvalidInput(errors.EMPTY_BATCH)
    if count > limit:
        raise errors.PayloadTooLarge(errors.TOO_MANY_IMAGES.format(count=count, limit=limit))
    return count


def inference_work(body: dict[str, object], binary: memoryview | None, settings: Settings) -> Prepare:
    """Check the request's input tensor and return the work for the batcher."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        if isinstance(inputs, list):
            got = f"{len(inputs)} inputs" if inputs else "an empty list"
        else:
            got = "no 'inputs' list" if inputs is None else f"'inputs' of type {type(inputs).__name__}"
        raise bad(ONE_INPUT.format(got=got))
    tensor = _object(inputs[0], "inputs[0]")
    name = tensor.get("name")
    if not isinstance(name, str):
        raise bad(FIELD_TYPE.format(field="inputs[0].name", expected="a string: 'image' or 'image_bytes'"))
    if name not in INPUTS:
        raise bad(UNKNOWN_INPUT.format(name=name[:100]))
    datatype = INPUTS[name][0]
    if tensor.get("datatype") != datatype:
        given = tensor.get("datatype")
        given = given[:40] if isinstance(given, str) else given
        raise bad(WRONG_DATATYPE.format(name=name, expected=datatype, got=given))
    limit = settings.max_batch_images
    tail = [28, 28, 1] if name == IMAGE else []
    count = _shape(tensor.get("shape"), name, tail, limit)
    shape = [count, *tail]

    parameters = _parameters(tensor.get("parameters"), "inputs[0].parameters")
    size = parameters.get("binary_data_size")
    data = tensor.get("data")
    if size is None:
        if binary:
            raise bad(BINARY_MISMATCH.format(got=len(binary), expected=0))
        if data is None:
            raise bad(NO_DATA.format(name=name))
        if name == IMAGE:
            return _image_from_json(data, count, shape)
        return ImagesWork(_bytes_from_json(data, count), settings.max_image_pixels, "image_bytes[{}]")

    if type(size) is not int or size < 0:
        raise bad(FIELD_TYPE.format(field="inputs[0].parameters.binary_data_size", expected="a whole number of bytes"))
    if data is not None:
        raise bad(DATA_AND_BINARY.format(name=name))
    if binary is None:
        raise bad(NO_HEADER_LENGTH.format(name=name))
    if size != len(binary):
        raise bad(BINARY_MISMATCH.format(got=len(binary), expected=size))
    if name == IMAGE:
        expected = count * PIXELS * 4
        if size != expected:
            raise bad(BINARY_SIZE.format(name=name, got=size, shape=shape, datatype=datatype, expected=expected))
        return _image_from_binary(binary, count)
    return ImagesWork(_bytes_from_binary(binary, count), settings.max_image_pixels, "image_bytes[{}]")


def _check_image(images: np.ndarray) -> np.ndarray:
    """The model's own input, checked: finite and in [0, 1]."""
    low, high = float(images.min()), float(images.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise errors.InvalidInput(NOT_FINITE)
    if low < 0 or high > 1:
        raise errors.InvalidInput(OUT_OF_RANGE.format(low=low, high=high))
    return images


def _image_from_binary(binary: memoryview, count: int) -> Prepare:
    def prepare() -> np.ndarray:
        images = np.frombuffer(binary, dtype="<f4", count=count * PIXELS).reshape(count, 28, 28)
        if not images.flags.aligned or images.dtype != np.float32:
            images = images.astype(np.float32)
        return _check_image(images)

    return prepare


def _image_from_json(data: object, count: int, shape: list[int]) -> Prepare:
    def prepare() -> np.ndarray:
        values = _flat(data, IMAGE, shape)
        # Exact types, so booleans, strings and nulls are refused rather than coerced.
        if not set(map(type, values)) <= {float, int}:
            raise errors.InvalidInput(NOT_NUMERIC)
        try:
            images = np.fromiter(values, dtype=np.float32, count=count * PIXELS)
        except OverflowError:
            raise errors.InvalidInput(NOT_FINITE) from None
        return _check_image(images.reshape(count, 28, 28))

    return prepare


def _flat(data: object, name: str, shape: list[int]) -> list[object]:
    """Tensor data as a flat row-major list: given flat, or as nested lists of exactly ``shape``."""
    expected = math.prod(shape)
    if not isinstance(data, list):
        raise errors.InvalidInput(DATA_NESTING.format(name=name, expected=expected, shape=shape))
    if not data or type(data[0]) is not list:
        if len(data) != expected:
            raise errors.InvalidInput(DATA_LENGTH.format(name=name, got=len(data), shape=shape, expected=expected))
        return data
    # Each level must be lists of the next dimension's length; chain flattens a level in C.
    level: list[object] = [data]
    for size in shape:
        if set(map(type, level)) != {list} or set(map(len, level)) != {size}:  # type: ignore[arg-type]
            raise errors.InvalidInput(DATA_NESTING.format(name=name, expected=expected, shape=shape))
        level = list(chain.from_iterable(level))  # type: ignore[arg-type]
    return level


def _bytes_from_json(data: object, count: int) -> list[bytes]:
    if not isinstance(data, list) or len(data) != count:
        got = len(data) if isinstance(data, list) else "no list of"
        raise bad(DATA_LENGTH.format(name=IMAGE_BYTES, got=got, shape=[count], expected=count))
    return [parsing.decode_base64(item, f"image_bytes[{i}]") for i, item in enumerate(data)]


def _bytes_from_binary(binary: memoryview, count: int) -> list[bytes]:
    """Triton's BYTES serialization: each element a 4-byte little-endian length, then the bytes."""
    files: list[bytes] = []
    position = 0
    for index in range(count):
        end = position + 4
        if end > len(binary):
            raise bad(BYTES_ELEMENT.format(index=index, count=count))
        length = int.from_bytes(binary[position:end], "little")
        if end + length > len(binary):
            raise bad(BYTES_ELEMENT.format(index=index, count=count))
        files.append(bytes(binary[end : end + length]))
        position = end + length
    if position != len(binary):
        raise bad(BYTES_ELEMENT.format(index=count, count=count))
    return files


# --- Building a response --------------------------------------------------------------------------


def inference_response(
    classifier: Classifier, request_id: str | None, probabilities: np.ndarray, outputs: list[tuple[str, bool]]
) -> Response:
    """The response object, and after it the binary outputs, in the order they were requested."""
    tensors = {
        PROBABILITIES: np.ascontiguousarray(probabilities, dtype="<f4"),
        DIGIT: probabilities.argmax(axis=1).astype("<i8"),
    }
    header: dict[str, object] = {"model_name": classifier.name, "model_version": classifier.version}
    if request_id is not None:
        header["id"] = request_id
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
    header["outputs"] = described
    content = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return Response(content, media_type=JSON)
    response = Response(b"".join([content, *chunks]), media_type=BINARY)
    response.headers[HEADER_LENGTH] = str(len(content))
    return response


def served_model(runtime: Runtime, name: str, version: str | None) -> Classifier:
    """The classifier if the path names it (and its version); 404 otherwise."""
    classifier = runtime.classifier
    if classifier is None:
        raise errors.Unavailable(errors.MODEL_NOT_READY)
    if name != classifier.name:
        raise errors.NotFound(UNKNOWN_MODEL.format(name=name[:100], served=classifier.name))
    if version is not None and version != classifier.version:
        raise errors.NotFound(UNKNOWN_VERSION.format(name=name, version=version[:100], served=classifier.version))
    return classifier


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


# --- OpenAPI: schemas and examples ----------------------------------------------------------------


class V2Error(BaseModel):
    """Every v2 error, as the protocol defines it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"error": UNKNOWN_INPUT.format(name="input0")}]})
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
                    "versions": ["1.0.0"],
                    "platform": PLATFORM,
                    "inputs": [
                        {"name": IMAGE, "datatype": "FP32", "shape": [-1, 28, 28, 1]},
                        {"name": IMAGE_BYTES, "datatype": "BYTES", "shape": [-1]},
                    ],
                    "outputs": [
                        {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, 10]},
                        {"name": DIGIT, "datatype": "INT64", "shape": [-1]},
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
    """One input tensor: ``image`` (FP32 [N, 28, 28, 1], 0–1) or ``image_bytes`` (BYTES [N], base64 files)."""

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
    name: Literal["probabilities", "digit"]
    parameters: dict[str, Parameter] | None = Field(None, description="binary_data: return it as binary data.")


class InferenceRequest(BaseModel):
    """Exactly one input tensor; outputs default to both."""

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
    data: list[float] | None = None


class InferenceResponse(BaseModel):
    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "model_name": "mnist-improved",
                    "model_version": "1.0.0",
                    "id": "42",
                    "outputs": [
                        {"name": PROBABILITIES, "datatype": "FP32", "shape": [1, 10], "data": PROBABILITIES_EXAMPLE},
                        {"name": DIGIT, "datatype": "INT64", "shape": [1], "data": [7]},
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


def _infer_spec() -> dict[str, Any]:
    examples = {
        "image_bytes": {
            "summary": "Encoded image files, base64 (JSON)",
            "value": {
                "id": "42",
                "inputs": [{"name": IMAGE_BYTES, "datatype": "BYTES", "shape": [1], "data": [PNG_BASE64_EXAMPLE]}],
            },
        },
        "image": {
            "summary": "MNIST-form FP32 tensor, flat row-major (JSON)",
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
        "matching the shape, non-numeric or out-of-range values, an undecodable image or no digit.",
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


# --- Routes ---------------------------------------------------------------------------------------

router = APIRouter(prefix="/v2", tags=["kserve-v2"], route_class=V2Route)


@router.get("", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata(request: Request) -> Response:
    """The server's name, version and protocol extensions."""
    return json_response({"name": SERVER_NAME, "version": request.app.version, "extensions": list(EXTENSIONS)})


@router.get("/health/live", response_model=ServerLive, summary="Server liveness")
async def server_live() -> Response:
    """200 while the process is up, like ``/health/live``."""
    return json_response({"live": True})


@router.get("/health/ready", response_model=ServerReady, responses=NOT_READY, summary="Server readiness")
async def server_ready(request: Request) -> Response:
    """200 once the model is loaded and warmed up; 503 before that and while shutting down."""
    runtime = runtime_of(request)
    if runtime.draining:
        raise errors.Unavailable(errors.SHUTTING_DOWN)
    if not runtime.ready:
        raise errors.Unavailable(errors.MODEL_NOT_READY)
    return json_response({"ready": True})


async def _model_ready(request: Request, model_name: str, version: str | None) -> Response:
    runtime = runtime_of(request)
    classifier = served_model(runtime, model_name, version)
    if runtime.draining:
        raise errors.Unavailable(errors.SHUTTING_DOWN)
    if not runtime.ready:
        raise errors.Unavailable(errors.MODEL_NOT_READY)
    return json_response({"name": classifier.name, "ready": True})


@router.get("/models/{model_name}/ready", response_model=ModelReady, responses=NOT_FOUND, summary="Model readiness")
async def model_ready(request: Request, model_name: str) -> Response:
    """200 when the named model can serve; 404 for another name."""
    return await _model_ready(request, model_name, None)


@router.get(
    "/models/{model_name}/versions/{model_version}/ready",
    response_model=ModelReady,
    responses=NOT_FOUND,
    summary="Model version readiness",
)
async def model_version_ready(request: Request, model_name: str, model_version: str) -> Response:
    """200 when the named model at that version can serve; 404 for another name or version."""
    return await _model_ready(request, model_name, model_version)


@router.get("/models/{model_name}", response_model=ModelMetadata, responses=NOT_FOUND, summary="Model metadata")
async def model_metadata_route(request: Request, model_name: str) -> Response:
    """The model's versions, platform, and input and output tensors (-1: any batch size)."""
    return json_response(model_metadata(served_model(runtime_of(request), model_name, None)))


@router.get(
    "/models/{model_name}/versions/{model_version}",
    response_model=ModelMetadata,
    responses=NOT_FOUND,
    summary="Model version metadata",
)
async def model_version_metadata(request: Request, model_name: str, model_version: str) -> Response:
    """The model's metadata, if it is served at that version."""
    return json_response(model_metadata(served_model(runtime_of(request), model_name, model_version)))


async def _infer(request: Request, model_name: str, version: str | None) -> Response:
    runtime = runtime_of(request)
    classifier = served_model(runtime, model_name, version)
    body, binary = await read_request(request, runtime.settings)
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad(FIELD_TYPE.format(field="'id'", expected="a string"))
    outputs = requested_outputs(body)
    prepare = inference_work(body, binary, runtime.settings)
    _, probabilities = await runtime.classify(prepare)
    return inference_response(classifier, request_id, probabilities, outputs)


@router.post(
    "/models/{model_name}/infer",
    response_model=InferenceResponse,
    responses=INFER_RESPONSES,
    openapi_extra=_infer_spec(),
    summary="Inference",
)
async def infer(request: Request, model_name: str) -> Response:
    """Classify N images sent as one tensor, in JSON or with binary tensor data."""
    return await _infer(request, model_name, None)


@router.post(
    "/models/{model_name}/versions/{model_version}/infer",
    response_model=InferenceResponse,
    responses=INFER_RESPONSES,
    openapi_extra=_infer_spec(),
    summary="Inference on a model version",
)
async def infer_version(request: Request, model_name: str, model_version: str) -> Response:
    """Inference, if the model is served at that version."""
    return await _infer(request, model_name, model_version)
