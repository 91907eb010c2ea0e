"""The v2 endpoints that work: health, metadata and inference, through tritonclient and plain HTTP."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as tritonclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from service.v2 import spec
from tests.conftest import DATA, encode
from tests.service.v2.conftest import (
    Server,
    assert_open_set_agrees,
    batch_predictions,
    batch_probabilities,
    bytes_input,
    image_input,
    model_input,
)

REALWORLD = DATA / "realworld"


# --- Health and metadata --------------------------------------------------------------------------


def test_server_live_ready_and_metadata(server: Server) -> None:
    client = server.triton()
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == spec.SERVER_NAME
    assert metadata["version"]
    assert "binary_tensor_data" in metadata["extensions"]
    assert server.http.get("/v2/health/live").json() == {"live": True}
    assert server.http.get("/v2/health/ready").json() == {"ready": True}


OUTPUTS = [
    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
    {"name": "digit", "datatype": "INT64", "shape": [-1]},
    {"name": "is_digit", "datatype": "BOOL", "shape": [-1]},
    {"name": "digit_score", "datatype": "FP32", "shape": [-1]},
]


def test_model_ready_and_metadata(server: Server) -> None:
    client = server.triton()
    inputs = {
        server.model: [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28, 1]}],
        server.bytes_model: [{"name": "image_bytes", "datatype": "BYTES", "shape": [-1, 1]}],
    }
    for model, model_inputs in inputs.items():
        # Triton's integer version ("2"), and the model's own ("2.0.0-int8"), name the served version.
        for version in ("", server.v2_version, server.version):
            assert client.is_model_ready(model, version)
            metadata = client.get_model_metadata(model, version)
            assert metadata["name"] == model
            assert metadata["versions"] == [server.v2_version]
            assert metadata["platform"] == "onnxruntime_onnx"
            # One input each, so that a generic tool that fills every listed input sends a valid request.
            assert metadata["inputs"] == model_inputs
            assert metadata["outputs"] == OUTPUTS
        assert server.http.get(f"/v2/models/{model}/ready").json() == {"name": model, "ready": True}
    assert server.v2_version == "2" and server.version.startswith("2.")
    assert not client.is_model_ready("no-such-model")
    assert not client.is_model_ready(server.model, "0.0.0-missing")
    assert not client.is_model_ready(server.model, "1")


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
        assert server.v2_version in response.json()["error"] or server.model in response.json()["error"]


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
    # Open-set outputs: the same as /predict/batch's; nearly every MNIST test digit is a digit.
    is_digit, digit_score = result.as_numpy("is_digit"), result.as_numpy("digit_score")
    assert_open_set_agrees(is_digit, digit_score, batch_predictions(server, images))
    assert is_digit.mean() >= 0.98
    assert [o["name"] for o in result.get_response()["outputs"]] == [
        "probabilities",
        "digit",
        "is_digit",
        "digit_score",
    ]


def test_open_set_outputs_in_json_and_binary(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = mnist_sample
    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "FP32",
                "shape": [3, 28, 28, 1],
                "data": model_input(images[:3]).ravel().tolist(),
            }
        ],
        "outputs": [{"name": "is_digit"}, {"name": "digit_score"}],
    }
    response = server.http.post(server.infer_url(), json=body)
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert [(o["name"], o["datatype"], o["shape"]) for o in outputs] == [
        ("is_digit", "BOOL", [3]),
        ("digit_score", "FP32", [3]),
    ]
    expected = batch_predictions(server, images[:3])
    assert_open_set_agrees(np.array(outputs[0]["data"]), np.array(outputs[1]["data"], np.float32), expected)
    # As binary data, BOOL is one byte per element.
    body["parameters"] = {"binary_data_output": True}
    response = server.http.post(server.infer_url(), json=body)
    length = int(response.headers["inference-header-content-length"])
    header = orjson.loads(response.content[:length])
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [3, 12]
    assert response.content[length : length + 3] == bytes(p["is_digit"] for p in expected)


def test_any_fp32_tensor_is_answered_as_the_nearest_in_range(
    server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    """perf_analyzer's generated data is random bytes as FP32: NaN, infinities, huge values. Each is answered."""
    images, _ = mnist_sample
    random_bits = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1, 4), dtype=np.uint8).view("<f4")[..., 0]
    assert np.isnan(random_bits).any() and (np.abs(random_bits[np.isfinite(random_bits)]) > 1).any()
    client = server.triton()
    tensor = tritonclient.InferInput("image", [4, 28, 28, 1], "FP32").set_data_from_numpy(random_bits)
    probabilities = client.infer(server.model, [tensor]).as_numpy("probabilities")
    clipped = np.clip(np.nan_to_num(random_bits, nan=0.0, posinf=1.0, neginf=0.0), 0, 1).astype(np.float32)
    expected = client.infer(
        server.model, [tritonclient.InferInput("image", [4, 28, 28, 1], "FP32").set_data_from_numpy(clipped)]
    )
    np.testing.assert_allclose(probabilities, expected.as_numpy("probabilities"), atol=1e-6)
    assert np.isfinite(probabilities).all()
    # The same in JSON, with numbers beyond float32.
    values = model_input(images[:1]).ravel().tolist()
    body = {
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 28, 28, 1], "data": [1e300, -5.0, *values[2:]]}]
    }
    response = server.http.post(server.infer_url(), json=body)
    assert response.status_code == 200, response.text
    body["inputs"][0]["data"] = [1.0, 0.0, *values[2:]]
    assert server.http.post(server.infer_url(), json=body).json() == response.json()


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
    response = server.http.post(server.infer_url(version=server.v2_version), json=body)
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
    assert result.get_response()["model_version"] == server.v2_version
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


def batch_of_files(server: Server, files: list[bytes]) -> list[dict[str, Any]]:
    parts = [("files", (f"{i}.img", data, "application/octet-stream")) for i, data in enumerate(files)]
    response = server.http.post("/predict/batch", files=parts)
    assert response.status_code == 200, response.text
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    return predictions


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json-base64"])
def test_image_bytes_on_real_world_images(server: Server, binary: bool) -> None:
    files, labels = realworld_samples()
    names = ("probabilities", "digit", "is_digit", "digit_score")
    outputs = [tritonclient.InferRequestedOutput(name, binary_data=binary) for name in names]
    result = server.triton().infer(server.bytes_model, [bytes_input(files, binary, column=True)], outputs=outputs)
    assert result.get_response()["model_name"] == server.bytes_model
    probabilities = result.as_numpy("probabilities")
    np.testing.assert_allclose(probabilities, [p["probabilities"] for p in batch_of_files(server, files)], atol=1e-5)
    digits = result.as_numpy("digit")
    np.testing.assert_array_equal(digits, probabilities.argmax(axis=1))
    assert (digits == np.array(labels)).mean() >= 0.75, (digits.tolist(), labels)
    assert_open_set_agrees(result.as_numpy("is_digit"), result.as_numpy("digit_score"), batch_of_files(server, files))


def test_image_bytes_still_accepted_by_the_tensor_model(server: Server) -> None:
    """Today's documented request (image_bytes to the tensor model) keeps working, though no longer listed."""
    files, _ = realworld_samples()
    expected = server.triton().infer(server.bytes_model, [bytes_input(files[:4])]).as_numpy("probabilities")
    result = server.triton().infer(server.model, [bytes_input(files[:4])])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6)
    assert result.get_response()["model_name"] == server.model


def test_bytes_model_takes_a_column_shape(server: Server) -> None:
    """[N, 1] (listed, what perf_analyzer sends) and [N] (documented before) work alike, flat or nested."""
    files, _ = realworld_samples()
    data = [base64.b64encode(f).decode() for f in files[:3]]
    results = []
    for shape, values in (([3], data), ([3, 1], data), ([3, 1], [[d] for d in data])):
        body = {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": shape, "data": values}]}
        response = server.http.post(server.infer_url(server.bytes_model), json=body)
        assert response.status_code == 200, response.text
        results.append(response.json()["outputs"][0]["data"])
    assert results[0] == results[1] == results[2]


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
