"""Typed client errors. Every message a client can see lives here, and tests assert on them.

Each error becomes a JSON body ``{"detail": "..."}`` with its status code: the message says
what was wrong and what to send instead. Nothing here ever carries a stack trace or a path.
"""

from __future__ import annotations


class ServiceError(Exception):
    """An error with a status code and a message that is safe to show the client."""

    status_code: int = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(ServiceError):
    status_code = 400


class Unauthorized(ServiceError):
    status_code = 401


class NotFound(ServiceError):
    status_code = 404


class PayloadTooLarge(ServiceError):
    status_code = 413


class UnsupportedMediaType(ServiceError):
    status_code = 415


class InvalidInput(ServiceError):
    status_code = 422


class TooManyRequests(ServiceError):
    status_code = 429

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Unavailable(ServiceError):
    status_code = 503


class Timeout(ServiceError):
    status_code = 504


#: The most characters of a client's own value (a Content-Type, a field name) that a message
#: repeats: enough to recognise it, never a way to make the service echo megabytes back.
ECHO_CHARS = 100
#: The most characters of one field name a message repeats, and the most names it lists.
ECHO_NAME_CHARS = 40
ECHO_NAMES = 10
#: The most validation problems one 422 lists: the first few say what to fix.
MAX_PROBLEMS_LISTED = 5

SUPPORTED_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif", "image/tiff")

# --- Messages -------------------------------------------------------------------------------------
UNSUPPORTED_CONTENT_TYPE = (
    "unsupported Content-Type {content_type!r}: send multipart/form-data with a file field "
    "'{field}', a raw image body (" + ", ".join(SUPPORTED_IMAGE_TYPES) + "), or application/json "
    "with {json_forms}"
)
UNSUPPORTED_BATCH_CONTENT_TYPE = (
    "unsupported Content-Type {content_type!r} for a batch: send multipart/form-data with one file "
    "field '{field}' per image, or application/json with {json_forms}"
)
UNSUPPORTED_IMAGE_TYPE = "unsupported image type {content_type!r}: send PNG, JPEG, WebP, BMP, GIF or TIFF"
EMPTY_IMAGE = "the image is empty (0 bytes): send the bytes of a PNG, JPEG, WebP, BMP, GIF or TIFF file"
UNDECODABLE_IMAGE = (
    "the image could not be decoded ({reason}): send a complete, valid PNG, JPEG, WebP, BMP, GIF or TIFF file"
)
NO_DIGIT = "no digit found: the image is blank or has too little contrast; draw or photograph a single digit"
IMAGE_TOO_LARGE = (
    "the image is {width}x{height} = {pixels:,} pixels, over the limit of {limit:,}: scale it down "
    "(a digit needs no more than a few hundred pixels a side)"
)
BODY_TOO_LARGE = "the request body is over the limit of {limit:,} bytes: send smaller or fewer images"
TOO_MANY_IMAGES = "{count} images is over the batch limit of {limit}: split them into several requests"
TOO_MANY_PARTS = (
    "the multipart body has over {limit} parts, the most this server reads in one request: send one file "
    "field per image, and split large batches into several requests"
)
EMPTY_BATCH = "the batch is empty: send at least one image"
INVALID_JSON = "the body is not valid JSON ({reason}): send an object such as {example}"
JSON_NOT_OBJECT = "the JSON body must be an object such as {example}"
JSON_FIELDS = "send exactly one of the fields {fields} in the JSON object; got {got}"
INVALID_BASE64 = "{field} is not valid base64: send the image file's bytes encoded as standard base64"
NOT_A_STRING = "{field} must be a string of base64-encoded image bytes"
NOT_A_LIST = "'images' must be a list of base64 strings"
PIXELS_SHAPE = "'pixels' must be {expected} numbers from 0 to 255; got {got}"
PIXELS_TYPE = "'pixels' must contain only numbers from 0 to 255 (no strings, booleans or nulls)"
PIXELS_NOT_FINITE = "'pixels' contains NaN or infinite values: send finite numbers from 0 to 255"
PIXELS_RANGE = "'pixels' values must be from 0 to 255; got values from {low:g} to {high:g}"
MISSING_FILE_FIELD = "multipart body has no file field '{field}': send the image as a file in a field named '{field}'"
MALFORMED_MULTIPART = "the multipart body is malformed ({reason}): send multipart/form-data with a file field '{field}'"
MODEL_NOT_READY = "the model is not loaded yet: retry when GET /health/ready answers 200"
INVALID_REQUEST = "invalid request: {problems}"
INTERNAL_ERROR = "internal error: the request could not be processed; report it with the X-Request-ID header"
INFERENCE_FAILED = "the model failed to run on this request: retry, and report it if it persists"
SHUTTING_DOWN = "the service is shutting down: retry on another instance"
REQUEST_TIMEOUT = "the request took longer than the limit of {seconds:g} s: send fewer or smaller images"
MISSING_API_KEY = "missing or invalid API key: send it in the 'X-API-Key' header or as 'Authorization: Bearer <key>'"
RATE_LIMITED = "too many requests in flight from this client (limit {limit}): retry after {retry_after} s"
IMAGE_BOMB = (
    "the image declares more pixels than the decoder will expand (a decompression bomb?): send an "
    "image of at most {limit:,} pixels"
)
IMAGE_OVER_LIMIT = (
    "the image is {width:,} × {height:,} px: send at most {side:,} px a side and {limit:,} px in all as "
    "{kind} (a digit needs no more than a few hundred pixels a side; JPEG photos may be larger)"
)
IMAGE_TOO_COMPLEX = "the {kind} has more than {limit:,} {parts}: re-save it as a plain PNG or JPEG"

# --- The KServe v2 gRPC API (service/grpc_api): the v2 messages, and these for what only gRPC has
GRPC_UNKNOWN_MODEL = "unknown model {name!r}: this server serves the models {served}"
GRPC_MODEL_INPUT = (
    "model {model!r} takes exactly one input tensor, {input!r} ({datatype} {shape}); got {got}: "
    "send that input, or use the model {other!r} for {other_input!r}"
)
GRPC_NO_DATA = "input {name!r} has no data: send it in raw_input_contents (as tritonclient does) or in contents.{field}"
GRPC_RAW_COUNT = (
    "the request has {got} raw_input_contents for {expected} input: send one raw_input_contents entry "
    "per input, or send the values in contents"
)
GRPC_RAW_AND_CONTENTS = "input {name!r} has both contents and raw_input_contents: send its data one way"
GRPC_RAW_SIZE = (
    "input {name!r} has {got} bytes in raw_input_contents; its shape {shape} of {datatype} needs {expected} bytes"
)
GRPC_CONTENTS_FIELD = "input {name!r} of datatype {datatype} takes its values in contents.{field}; got {got}"
GRPC_CONTENTS_LENGTH = "input {name!r} has {got} values in contents.{field}; its shape {shape} needs {expected}"
