"""The transports' floor for KServe v2: a bare HTTP and a bare gRPC ``ModelInfer`` that answer zeros.

No model, no batcher, no checks: each reads the request's shape, as a server must, and answers
``probabilities`` and ``digit`` of that batch size, HTTP with binary tensor data (as
``tritonclient.http`` asks for it) on uvicorn, gRPC in raw contents on grpc.aio, both on one
uvloop event loop in one process, as each service worker serves them. What is left between the
two here is what HTTP/1.1 on uvicorn and HTTP/2 on grpcio cost per call, before any of the
service's own work (``grpc_vs_http.py`` measures both side by side).

    python -m benchmarks.bare_v2 --port 8000 --grpc-port 8001
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import numpy as np
import uvicorn

from benchmarks.bare import Message, Scope, lifespan
from service.grpc_api.proto import service_pb2

MODEL = "mnist-improved"
SERVICE = "inference.GRPCInferenceService"


@functools.cache
def http_answer(batch: int) -> tuple[bytes, bytes]:
    """The binary v2 answer for ``batch`` images: the JSON header's length and the whole body."""
    probabilities, digit = np.zeros((batch, 10), np.float32).tobytes(), np.zeros(batch, np.int64).tobytes()
    header = {
        "model_name": MODEL,
        "outputs": [
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": [batch, 10],
                "parameters": {"binary_data_size": len(probabilities)},
            },
            {"name": "digit", "datatype": "INT64", "shape": [batch], "parameters": {"binary_data_size": len(digit)}},
        ],
    }
    encoded = json.dumps(header).encode()
    return str(len(encoded)).encode(), encoded + probabilities + digit


async def http_app(
    scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    """Read the body, take the batch size from its JSON header, answer zeros (or ready for a GET)."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False) and message["type"] == "http.request"
    if scope["method"] == "GET":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b"".join(chunks)
    length = dict(scope["headers"]).get(b"inference-header-content-length")
    header = json.loads(body[: int(length)] if length else body)
    header_length, answer = http_answer(header["inputs"][0]["shape"][0])
    headers = [(b"content-type", b"application/octet-stream"), (b"inference-header-content-length", header_length)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@functools.cache
def grpc_answer(batch: int) -> Any:
    response = service_pb2.ModelInferResponse(model_name=MODEL, model_version="2")
    for name, datatype, shape, values in (
        ("probabilities", "FP32", [batch, 10], np.zeros((batch, 10), np.float32)),
        ("digit", "INT64", [batch], np.zeros(batch, np.int64)),
    ):
        response.outputs.add(name=name, datatype=datatype, shape=shape)
        response.raw_output_contents.append(values.tobytes())
    return response


async def model_infer(request: Any, context: grpc.aio.ServicerContext) -> Any:
    return grpc_answer(request.inputs[0].shape[0])


async def serve(port: int, grpc_port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    handler = grpc.unary_unary_rpc_method_handler(
        model_infer,
        request_deserializer=service_pb2.ModelInferRequest.FromString,
        response_serializer=lambda response: response.SerializeToString(),
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": handler})])
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    await server.start()
    config = uvicorn.Config(http_app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    await uvicorn.Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.port, args.grpc_port))


if __name__ == "__main__":
    main()
