"""The running service for the KServe v2 tests, and helpers to build their requests.

One ``python -m service`` for the whole package: tritonclient's HTTP client drives it as a
Triton-compatible server would be driven, in binary and in JSON; raw HTTP calls check every
error's status and message.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as tritonclient

from service.v2 import spec
from tests.service.live_server import LiveServer, free_port


class Server:
    def __init__(self, port: int, grpc_port: int, log: Path) -> None:
        self.port = port
        #: KServe v2 over gRPC, served by the same workers (perf_analyzer's ``-i grpc``).
        self.grpc_port = grpc_port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.http = httpx.Client(base_url=self.url, timeout=60)
        model = self.http.get("/model").json()
        #: The tensor model (FP32 'image') and the bytes model (BYTES 'image_bytes').
        self.model: str = model["name"]
        self.bytes_model = self.model + spec.BYTES_SUFFIX
        #: The model's own version (GET /model), and the integer version v2 serves it as.
        self.version: str = model["version"]
        self.v2_version = spec.protocol_version(self.version)

    def triton(self) -> Any:
        return tritonclient.InferenceServerClient(
            url=f"127.0.0.1:{self.port}", connection_timeout=60, network_timeout=60
        )

    def infer_url(self, model: str | None = None, version: str | None = None) -> str:
        path = f"/v2/models/{model or self.model}"
        return path + (f"/versions/{version}/infer" if version else "/infer")


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``python -m service`` on free HTTP and gRPC ports, one worker, the default model (or DIGITS_MODEL_PATH)."""
    log = tmp_path_factory.mktemp("v2") / "service.log"
    grpc_port = free_port()
    live = LiveServer(
        log,
        ["--workers", "1", "--grpc-port", str(grpc_port)],
        {"DIGITS_HOST": "127.0.0.1", "DIGITS_LOG_LEVEL": "warning"},
    )
    try:
        live.start()
        running = Server(live.port, grpc_port, log)
        yield running
        running.http.close()
    finally:
        live.stop()


def batch_predictions(server: Server, images: np.ndarray) -> list[dict[str, Any]]:
    """What /predict/batch says for the same pixels (uint8 N x 28 x 28)."""
    response = server.http.post("/predict/batch", json={"pixels": images.tolist()})
    assert response.status_code == 200, response.text
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    return predictions


def batch_probabilities(server: Server, images: np.ndarray) -> np.ndarray:
    return np.array([p["probabilities"] for p in batch_predictions(server, images)])


def assert_open_set_agrees(is_digit: np.ndarray, digit_score: np.ndarray, predictions: list[dict[str, Any]]) -> None:
    """v2's is_digit and digit_score say what /predict/batch says of the same images."""
    assert is_digit.dtype == np.bool_ and is_digit.shape == (len(predictions),)
    assert digit_score.dtype == np.float32 and digit_score.shape == (len(predictions),)
    assert is_digit.tolist() == [p["is_digit"] for p in predictions]
    np.testing.assert_allclose(digit_score, [p["digit_score"] for p in predictions], atol=1e-5)


def model_input(images: np.ndarray) -> np.ndarray:
    """uint8 MNIST images → the FP32 [N, 28, 28, 1] tensor in [0, 1]."""
    return (images.astype(np.float32) / 255).reshape(-1, 28, 28, 1)


def image_input(images: np.ndarray, binary: bool = True) -> Any:
    tensor = tritonclient.InferInput("image", [len(images), 28, 28, 1], "FP32")
    return tensor.set_data_from_numpy(model_input(images), binary_data=binary)


def bytes_input(files: list[bytes], binary: bool = True, column: bool = False) -> Any:
    """The files as image_bytes: [N] (the form documented first), or [N, 1] (as the bytes model lists it)."""
    shape = [len(files), 1] if column else [len(files)]
    tensor = tritonclient.InferInput("image_bytes", shape, "BYTES")
    if binary:
        return tensor.set_data_from_numpy(np.array(files, dtype=np.object_).reshape(shape), binary_data=True)
    # In JSON, BYTES elements are strings: image files go as base64.
    encoded = np.array([base64.b64encode(f) for f in files], dtype=np.object_).reshape(shape)
    return tensor.set_data_from_numpy(encoded, binary_data=False)


# --- Errors ---------------------------------------------------------------------------------------


def check_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}, body
    assert message in body["error"], body["error"]
    assert "Traceback" not in body["error"] and "/work" not in body["error"] and ".py" not in body["error"]


def image_tensor(data: object = None, **fields: object) -> dict[str, object]:
    tensor: dict[str, object] = {"name": "image", "datatype": "FP32", "shape": [1, 28, 28, 1]}
    if data is not None:
        tensor["data"] = data
    tensor.update(fields)
    return tensor


def blank(n: int = 1) -> list[float]:
    return [0.0] * (784 * n)


def prefix(message: str) -> str:
    """The fixed start of a message template, up to its first placeholder."""
    return message.split("{", 1)[0]
