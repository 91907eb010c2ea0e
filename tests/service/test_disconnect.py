"""A client that leaves while its answers are being sent is logged as 499, never as an error.

Real sockets against a real ``python -m service``: the failure only exists in uvicorn's
httptools protocol on uvloop. It marks only a connection's newest request as disconnected, so
when a client pipelines requests and closes, the one being answered writes to a closed
transport; before ServiceMiddleware caught that, each such request logged three error entries
with tracebacks (the middleware's, Starlette's outermost handler's and uvicorn's).
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.middleware import CLIENT_CLOSED, client_left
from tests.conftest import encode
from tests.service.live_server import HOST, LiveServer

with np.load(Path(__file__).parent.parent / "data" / "mnist_sample.npz") as _sample:
    PNG = encode(_sample["images"][0])

#: Requests pipelined on one connection: enough that the server is still answering, its send
#: buffer full, when the client closes (the repro in issue 16 used 300).
PIPELINED = 300
#: How long the client lets answers pile up before it closes, tried in turn: the close must come
#: while the server is blocked writing an answer. With 0.2 s alone, 9 to 15 of 15 connections did
#: so on a busy machine; but on a quiet one a worker answers all 300 /predict in less (0 of 20),
#: and with the cores taken a worker may not fill the send buffer with /openapi.json by then (0 of
#: 20): shorter and longer waits cover both.
LINGERS_S = (0.2, 0.05, 0.5, 0.02, 1.0, 0.1, 0.01)
#: Connections tried until enough of them caught a request mid-answer (usually 2 or 3 are needed).
MAX_CONNECTIONS = 20
#: Requests that must have been caught mid-answer, so that the test is known to exercise the race.
CAUGHT_WANTED = 2
#: The access log is written every 0.1 s (service.logs.AccessLog): wait a few of those.
LOG_FLUSH_S = 0.5

V2_BODY = json.dumps(
    {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(PNG).decode()]}]}
).encode()
#: (method, path, content type, body) of each kind of answer to abandon.
KINDS = {
    "openapi": ("GET", "/openapi.json", None, b""),
    "static": ("GET", "/static/app.js", None, b""),
    "predict": ("POST", "/predict", "image/png", PNG),
    "v2-infer": ("POST", "/v2/models/mnist-improved/infer", "application/json", V2_BODY),
    "read": ("POST", "/read", "image/png", PNG),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"DIGITS_LOG_LEVEL": "debug", "DIGITS_LOG_JSON": "true"}
    live = LiveServer(tmp_path_factory.mktemp("disconnect") / "server.log", ["--workers", "1"], env)
    try:
        yield live.start()
    finally:
        live.stop()


def pipeline_then_leave(port: int, kind: str, connection: int) -> None:
    """PIPELINED requests on one socket, the first bytes of the answers read, then a close."""
    method, path, content_type, body = KINDS[kind]
    typed = f"Content-Type: {content_type}\r\n" if content_type else ""
    requests = b"".join(
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nX-Request-ID: left-{kind}-{connection}-{index}\r\n"
        f"{typed}Content-Length: {len(body)}\r\n\r\n".encode()
        + body
        for index in range(PIPELINED)
    )
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(requests)
        assert sock.recv(100).startswith(b"HTTP/1.1 200 "), kind
        time.sleep(LINGERS_S[connection % len(LINGERS_S)])


def entries(server: LiveServer) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]


def of_kind(server: LiveServer, kind: str) -> list[dict[str, Any]]:
    return [e for e in entries(server) if str(e.get("request_id", "")).startswith(f"left-{kind}-")]


def abandon(server: LiveServer, kind: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Connections pipelined and left until CAUGHT_WANTED answers were abandoned: (entries, caught)."""
    for connection in range(MAX_CONNECTIONS):
        pipeline_then_leave(server.port, kind, connection)
        time.sleep(LOG_FLUSH_S)
        errors = [e for e in entries(server) if e["level"] in ("error", "critical")]
        assert not errors, errors[:3]
        assert "Traceback" not in server.logs()
        logged = of_kind(server, kind)
        caught = [e for e in logged if e["logger"] == "service.access" and e["status"] == CLIENT_CLOSED]
        if len(caught) >= CAUGHT_WANTED:
            return logged, caught
    # Fewer would mean the pattern no longer leaves a request mid-answer, and proves nothing.
    raise AssertionError(f"{len(caught)} of {MAX_CONNECTIONS} connections left an answer unfinished")


@pytest.mark.parametrize("kind", KINDS)
def test_a_client_leaving_mid_answer_is_a_499_not_an_error(server: LiveServer, kind: str) -> None:
    logged, caught = abandon(server, kind)
    access = [e for e in logged if e["logger"] == "service.access"]
    assert {e["status"] for e in access} <= {200, CLIENT_CLOSED}, access
    # Each abandoned request says so in one debug line at most, beside its access entry.
    others = [e for e in logged if e["logger"] != "service.access"]
    assert all(e["level"] == "debug" for e in others), others
    assert len(others) <= len(caught), others
    status, _, _ = server.request("POST", "/predict", PNG, {"content-type": "image/png"})
    assert status == 200


def test_an_abandoned_answer_is_counted_as_499_not_as_a_server_error(server: LiveServer) -> None:
    abandon(server, "predict")
    status, _, body = server.request("GET", "/metrics")
    assert status == 200
    series = [line for line in body.decode().splitlines() if line.startswith("digits_http_requests_total{")]
    assert any(f'status="{CLIENT_CLOSED}"' in line for line in series), series
    assert not [line for line in series if 'status="5' in line], series


@pytest.mark.parametrize(
    ("exc", "left"),
    [
        (RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed"), True),
        (BrokenPipeError(32, "Broken pipe"), True),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        # uvicorn's own errors for a malformed answer are bugs of ours, and stay errors.
        (RuntimeError("Response content longer than Content-Length"), False),
        (RuntimeError("Expected ASGI message 'http.response.body', but got 'http.response.start'."), False),
        (ValueError("the handler is closed"), False),
    ],
    ids=["uvloop-closed", "broken-pipe", "reset", "too-long", "wrong-order", "not-a-runtime-error"],
)
def test_only_a_gone_connection_counts_as_the_client_leaving(exc: Exception, left: bool) -> None:
    assert client_left(exc) is left
