"""Every message a v2 client can see: what was wrong and what to send instead.

The v2 part of the service's message catalogue (``service/errors.py`` holds the rest, and the
messages both APIs share). Tests assert on these templates.
"""

from __future__ import annotations

from typing import Final

import orjson

#: The most characters of one client value that a message repeats: enough to recognise it, and
#: small enough that no error grows with what the client sent (a 5 MB datatype, a 1M-entry shape).
ECHO_CHARS: Final = 60


def echo(value: object) -> str:
    """A client's value as a message shows it: quoted if a string, else as JSON; cut to ECHO_CHARS."""
    if isinstance(value, str):
        text = repr(value[: ECHO_CHARS + 1])
    else:
        try:
            text = orjson.dumps(value).decode()
        except TypeError:
            text = type(value).__name__
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 1] + "…"


EXAMPLE = '{"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": ["<base64 PNG>"]}]}'
UNKNOWN_MODEL = "unknown model {name!r}: this server serves {served}"
INDEX_BODY = 'a repository index request must be empty or a JSON object such as {"ready": true}'
UNKNOWN_VERSION = "model {name!r} has no version {version!r}: the served version is {served!r} (model version {full!r})"
FIELD_TYPE = "{field} must be {expected}"
ONE_INPUT = (
    "send exactly one input tensor: 'image' (FP32 [N, 28, 28, 1], MNIST form 0-1) or 'image_bytes' "
    "(BYTES [N, 1], encoded image files); got {got}"
)
UNKNOWN_INPUT = "model {model!r} has no input {name}: {expected}"
#: What each model takes, for UNKNOWN_INPUT's {expected}: the tensor model, then the bytes model.
TENSOR_INPUT = (
    "send 'image' (FP32 [N, 28, 28, 1], MNIST form 0-1); send encoded image files as 'image_bytes' to the "
    "model {other!r}"
)
BYTES_INPUT = (
    "send 'image_bytes' (BYTES [N, 1], encoded image files); send MNIST-form tensors as 'image' to the model {other!r}"
)
WRONG_DATATYPE = "input {name!r} must have datatype {expected}; got {got}"
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
UNKNOWN_OUTPUT = (
    "unknown output {name}: request any of 'probabilities' (FP32 [N, 10]), 'digit' (INT64 [N]), "
    "'is_digit' (BOOL [N]) and 'digit_score' (FP32 [N])"
)
DUPLICATE_OUTPUT = "output {name!r} is requested twice: request each output once"
UNSUPPORTED_PARAMETER = "parameter {name!r} is not supported by this server: {hint}"
CONTENT_ENCODING = "unsupported Content-Encoding {value!r}: send the body uncompressed, gzip or deflate"
UNKNOWN_ROUTE = (
    "no v2 endpoint at {path}: see GET /v2 for the server, GET /v2/models/<name> for a model, and "
    "POST /v2/models/<name>/infer for inference"
)
METHOD_NOT_ALLOWED = "{method} is not allowed on {path}: use {allowed}"
COMPRESSED_BODY = "the body is not valid {encoding} data: send it uncompressed or correctly compressed"
#: Parameters that ask for features this server does not have; anything else is ignored.
UNSUPPORTED_PARAMETERS: Final = {
    "classification": "ask for 'probabilities' and take the top classes from them",
    "shared_memory_region": "send the data in the request body",
    "shared_memory_byte_size": "send the data in the request body",
    "shared_memory_offset": "send the data in the request body",
}
