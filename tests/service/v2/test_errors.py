"""Every v2 error: its status, its ``{"error"}`` form and its message."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Mapping

import numpy as np
import orjson
import pytest
import tritonclient.http as tritonclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from service import errors
from service.v2 import messages
from tests.conftest import encode
from tests.service.v2.conftest import Server, blank, bytes_input, check_error, image_tensor, prefix

JSON_ERRORS = [
    ("malformed-json", b'{"inputs": [', "the body is not valid JSON"),
    ("not-an-object", b"[1, 2]", "the JSON body must be an object"),
    ("no-inputs", {"outputs": []}, prefix(messages.ONE_INPUT)),
    ("two-inputs", {"inputs": [image_tensor(blank()), image_tensor(blank())]}, "got 2 inputs"),
    (
        "unknown-input",
        {"inputs": [{"name": "input0", "datatype": "FP32", "shape": [1], "data": [0]}]},
        "has no input 'input0': " + prefix(messages.TENSOR_INPUT),
    ),
    (
        "wrong-datatype",
        {"inputs": [image_tensor(blank(), datatype="UINT8")]},
        messages.WRONG_DATATYPE.format(name="image", expected="FP32", got=messages.echo("UINT8")),
    ),
    (
        "bytes-wrong-datatype",
        {"inputs": [{"name": "image_bytes", "datatype": "FP32", "shape": [1], "data": [0]}]},
        messages.WRONG_DATATYPE.format(name="image_bytes", expected="BYTES", got=messages.echo("FP32")),
    ),
    ("wrong-shape", {"inputs": [image_tensor(blank(), shape=[1, 28, 28])]}, "must have shape [N, 28, 28, 1]"),
    ("shape-not-numbers", {"inputs": [image_tensor(blank(), shape=["1", 28, 28, 1])]}, "must have shape"),
    ("empty-batch", {"inputs": [image_tensor([], shape=[0, 28, 28, 1])]}, errors.EMPTY_BATCH),
    (
        "bytes-wrong-shape",
        {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1, 2], "data": ["x"]}]},
        "input 'image_bytes' must have shape [N] or [N, 1]",
    ),
    (
        "data-too-short",
        {"inputs": [image_tensor(blank()[:-1])]},
        messages.DATA_LENGTH.format(name="image", got=783, shape=[1, 28, 28, 1], expected=784),
    ),
    (
        "data-too-long",
        {"inputs": [image_tensor(blank(2))]},
        messages.DATA_LENGTH.format(name="image", got=1568, shape=[1, 28, 28, 1], expected=784),
    ),
    ("bad-nesting", {"inputs": [image_tensor([[[0.0] * 28] * 28])]}, prefix(messages.DATA_NESTING)),
    (
        "ragged-nesting",
        {"inputs": [image_tensor([[[[0.0]] * 28] * 27 + [[[0.0]] * 29]])]},
        prefix(messages.DATA_NESTING),
    ),
    ("strings", {"inputs": [image_tensor(["0.5"] * 784)]}, messages.NOT_NUMERIC),
    ("booleans", {"inputs": [image_tensor([True] + blank()[1:])]}, messages.NOT_NUMERIC),
    ("nulls", {"inputs": [image_tensor([None] + blank()[1:])]}, messages.NOT_NUMERIC),
    ("no-data", {"inputs": [image_tensor()]}, messages.NO_DATA.format(name="image")),
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
        messages.UNKNOWN_OUTPUT.format(name=messages.echo("logits")),
    ),
    (
        "duplicate-output",
        {"inputs": [image_tensor(blank())], "outputs": [{"name": "digit"}, {"name": "digit"}]},
        messages.DUPLICATE_OUTPUT.format(name="digit"),
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
        server.triton().infer(server.bytes_model, [bytes_input([blank_png])])
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
        (*binary_request(sized, zeros.tobytes()[:-4]), messages.BINARY_MISMATCH.format(got=3132, expected=3136)),
        (
            *binary_request({"inputs": [image_tensor(parameters={"binary_data_size": 3132})]}, zeros.tobytes()[:-4]),
            messages.BINARY_SIZE.format(name="image", got=3132, shape=[1, 28, 28, 1], datatype="FP32", expected=3136),
        ),
        (*binary_request(sized, zeros.tobytes(), length=10**9), "invalid Inference-Header-Content-Length"),
        (*binary_request(sized, zeros.tobytes(), length=5), "the body is not valid JSON"),
        (
            binary_request(sized, b"")[0] + zeros.tobytes(),
            {"inference-header-content-length": "abc"},
            "invalid Inference-Header-Content-Length 'abc'",
        ),
        (orjson.dumps(sized), {}, messages.NO_HEADER_LENGTH.format(name="image")),
        (
            *binary_request({"inputs": [image_tensor(blank())]}, b"\x00" * 8),
            messages.BINARY_MISMATCH.format(got=8, expected=0),
        ),
        (
            *binary_request(
                {"inputs": [image_tensor(blank(), parameters={"binary_data_size": 3136})]}, zeros.tobytes()
            ),
            messages.DATA_AND_BINARY.format(name="image"),
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
            messages.BYTES_ELEMENT.format(index=1, count=2),
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
            messages.BYTES_ELEMENT.format(index=0, count=1),
        ),
        (
            *binary_request({"inputs": [image_tensor(parameters={"binary_data_size": -1})]}, b""),
            "binary_data_size must be a whole number of bytes",
        ),
    ]
    for content, headers, message in cases:
        check_error(server.http.post(server.infer_url(), content=content, headers=headers), 400, message)


def test_each_model_refuses_the_other_models_input(server: Server) -> None:
    body = {"inputs": [image_tensor(blank())]}
    expected = messages.BYTES_INPUT.format(other=server.model)
    message = messages.UNKNOWN_INPUT.format(model=server.bytes_model, name=messages.echo("image"), expected=expected)
    check_error(server.http.post(server.infer_url(server.bytes_model), json=body), 400, message)


def test_tritonclient_sees_the_error_message(server: Server) -> None:
    tensor = tritonclient.InferInput("image", [1, 28, 28], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 28, 28), np.float32))
    with pytest.raises(InferenceServerException) as caught:
        server.triton().infer(server.model, [tensor])
    assert caught.value.status() == "400"
    assert "input 'image' must have shape [N, 28, 28, 1]" in caught.value.message()


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


# --- Unknown routes and methods, and bounded echoes -----------------------------------------------

ROUTE_ERRORS = [
    ("GET", "/v2/no-such-endpoint", 404, prefix(messages.UNKNOWN_ROUTE)),
    ("GET", "/v2/", 404, prefix(messages.UNKNOWN_ROUTE)),
    ("POST", "/v2/repository/models/mnist-improved/load", 404, prefix(messages.UNKNOWN_ROUTE)),
    ("POST", "/v2", 405, "'POST' is not allowed on '/v2': use GET"),
    ("POST", "/v2/health/live", 405, "'POST' is not allowed on '/v2/health/live': use GET"),
    ("GET", "/v2/models/mnist-improved/infer", 405, "use POST"),
    ("DELETE", "/v2/models/mnist-improved", 405, "use GET"),
    ("PUT", "/v2/repository/index", 405, "use POST"),
]


@pytest.mark.parametrize(
    ("method", "path", "status", "message"), ROUTE_ERRORS, ids=[f"{m} {p}" for m, p, _, _ in ROUTE_ERRORS]
)
def test_unknown_routes_and_methods_answer_in_the_error_form(
    server: Server, method: str, path: str, status: int, message: str
) -> None:
    response = server.http.request(method, path, follow_redirects=False)
    check_error(response, status, message)
    if status == 405:
        assert response.headers["allow"] in message


def test_tritonclient_reads_an_unknown_route_error(server: Server) -> None:
    with pytest.raises(InferenceServerException) as caught:
        server.triton().load_model(server.model)
    assert caught.value.status() == "404"
    assert prefix(messages.UNKNOWN_ROUTE) in caught.value.message()


HUGE = "x" * 5_000_000
ECHO_CASES = [
    ("datatype-5mb-string", {"inputs": [image_tensor(blank(), datatype=HUGE)]}, "must have datatype FP32"),
    ("datatype-5mb-list", {"inputs": [image_tensor(blank(), datatype=[HUGE])]}, "must have datatype FP32"),
    ("datatype-deep-object", {"inputs": [image_tensor(blank(), datatype={"a": list(range(200_000))})]}, "datatype"),
    ("shape-1m-entries", {"inputs": [image_tensor(blank(), shape=[1] * 1_000_000)]}, "must have shape"),
    ("shape-5mb-string", {"inputs": [image_tensor(blank(), shape=[1, 28, 28, HUGE])]}, "must have shape"),
    ("input-name-5mb", {"inputs": [image_tensor(blank(), name=HUGE)]}, "has no input"),
    ("output-name-5mb", {"inputs": [image_tensor(blank())], "outputs": [{"name": HUGE}]}, "unknown output"),
    ("parameter-name-5mb", {"inputs": [image_tensor(blank())], "parameters": {HUGE: {}}}, "must be a string"),
]


@pytest.mark.parametrize(("body", "message"), [(b, m) for _, b, m in ECHO_CASES], ids=[i for i, _, _ in ECHO_CASES])
def test_errors_echo_a_bounded_part_of_the_input(server: Server, body: object, message: str) -> None:
    response = server.http.post(
        server.infer_url(), content=orjson.dumps(body), headers={"content-type": "application/json"}
    )
    check_error(response, 400, message)
    assert len(response.content) < 600, len(response.content)


def test_long_paths_are_echoed_bounded(server: Server) -> None:
    for path in (
        f"/v2/{'y' * 20_000}",
        f"/v2/models/{'m' * 20_000}",
        f"/v2/models/{server.model}/versions/{'9' * 20_000}",
    ):
        response = server.http.get(path)
        assert response.status_code == 404 and set(response.json()) == {"error"}
        assert len(response.content) < 600, len(response.content)


def test_echo_cuts_strings_and_values() -> None:
    assert messages.echo("UINT8") == "'UINT8'"
    assert messages.echo([1, 2]) == "[1,2]"
    assert len(messages.echo("x" * 1000)) == messages.ECHO_CHARS
    assert messages.echo([1] * 1000).endswith("…") and len(messages.echo([1] * 1000)) == messages.ECHO_CHARS
