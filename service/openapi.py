"""The OpenAPI document: error descriptions, request bodies, the middleware's answers, and the offline docs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from service import errors
from service.config import Settings
from service.middleware import OPEN_PATHS, PROBE_PATHS
from service.responses import JSON, error_form
from service.schemas import (
    BatchImagesRequest,
    BatchPixelsRequest,
    ErrorResponse,
    ImageRequest,
    PixelsRequest,
)

DOCS_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"

#: What each error status means, for the OpenAPI document: the one table every route's
#: ``responses`` and the middleware's are built from.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request (for example an invalid Content-Length).",
    401: "An API key is configured (DIGITS_API_KEYS) and the request did not carry a valid one.",
    404: "Unknown model or version.",
    413: "Body, image or batch over its limit.",
    415: "Unsupported Content-Type or image type.",
    422: "Undecodable image, no digit found, or invalid JSON/pixels.",
    429: "Too many requests in flight from this client (DIGITS_MAX_CONCURRENT_PER_CLIENT); retry after "
    "the Retry-After seconds.",
    503: "Model not loaded yet, shutting down, or inference failed; retry after the Retry-After seconds.",
    504: "The request took longer than the limit (DIGITS_REQUEST_TIMEOUT_S); retry after the Retry-After seconds.",
}
#: What ServiceMiddleware itself can answer, on any route it guards (added to every operation).
MIDDLEWARE_CODES = (401, 429, 504)


def error_responses(*codes: int, model: type[BaseModel] = ErrorResponse) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses`` for these error statuses, described from :data:`ERROR_DESCRIPTIONS`."""
    return {code: {"model": model, "description": ERROR_DESCRIPTIONS[code]} for code in codes}


def files_body_spec(field: str, multiple: bool, json_schema: dict[str, Any]) -> dict[str, Any]:
    """The request body of a route that takes image files: multipart ``field``, a raw image body (one
    file only) or JSON of ``json_schema``."""
    binary = {"type": "string", "format": "binary"}
    file_schema = {"type": "array", "items": binary, "minItems": 1} if multiple else binary
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {"type": "object", "required": [field], "properties": {field: file_schema}},
            "encoding": {field: {"contentType": ", ".join(errors.SUPPORTED_IMAGE_TYPES)}},
        },
    }
    if not multiple:
        content.update({kind: {"schema": binary} for kind in errors.SUPPORTED_IMAGE_TYPES})
    content[JSON] = {"schema": json_schema}
    return {"requestBody": {"required": True, "content": content}}


def pixels_schema() -> dict[str, Any]:
    row = {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 255}, "minItems": 28, "maxItems": 28}
    return {"type": "array", "items": row, "minItems": 28, "maxItems": 28}


def single_spec() -> dict[str, Any]:
    schemas = [ImageRequest.model_json_schema(), PixelsRequest.model_json_schema()]
    spec = files_body_spec("file", False, {"oneOf": schemas})
    json_schema = spec["requestBody"]["content"][JSON]["schema"]["oneOf"][1]
    json_schema["properties"]["pixels"] = pixels_schema()
    return spec


def batch_spec() -> dict[str, Any]:
    schemas = [BatchImagesRequest.model_json_schema(), BatchPixelsRequest.model_json_schema()]
    spec = files_body_spec("files", True, {"oneOf": schemas})
    json_schema = spec["requestBody"]["content"][JSON]["schema"]["oneOf"][1]
    json_schema["properties"]["pixels"] = {"type": "array", "items": pixels_schema(), "minItems": 1}
    return spec


def document_middleware(app: FastAPI, settings: Settings) -> None:
    """Add the middleware's answers (and the API-key schemes, when keys are set) to every operation."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {})
            known = components.get("schemas", {})
            guarded = []
            for path, operations in schema.get("paths", {}).items():
                name = error_form(path).schema.__name__
                body = (
                    {"$ref": f"#/components/schemas/{name}"}
                    if name in known
                    else {"type": "object", "properties": {"detail": {"type": "string"}}}
                )
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    for status in MIDDLEWARE_CODES:
                        if (status == 401 and path.startswith(OPEN_PATHS)) or (
                            status == 429 and path.startswith(PROBE_PATHS)
                        ):
                            continue
                        description = ERROR_DESCRIPTIONS[status]
                        responses.setdefault(
                            str(status), {"description": description, "content": {JSON: {"schema": body}}}
                        )
                    if code_429 := responses.get("429"):
                        retry_after = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
                        code_429.setdefault("headers", {"Retry-After": retry_after})
                    if not path.startswith(OPEN_PATHS):
                        guarded.append(operation)
            if settings.api_keys:
                components["securitySchemes"] = {
                    "APIKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                    "BearerKey": {"type": "http", "scheme": "bearer"},
                }
                for operation in guarded:
                    operation["security"] = [{"APIKeyHeader": []}, {"BearerKey": []}]
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def add_docs(app: FastAPI) -> None:
    """Swagger UI and ReDoc served with their assets from this service: no CDN, no internet."""
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url="/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/favicon.png",
            with_google_fonts=False,
        )
