"""Every input form and every error of /predict and /predict/batch (and /read's include_input), through the real app."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.conftest import encode

SUPPORTED = [
    ("PNG", "image/png"),
    ("JPEG", "image/jpeg"),
    ("WEBP", "image/webp"),
    ("BMP", "image/bmp"),
    ("GIF", "image/gif"),
    ("TIFF", "image/tiff"),
]


def upscaled(digit: np.ndarray, size: int = 112, dark_on_light: bool = False) -> Image.Image:
    image = Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC)
    return Image.fromarray(255 - np.asarray(image)) if dark_on_light else image


def check_prediction(body: dict, digit: int) -> None:  # type: ignore[type-arg]
    assert body["digit"] == digit, body
    assert len(body["probabilities"]) == 10
    assert body["confidence"] == pytest.approx(max(body["probabilities"]), abs=1e-6)
    assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-4)


# --- Input forms --------------------------------------------------------------------------------


def test_multipart_file(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist_sample
    response = client.post("/predict", files={"file": ("d.png", encode(images[0]), "image/png")})
    assert response.status_code == 200
    body = response.json()
    check_prediction(body, int(labels[0]))
    assert body["model_version"] == client.get("/model").json()["version"]
    assert "input" not in body


@pytest.mark.parametrize(("fmt", "content_type"), SUPPORTED)
def test_raw_body_of_every_supported_type(client, mnist_sample, fmt, content_type) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist_sample
    image = upscaled(images[1], dark_on_light=True)
    params = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    response = client.post("/predict", content=encode(image, fmt, **params), headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    check_prediction(response.json(), int(labels[1]))


def test_json_base64_image(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist_sample
    payload = {"image": base64.b64encode(encode(images[2])).decode()}
    response = client.post("/predict", json=payload)
    assert response.status_code == 200
    check_prediction(response.json(), int(labels[2]))


def test_json_base64_data_url_and_wrapped_lines(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist_sample
    text = base64.encodebytes(encode(upscaled(images[3]))).decode()  # wrapped at 76 characters
    assert "\n" in text
    for value in (text, "data:image/png;base64," + text):
        response = client.post("/predict", json={"image": value})
        assert response.status_code == 200, response.text
        check_prediction(response.json(), int(labels[3]))


def test_json_pixels_used_as_given(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist_sample
    response = client.post("/predict", json={"pixels": images[4].tolist()}, params={"include_input": "true"})
    assert response.status_code == 200
    body = response.json()
    check_prediction(body, int(labels[4]))
    np.testing.assert_allclose(np.array(body["input"]), images[4] / 255, atol=1e-3)


@pytest.mark.parametrize(
    "query",
    [
        "include_input=true",
        "include_input=True",
        "include_input=1",
        "include_input=yes",
        "include_input=on",
        "include_input=false",
        "include_input=0",
        "include_input=off",
        "include_input=",
        "include_input=maybe",
        "include_input=2",
        "include_input=true&include_input=false",
        "include_input=nope&include_input=1",
        "other=1",
    ],
)
def test_include_input_is_read_as_fastapi_reads_a_bool_query(client, mnist_sample, query: str) -> None:  # type: ignore[no-untyped-def]
    """The prediction routes (and /read) skip FastAPI's routing: their one query parameter must still mean the same."""
    from fastapi import FastAPI, Query
    from fastapi.testclient import TestClient

    reference = FastAPI()

    @reference.get("/")
    def echo(include_input: bool = Query(False)) -> dict[str, bool]:
        return {"include_input": include_input}

    expected = TestClient(reference).get(f"/?{query}")
    images, _ = mnist_sample
    pixels = images[0].tolist()
    png = base64.b64encode(encode(images[0])).decode()
    answers: dict[str, tuple[object, Callable[[Any], Any]]] = {
        "/predict": ({"pixels": pixels}, lambda body: body),
        "/predict/batch": ({"pixels": [pixels]}, lambda body: body["predictions"][0]),
        "/read": ({"image": png}, lambda body: body["digits"][0]),
    }
    for path, (body, first) in answers.items():
        response = client.post(f"{path}?{query}", json=body)
        if expected.status_code == 200:
            assert response.status_code == 200, (path, response.text)
            answer = first(response.json())
            assert ("input" in answer) == expected.json()["include_input"], (path, query)
        else:
            assert response.status_code == expected.status_code == 422, (path, response.text)
            message = expected.json()["detail"][0]["msg"]
            assert response.json()["detail"] == f"invalid request: include_input: {message}"


@pytest.mark.parametrize(("path", "work"), [("/predict", "single_work"), ("/predict/batch", "batch_work")])
def test_http_exception_in_a_prediction_handler_renders_as_on_any_route(  # type: ignore[no-untyped-def]
    client, mnist_sample, monkeypatch, path: str, work: str
) -> None:
    """An HTTPException raised while handling a prediction is answered as on every other route, not as a 500."""
    from starlette.exceptions import HTTPException

    from service import operations, routes

    def refuse(*args: object) -> None:
        raise HTTPException(status_code=409, detail="refused by the test", headers={"X-Test": "yes"})

    monkeypatch.setattr(routes, work, refuse)
    monkeypatch.setattr(operations, "model_info", refuse)
    images, _ = mnist_sample
    field = "file" if path == "/predict" else "files"
    predicted = client.post(path, files={field: ("d.png", encode(images[0]), "image/png")})
    elsewhere = client.get("/model")
    for response in (predicted, elsewhere):
        assert response.status_code == 409, response.text
        assert response.json() == {"detail": "refused by the test"}
        assert response.headers["x-test"] == "yes"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-request-id"]


def test_include_input_returns_the_preprocessed_image(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    images, _ = mnist_sample
    image = Image.new("L", (300, 200), 255)
    image.paste(upscaled(images[5], 100, dark_on_light=True), (180, 20))  # small, off-centre, dark on light
    response = client.post("/predict?include_input=true", content=encode(image), headers={"content-type": "image/png"})
    assert response.status_code == 200
    seen = np.array(response.json()["input"])
    assert seen.shape == (28, 28) and 0 <= seen.min() and seen.max() <= 1
    assert seen[:, :2].max() < 0.05 and seen[:2].max() < 0.05  # centred: empty borders, ink white
    ys, xs = np.nonzero(seen)
    assert abs(np.average(ys, weights=seen[ys, xs]) - 13.5) < 1.5


def test_batch_multipart_in_order(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist_sample
    files = [("files", (f"{i}.png", encode(images[i]), "image/png")) for i in range(20)]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200
    body = response.json()
    assert [p["digit"] for p in body["predictions"]] == labels[:20].tolist()
    assert body["model_version"]


def test_batch_json_images_and_pixels_agree(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist_sample
    encoded = [base64.b64encode(encode(images[i])).decode() for i in range(30, 40)]
    by_image = client.post("/predict/batch", json={"images": encoded}).json()["predictions"]
    by_pixels = client.post("/predict/batch", json={"pixels": images[30:40].tolist()}).json()["predictions"]
    assert [p["digit"] for p in by_pixels] == labels[30:40].tolist()
    assert [p["digit"] for p in by_image] == labels[30:40].tolist()


def test_single_and_batch_give_the_same_probabilities(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    images, _ = mnist_sample
    single = client.post("/predict", json={"pixels": images[7].tolist()}).json()
    batch = client.post("/predict/batch", json={"pixels": images[6:9].tolist()}).json()
    np.testing.assert_allclose(single["probabilities"], batch["predictions"][1]["probabilities"], atol=1e-5)


# --- Errors -------------------------------------------------------------------------------------


def assert_error(response, status: int, fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str) and fragment in detail, detail
    assert "Traceback" not in detail and "/work/" not in detail and ".py" not in detail


def test_unsupported_content_type(client) -> None:  # type: ignore[no-untyped-def]
    assert_error(
        client.post("/predict", content=b"hello", headers={"content-type": "text/plain"}),
        415,
        "unsupported Content-Type 'text/plain'",
    )
    assert_error(
        client.post("/predict", content=b"<svg/>", headers={"content-type": "image/svg+xml"}),
        415,
        "unsupported image type 'image/svg+xml'",
    )
    assert_error(client.post("/predict", content=b"x"), 415, "unsupported Content-Type")


def test_undecodable_truncated_and_empty_images(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    png = encode(mnist_sample[0][0])
    png_type = {"content-type": "image/png"}
    assert_error(client.post("/predict", content=b"not an image at all", headers=png_type), 422, "could not be decoded")
    assert_error(client.post("/predict", content=png[: len(png) // 2], headers=png_type), 422, "could not be decoded")
    assert_error(client.post("/predict", content=b"", headers=png_type), 422, "empty")
    assert_error(client.post("/predict", files={"file": ("e.png", b"", "image/png")}), 422, "empty")


def test_blank_image_has_no_digit(client) -> None:  # type: ignore[no-untyped-def]
    for image in (Image.new("L", (64, 64), 255), Image.new("RGBA", (64, 64), (0, 0, 0, 0)), Image.new("L", (28, 28))):
        response = client.post("/predict", content=encode(image), headers={"content-type": "image/png"})
        assert_error(response, 422, "no digit found")
    assert_error(client.post("/predict", json={"pixels": np.zeros((28, 28)).tolist()}), 422, "no digit found")


@pytest.mark.parametrize(
    ("pixels", "fragment"),
    [
        (np.zeros((27, 28)).tolist(), "28 x 28"),
        ([[0] * 28] * 27 + [[0] * 27], "28 x 28"),
        ([["a"] * 28] * 28, "only numbers"),
        ([[True] * 28] * 28, "only numbers"),
        ([[None] * 28] * 28, "only numbers"),
        (np.full((28, 28), 300).tolist(), "from 0 to 255"),
        (np.full((28, 28), -1).tolist(), "from 0 to 255"),
        ("abc", "'pixels' must"),
        (5, "'pixels' must"),
    ],
)
def test_invalid_pixels(client, pixels, fragment) -> None:  # type: ignore[no-untyped-def]
    assert_error(client.post("/predict", json={"pixels": pixels}), 422, fragment)


def test_nan_and_infinity_pixels(client) -> None:  # type: ignore[no-untyped-def]
    row = ", ".join(["0"] * 27)
    for token in ("NaN", "Infinity", "1e999"):
        body = '{"pixels": [' + ", ".join([f"[{token}, {row}]"] * 28) + "]}"
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text


def test_invalid_json_forms(client) -> None:  # type: ignore[no-untyped-def]
    json_type = {"content-type": "application/json"}
    assert_error(client.post("/predict", content=b"{not json", headers=json_type), 422, "not valid JSON")
    assert_error(client.post("/predict", content=b"[1, 2]", headers=json_type), 422, "must be an object")
    assert_error(client.post("/predict", json={"img": "x"}), 422, "exactly one of the fields")
    assert_error(client.post("/predict", json={"image": "x", "pixels": []}), 422, "exactly one of the fields")
    assert_error(client.post("/predict", json={"image": "!!!"}), 422, "not valid base64")
    assert_error(client.post("/predict", json={"image": 12}), 422, "must be a string")
    assert_error(client.post("/predict", content=b"[" * 100_000, headers=json_type), 422, "not valid JSON")


def test_missing_and_wrong_form_fields(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    png = encode(mnist_sample[0][0])
    assert_error(client.post("/predict", files={"image": ("d.png", png, "image/png")}), 422, "no file field 'file'")
    assert_error(client.post("/predict", data={"file": "text"}, files={"other": ("x", b"1")}), 422, "")
    assert_error(client.post("/predict/batch", files={"file": ("d.png", png, "image/png")}), 422, "'files'")
    assert_error(client.post("/predict", files={"file": ("d.svg", b"<svg/>", "image/svg+xml")}), 415, "svg")
    malformed = {"content-type": "multipart/form-data; boundary=xyz"}
    assert_error(client.post("/predict", content=b"--xyz\r\nno end", headers=malformed), 422, "malformed")
    assert_error(
        client.post("/predict", content=b"x", headers={"content-type": "multipart/form-data"}), 422, "no boundary"
    )


def test_batch_limits(client, mnist_sample, app_settings) -> None:  # type: ignore[no-untyped-def]
    limit = app_settings.max_batch_images
    too_many = np.zeros((limit + 1, 28, 28), np.uint8).tolist()
    assert_error(client.post("/predict/batch", json={"pixels": too_many}), 413, f"batch limit of {limit}")
    assert_error(client.post("/predict/batch", json={"images": []}), 422, "empty")
    png = base64.b64encode(encode(mnist_sample[0][0])).decode()
    assert_error(client.post("/predict/batch", json={"images": [png, "AAAA"]}), 422, "image 1:")


def test_body_over_the_limit_is_refused_before_it_is_read(client, app_settings) -> None:  # type: ignore[no-untyped-def]
    limit = app_settings.max_body_bytes
    declared = {"content-type": "image/png", "content-length": str(limit + 1)}
    assert_error(client.post("/predict", content=b"\0" * 10, headers=declared), 413, "over the limit")

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b"\0" * 65536

    response = client.post("/predict", content=chunks(), headers={"content-type": "image/png"})
    assert_error(response, 413, "over the limit")


def test_decompression_bomb_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    bomb = encode(Image.new("1", (20_000, 20_000)), optimize=True)  # 400 MP, a few KB compressed
    assert len(bomb) < 200_000
    assert_error(client.post("/predict", content=bomb, headers={"content-type": "image/png"}), 413, "pixels")


def test_service_answers_after_bad_input(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist_sample
    for _ in range(3):
        client.post("/predict", content=b"\x89PNG\r\n\x1a\n garbage", headers={"content-type": "image/png"})
    response = client.post("/predict", json={"pixels": images[9].tolist()})
    assert response.status_code == 200 and response.json()["digit"] == labels[9]


# --- Operations ---------------------------------------------------------------------------------


def test_health_model_and_metrics(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/health/live").json() == {"status": "ok"}
    assert client.get("/health/ready").json() == {"status": "ready"}
    info = client.get("/model").json()
    assert info["name"] == "mnist-improved" and len(info["sha256"]) == 64
    assert info["runtime"]["intra_op_threads"] >= 1
    client.post("/predict", content=b"", headers={"content-type": "image/png"})
    text = client.get("/metrics").text
    assert 'digits_http_requests_total{method="POST",route="/predict",status="422"}' in text
    assert "digits_http_request_duration_seconds_bucket" in text
    assert "digits_inference_batch_size_bucket" in text
    assert "digits_images_classified_total" in text


def test_request_id_is_echoed_or_made(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/health/live", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = client.get("/health/live", headers={"x-request-id": "bad id\n"}).headers["x-request-id"]
    assert len(made) == 32


def test_openapi_documents_every_input_form_with_examples(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json", "image/png", "image/jpeg"} <= set(content)
    responses = spec["paths"]["/predict"]["post"]["responses"]
    assert {"200", "413", "415", "422"} <= set(responses)
    for path in ("/docs", "/redoc"):
        html = client.get(path).text
        assert "cdn." not in html and "googleapis" not in html
        for asset in (
            ("/docs-assets/swagger-ui-bundle.js",) if path == "/docs" else ("/docs-assets/redoc.standalone.js",)
        ):
            assert asset in html and client.get(asset).status_code == 200
    assert json.dumps(spec).count('"example') >= 4


def test_serving_never_loads_tensorflow() -> None:
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from service.app import create_app\n"
        "from tests.conftest import encode\n"
        "import numpy as np\n"
        "img = np.zeros((28, 28), np.uint8); img[6:22, 12:16] = 255\n"
        "with TestClient(create_app()) as c:\n"
        "    r = c.post('/predict', content=encode(img), headers={'content-type': 'image/png'})\n"
        "    assert r.status_code == 200, r.text\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
