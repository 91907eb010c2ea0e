"""ModelInfer's tensors: a request's input checked and turned into work for the batcher, and the outputs.

The checks and decoders are the HTTP v2 API's (``service.v2``): the same shapes, limits, value
checks and messages. What only gRPC has (``raw_input_contents``, the typed ``contents`` fields)
is checked here, with its own messages in ``service/errors.py``.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

from service import errors, v2
from service.config import Settings
from service.inference import Prepare
from service.model_repository import ModelSpec
from service.routes import ImagesWork

#: The ``contents`` field that carries each datatype's values.
CONTENTS_FIELDS: Final = {"FP32": "fp32_contents", "BYTES": "bytes_contents", "INT64": "int64_contents"}
ALL_CONTENTS: Final = (
    "bool_contents",
    "int_contents",
    "int64_contents",
    "uint_contents",
    "uint64_contents",
    "fp32_contents",
    "fp64_contents",
    "bytes_contents",
)
#: numpy's little-endian types for the output datatypes (raw contents are little-endian).
OUTPUT_DTYPES: Final = {"FP32": "<f4", "INT64": "<i8", "BOOL": "?"}


def bad(message: str) -> errors.BadRequest:
    return errors.BadRequest(message)


def check_parameters(parameters: Any) -> None:
    """Refuse the parameters that ask for a feature this server does not have (shared memory, classification)."""
    for name, hint in v2.UNSUPPORTED_PARAMETERS.items():
        if name in parameters:
            raise bad(v2.UNSUPPORTED_PARAMETER.format(name=name, hint=hint))


def requested_outputs(request: Any, spec: ModelSpec) -> list[str]:
    """The outputs to return, in the order asked for; all of them when none is named."""
    check_parameters(request.parameters)
    if not request.outputs:
        return list(spec.outputs)
    names: list[str] = []
    for output in request.outputs:
        if output.name not in spec.outputs:
            raise bad(v2.UNKNOWN_OUTPUT.format(name=output.name[:100]))
        if output.name in names:
            raise bad(v2.DUPLICATE_OUTPUT.format(name=output.name))
        check_parameters(output.parameters)
        names.append(output.name)
    return names


def _input_error(spec: ModelSpec, models: dict[str, ModelSpec], got: str) -> errors.BadRequest:
    (name, (datatype, shape)), *_ = spec.inputs.items()
    other = next(s for s in models.values() if s.name != spec.name)
    shape_text = "[" + ", ".join("N" if d < 0 else str(d) for d in shape) + "]"
    return bad(
        errors.GRPC_MODEL_INPUT.format(
            model=spec.name,
            input=name,
            datatype=datatype,
            shape=shape_text,
            got=got,
            other=other.name,
            other_input=next(iter(other.inputs)),
        )
    )


def inference_work(request: Any, spec: ModelSpec, models: dict[str, ModelSpec], settings: Settings) -> Prepare:
    """Check the request's one input tensor and return the work for the batcher."""
    inputs = request.inputs
    if len(inputs) != 1:
        raise _input_error(spec, models, f"{len(inputs)} inputs" if inputs else "no input")
    tensor = inputs[0]
    if tensor.name not in spec.inputs:
        raise _input_error(spec, models, f"an input named {tensor.name[:100]!r}")
    name: str = tensor.name
    datatype = spec.inputs[name][0]
    if tensor.datatype != datatype:
        raise bad(v2.WRONG_DATATYPE.format(name=name, expected=datatype, got=tensor.datatype[:40]))
    check_parameters(tensor.parameters)
    dims = list(tensor.shape)
    if name == v2.IMAGE_BYTES and len(dims) == 2 and dims[1] == 1:
        dims = dims[:1]  # [N, 1], as the model lists it, is [N] files
    tail = [28, 28, 1] if name == v2.IMAGE else []
    count = v2._shape(dims, name, tail, settings.max_batch_images)
    shape = [count, *tail]
    field = CONTENTS_FIELDS[datatype]

    raw = request.raw_input_contents
    if raw:
        if len(raw) != len(inputs):
            raise bad(errors.GRPC_RAW_COUNT.format(got=len(raw), expected=len(inputs)))
        if tensor.HasField("contents"):
            raise bad(errors.GRPC_RAW_AND_CONTENTS.format(name=name))
        data = memoryview(raw[0])
        if name == v2.IMAGE:
            expected = count * v2.PIXELS * 4
            if len(data) != expected:
                raise bad(
                    errors.GRPC_RAW_SIZE.format(
                        name=name, got=len(data), shape=shape, datatype=datatype, expected=expected
                    )
                )
            return v2._image_from_binary(data, count)
        return ImagesWork(v2._bytes_from_binary(data, count), settings.max_image_pixels, "image_bytes[{}]")

    if not tensor.HasField("contents"):
        raise bad(errors.GRPC_NO_DATA.format(name=name, field=field))
    contents = tensor.contents
    others = [f for f in ALL_CONTENTS if f != field and len(getattr(contents, f))]
    if others:
        given = ", ".join(f"contents.{f}" for f in others)
        raise bad(errors.GRPC_CONTENTS_FIELD.format(name=name, datatype=datatype, field=field, got=given))
    values = getattr(contents, field)
    expected = math.prod(shape)
    if len(values) != expected:
        raise bad(
            errors.GRPC_CONTENTS_LENGTH.format(name=name, got=len(values), field=field, shape=shape, expected=expected)
        )
    if name == v2.IMAGE:
        images = np.array(values, dtype=np.float32).reshape(count, 28, 28)

        def prepare() -> np.ndarray:
            return v2._check_image(images)

        return prepare
    return ImagesWork(list(values), settings.max_image_pixels, "image_bytes[{}]")


def output_tensors(probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """Every output the models have, computed from the probabilities the batcher returned."""
    return {
        v2.PROBABILITIES: np.ascontiguousarray(probabilities, dtype="<f4"),
        v2.DIGIT: probabilities.argmax(axis=1).astype("<i8"),
    }


def fill_response(response: Any, probabilities: np.ndarray, names: list[str], spec: ModelSpec) -> None:
    """The requested outputs as raw little-endian contents (what Triton answers, and tritonclient reads)."""
    tensors = output_tensors(probabilities)
    for name in names:
        tensor = tensors[name]
        output = response.outputs.add()
        output.name = name
        output.datatype = spec.outputs[name][0]
        output.shape.extend(tensor.shape)
        response.raw_output_contents.append(tensor.astype(OUTPUT_DTYPES[output.datatype], copy=False).tobytes())
