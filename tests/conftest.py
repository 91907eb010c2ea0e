"""Shared fixtures: a small committed MNIST sample, image encoders, and the app under test."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The apps and servers that tests start serve gRPC only where a test asks for it (on a free port):
# the default, Triton's 8001, is one port per machine, and test runs go on side by side.
os.environ.setdefault("DIGITS_GRPC_PORT", "0")

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def mnist_sample() -> tuple[np.ndarray, np.ndarray]:
    """200 MNIST test digits (uint8 28x28, white on black) and their labels."""
    with np.load(DATA / "mnist_sample.npz") as data:
        return data["images"], data["labels"]


def encode(image: np.ndarray | Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def app_settings():  # type: ignore[no-untyped-def]
    from service.config import Settings

    return Settings(workers=1, log_json=True, request_timeout_s=30)


@pytest.fixture(scope="module")
def client(app_settings) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """The real app, lifespan and all, answering real HTTP requests in-process."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    with TestClient(create_app(app_settings), raise_server_exceptions=False) as test_client:
        yield test_client
