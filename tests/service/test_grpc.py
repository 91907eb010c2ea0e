"""The KServe v2 gRPC API (``inference.GRPCInferenceService``), against a real ``python -m service``.

tritonclient's gRPC client drives every RPC as it would drive Triton; hand-built requests on the
raw stub (which the client would refuse to send) check every hostile input's status and message.
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
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from benchmarks.common import HOST, free_port
from service import errors, v2
from tests.conftest import encode
from tests.service.live_server import LiveServer

MODEL = "mnist-improved"
BYTES_MODEL = "mnist-improved-bytes"
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
    assert server.client.is_model_ready(MODEL) and server.client.is_model_ready(BYTES_MODEL)
    metadata = server.client.get_server_metadata(as_json=True)
    http = server.http.get("/v2").json()
    assert metadata["name"] == http["name"] == v2.SERVER_NAME and metadata["version"] == http["version"]
    assert {"model_configuration", "statistics", "model_repository"} <= set(metadata["extensions"])


def test_model_metadata_lists_one_input_per_model(server: Server) -> None:
    version = server.http.get("/model").json()["version"]
    tensor = server.client.get_model_metadata(MODEL, as_json=True)
    # Triton's integer version: the major number of the model's (1 for 1.0.0-int8).
    assert (
        tensor["name"] == MODEL
        and tensor["versions"] == [version.split(".")[0]] == ["1"]
        and tensor["platform"] == "onnxruntime_onnx"
    )
    assert tensor["inputs"] == [{"name": "image", "datatype": "FP32", "shape": ["-1", "28", "28", "1"]}]
    outputs = [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", "10"]}]
    outputs.append({"name": "digit", "datatype": "INT64", "shape": ["-1"]})
    assert tensor["outputs"] == outputs
    files = server.client.get_model_metadata(BYTES_MODEL, as_json=True)
    # [N, 1], as Triton lists a batch of one element each; [N] is accepted too.
    assert files["inputs"] == [{"name": "image_bytes", "datatype": "BYTES", "shape": ["-1", "1"]}]
    assert files["outputs"] == outputs


def test_model_config_and_repository_index(server: Server) -> None:
    config = server.client.get_model_config(MODEL, as_json=True)["config"]
    assert config["name"] == MODEL and config["platform"] == "onnxruntime_onnx"
    assert int(config["max_batch_size"]) == 256  # DIGITS_MAX_BATCH_IMAGES
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
        ("image", "TYPE_FP32", ["28", "28", "1"])
    ]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        ("probabilities", "TYPE_FP32", ["10"]),
        ("digit", "TYPE_INT64", ["1"]),
    ]
    files = server.client.get_model_config(BYTES_MODEL, as_json=True)["config"]
    assert [(i["name"], i["data_type"], i["dims"]) for i in files["input"]] == [("image_bytes", "TYPE_STRING", ["1"])]
    index = server.client.get_model_repository_index(as_json=True)["models"]
    assert [(m["name"], m["state"]) for m in index] == [(MODEL, "READY"), (BYTES_MODEL, "READY")]


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
    assert response["id"] == "grpc-7" and response["model_name"] == MODEL and response["model_version"] == "1"
    # The full version names the model too.
    version = server.http.get("/model").json()["version"]
    assert server.client.infer(MODEL, [image_input(images[:1])], model_version=version).as_numpy("digit").shape == (1,)


def test_infer_on_encoded_files(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_sample[0][:16], mnist_sample[1][:16]
    files = [encode(255 - image) for image in images]  # dark ink on white, as a scan would be
    tensor = tritonclient.InferInput("image_bytes", [len(files), 1], "BYTES")  # the listed shape [N, 1]
    tensor.set_data_from_numpy(np.array(files, dtype=np.object_).reshape(-1, 1))
    result = server.client.infer(BYTES_MODEL, [tensor])
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
    typed = service_pb2.ModelInferRequest(model_name=BYTES_MODEL)
    typed.inputs.add(name="image_bytes", datatype="BYTES", shape=[4]).contents.bytes_contents.extend(files)
    response = server.stub.ModelInfer(typed, timeout=30)
    tensor = tritonclient.InferInput("image_bytes", [4], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=np.object_))
    raw = server.client.infer(BYTES_MODEL, [tensor]).as_numpy("probabilities")
    np.testing.assert_allclose(np.frombuffer(response.raw_output_contents[0], "<f4").reshape(4, 10), raw, atol=1e-6)


def test_requested_outputs(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images = mnist_sample[0][:3]
    only = [tritonclient.InferRequestedOutput("digit")]
    result = server.client.infer(MODEL, [image_input(images)], outputs=only)
    assert [o["name"] for o in result.get_response(as_json=True)["outputs"]] == ["digit"]
    assert result.as_numpy("probabilities") is None and result.as_numpy("digit").shape == (3,)


def test_statistics_count_each_inference(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    def stats() -> dict[str, Any]:
        (model,) = server.client.get_inference_statistics(MODEL, as_json=True)["model_stats"]
        return dict(model)

    before = stats()
    for count in (1, 5):
        server.client.infer(MODEL, [image_input(mnist_sample[0][:count])])
    with pytest.raises(InferenceServerException):
        server.client.infer(MODEL, [image_input(np.full((1, 28, 28), 255, np.uint8)[:0])])
    after = stats()
    # Triton numbers versions, and perf_analyzer reads the version here as an integer.
    assert after["version"] == "1"
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 6
    success = after["inference_stats"]["success"]
    assert int(success["count"]) - int(before["inference_stats"]["success"].get("count", 0)) == 2
    assert int(success["ns"]) > 0 and int(after["inference_stats"]["compute_infer"]["ns"]) > 0
    assert int(after["inference_stats"]["fail"]["count"]) >= 1
    everything = server.client.get_inference_statistics(as_json=True)["model_stats"]
    assert [m["name"] for m in everything] == [MODEL, BYTES_MODEL]


def test_grpc_requests_are_in_the_metrics(server: Server) -> None:
    server.client.is_server_ready()
    text = server.http.get("/metrics").text
    assert 'route="/inference.GRPCInferenceService/ServerReady"' in text and 'method="GRPC"' in text


# --- Errors: the status codes and the messages of HTTP --------------------------------------------

NAN_IMAGE = np.full((1, 28, 28, 1), np.nan, np.float32)
BIG_IMAGE = np.full((1, 28, 28, 1), 3.0, np.float32)


def hostile_requests() -> list[tuple[str, Any, grpc.StatusCode, str]]:
    one = np.zeros((1, 28, 28), np.uint8)
    cases: list[tuple[str, Any, grpc.StatusCode, str]] = []

    def case(name: str, request: Any, code: grpc.StatusCode, message: str) -> None:
        cases.append((name, request, code, message))

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    model_input_text = errors.GRPC_MODEL_INPUT.format(
        model=MODEL,
        input="image",
        datatype="FP32",
        shape="[N, 28, 28, 1]",
        got="{got}",
        other=BYTES_MODEL,
        other_input="image_bytes",
    )
    case(
        "unknown model",
        raw_request(one, model="nope"),
        grpc.StatusCode.NOT_FOUND,
        errors.GRPC_UNKNOWN_MODEL.format(name="nope", served=f"{MODEL!r} or {BYTES_MODEL!r}"),
    )
    request = raw_request(one)
    request.model_version = "7"
    case("unknown version", request, grpc.StatusCode.NOT_FOUND, "has no version '7'")
    case(
        "wrong datatype",
        raw_request(one, datatype="FP64"),
        invalid,
        v2.WRONG_DATATYPE.format(name="image", expected="FP32", got="FP64"),
    )
    case(
        "wrong rank",
        raw_request(one, shape=[1, 784]),
        invalid,
        v2.WRONG_SHAPE.format(name="image", expected="[N, 28, 28, 1]", limit=256, got=[1, 784]),
    )
    case(
        "negative batch",
        raw_request(one, shape=[-1, 28, 28, 1]),
        invalid,
        v2.WRONG_SHAPE.format(name="image", expected="[N, 28, 28, 1]", limit=256, got=[-1, 28, 28, 1]),
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
    case("two inputs", request, invalid, model_input_text.replace("{got}", "2 inputs"))
    case(
        "no input",
        service_pb2.ModelInferRequest(model_name=MODEL),
        invalid,
        model_input_text.replace("{got}", "no input"),
    )
    request = raw_request(one, name="image_bytes")
    case("the other model's input", request, invalid, model_input_text.replace("{got}", "an input named 'image_bytes'"))
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="image", datatype="FP32", shape=[1, 28, 28, 1])
    request.raw_input_contents.append(NAN_IMAGE.tobytes())
    case("NaN", request, invalid, v2.NOT_FINITE)
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="image", datatype="FP32", shape=[1, 28, 28, 1])
    request.raw_input_contents.append(BIG_IMAGE.tobytes())
    case("out of range", request, invalid, v2.OUT_OF_RANGE.format(low=3.0, high=3.0))
    request = raw_request(one)
    request.outputs.add(name="logits")
    case("unknown output", request, invalid, v2.UNKNOWN_OUTPUT.format(name="logits"))
    request = raw_request(one)
    request.outputs.add(name="digit")
    request.outputs.add(name="digit")
    case("output twice", request, invalid, v2.DUPLICATE_OUTPUT.format(name="digit"))
    request = raw_request(one)
    request.inputs[0].parameters["shared_memory_region"].string_param = "region"
    case(
        "shared memory",
        request,
        invalid,
        v2.UNSUPPORTED_PARAMETER.format(name="shared_memory_region", hint="send the data in the request body"),
    )

    files = service_pb2.ModelInferRequest(model_name=BYTES_MODEL)
    files.inputs.add(name="image_bytes", datatype="BYTES", shape=[2])
    files.raw_input_contents.append((100).to_bytes(4, "little") + b"short")
    case("BYTES length prefix that lies", files, invalid, v2.BYTES_ELEMENT.format(index=0, count=2))
    files = service_pb2.ModelInferRequest(model_name=BYTES_MODEL)
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
