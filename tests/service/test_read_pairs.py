"""/read's pair model: touching digits read whole, through the real app, and its loading and settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.config import DEFAULT_PAIR_MODEL, Settings
from service.inference import ModelLoadError
from service.read.pairs import HEIGHT, WIDTH, PairModel, frame_pair
from tests.conftest import DATA

PAIRS = DATA / "read" / "pairs.json"


def cases() -> list[tuple[str, str]]:
    """Touching pairs of the dev split (file, truth) that cuts alone misread (tests/data/read/pairs.json)."""
    return sorted(json.loads(PAIRS.read_text()).items())


@pytest.fixture(scope="module")
def cuts_only_client():  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from service.app import create_app

    settings = Settings(workers=1, log_json=True, request_timeout_s=30, pair_model_path=None)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def post(client, path: Path):  # type: ignore[no-untyped-def]
    return client.post("/read", content=path.read_bytes(), headers={"content-type": "image/png"})


@pytest.mark.parametrize(("name", "truth"), cases())
def test_touching_digits_the_cuts_misread_are_read_whole(client, cuts_only_client, name, truth) -> None:  # type: ignore[no-untyped-def]
    path = DATA / "read" / name
    without = post(cuts_only_client, path).json()
    assert without["text"] != truth  # the premise: cutting alone reads it wrong
    body = post(client, path).json()
    assert body["text"] == truth, body["text"]
    first, second = body["digits"]
    # Two boxes side by side, splitting the mark's box between them.
    assert first["box"]["x"] < second["box"]["x"]
    assert first["box"]["x"] + first["box"]["width"] <= second["box"]["x"] + 1
    assert all(d["is_digit"] and 0 <= d["confidence"] <= 1 for d in body["digits"])


def test_a_pair_s_digits_come_with_the_input_the_model_saw(client) -> None:  # type: ignore[no-untyped-def]
    name, truth = cases()[0]
    response = client.post(
        "/read?include_input=true", content=(DATA / "read" / name).read_bytes(), headers={"content-type": "image/png"}
    )
    body = response.json()
    assert body["text"] == truth
    for digit in body["digits"]:
        assert np.asarray(digit["input"]).shape == (28, 28)


def test_without_a_pair_model_read_still_reads_separate_digits(cuts_only_client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    from tests.service.test_read import number, post_png

    pixels, _ = number(mnist_sample, ["2026"])
    assert post_png(cuts_only_client, pixels).json()["text"] == "2026"


def test_an_empty_setting_turns_the_pair_model_off(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DIGITS_PAIR_MODEL_PATH", "")
    assert Settings().pair_model_path is None
    monkeypatch.delenv("DIGITS_PAIR_MODEL_PATH")
    assert Settings().pair_model_path == DEFAULT_PAIR_MODEL


def test_a_changed_pair_model_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "pairs.onnx"
    shutil.copy(DEFAULT_PAIR_MODEL, copy)
    shutil.copy(DEFAULT_PAIR_MODEL.with_suffix(".json"), copy.with_suffix(".json"))
    PairModel(copy)  # the shipped one loads
    with copy.open("ab") as file:
        file.write(b"\0")
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        PairModel(copy)


def test_a_digit_model_is_not_a_pair_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    models = DEFAULT_PAIR_MODEL.parent
    with pytest.raises(ModelLoadError, match="does not take"):
        PairModel(models / "mnist-improved-int8.onnx")


def test_the_shipped_pair_model_reads_a_framed_pair(mnist_sample) -> None:  # type: ignore[no-untyped-def]
    """Two committed sample digits pasted touching: the pair model reads both and calls it a pair."""
    images, labels = mnist_sample
    model = PairModel(DEFAULT_PAIR_MODEL)
    right = 0
    for n in range(10):
        a, b = images[2 * n], images[2 * n + 1]
        ink = np.zeros((28, 50), np.float32)
        ink[:, :28] = a / 255
        ink[:, 22:50] = np.maximum(ink[:, 22:50], b / 255)
        framed = frame_pair(ink)
        assert framed.shape == (HEIGHT, WIDTH)
        first, second, score = model.run(framed[None])
        right += int(first.argmax() == labels[2 * n] and second.argmax() == labels[2 * n + 1] and score[0] > 0.5)
    assert right >= 8


def test_pair_framing_fits_the_box() -> None:
    crop = np.asarray(Image.new("F", (300, 100), 1.0))
    framed = frame_pair(crop)
    ys, xs = np.nonzero(framed > 0.05)
    assert ys.max() - ys.min() + 1 <= 20 and xs.max() - xs.min() + 1 <= 52
