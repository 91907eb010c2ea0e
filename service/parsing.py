"""Reading request bodies: the size limit, multipart/form-data, raw images and JSON.

This is on the hot path of every request, so multipart is parsed with ``bytes.find`` over
the body held in memory (it is already capped by the size limit) instead of a streaming
parser with per-chunk callbacks and spooled temporary files.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from service import errors

IMAGE_TYPES = frozenset(errors.SUPPORTED_IMAGE_TYPES)
# Names some clients use for the same formats.
IMAGE_TYPE_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-ms-bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
    "image/tif": "image/tiff",
    "image/x-png": "image/png",
}
#: RFC 2046 allows boundaries of up to 70 characters; some clients exceed it a little, so the
#: limit has room, and a longer one is refused before it is searched for in the body.
MAX_BOUNDARY_CHARS = 200
#: The most parts one multipart body may have: 4x the default batch limit (256), so that a batch
#: with a few text fields beside it is read, and a body of thousands of empty parts is not.
MAX_MULTIPART_PARTS = 1024
#: The longest headers of one part: real clients send under 300 bytes.
MAX_PART_HEADER_BYTES = 8192


def media_type(content_type: str | None) -> str:
    """``'Image/PNG; q=1'`` → ``'image/png'``."""
    if not content_type:
        return ""
    kind = content_type.split(";", 1)[0].strip().lower()
    return IMAGE_TYPE_ALIASES.get(kind, kind)


#: One ``; key=value`` parameter: a quoted value runs to its closing quote (so a ``;`` inside it
#: is part of it), an unquoted one to the next ``;``. The quoted form is written unrolled
#: (``"[^"\\]*(?:\\.[^"\\]*)*"``, the same strings as ``"(?:[^"\\]|\\.)*"``): the regex engine
#: then takes a run of plain characters at once instead of one alternation per character, which
#: cost a third of each call on a quoted filename (callgrind).
_PARAMETER = re.compile(r';[ \t]*([^\s=;]+)[ \t]*=[ \t]*("[^"\\]*(?:\\.[^"\\]*)*"|[^;]*)')


def header_params(value: str) -> dict[str, str]:
    """Every parameter of a header value (``boundary``, ``name``, ``filename``...), by lower-cased key, unquoted.

    Read as python-multipart's ``parse_options_header`` reads them (tests/service/test_parsing.py
    compares them): keys are case-insensitive, the last of a repeated key wins, RFC 2231
    extended keys (``key*=``) are kept under their own name (so ``filename`` ignores them: RFC
    7578 forbids them), and a full Windows path sent as a filename is cut to its last part. One
    scan for all the parameters: a part's name and filename come from the same header.
    """
    params: dict[str, str] = {}
    for key, raw in _PARAMETER.findall(value):
        raw = raw.rstrip(" \t")
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1].replace("\\\\", "\\").replace('\\"', '"')
        params[key.lower()] = raw
    filename = params.get("filename")
    if filename is not None and (filename[1:3] == ":\\" or filename[:2] == "\\\\"):
        params["filename"] = filename.split("\\")[-1]
    return params


def header_param(value: str, name: str) -> str | None:
    """One parameter of a header value, as :func:`header_params` reads it (``name`` lower-case)."""
    return header_params(value).get(name)


async def read_body(content_length: str | None, stream: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``limit``.

    A declared Content-Length over the limit is refused before a byte of the body is read;
    a chunked body is counted as it arrives and dropped the moment it passes the limit.
    """
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise errors.BadRequest("invalid Content-Length header") from None
        if declared > limit:
            raise errors.PayloadTooLarge(errors.BODY_TOO_LARGE.format(limit=limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise errors.PayloadTooLarge(errors.BODY_TOO_LARGE.format(limit=limit))
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str
    data: bytes


def parse_multipart(body: bytes, content_type: str, field: str) -> list[Part]:
    """The parts of a multipart/form-data body (RFC 7578)."""
    boundary = header_param(content_type, "boundary")
    if not boundary or len(boundary) > MAX_BOUNDARY_CHARS:
        raise errors.InvalidInput(
            errors.MALFORMED_MULTIPART.format(reason="no boundary in the Content-Type header", field=field)
        )
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    # The first delimiter may open the body without a preceding CRLF.
    data = b"\r\n" + body
    position = data.find(delimiter)
    if position < 0:
        raise errors.InvalidInput(errors.MALFORMED_MULTIPART.format(reason="boundary not found", field=field))
    parts: list[Part] = []
    while True:
        position += len(delimiter)
        if data.startswith(b"--", position):
            return parts  # the closing delimiter
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            break
        headers_end = data.find(b"\r\n\r\n", line_end)
        if headers_end < 0 or headers_end - line_end > MAX_PART_HEADER_BYTES:
            break
        next_delimiter = data.find(delimiter, headers_end + 4)
        if next_delimiter < 0:
            break
        if len(parts) >= MAX_MULTIPART_PARTS:
            raise errors.PayloadTooLarge(errors.TOO_MANY_PARTS.format(limit=MAX_MULTIPART_PARTS))
        parts.append(_part(data[line_end + 2 : headers_end], data[headers_end + 4 : next_delimiter], field))
        position = next_delimiter
    raise errors.InvalidInput(
        errors.MALFORMED_MULTIPART.format(reason="truncated or missing the closing boundary", field=field)
    )


def _part(raw_headers: bytes, content: bytes, field: str) -> Part:
    name: str | None = None
    filename: str | None = None
    content_type = ""
    for line in raw_headers.decode("latin-1").split("\r\n"):
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "content-disposition":
            params = header_params(value)
            name, filename = params.get("name"), params.get("filename")
        elif key == "content-type":
            content_type = media_type(value)
    if name is None:
        raise errors.InvalidInput(
            errors.MALFORMED_MULTIPART.format(reason="a part has no Content-Disposition name", field=field)
        )
    return Part(name, filename, content_type, content)


def check_part_type(part: Part) -> None:
    """Refuse parts that declare a non-image or an unsupported image type."""
    kind = part.content_type
    if kind and kind not in IMAGE_TYPES and kind != "application/octet-stream":
        raise errors.UnsupportedMediaType(errors.UNSUPPORTED_IMAGE_TYPE.format(content_type=kind[: errors.ECHO_CHARS]))


def loads_json(body: bytes, example: str) -> dict[str, object]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson's messages can quote the input; keep only the kind of problem.
        reason = str(exc).split(":", 1)[0][: errors.ECHO_CHARS]
        raise errors.InvalidInput(errors.INVALID_JSON.format(reason=reason, example=example)) from None
    if not isinstance(value, dict):
        raise errors.InvalidInput(errors.JSON_NOT_OBJECT.format(example=example))
    return value


def one_of(body: dict[str, object], fields: tuple[str, ...]) -> str:
    """The single one of ``fields`` present in a JSON object."""
    present = [f for f in fields if f in body]
    if len(present) != 1:
        # Field names are the client's: echo a bounded amount of them.
        names = list(body)[: errors.ECHO_NAMES]
        got = ", ".join(repr(k[: errors.ECHO_NAME_CHARS]) for k in names) or "no fields"
        raise errors.InvalidInput(errors.JSON_FIELDS.format(fields=" or ".join(map(repr, fields)), got=got))
    return present[0]


def decode_base64(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise errors.InvalidInput(errors.NOT_A_STRING.format(field=field))
    # Accept data URLs from browsers: "data:image/png;base64,...."
    if value.startswith("data:"):
        value = value.partition(",")[2]
    if any(c in value for c in " \r\n\t"):
        # Tools such as `base64` wrap lines at 76 characters.
        value = "".join(value.split())
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidInput(errors.INVALID_BASE64.format(field=field)) from None
