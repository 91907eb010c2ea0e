"""The Open Inference Protocol (KServe v2) endpoints, against the running service.

tritonclient's HTTP client drives the service as a Triton-compatible server would be driven,
in binary and in JSON; raw HTTP calls check every error's status and message.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as tritonclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from service import errors, v2
from tests.conftest import DATA, encode
from tests.service.live_server import LiveServer

REALWORLD = DATA / "realworld"


# --- The running service --------------------------------------------------------------------------


class Server:
    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.http = httpx.Client(base_url=self.url, timeout=60)
        model = self.http.get("/model").json()
        self.model: str = model["name"]
        self.version: str = model["version"]

    def triton(self) -> Any:
        return tritonclient.InferenceServerClient(
            url=f"127.0.0.1:{self.port}", connection_timeout=60, network_timeout=60
        )

    def infer_url(self, model: str | None = None, version: str | None = None) -> str:
        path = f"/v2/models/{model or self.model}"
        return path + (f"/versions/{version}/infer" if version else "/infer")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``python -m service`` on a free port, one worker, the default model (DIGITS_MODEL_PATH overrides)."""
    log = tmp_path_factory.mktemp("v2") / "service.log"
    live = LiveServer(log, ["--workers", "1"], {"DIGITS_HOST": "127.0.0.1", "DIGITS_LOG_LEVEL": "warning"})
    try:
        live.start()
        running = Server(live.port, log)
        yield running
        running.http.close()
    finally:
        live.stop()


def batch_probabilities(server: Server, images: np.ndarray) -> np.ndarray:
    """What /predict/batch says for the same pixels (uint8 N x 28 x 28)."""
    response = server.http.post("/predict/batch", json={"pixels": images.tolist()})
    assert response.status_code == 200, response.text
    return np.array([p["probabilities"] for p in response.json()["predictions"]])


def model_input(images: np.ndarray) -> np.ndarray:
    """uint8 MNIST images → the FP32 [N, 28, 28, 1] tensor in [0, 1]."""
    return (images.astype(np.float32) / 255).reshape(-1, 28, 28, 1)


def image_input(images: np.ndarray, binary: bool = True) -> Any:
    tensor = tritonclient.InferInput("image", [len(images), 28, 28, 1], "FP32")
    return tensor.set_data_from_numpy(model_input(images), binary_data=binary)


def bytes_input(files: list[bytes], binary: bool = True) -> Any:
    tensor = tritonclient.InferInput("image_bytes", [len(files)], "BYTES")
    if binary:
        return tensor.set_data_from_numpy(np.array(files, dtype=np.object_), binary_data=True)
    # In JSON, BYTES elements are strings: image files go as base64.
    return tensor.set_data_from_numpy(
        np.array([base64.b64encode(f) for f in files], dtype=np.object_), binary_data=False
    )


# --- Health and metadata --------------------------------------------------------------------------


def test_server_live_ready_and_metadata(server: Server) -> None:
    client = server.triton()
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == v2.SERVER_NAME
    assert metadata["version"]
    assert "binary_tensor_data" in metadata["extensions"]
    assert server.http.get("/v2/health/live").json() == {"live": True}
    assert server.http.get("/v2/health/ready").json() == {"ready": True}


def test_model_ready_and_metadata(server: Server) -> None:
    client = server.triton()
    assert client.is_model_ready(server.model)
    assert client.is_model_ready(server.model, server.version)
    assert not client.is_model_ready("no-such-model")
    assert not client.is_model_ready(server.model, "0.0.0-missing")
    assert server.http.get(f"/v2/models/{server.model}/ready").json() == {"name": server.model, "ready": True}
    for metadata in (client.get_model_metadata(server.model), client.get_model_metadata(server.model, server.version)):
        assert metadata["name"] == server.model
        assert metadata["versions"] == [server.version]
        assert metadata["platform"] == "onnxruntime_onnx"
        assert metadata["inputs"] == [
            {"name": "image", "datatype": "FP32", "shape": [-1, 28, 28, 1]},
            {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]},
        ]
        assert metadata["outputs"] == [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
            {"name": "digit", "datatype": "INT64", "shape": [-1]},
        ]


def test_unknown_model_and_version_are_404(server: Server) -> None:
    client = server.triton()
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("no-such-model")
    assert caught.value.status() == "404"
    assert "unknown model 'no-such-model'" in caught.value.message()
    for path in (
        "/v2/models/no-such-model",
        "/v2/models/no-such-model/ready",
        f"/v2/models/{server.model}/versions/9.9.9",
        f"/v2/models/{server.model}/versions/9.9.9/ready",
    ):
        response = server.http.get(path)
        assert response.status_code == 404, path
        assert set(response.json()) == {"error"}
    for path in (server.infer_url("no-such-model"), server.infer_url(version="9.9.9")):
        response = server.http.post(path, json={"inputs": []})
        assert response.status_code == 404
        assert server.version in response.json()["error"] or server.model in response.json()["error"]


# --- Inference ------------------------------------------------------------------------------------


def test_binary_inference_equals_predict_batch(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_sample
    result = server.triton().infer(server.model, [image_input(images)])
    probabilities, digits = result.as_numpy("probabilities"), result.as_numpy("digit")
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(images), 10)
    assert digits.dtype == np.int64 and digits.shape == (len(images),)
    # tritonclient asks for every output as binary data when none are named.
    assert all("data" not in output for output in result.get_response()["outputs"])
    np.testing.assert_allclose(probabilities, batch_probabilities(server, images), atol=1e-5)
    np.testing.assert_array_equal(digits, probabilities.argmax(axis=1))
    assert (digits == labels).mean() >= 0.95


def test_json_inference_equals_predict_batch(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_sample
    images, labels = images[:50], labels[:50]
    outputs = [
        tritonclient.InferRequestedOutput("probabilities", binary_data=False),
        tritonclient.InferRequestedOutput("digit", binary_data=False),
    ]
    result = server.triton().infer(server.model, [image_input(images, binary=False)], outputs=outputs)
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["probabilities", "digit"]
    assert all("data" in output for output in response["outputs"])
    np.testing.assert_allclose(result.as_numpy("probabilities"), batch_probabilities(server, images), atol=1e-5)
    assert (result.as_numpy("digit") == labels).mean() >= 0.95


def test_nested_json_data_and_versioned_path(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = mnist_sample
    tensor = model_input(images[:3])
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [3, 28, 28, 1], "data": tensor.tolist()}]}
    response = server.http.post(server.infer_url(version=server.version), json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["probabilities"]["shape"] == [3, 10] and outputs["digit"]["shape"] == [3]
    probabilities = np.array(outputs["probabilities"]["data"]).reshape(3, 10)
    np.testing.assert_allclose(probabilities, batch_probabilities(server, images[:3]), atol=1e-5)


def test_request_id_is_echoed(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = mnist_sample
    client = server.triton()
    result = client.infer(server.model, [image_input(images[:2])], request_id="req-42:a")
    assert result.get_response()["id"] == "req-42:a"
    assert result.get_response()["model_name"] == server.model
    assert result.get_response()["model_version"] == server.version
    assert "id" not in client.infer(server.model, [image_input(images[:2])]).get_response()


def test_outputs_selection(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_sample
    client = server.triton()
    only_digit = client.infer(
        server.model, [image_input(images[:10])], outputs=[tritonclient.InferRequestedOutput("digit")]
    )
    assert [o["name"] for o in only_digit.get_response()["outputs"]] == ["digit"]
    assert only_digit.as_numpy("probabilities") is None
    mixed = client.infer(
        server.model,
        [image_input(images[:10])],
        outputs=[
            tritonclient.InferRequestedOutput("probabilities", binary_data=False),
            tritonclient.InferRequestedOutput("digit", binary_data=True),
        ],
    )
    by_name = {o["name"]: o for o in mixed.get_response()["outputs"]}
    assert "data" in by_name["probabilities"] and by_name["digit"]["parameters"] == {"binary_data_size": 80}
    np.testing.assert_array_equal(mixed.as_numpy("digit"), mixed.as_numpy("probabilities").argmax(axis=1))
    assert (mixed.as_numpy("digit") == labels[:10]).mean() >= 0.9
    # Without binary outputs the response is plain JSON; with them it is the JSON, then the bytes.
    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "FP32",
                "shape": [1, 28, 28, 1],
                "data": model_input(images[:1]).ravel().tolist(),
            }
        ],
        "outputs": [{"name": "probabilities"}],
    }
    response = server.http.post(server.infer_url(), json=body)
    assert response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
    body["parameters"] = {"binary_data_output": True}
    response = server.http.post(server.infer_url(), json=body)
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    header = orjson.loads(response.content[:length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 40 == len(response.content) - length


def realworld_samples() -> tuple[list[bytes], list[int]]:
    """The committed real-world photos and drawings, or (until they land) digits drawn here with PIL."""
    labels_file = REALWORLD / "labels.json"
    if labels_file.is_file():
        labels = json.loads(labels_file.read_text())
        items = labels.items() if isinstance(labels, dict) else ((i["file"], i["label"]) for i in labels)
        pairs = [(REALWORLD / name, int(label)) for name, label in items if (REALWORLD / name).is_file()]
        if pairs:
            return [path.read_bytes() for path, _ in pairs], [label for _, label in pairs]
    with np.load(DATA / "mnist_sample.npz") as data:
        images, digit_labels = data["images"][100:116], data["labels"][100:116]
    files = []
    for i, digit in enumerate(images):
        # Dark ink on light paper, larger than MNIST, off-centre; alternately PNG and JPEG.
        page = Image.new("L", (200, 160), 235)
        page.paste(Image.fromarray(255 - digit).resize((112, 112), Image.Resampling.BICUBIC), (20 + i * 3, 24))
        files.append(encode(page, "PNG") if i % 2 else encode(page.convert("RGB"), "JPEG", quality=92))
    return files, digit_labels.tolist()


def batch_of_files(server: Server, files: list[bytes]) -> np.ndarray:
    parts = [("files", (f"{i}.img", data, "application/octet-stream")) for i, data in enumerate(files)]
    response = server.http.post("/predict/batch", files=parts)
    assert response.status_code == 200, response.text
    return np.array([p["probabilities"] for p in response.json()["predictions"]])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json-base64"])
def test_image_bytes_on_real_world_images(server: Server, binary: bool) -> None:
    files, labels = realworld_samples()
    outputs = [tritonclient.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "digit")]
    result = server.triton().infer(server.model, [bytes_input(files, binary)], outputs=outputs)
    probabilities = result.as_numpy("probabilities")
    np.testing.assert_allclose(probabilities, batch_of_files(server, files), atol=1e-5)
    digits = result.as_numpy("digit")
    np.testing.assert_array_equal(digits, probabilities.argmax(axis=1))
    assert (digits == np.array(labels)).mean() >= 0.75, (digits.tolist(), labels)


def test_gzip_compressed_request(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_sample
    result = server.triton().infer(server.model, [image_input(images[:20])], request_compression_algorithm="gzip")
    assert (result.as_numpy("digit") == labels[:20]).mean() >= 0.9


def test_v2_requests_are_counted_like_batch_requests(
    server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    images, _ = mnist_sample

    def classified() -> float:
        for line in server.http.get("/metrics").text.splitlines():
            if line.startswith("digits_images_classified_total "):
                return float(line.split()[1])
        return 0.0

    before = classified()
    server.triton().infer(server.model, [image_input(images[:7])])
    assert classified() - before == 7
    assert 'route="/v2/models/{model_name}/infer"' in server.http.get("/metrics").text


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


JSON_ERRORS = [
    ("malformed-json", b'{"inputs": [', "the body is not valid JSON"),
    ("not-an-object", b"[1, 2]", "the JSON body must be an object"),
    ("no-inputs", {"outputs": []}, prefix(v2.ONE_INPUT)),
    ("two-inputs", {"inputs": [image_tensor(blank()), image_tensor(blank())]}, "got 2 inputs"),
    (
        "unknown-input",
        {"inputs": [{"name": "input0", "datatype": "FP32", "shape": [1], "data": [0]}]},
        v2.UNKNOWN_INPUT.format(name="input0"),
    ),
    (
        "wrong-datatype",
        {"inputs": [image_tensor(blank(), datatype="UINT8")]},
        v2.WRONG_DATATYPE.format(name="image", expected="FP32", got="UINT8"),
    ),
    (
        "bytes-wrong-datatype",
        {"inputs": [{"name": "image_bytes", "datatype": "FP32", "shape": [1], "data": [0]}]},
        v2.WRONG_DATATYPE.format(name="image_bytes", expected="BYTES", got="FP32"),
    ),
    ("wrong-shape", {"inputs": [image_tensor(blank(), shape=[1, 28, 28])]}, "must have shape [N, 28, 28, 1]"),
    ("shape-not-numbers", {"inputs": [image_tensor(blank(), shape=["1", 28, 28, 1])]}, "must have shape"),
    ("empty-batch", {"inputs": [image_tensor([], shape=[0, 28, 28, 1])]}, errors.EMPTY_BATCH),
    (
        "bytes-wrong-shape",
        {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1, 1], "data": ["x"]}]},
        "input 'image_bytes' must have shape [N]",
    ),
    (
        "data-too-short",
        {"inputs": [image_tensor(blank()[:-1])]},
        v2.DATA_LENGTH.format(name="image", got=783, shape=[1, 28, 28, 1], expected=784),
    ),
    (
        "data-too-long",
        {"inputs": [image_tensor(blank(2))]},
        v2.DATA_LENGTH.format(name="image", got=1568, shape=[1, 28, 28, 1], expected=784),
    ),
    ("bad-nesting", {"inputs": [image_tensor([[[0.0] * 28] * 28])]}, prefix(v2.DATA_NESTING)),
    ("ragged-nesting", {"inputs": [image_tensor([[[[0.0]] * 28] * 27 + [[[0.0]] * 29]])]}, prefix(v2.DATA_NESTING)),
    ("strings", {"inputs": [image_tensor(["0.5"] * 784)]}, v2.NOT_NUMERIC),
    ("booleans", {"inputs": [image_tensor([True] + blank()[1:])]}, v2.NOT_NUMERIC),
    ("nulls", {"inputs": [image_tensor([None] + blank()[1:])]}, v2.NOT_NUMERIC),
    ("out-of-range", {"inputs": [image_tensor([255.0] + blank()[1:])]}, "values must be from 0 to 1"),
    ("negative", {"inputs": [image_tensor([-0.5] + blank()[1:])]}, "values must be from 0 to 1"),
    ("overflow", {"inputs": [image_tensor([1e300] + blank()[1:])]}, v2.NOT_FINITE),
    ("no-data", {"inputs": [image_tensor()]}, v2.NO_DATA.format(name="image")),
    (
        "bytes-not-base64",
        {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]},
        errors.INVALID_BASE64.format(field="image_bytes[0]"),
    ),
    (
        "bytes-not-string",
        {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": [7]}]},
        errors.NOT_A_STRING.format(field="image_bytes[0]"),
    ),
    (
        "bytes-count",
        {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [2], "data": ["aGk="]}]},
        "input 'image_bytes' has 1 values in 'data'; its shape [2] needs 2",
    ),
    (
        "unknown-output",
        {"inputs": [image_tensor(blank())], "outputs": [{"name": "logits"}]},
        v2.UNKNOWN_OUTPUT.format(name="logits"),
    ),
    (
        "duplicate-output",
        {"inputs": [image_tensor(blank())], "outputs": [{"name": "digit"}, {"name": "digit"}]},
        v2.DUPLICATE_OUTPUT.format(name="digit"),
    ),
    (
        "classification",
        {
            "inputs": [image_tensor(blank())],
            "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}],
        },
        "parameter 'classification' is not supported",
    ),
    ("id-not-string", {"id": 42, "inputs": [image_tensor(blank())]}, "'id' must be a string"),
    (
        "binary-flag-not-bool",
        {"inputs": [image_tensor(blank())], "parameters": {"binary_data_output": "yes"}},
        "parameters.binary_data_output must be true or false",
    ),
    (
        "parameter-not-scalar",
        {"inputs": [image_tensor(blank())], "parameters": {"x": {"y": 1}}},
        "parameters.x must be a string, number or boolean",
    ),
]


@pytest.mark.parametrize(("body", "message"), [(b, m) for _, b, m in JSON_ERRORS], ids=[i for i, _, _ in JSON_ERRORS])
def test_json_errors_are_400(server: Server, body: object, message: str) -> None:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    check_error(
        server.http.post(server.infer_url(), content=content, headers={"content-type": "application/json"}),
        400,
        message,
    )


def test_image_bytes_that_are_no_image_or_no_digit_are_400(server: Server) -> None:
    blank_png = encode(Image.new("L", (64, 64), 255))
    cases = [
        (b"not an image at all", "image_bytes[0]: the image could not be decoded"),
        (b"", "image_bytes[0]: " + errors.EMPTY_IMAGE),
        (b"%PDF-1.4 ...", "image_bytes[0]: unsupported image type 'application/pdf'"),
        (blank_png, "image_bytes[0]: " + errors.NO_DIGIT),
    ]
    for data, message in cases:
        body = {
            "inputs": [
                {"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(data).decode()]}
            ]
        }
        check_error(server.http.post(server.infer_url(), json=body), 400, message)
    # The same through tritonclient, as binary data.
    with pytest.raises(InferenceServerException) as caught:
        server.triton().infer(server.model, [bytes_input([blank_png])])
    assert caught.value.status() == "400"
    assert errors.NO_DIGIT in caught.value.message()


def binary_request(
    header: Mapping[str, object], data: bytes, length: int | None = None
) -> tuple[bytes, dict[str, str]]:
    json_part = orjson.dumps(header)
    return json_part + data, {"inference-header-content-length": str(len(json_part) if length is None else length)}


def test_binary_errors_are_400(server: Server) -> None:
    zeros = np.zeros((1, 28, 28, 1), np.float32)
    sized = {"inputs": [image_tensor(parameters={"binary_data_size": 3136})]}
    cases: list[tuple[bytes, dict[str, str], str]] = [
        (*binary_request(sized, zeros.tobytes()[:-4]), v2.BINARY_MISMATCH.format(got=3132, expected=3136)),
        (
            *binary_request({"inputs": [image_tensor(parameters={"binary_data_size": 3132})]}, zeros.tobytes()[:-4]),
            v2.BINARY_SIZE.format(name="image", got=3132, shape=[1, 28, 28, 1], datatype="FP32", expected=3136),
        ),
        (*binary_request(sized, zeros.tobytes(), length=10**9), "invalid Inference-Header-Content-Length"),
        (*binary_request(sized, zeros.tobytes(), length=5), "the body is not valid JSON"),
        (
            binary_request(sized, b"")[0] + zeros.tobytes(),
            {"inference-header-content-length": "abc"},
            "invalid Inference-Header-Content-Length 'abc'",
        ),
        (orjson.dumps(sized), {}, v2.NO_HEADER_LENGTH.format(name="image")),
        (
            *binary_request({"inputs": [image_tensor(blank())]}, b"\x00" * 8),
            v2.BINARY_MISMATCH.format(got=8, expected=0),
        ),
        (
            *binary_request(
                {"inputs": [image_tensor(blank(), parameters={"binary_data_size": 3136})]}, zeros.tobytes()
            ),
            v2.DATA_AND_BINARY.format(name="image"),
        ),
        (
            *binary_request(
                {"inputs": [image_tensor(parameters={"binary_data_size": 3136})]}, np.full_like(zeros, np.nan).tobytes()
            ),
            v2.NOT_FINITE,
        ),
        (
            *binary_request(
                {"inputs": [image_tensor(parameters={"binary_data_size": 3136})]}, np.full_like(zeros, 255).tobytes()
            ),
            "got values from 255 to 255",
        ),
        (
            *binary_request(
                {
                    "inputs": [
                        {
                            "name": "image_bytes",
                            "datatype": "BYTES",
                            "shape": [2],
                            "parameters": {"binary_data_size": 9},
                        }
                    ]
                },
                b"\x05\x00\x00\x00hello",
            ),
            v2.BYTES_ELEMENT.format(index=1, count=2),
        ),
        (
            *binary_request(
                {
                    "inputs": [
                        {
                            "name": "image_bytes",
                            "datatype": "BYTES",
                            "shape": [1],
                            "parameters": {"binary_data_size": 8},
                        }
                    ]
                },
                b"\x09\x00\x00\x00abcd",
            ),
            v2.BYTES_ELEMENT.format(index=0, count=1),
        ),
        (
            *binary_request({"inputs": [image_tensor(parameters={"binary_data_size": -1})]}, b""),
            "binary_data_size must be a whole number of bytes",
        ),
    ]
    for content, headers, message in cases:
        check_error(server.http.post(server.infer_url(), content=content, headers=headers), 400, message)


def test_tritonclient_sees_the_error_message(server: Server) -> None:
    tensor = tritonclient.InferInput("image", [1, 28, 28, 1], "FP32")
    tensor.set_data_from_numpy(np.full((1, 28, 28, 1), 2.0, np.float32))
    with pytest.raises(InferenceServerException) as caught:
        server.triton().infer(server.model, [tensor])
    assert caught.value.status() == "400"
    assert "values must be from 0 to 1" in caught.value.message()


def test_limits_are_413(server: Server) -> None:
    limit = server.http.get("/model").json()["runtime"]["max_batch_images"]
    too_many = {"inputs": [image_tensor(blank(), shape=[limit + 1, 28, 28, 1])]}
    check_error(
        server.http.post(server.infer_url(), json=too_many),
        413,
        errors.TOO_MANY_IMAGES.format(count=limit + 1, limit=limit),
    )
    max_body = server.http.get("/model").json()["runtime"]["max_body_bytes"]
    check_error(server.http.post(server.infer_url(), content=b" " * (max_body + 1)), 413, prefix(errors.BODY_TOO_LARGE))
    # A compressed body is held to the same limit once inflated.
    bomb = gzip.compress(b" " * (max_body + 1))
    check_error(
        server.http.post(server.infer_url(), content=bomb, headers={"content-encoding": "gzip"}),
        413,
        prefix(errors.BODY_TOO_LARGE),
    )
    check_error(
        server.http.post(server.infer_url(), content=b"\x1f\x8bnot gzip", headers={"content-encoding": "gzip"}),
        400,
        "the body is not valid gzip data",
    )


def test_openapi_documents_v2_with_error_schemas(server: Server) -> None:
    spec = server.http.get("/openapi.json").json()
    infer = spec["paths"]["/v2/models/{model_name}/infer"]["post"]
    assert infer["tags"] == ["kserve-v2"]
    assert {"application/json", "application/octet-stream"} <= set(infer["requestBody"]["content"])
    assert infer["requestBody"]["content"]["application/json"]["examples"]
    for status in ("400", "404", "413"):
        ref = infer["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]["required"] == ["error"]
    for path in (
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/versions/{model_version}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/versions/{model_version}/ready",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    ):
        assert path in spec["paths"], path


# --- Probes, keys and draining, in-process --------------------------------------------------------


def test_health_stays_open_with_api_keys_and_readiness_follows_draining() -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.config import Settings

    with TestClient(create_app(Settings(api_keys=["secret-key"], workers=1)), raise_server_exceptions=False) as client:
        name = client.get("/model", headers={"x-api-key": "secret-key"}).json()["name"]
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/v2").status_code == 401
        assert client.post(f"/v2/models/{name}/infer", json={}).status_code == 401
        assert client.get(f"/v2/models/{name}/ready", headers={"x-api-key": "secret-key"}).status_code == 200
        client.app.state.runtime.draining = True  # type: ignore[attr-defined]
        for path in ("/v2/health/ready", f"/v2/models/{name}/ready"):
            response = client.get(path, headers={"x-api-key": "secret-key"})
            assert response.status_code == 503
            assert response.json() == {"error": errors.SHUTTING_DOWN}
        assert client.get("/v2/health/live").status_code == 200
        client.app.state.runtime.draining = False  # type: ignore[attr-defined]
