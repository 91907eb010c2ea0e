"""The KServe v2 gRPC API (``inference.GRPCInferenceService``), against a real ``python -m service``.

tritonclient's gRPC client drives every RPC as it would drive Triton, and each answer is compared
with the HTTP v2 route's (they are built by the same functions); hand-built requests on the raw
stub (which the client would refuse to send) check every hostile input's status and message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tritonclient
from google.protobuf import json_format
from PIL import Image
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from harness import HOST, free_port
from service import errors
from service.v2 import messages, spec
from tests.conftest import encode
from tests.service.live_server import LiveServer

MODEL = "mnist-improved"
#: A body limit small enough to cross with a few images (the settings allow no less than 1024).
SMALL_BODY = 64 * 1024
API_KEY = "grpc-test-key"


class Server:
    """A running service: its HTTP client, tritonclient's gRPC client and the raw gRPC stub."""

    def __init__(self, live: LiveServer, grpc_port: int) -> None:
        self.live = live
        self.grpc_port = grpc_port
        self.target = f"{HOST}:{grpc_port}"
        self.http = httpx.Client(base_url=f"http://{HOST}:{live.port}", timeout=60)
        self.client = tritonclient.InferenceServerClient(self.target)
        self.channel = grpc.insecure_channel(self.target)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)

    def close(self) -> None:
        self.http.close()
        self.client.close()
        self.channel.close()


@contextlib.contextmanager
def running(log: Path, *args: str, env: Mapping[str, str] | None = None) -> Iterator[Server]:
    grpc_port = free_port()
    environment = {"DIGITS_HOST": HOST, "DIGITS_LOG_LEVEL": "warning", **(env or {})}
    live = LiveServer(log, ["--workers", "1", "--grpc-port", str(grpc_port), *args], environment)
    try:
        live.start()
        server = Server(live, grpc_port)
        yield server
        server.close()
    finally:
        live.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("grpc") / "service.log") as started:
        yield started


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """API keys, one request in flight per client, and a small body limit."""
    env = {
        "DIGITS_API_KEYS": f"other-key,{API_KEY}",
        "DIGITS_MAX_CONCURRENT_PER_CLIENT": "1",
        "DIGITS_MAX_BODY_BYTES": str(SMALL_BODY),
    }
    with running(tmp_path_factory.mktemp("grpc-guarded") / "service.log", env=env) as started:
        yield started


def model_input(images: np.ndarray) -> np.ndarray:
    """uint8 MNIST images → the FP32 [N, 28, 28, 1] tensor in [0, 1]."""
    return (images.astype(np.float32) / 255).reshape(-1, 28, 28, 1)


def image_input(images: np.ndarray) -> Any:
    tensor = tritonclient.InferInput("image", [len(images), 28, 28, 1], "FP32")
    tensor.set_data_from_numpy(model_input(images))
    return tensor


def http_probabilities(server: Server, images: np.ndarray) -> np.ndarray:
    response = server.http.post("/predict/batch", json={"pixels": images.tolist()})
    assert response.status_code == 200, response.text
    return np.array([p["probabilities"] for p in response.json()["predictions"]])


def raw_request(images: np.ndarray | None = None, model: str = MODEL, **tensor: Any) -> service_pb2.ModelInferRequest:
    """A ModelInferRequest with one ``image`` tensor; ``tensor`` overrides its fields."""
    request = service_pb2.ModelInferRequest(model_name=model)
    fields = {"name": "image", "datatype": "FP32", "shape": [1, 28, 28, 1], **tensor}
    request.inputs.add(**fields)
    if images is not None:
        request.raw_input_contents.append(model_input(images).tobytes())
    return request


def rpc_error(call: Any, request: Any, metadata: Any = None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, metadata=metadata, timeout=30)
    return caught.value


# --- The messages are tritonclient's --------------------------------------------------------------


def test_vendored_messages_are_tritonclients() -> None:
    """service/grpc_api/proto holds the very descriptors tritonclient was generated from."""
    from service.grpc_api.proto import model_config_pb2 as ours_config
    from service.grpc_api.proto import service_pb2 as ours

    assert ours.DESCRIPTOR.serialized_pb == service_pb2.DESCRIPTOR.serialized_pb
    assert ours_config.DESCRIPTOR.serialized_pb == model_config_pb2.DESCRIPTOR.serialized_pb


# --- Every RPC, through tritonclient --------------------------------------------------------------


def test_health_and_server_metadata(server: Server) -> None:
    assert server.client.is_server_live() and server.client.is_server_ready()
    assert server.client.is_model_ready(MODEL)
    metadata = server.client.get_server_metadata(as_json=True)
    http = server.http.get("/v2").json()
    assert metadata["name"] == http["name"] == spec.SERVER_NAME and metadata["version"] == http["version"]
    # Binary tensor data is an HTTP extension: gRPC's raw contents are its own form.
    assert metadata["extensions"] == [e for e in http["extensions"] if e != "binary_tensor_data"]
    assert {"model_configuration", "statistics", "model_repository"} <= set(metadata["extensions"])


def test_model_metadata_is_https(server: Server) -> None:
    http = server.http.get(f"/v2/models/{MODEL}").json()
    # The protocol version is Triton's integer style: the major number of the served 1.0.0-int8.
    version = server.http.get("/model").json()["version"].split(".")[0]
    for grpc_version in ("", version):
        metadata = server.client.get_model_metadata(MODEL, grpc_version)
        assert metadata == json_format.ParseDict(http, service_pb2.ModelMetadataResponse())
    assert list(metadata.versions) == [version] and metadata.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs][0] == ("image", "FP32", [-1, 28, 28, 1])
    assert [(t.name, t.datatype) for t in metadata.outputs][:2] == [("probabilities", "FP32"), ("digit", "INT64")]


def test_model_config_and_repository_index_are_https(server: Server) -> None:
    config = server.client.get_model_config(MODEL).config
    http = server.http.get(f"/v2/models/{MODEL}/config").json()
    assert config == json_format.ParseDict(http, model_config_pb2.ModelConfig())
    assert config.name == MODEL and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 256  # DIGITS_MAX_BATCH_IMAGES
    assert (config.input[0].name, list(config.input[0].dims)) == ("image", [28, 28, 1])
    index = server.client.get_model_repository_index()
    http_index = server.http.post("/v2/repository/index").json()
    assert index == json_format.ParseDict({"models": http_index}, service_pb2.RepositoryIndexResponse())
    assert [(m.name, m.state) for m in index.models][0] == (MODEL, "READY")


def test_infer_equals_predict_batch(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_sample[0][:32], mnist_sample[1][:32]
    result = server.client.infer(MODEL, [image_input(images)], request_id="grpc-7")
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (32, 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, http_probabilities(server, images), atol=1e-6)
    digits = result.as_numpy("digit")
    assert digits.dtype == np.int64 and (digits == probabilities.argmax(axis=1)).all()
    assert (digits == labels).mean() >= 0.95
    response = result.get_response(as_json=True)
    # The protocol version is Triton's integer style: the major number of the served 1.0.0-int8.
    version = server.http.get("/model").json()["version"].split(".")[0]
    assert response["id"] == "grpc-7" and response["model_name"] == MODEL and response["model_version"] == version
    assert server.client.infer(MODEL, [image_input(images[:1])], model_version=version).as_numpy("digit").shape == (1,)


def test_infer_on_encoded_files(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_sample[0][:16], mnist_sample[1][:16]
    files = [encode(255 - image) for image in images]  # dark ink on white, as a scan would be
    tensor = tritonclient.InferInput("image_bytes", [len(files)], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=np.object_))
    result = server.client.infer(MODEL, [tensor])
    body = {"images": [base64.b64encode(f).decode() for f in files]}
    http = server.http.post("/predict/batch", json=body).json()["predictions"]
    np.testing.assert_allclose(result.as_numpy("probabilities"), [p["probabilities"] for p in http], atol=1e-6)
    assert (result.as_numpy("digit") == labels).mean() >= 0.9


def test_typed_contents_instead_of_raw(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    """The values in ``contents`` (as other clients send them) answer what the same values in raw bytes do."""
    images = mnist_sample[0][:4]
    request = raw_request(shape=[4, 28, 28, 1])
    request.inputs[0].contents.fp32_contents.extend(model_input(images).ravel().tolist())
    response = server.stub.ModelInfer(request, timeout=30)
    probabilities = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(4, 10)
    np.testing.assert_allclose(probabilities, http_probabilities(server, images), atol=1e-6)

    files = [encode(image) for image in images]
    typed = service_pb2.ModelInferRequest(model_name=MODEL)
    typed.inputs.add(name="image_bytes", datatype="BYTES", shape=[4]).contents.bytes_contents.extend(files)
    response = server.stub.ModelInfer(typed, timeout=30)
    tensor = tritonclient.InferInput("image_bytes", [4], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=np.object_))
    raw = server.client.infer(MODEL, [tensor]).as_numpy("probabilities")
    np.testing.assert_allclose(np.frombuffer(response.raw_output_contents[0], "<f4").reshape(4, 10), raw, atol=1e-6)


def test_requested_outputs(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images = mnist_sample[0][:3]
    only = [tritonclient.InferRequestedOutput("digit")]
    result = server.client.infer(MODEL, [image_input(images)], outputs=only)
    assert [o["name"] for o in result.get_response(as_json=True)["outputs"]] == ["digit"]
    assert result.as_numpy("probabilities") is None and result.as_numpy("digit").shape == (3,)


def test_statistics_are_https(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    """gRPC and HTTP count into the same statistics (v2's Prometheus counters) and report the same numbers."""

    def grpc_stats() -> dict[str, Any]:
        (model,) = server.client.get_inference_statistics(MODEL, as_json=True)["model_stats"]
        return dict(model)

    def http_stats() -> dict[str, Any]:
        (model,) = server.http.get(f"/v2/models/{MODEL}/stats").json()["model_stats"]
        return dict(model)

    def count(stats: dict[str, Any], stage: str) -> int:
        return int(stats["inference_stats"][stage].get("count", 0))

    before = grpc_stats()
    for images in (1, 5):
        server.client.infer(MODEL, [image_input(mnist_sample[0][:images])])
    with pytest.raises(InferenceServerException):
        server.client.infer(MODEL, [image_input(np.full((1, 28, 28), 255, np.uint8)[:0])])
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 28, 28, 1], "data": [0.5] * 784}]}
    assert server.http.post(f"/v2/models/{MODEL}/infer", json=body).status_code == 200
    after = grpc_stats()
    http = http_stats()
    assert after["version"] == http["version"] == server.http.get("/model").json()["version"].split(".")[0]
    # Two gRPC inferences of 1 and 5 images and one HTTP inference of 1; one gRPC failure.
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 7
    assert count(after, "success") - count(before, "success") == 3
    assert count(after, "fail") - count(before, "fail") == 1
    for stage in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
        assert count(http, stage) == count(after, stage), stage
        assert int(http["inference_stats"][stage]["ns"]) == int(after["inference_stats"][stage].get("ns", 0)), stage
    assert int(after["inference_stats"]["compute_infer"]["ns"]) > 0
    everything = server.client.get_inference_statistics(as_json=True)["model_stats"]
    http_everything = server.http.get("/v2/models/stats").json()["model_stats"]
    assert [m["name"] for m in everything] == [m["name"] for m in http_everything]


def test_grpc_requests_are_in_the_metrics(server: Server) -> None:
    server.client.is_server_ready()
    text = server.http.get("/metrics").text
    assert 'route="/inference.GRPCInferenceService/ServerReady"' in text and 'method="GRPC"' in text


# --- Errors: the status codes and the messages of HTTP --------------------------------------------


def hostile_requests() -> list[tuple[str, Any, grpc.StatusCode, str]]:
    one = np.zeros((1, 28, 28), np.uint8)
    cases: list[tuple[str, Any, grpc.StatusCode, str]] = []

    def case(name: str, request: Any, code: grpc.StatusCode, message: str) -> None:
        cases.append((name, request, code, message))

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    case(
        "unknown model",
        raw_request(one, model="nope"),
        grpc.StatusCode.NOT_FOUND,
        messages.UNKNOWN_MODEL.format(name="nope", served=repr(MODEL)),
    )
    request = raw_request(one)
    request.model_version = "7"
    case("unknown version", request, grpc.StatusCode.NOT_FOUND, "has no version '7'")
    case(
        "wrong datatype",
        raw_request(one, datatype="FP64"),
        invalid,
        messages.WRONG_DATATYPE.format(name="image", expected="FP32", got=messages.echo("FP64")),
    )
    case(
        "wrong rank",
        raw_request(one, shape=[1, 784]),
        invalid,
        messages.WRONG_SHAPE.format(name="image", expected="[N, 28, 28, 1]", limit=256, got=messages.echo([1, 784])),
    )
    case(
        "negative batch",
        raw_request(one, shape=[-1, 28, 28, 1]),
        invalid,
        messages.WRONG_SHAPE.format(
            name="image", expected="[N, 28, 28, 1]", limit=256, got=messages.echo([-1, 28, 28, 1])
        ),
    )
    case("empty batch", raw_request(one[:0], shape=[0, 28, 28, 1]), invalid, errors.EMPTY_BATCH)
    case(
        "huge shape",
        raw_request(one, shape=[10**15, 28, 28, 1]),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        errors.TOO_MANY_IMAGES.format(count=10**15, limit=256),
    )
    case(
        "shape says more than the raw bytes",
        raw_request(one, shape=[2, 28, 28, 1]),
        invalid,
        errors.GRPC_RAW_SIZE.format(name="image", got=3136, shape=[2, 28, 28, 1], datatype="FP32", expected=6272),
    )
    request = raw_request(shape=[2, 28, 28, 1])
    request.inputs[0].contents.fp32_contents.extend([0.0] * 784)
    case(
        "shape says more than the contents",
        request,
        invalid,
        errors.GRPC_CONTENTS_LENGTH.format(
            name="image", got=784, field="fp32_contents", shape=[2, 28, 28, 1], expected=1568
        ),
    )
    request = raw_request()
    request.inputs[0].contents.int_contents.extend([0] * 784)
    case(
        "contents of another type",
        request,
        invalid,
        errors.GRPC_CONTENTS_FIELD.format(
            name="image", datatype="FP32", field="fp32_contents", got="contents.int_contents"
        ),
    )
    case("no data", raw_request(), invalid, errors.GRPC_NO_DATA.format(name="image", field="fp32_contents"))
    request = raw_request(one)
    request.raw_input_contents.append(b"\0" * 3136)
    case("more raw contents than inputs", request, invalid, errors.GRPC_RAW_COUNT.format(got=2, expected=1))
    request = raw_request(one)
    request.inputs[0].contents.fp32_contents.extend([0.0] * 784)
    case("raw and typed contents", request, invalid, errors.GRPC_RAW_AND_CONTENTS.format(name="image"))
    request = raw_request(one)
    request.inputs.add(name="image", datatype="FP32", shape=[1, 28, 28, 1])
    case("two inputs", request, invalid, messages.ONE_INPUT.format(got="2 inputs"))
    case(
        "no input",
        service_pb2.ModelInferRequest(model_name=MODEL),
        invalid,
        messages.ONE_INPUT.format(got="an empty list"),
    )
    case(
        "unknown input",
        raw_request(one, name="pixels"),
        invalid,
        messages.UNKNOWN_INPUT.format(
            model=MODEL, name=messages.echo("pixels"), expected=messages.TENSOR_INPUT.format(other=MODEL + "-bytes")
        ),
    )
    case(
        "image_bytes as FP32",
        raw_request(one, name="image_bytes"),
        invalid,
        messages.WRONG_DATATYPE.format(name="image_bytes", expected="BYTES", got=messages.echo("FP32")),
    )
    request = raw_request(one)
    request.outputs.add(name="logits")
    case("unknown output", request, invalid, messages.UNKNOWN_OUTPUT.format(name=messages.echo("logits")))
    request = raw_request(one)
    request.outputs.add(name="digit")
    request.outputs.add(name="digit")
    case("output twice", request, invalid, messages.DUPLICATE_OUTPUT.format(name="digit"))
    request = raw_request(one)
    request.inputs[0].parameters["shared_memory_region"].string_param = "region"
    case(
        "shared memory",
        request,
        invalid,
        messages.UNSUPPORTED_PARAMETER.format(name="shared_memory_region", hint="send the data in the request body"),
    )

    files = service_pb2.ModelInferRequest(model_name=MODEL)
    files.inputs.add(name="image_bytes", datatype="BYTES", shape=[2])
    files.raw_input_contents.append((100).to_bytes(4, "little") + b"short")
    case("BYTES length prefix that lies", files, invalid, messages.BYTES_ELEMENT.format(index=0, count=2))
    files = service_pb2.ModelInferRequest(model_name=MODEL)
    files.inputs.add(name="image_bytes", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"not an image")
    case("not an image", files, invalid, "image_bytes[0]: the image could not be decoded")
    return cases


HOSTILE = hostile_requests()


@pytest.mark.parametrize(("request_", "code", "message"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_inputs(server: Server, request_: Any, code: grpc.StatusCode, message: str) -> None:
    error = rpc_error(server.stub.ModelInfer, request_)
    assert error.code() == code, error.details()
    assert message in error.details()


def test_the_server_still_serves_after_hostile_inputs(
    server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    for _, request, _, _ in HOSTILE:
        with contextlib.suppress(grpc.RpcError):
            server.stub.ModelInfer(request, timeout=30)
    assert server.client.infer(MODEL, [image_input(mnist_sample[0][:2])]).as_numpy("digit").shape == (2,)
    assert server.live.process is not None and server.live.process.poll() is None


def test_other_rpcs_name_the_unknown_model(server: Server) -> None:
    for call, request in [
        (server.stub.ModelMetadata, service_pb2.ModelMetadataRequest(name="nope")),
        (server.stub.ModelReady, service_pb2.ModelReadyRequest(name="nope")),
        (server.stub.ModelConfig, service_pb2.ModelConfigRequest(name="nope")),
        (server.stub.ModelStatistics, service_pb2.ModelStatisticsRequest(name="nope")),
    ]:
        error = rpc_error(call, request)
        assert error.code() == grpc.StatusCode.NOT_FOUND and "unknown model 'nope'" in error.details()
    # What the server does not have, gRPC itself answers.
    with pytest.raises(grpc.RpcError) as caught:
        list(server.stub.ModelStreamInfer(iter([raw_request()]), timeout=30))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


# --- API keys, the per-client limit and the body limit ---------------------------------------------


def test_api_keys_as_metadata(guarded: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    request = raw_request(mnist_sample[0][:1])
    for metadata in (None, [("x-api-key", "wrong")], [("authorization", "Bearer wrong")]):
        error = rpc_error(guarded.stub.ModelInfer, request, metadata)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED and error.details() == errors.MISSING_API_KEY
    error = rpc_error(guarded.stub.ServerMetadata, service_pb2.ServerMetadataRequest())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    for metadata in ([("x-api-key", API_KEY)], [("authorization", f"Bearer {API_KEY}")]):
        guarded.stub.ModelInfer(request, metadata=metadata, timeout=30)
    # tritonclient sends its headers as metadata.
    assert guarded.client.infer(MODEL, [image_input(mnist_sample[0][:1])], headers={"x-api-key": API_KEY})
    # The probes stay open, as /v2/health/* does over HTTP.
    assert guarded.stub.ServerLive(service_pb2.ServerLiveRequest()).live
    assert guarded.stub.ServerReady(service_pb2.ServerReadyRequest()).ready


def test_per_client_limit(guarded: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    """One request in flight per client address: concurrent calls beyond it are RESOURCE_EXHAUSTED."""
    request = raw_request(mnist_sample[0][:16], shape=[16, 28, 28, 1])

    async def burst() -> list[grpc.StatusCode]:
        async with grpc.aio.insecure_channel(guarded.target) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            calls = [stub.ModelInfer(request, metadata=[("x-api-key", API_KEY)], timeout=30) for _ in range(32)]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
        codes = []
        for outcome in outcomes:
            if isinstance(outcome, grpc.aio.AioRpcError):
                assert outcome.details() == errors.RATE_LIMITED.format(limit=1, retry_after=1)
                codes.append(outcome.code())
            else:
                assert isinstance(outcome, service_pb2.ModelInferResponse)
                codes.append(grpc.StatusCode.OK)
        return codes

    codes = asyncio.run(burst())
    assert grpc.StatusCode.OK in codes and grpc.StatusCode.RESOURCE_EXHAUSTED in codes


def test_body_limit(guarded: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    metadata = [("x-api-key", API_KEY)]
    images = np.resize(mnist_sample[0], (24, 28, 28))  # 75 KB of FP32: over 64 KiB, within gRPC's framing room
    error = rpc_error(guarded.stub.ModelInfer, raw_request(images, shape=[24, 28, 28, 1]), metadata)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == errors.BODY_TOO_LARGE.format(limit=SMALL_BODY)
    # Far over it, gRPC refuses the message before it is read: the same status, gRPC's own words.
    images = np.resize(mnist_sample[0], (200, 28, 28))
    error = rpc_error(guarded.stub.ModelInfer, raw_request(images, shape=[200, 28, 28, 1]), metadata)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


#: A request timeout far below the preparation of HEAVY_FILES (about 3 s on this machine when idle).
SHORT_TIMEOUT_S = 0.3
HEAVY_FILES = 100


def test_request_timeout_is_deadline_exceeded(tmp_path: Path) -> None:
    """A request that outlives DIGITS_REQUEST_TIMEOUT_S answers DEADLINE_EXCEEDED with HTTP's 504 message."""
    photo = Image.new("L", (3000, 3000), 255)
    photo.paste(0, (1400, 300, 1600, 2700))
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="image_bytes", datatype="BYTES", shape=[HEAVY_FILES])
    tensor.contents.bytes_contents.extend([encode(photo)] * HEAVY_FILES)
    # The decoder budget admits it (the default refuses 900 MP at once with RESOURCE_EXHAUSTED),
    # so that it decodes in a decoder process until the request timeout stops it.
    env = {"DIGITS_REQUEST_TIMEOUT_S": str(SHORT_TIMEOUT_S), "DIGITS_DECODER_BUDGET_PIXELS": "2000000000"}
    with running(tmp_path / "service.log", env=env) as started:
        began = time.monotonic()
        error = rpc_error(started.stub.ModelInfer, request)
        waited = time.monotonic() - began
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error.details()
        assert error.details() == errors.REQUEST_TIMEOUT.format(seconds=SHORT_TIMEOUT_S)
        assert waited < SHORT_TIMEOUT_S + 2, waited
        # The timed-out request counts as failed, and the server still answers.
        (model,) = started.client.get_inference_statistics(MODEL, as_json=True)["model_stats"]
        assert int(model["inference_stats"]["fail"]["count"]) == 1
        assert started.client.is_server_ready()


# --- Workers, the port, readiness and draining ------------------------------------------------------


def test_every_worker_serves_grpc(tmp_path: Path, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    with running(tmp_path / "service.log", "--workers", "2", env={"DIGITS_LOG_LEVEL": "info"}) as started:
        started.live.wait_workers(2)
        assert started.live.logs().count("gRPC (KServe v2) listening") == 2
        for _ in range(8):  # new connections, spread by the kernel over both workers' sockets
            with tritonclient.InferenceServerClient(started.target) as client:
                assert client.infer(MODEL, [image_input(mnist_sample[0][:1])]).as_numpy("digit").shape == (1,)


def test_refuses_to_start_on_a_taken_grpc_port(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        holder.listen()
        taken = holder.getsockname()[1]
        live = LiveServer(
            tmp_path / "service.log", ["--workers", "1", "--grpc-port", str(taken)], {"DIGITS_HOST": HOST}
        )
        live.start(wait_ready=False)
        try:
            assert live.wait(60) == 2
        finally:
            live.stop()
    assert f"cannot listen for gRPC on port {taken}" in live.logs()


def test_grpc_port_zero_turns_it_off(tmp_path: Path) -> None:
    """``--grpc-port 0`` wins over DIGITS_GRPC_PORT, and then nothing listens there."""
    grpc_port = free_port()
    env = {"DIGITS_HOST": HOST, "DIGITS_GRPC_PORT": str(grpc_port)}
    live = LiveServer(tmp_path / "service.log", ["--workers", "1", "--grpc-port", "0"], env)
    try:
        live.start()
        assert "gRPC" not in live.logs()
        with socket.socket() as probe:
            assert probe.connect_ex((HOST, grpc_port)) != 0
    finally:
        live.stop()


def test_readiness_follows_draining_and_sigterm_stops_grpc(
    tmp_path: Path, mnist_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    """On SIGTERM, ServerReady and ModelReady turn false while inference still answers; then the port closes."""
    env = {"DIGITS_SHUTDOWN_DRAIN_S": "3"}
    with running(tmp_path / "service.log", env=env) as started:
        assert started.client.is_server_ready()
        started.live.signal(signal.SIGTERM)
        deadline = time.monotonic() + 2
        while started.client.is_server_ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not started.client.is_server_ready() and not started.client.is_model_ready(MODEL)
        assert started.client.infer(MODEL, [image_input(mnist_sample[0][:1])]).as_numpy("digit").shape == (1,)
        # uvicorn re-raises the signal once it has shut down gracefully.
        assert started.live.wait(40) in (0, -signal.SIGTERM), started.live.logs()[-3000:]
        assert "Traceback" not in started.live.logs()
        with socket.socket() as probe:
            assert probe.connect_ex((HOST, started.grpc_port)) != 0
