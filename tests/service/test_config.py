"""Settings: DIGITS_* environment variables, their parsing and their bounds."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import DEFAULT_MODEL, Settings


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("DIGITS_"):
            monkeypatch.delenv(name)
    settings = Settings()
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 2)
    assert settings.model_path == DEFAULT_MODEL and settings.metadata_path == DEFAULT_MODEL.with_suffix(".json")
    assert settings.strictness is None and settings.api_keys == [] and settings.max_concurrent_per_client == 0


def test_environment_variables_are_read_with_their_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITS_PORT", "9000")
    monkeypatch.setenv("DIGITS_MODEL_PATH", "/models/x.onnx")
    monkeypatch.setenv("DIGITS_STRICTNESS", "0.8")
    monkeypatch.setenv("DIGITS_LOG_JSON", "false")
    monkeypatch.setenv("PORT", "1")  # unprefixed names are not ours
    settings = Settings()
    assert settings.port == 9000 and settings.model_path == Path("/models/x.onnx")
    assert settings.strictness == 0.8 and settings.log_json is False


def test_an_empty_strictness_means_the_model_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITS_STRICTNESS", " ")
    assert Settings().strictness is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("port", 0),
        ("workers", 0),
        ("strictness", 1.5),
        ("strictness", -0.1),
        ("max_body_bytes", 10),
        ("max_image_pixels", 100),
        ("request_timeout_s", 0),
        ("log_level", "loud"),
    ],
)
def test_out_of_bounds_values_are_refused(name: str, value: object) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings(**{name: value})  # type: ignore[arg-type]
