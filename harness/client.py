"""HTTP to a server under test on 127.0.0.1: one request per connection, with a bounded wait."""

from __future__ import annotations

import http.client
import io
import json
import socket
from collections.abc import Mapping, Sequence

HOST = "127.0.0.1"
BOUNDARY = "----digitsbenchmarkboundary7MA4YWxkTrZu0gW"
MULTIPART_CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def free_port() -> int:
    """A loopback port that nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def is_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection: status, headers (lower-cased names) and body."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def status_of(port: int, path: str, timeout_s: float = 2.0) -> int | None:
    """The status of ``GET path``, or None if nothing answers."""
    try:
        return request(port, "GET", path, timeout_s=timeout_s)[0]
    except (OSError, http.client.HTTPException):  # refused, reset, or a half-started server's garbage
        return None


#: The name the benchmark scripts have always used for ``status_of``.
http_status = status_of


def post(port: int, path: str, body: bytes, content_type: str, timeout_s: float = 60.0) -> tuple[int, object]:
    """POST ``body`` and return the status and the decoded JSON answer (or the text if it is not JSON)."""
    status, _, raw = request(port, "POST", path, body, {"Content-Type": content_type}, timeout_s)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def multipart_body(
    field_name: str, files: Sequence[bytes], *, content_type: str = "image/png", extension: str = "png"
) -> bytes:
    """A multipart/form-data body (boundary ``BOUNDARY``) with one part per file, all under ``field_name``."""
    out = io.BytesIO()
    for index, data in enumerate(files):
        out.write(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field_name}"; '
            f'filename="digit{index}.{extension}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
        )
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue()
