"""The prediction routes' own path matching (service/routes.py): the path within the app, as Starlette reads it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.routes import route_path
from tests.conftest import encode


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/predict", "", "/predict"),
        ("/predict", None, "/predict"),  # no root_path in the scope at all
        ("/api/predict", "/api", "/predict"),
        ("/api/predict/batch", "/api", "/predict/batch"),
        ("/api", "/api", ""),  # the mount point itself
        ("/api/", "/api", "/"),
        ("/apix/predict", "/api", "/apix/predict"),  # a prefix, but not a path segment: kept
        ("/predict", "/api", "/predict"),  # a proxy that already took the prefix off
        ("/a/b/predict", "/a/b", "/predict"),
    ],
)
def test_route_path_is_the_path_without_the_root_path(path: str, root_path: str | None, expected: str) -> None:
    scope = {"type": "http", "path": path} | ({} if root_path is None else {"root_path": root_path})
    assert route_path(scope) == expected


@pytest.fixture
def mounted(app_settings) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """The real app behind a proxy that serves it under /api (ASGI ``root_path``)."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    with TestClient(create_app(app_settings), root_path="/api", raise_server_exceptions=False) as test_client:
        yield test_client


def test_prediction_routes_answer_under_a_root_path(mounted, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist_sample
    png = encode(images[0])
    response = mounted.post("/api/predict", content=png, headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    assert response.json()["digit"] == int(labels[0])
    batch = mounted.post("/api/predict/batch", files=[("files", ("a.png", png, "image/png"))] * 2)
    assert batch.status_code == 200, batch.text
    assert [p["digit"] for p in batch.json()["predictions"]] == [int(labels[0])] * 2
    # Not a path segment of the root: no route of the app, as for Starlette's own routes.
    assert mounted.post("/apix/predict", content=png, headers={"content-type": "image/png"}).status_code == 404
    assert mounted.get("/apix/model").status_code == 404
    # The method is still checked under the prefix.
    assert mounted.get("/api/predict").status_code == 405
