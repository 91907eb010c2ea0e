"""The hand-written multipart parser, compared with python-multipart on the same bodies and headers."""

from __future__ import annotations

import pytest
from python_multipart.multipart import MultipartParser, parse_options_header

from service import errors, parsing
from tests.conftest import encode

BOUNDARY = "----formBoundary7MA4YWxk"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"

HEADER_VALUES = [
    'form-data; name="file"; filename="d.png"',
    'form-data; name="file"; filename="a;b.png"',
    'form-data; name="file"; filename="say \\"hi\\".png"',
    'form-data; NAME="files"; FileName="x.png"',
    "form-data; name=file; filename=plain.png",
    'form-data;name="tight";filename="t.png"',
    'form-data; name="file"; filename*=UTF-8\'\'%E2%82%AC.png; filename="euro.png"',
    'form-data; name="file"; filename="C:\\\\Users\\\\me\\\\d.png"',
    'form-data; name="file"; filename="back\\\\slash.png"',
    'form-data; name="file"; filename=""',
    'form-data; name="a"; name="b"',
    f"multipart/form-data; boundary={BOUNDARY}",
    'multipart/form-data; boundary="quoted;boundary"',
    "multipart/form-data; charset=utf-8; boundary=last",
]


@pytest.mark.parametrize("value", HEADER_VALUES)
def test_header_params_are_read_as_python_multipart_reads_them(value: str) -> None:
    _, options = parse_options_header(value)
    for name in ("name", "filename", "boundary", "charset"):
        expected = options.get(name.encode())
        assert parsing.header_param(value, name) == (expected.decode("latin-1") if expected is not None else None)


def test_a_quoted_filename_keeps_its_semicolon() -> None:
    assert parsing.header_param('form-data; name="file"; filename="a;b.png"', "filename") == "a;b.png"


def part(headers: str, data: bytes) -> bytes:
    return f"--{BOUNDARY}\r\n{headers}\r\n\r\n".encode() + data + b"\r\n"


def reference(body: bytes, boundary: str = BOUNDARY) -> list[tuple[str, str | None, str, bytes]]:
    """The parts python-multipart finds: (name, filename, content type, data)."""
    found: list[tuple[str, str | None, str, bytes]] = []
    headers: dict[str, str] = {}
    field, value, data = bytearray(), bytearray(), bytearray()

    def on_header_end() -> None:
        headers[field.decode("latin-1").lower()] = value.decode("latin-1")
        field.clear()
        value.clear()

    def on_part_end() -> None:
        _, options = parse_options_header(headers.get("content-disposition", ""))
        filename = options.get(b"filename")
        kind = parsing.media_type(headers.get("content-type"))
        found.append(
            (options[b"name"].decode(), filename.decode() if filename is not None else None, kind, bytes(data))
        )
        headers.clear()
        data.clear()

    callbacks = {
        "on_header_field": lambda b, s, e: field.extend(b[s:e]),
        "on_header_value": lambda b, s, e: value.extend(b[s:e]),
        "on_header_end": on_header_end,
        "on_part_data": lambda b, s, e: data.extend(b[s:e]),
        "on_part_end": on_part_end,
    }
    parser = MultipartParser(boundary.encode(), callbacks)  # type: ignore[arg-type]
    parser.write(body)
    parser.finalize()
    return found


PNG = encode(__import__("numpy").zeros((28, 28), "uint8"))
BODIES = {
    "one file": part('Content-Disposition: form-data; name="file"; filename="d.png"\r\nContent-Type: image/png', PNG),
    "several files": b"".join(
        part(f'Content-Disposition: form-data; name="files"; filename="{i}.png"\r\nContent-Type: image/png', PNG)
        for i in range(3)
    ),
    "data with CRLF and dashes": part(
        'Content-Disposition: form-data; name="file"; filename="x"', b"\r\n--\r\n--" + BOUNDARY[:-1].encode() + b"\r\n"
    ),
    "semicolon in filename": part('Content-Disposition: form-data; name="file"; filename="a;b.png"', PNG),
    "text field beside": part('Content-Disposition: form-data; name="note"', b"hello")
    + part('Content-Disposition: form-data; name="file"; filename="d.png"', PNG),
    "no content type, empty data": part('Content-Disposition: form-data; name="file"; filename="e.png"', b""),
    "header case": part('content-disposition: form-data; name="file"\r\nCONTENT-TYPE: Image/PNG', PNG),
}


@pytest.mark.parametrize("name", list(BODIES))
def test_parts_match_python_multipart(name: str) -> None:
    body = BODIES[name] + f"--{BOUNDARY}--\r\n".encode()
    parts = parsing.parse_multipart(body, CONTENT_TYPE, "file")
    assert [(p.name, p.filename, p.content_type, p.data) for p in parts] == reference(body)


def test_an_epilogue_is_ignored_as_python_multipart_does() -> None:
    body = BODIES["several files"] + f"--{BOUNDARY}--\r\nepilogue".encode()
    parts = parsing.parse_multipart(body, CONTENT_TYPE, "file")
    assert [(p.name, p.filename, p.content_type, p.data) for p in parts] == reference(body)


def test_a_preamble_is_allowed_here_where_python_multipart_refuses_it() -> None:
    """RFC 2046 allows text before the first boundary; python-multipart refuses it, this parser skips it."""
    body = b"preamble\r\n" + BODIES["several files"] + f"--{BOUNDARY}--\r\n".encode()
    parts = parsing.parse_multipart(body, CONTENT_TYPE, "file")
    assert [(p.name, p.filename, p.content_type, p.data) for p in parts] == reference(body[len(b"preamble\r\n") :])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (BODIES["one file"], "truncated or missing the closing boundary"),
        (b"no boundary here", "boundary not found"),
        (part('Content-Disposition: form-data; filename="d.png"', PNG) + f"--{BOUNDARY}--".encode(), "no Content-"),
    ],
)
def test_malformed_bodies_are_422(body: bytes, reason: str) -> None:
    with pytest.raises(errors.InvalidInput, match=reason):
        parsing.parse_multipart(body, CONTENT_TYPE, "file")


def test_over_the_part_limit_names_the_part_limit(client) -> None:  # type: ignore[no-untyped-def]
    body = part('Content-Disposition: form-data; name="x"', b"") * (parsing.MAX_MULTIPART_PARTS + 1)
    response = client.post(
        "/predict/batch", content=body + f"--{BOUNDARY}--\r\n".encode(), headers={"content-type": CONTENT_TYPE}
    )
    assert response.status_code == 413
    assert response.json() == {"detail": errors.TOO_MANY_PARTS.format(limit=parsing.MAX_MULTIPART_PARTS)}
