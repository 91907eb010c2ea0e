"""ModelInfer's tensors: a request turned into work for the batcher, and the outputs into the response.

A gRPC request carries its tensor in ``raw_input_contents`` (as tritonclient sends it) or in the
typed ``contents`` fields. Both are turned into what an HTTP request with binary tensor data
carries (a JSON-like header and the tensor's bytes) and go through the HTTP v2 API's own parser
(``service.v2.parse``): the same names, datatypes, shapes, limits, value checks and messages.
What only gRPC has is checked here first, with its own messages in ``service/errors.py``.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

from service import errors
from service.config import Settings
from service.inference import Prepare
from service.v2 import parse
from service.v2.spec import IMAGE, INPUTS, OUTPUTS, PIXELS, ModelSpec

#: The ``contents`` field that carries each input datatype's values.
CONTENTS_FIELDS: Final = {"FP32": "fp32_contents", "BYTES": "bytes_contents"}
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


def bad(message: str) -> errors.BadRequest:
    return errors.BadRequest(message)


def parameters(field: Any) -> dict[str, object]:
    """A protobuf map of ``InferParameter`` as the JSON parameters object HTTP would carry."""
    out: dict[str, object] = {}
    for name, parameter in field.items():
        choice = parameter.WhichOneof("parameter_choice")
        out[name] = getattr(parameter, choice) if choice else None
    return out


def requested_outputs(request: Any) -> list[str]:
    """The outputs to return, in the order asked for (all of them when none is named): v2's rules."""
    header: dict[str, object] = {
        "parameters": parameters(request.parameters),
        "outputs": [{"name": o.name, "parameters": parameters(o.parameters)} for o in request.outputs],
    }
    return [name for name, _ in parse.requested_outputs(header)]


def _tensor_header(tensor: Any) -> dict[str, object]:
    return {
        "name": tensor.name,
        "datatype": tensor.datatype,
        "shape": list(tensor.shape),
        "parameters": parameters(tensor.parameters),
    }


def _dims_ok(name: str, shape: list[int], settings: Settings) -> bool:
    """A shape the v2 parser accepts: only then is the data's size checked against it here (the
    parser says what is wrong with any other shape)."""
    tail = [28, 28, 1] if name == IMAGE else []
    return bool(shape) and 0 < shape[0] <= settings.max_batch_images and shape[1:] == tail


def inference_work(request: Any, model: ModelSpec, settings: Settings) -> Prepare:
    """Check the request's one input tensor and return the work for the batcher."""
    header: dict[str, object] = {"inputs": [_tensor_header(t) for t in request.inputs]}
    if len(request.inputs) != 1 or request.inputs[0].name not in INPUTS:
        return parse.inference_work(header, None, settings, model)  # its message for a wrong number or name
    tensor = request.inputs[0]
    name, datatype = tensor.name, INPUTS[tensor.name].datatype
    field = CONTENTS_FIELDS[datatype]
    shape = list(tensor.shape)
    raw = request.raw_input_contents
    data: bytes
    if raw:
        if len(raw) != len(request.inputs):
            raise bad(errors.GRPC_RAW_COUNT.format(got=len(raw), expected=len(request.inputs)))
        if tensor.HasField("contents"):
            raise bad(errors.GRPC_RAW_AND_CONTENTS.format(name=name))
        data = raw[0]
        if name == IMAGE and tensor.datatype == datatype and _dims_ok(name, shape, settings):
            expected = shape[0] * PIXELS * 4
            if len(data) != expected:
                raise bad(
                    errors.GRPC_RAW_SIZE.format(
                        name=name, got=len(data), shape=shape, datatype=datatype, expected=expected
                    )
                )
    elif tensor.HasField("contents"):
        contents = tensor.contents
        others = [f for f in ALL_CONTENTS if f != field and len(getattr(contents, f))]
        if others:
            given = ", ".join(f"contents.{f}" for f in others)
            raise bad(errors.GRPC_CONTENTS_FIELD.format(name=name, datatype=datatype, field=field, got=given))
        values = getattr(contents, field)
        if tensor.datatype == datatype and _dims_ok(name, shape, settings) and len(values) != math.prod(shape):
            raise bad(
                errors.GRPC_CONTENTS_LENGTH.format(
                    name=name, got=len(values), field=field, shape=shape, expected=math.prod(shape)
                )
            )
        if name == IMAGE:
            data = np.asarray(values, dtype="<f4").tobytes()
        else:  # Triton's BYTES serialization: each element's 4-byte little-endian length, then its bytes
            data = b"".join(len(v).to_bytes(4, "little") + v for v in values)
    else:
        if tensor.datatype == datatype:
            raise bad(errors.GRPC_NO_DATA.format(name=name, field=field))
        data = b""  # the parser names the wrong datatype
    described = {**_tensor_header(tensor)}
    described["parameters"] = {**parameters(tensor.parameters), "binary_data_size": len(data)}
    header["inputs"] = [described]
    return parse.inference_work(header, memoryview(data), settings, model)


def fill_response(response: Any, tensors: dict[str, np.ndarray], names: list[str]) -> None:
    """The requested outputs as raw little-endian contents (what Triton answers, and tritonclient reads)."""
    for name in names:
        tensor = tensors[name]
        output = response.outputs.add()
        output.name = name
        output.datatype = OUTPUTS[name].datatype
        output.shape.extend(tensor.shape)
        response.raw_output_contents.append(tensor.tobytes())
