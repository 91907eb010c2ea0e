"""Reading an inference request: from its JSON (and the binary data after it) to work for the batcher.

Transport-neutral: these functions take the request's JSON object and bytes, not an HTTP
request, so that the gRPC service shares them. They raise the service's typed errors
(``service.errors``), which each transport renders in its own form.
"""

from __future__ import annotations

import math
import zlib
from itertools import chain

import numpy as np
import orjson

from service import errors, parsing
from service.config import Settings
from service.inference import Classifier, Prepare
from service.routes import ImagesWork, Runtime
from service.v2 import spec
from service.v2.messages import (
    BINARY_MISMATCH,
    BINARY_SIZE,
    BYTES_ELEMENT,
    BYTES_INPUT,
    COMPRESSED_BODY,
    CONTENT_ENCODING,
    DATA_AND_BINARY,
    DATA_LENGTH,
    DATA_NESTING,
    DUPLICATE_OUTPUT,
    EXAMPLE,
    FIELD_TYPE,
    HEADER_LENGTH_INVALID,
    INDEX_BODY,
    NO_DATA,
    NO_HEADER_LENGTH,
    NOT_NUMERIC,
    ONE_INPUT,
    TENSOR_INPUT,
    UNKNOWN_INPUT,
    UNKNOWN_MODEL,
    UNKNOWN_OUTPUT,
    UNKNOWN_VERSION,
    UNSUPPORTED_PARAMETER,
    UNSUPPORTED_PARAMETERS,
    WRONG_DATATYPE,
    WRONG_SHAPE,
    echo,
)
from service.v2.spec import BYTES_SUFFIX, IMAGE, IMAGE_BYTES, INPUTS, OUTPUTS, PIXELS, ModelSpec


def bad(message: str) -> errors.BadRequest:
    return errors.BadRequest(message)


def served_model(runtime: Runtime, name: str, version: str | None) -> tuple[Classifier, ModelSpec]:
    """The classifier and the model a request names (at that version; None or "" for any); 404 otherwise."""
    classifier = runtime.classifier
    if classifier is None:
        raise errors.Unavailable(errors.MODEL_NOT_READY)
    models = spec.served_models(classifier.name)
    model = models.get(name)
    if model is None:
        raise errors.NotFound(UNKNOWN_MODEL.format(name=name[:100], served=" and ".join(map(repr, models))))
    if version and version not in (spec.protocol_version(classifier.version), classifier.version):
        served, full = spec.protocol_version(classifier.version), classifier.version
        raise errors.NotFound(UNKNOWN_VERSION.format(name=name, version=version[:100], served=served, full=full))
    return classifier, model


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, object], memoryview | None]:
    """The JSON of an inference request and the binary data after it (None without the header)."""
    if header_length is None:
        return parsing.loads_json(body, EXAMPLE), None
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 < length <= len(body):
        raise bad(HEADER_LENGTH_INVALID.format(value=header_length[:40], length=len(body)))
    view = memoryview(body)
    return parsing.loads_json(bytes(view[:length]), EXAMPLE), view[length:]


def index_request(body: bytes) -> bool:
    """A repository index request: empty, or ``{"ready": true/false}``; whether to list only ready models."""
    if not body.strip():
        return False
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad(INDEX_BODY) from None
    if not isinstance(request, dict) or not isinstance(request.get("ready", False), bool):
        raise bad(INDEX_BODY)
    return bool(request.get("ready", False))


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
        return [(name, all_binary) for name in OUTPUTS]
    if not isinstance(requested, list):
        raise bad(FIELD_TYPE.format(field="'outputs'", expected='a list of {"name": ...} objects'))
    outputs: list[tuple[str, bool]] = []
    for i, item in enumerate(requested):
        item = _object(item, f"outputs[{i}]")
        name = item.get("name")
        if not isinstance(name, str):
            raise bad(FIELD_TYPE.format(field=f"outputs[{i}].name", expected="a string"))
        if name not in OUTPUTS:
            raise bad(UNKNOWN_OUTPUT.format(name=echo(name)))
        if any(name == seen for seen, _ in outputs):
            raise bad(DUPLICATE_OUTPUT.format(name=name))
        output_parameters = _parameters(item.get("parameters"), f"outputs[{i}].parameters")
        binary = _flag(output_parameters, "binary_data", f"outputs[{i}].parameters")
        outputs.append((name, all_binary if binary is None else binary))
    return outputs


def _shape(value: object, name: str, tail: list[int], limit: int) -> int:
    """The batch size N of a shape that must be ``[N, *tail]``."""
    expected = "[N] or [N, 1]" if name == IMAGE_BYTES else "[" + ", ".join(["N", *map(str, tail)]) + "]"
    if not isinstance(value, list) or not all(type(d) is int for d in value):
        got = echo(value) if value is not None else "none"
        raise bad(WRONG_SHAPE.format(name=name, expected=expected, limit=limit, got=got))
    if len(value) != len(tail) + 1 or value[1:] != tail or value[0] < 0:
        raise bad(WRONG_SHAPE.format(name=name, expected=expected, limit=limit, got=echo(value)))
    count: int = value[0]
    if count == 0:
        raise errors.InvalidInput(errors.EMPTY_BATCH)
    if count > limit:
        raise errors.PayloadTooLarge(errors.TOO_MANY_IMAGES.format(count=count, limit=limit))
    return count


def inference_work(body: dict[str, object], binary: memoryview | None, settings: Settings, model: ModelSpec) -> Prepare:
    """Check the request's input tensor against the model's and return the work for the batcher."""
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
    if name not in model.accepted:
        raise bad(UNKNOWN_INPUT.format(model=model.name, name=echo(name), expected=_expected_inputs(model)))
    datatype = INPUTS[name].datatype
    if tensor.get("datatype") != datatype:
        raise bad(WRONG_DATATYPE.format(name=name, expected=datatype, got=echo(tensor.get("datatype"))))
    limit = settings.max_batch_images
    shape_given = tensor.get("shape")
    # BYTES [N, 1] as listed, or [N] (the form documented before).
    bytes_column = name == IMAGE_BYTES and isinstance(shape_given, list) and shape_given[1:] == [1]
    tail = [28, 28, 1] if name == IMAGE else [1] if bytes_column else []
    count = _shape(shape_given, name, tail, limit)
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
        if bytes_column:
            data = _flat(data, name, shape)
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


def _expected_inputs(model: ModelSpec) -> str:
    """What the model takes, and where the other input goes."""
    if IMAGE in model.accepted:
        return TENSOR_INPUT.format(other=model.name + BYTES_SUFFIX)
    return BYTES_INPUT.format(other=model.name.removesuffix(BYTES_SUFFIX))


def _clip_image(images: np.ndarray) -> np.ndarray:
    """The tensor in the model's input range: values outside [0, 1] clipped into it, NaN read as 0.

    Refused with a 400 before, but generic tools cannot meet that: perf_analyzer's own generated
    data is random bytes read as FP32 (NaN, infinities, 1e38), and every such request failed.
    Triton runs any tensor as given; the model here is only defined on 0-1, so it gets the
    nearest tensor in that range. The common mistake (0-255 pixels) gives an all-ink image.
    """
    low, high = float(images.min()), float(images.max())
    if 0 <= low and high <= 1:  # NaN fails both comparisons
        return images
    clipped: np.ndarray = np.clip(np.nan_to_num(images, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return clipped.astype(np.float32, copy=False)


def _image_from_binary(binary: memoryview, count: int) -> Prepare:
    def prepare() -> np.ndarray:
        images = np.frombuffer(binary, dtype="<f4", count=count * PIXELS).reshape(count, 28, 28)
        if not images.flags.aligned or images.dtype != np.float32:
            images = images.astype(np.float32)
        return _clip_image(images)

    return prepare


def _image_from_json(data: object, count: int, shape: list[int]) -> Prepare:
    def prepare() -> np.ndarray:
        values = _flat(data, IMAGE, shape)
        # Exact types, so booleans, strings and nulls are refused rather than coerced.
        if not set(map(type, values)) <= {float, int}:
            raise errors.InvalidInput(NOT_NUMERIC)
        try:
            images = np.fromiter(values, dtype=np.float32, count=count * PIXELS)
        except OverflowError:  # a number beyond float32 (1e300): clip it in float64 first
            images = np.clip(np.fromiter(values, dtype=np.float64, count=count * PIXELS), 0.0, 1.0)
        return _clip_image(images.reshape(count, 28, 28))

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
