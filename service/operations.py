"""The operations routes: health probes, model info, Prometheus metrics, and the drawing page."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from service import errors, metrics
from service.openapi import error_responses
from service.responses import json_response
from service.runtime import Runtime, runtime_of
from service.schemas import Health, ModelInfo

STATIC_DIR = Path(__file__).resolve().parent / "static"

router = APIRouter()


@router.get("/health/live", response_model=Health, tags=["operations"], summary="Liveness")
async def live() -> Response:
    """200 while the process is up and serving HTTP."""
    return json_response({"status": "ok"})


@router.get(
    "/health/ready",
    response_model=Health,
    responses=error_responses(503),
    tags=["operations"],
    summary="Readiness",
)
async def ready(request: Request) -> Response:
    """200 once the model is loaded and warmed up; 503 before that and while shutting down."""
    runtime_of(request).check_ready()
    return json_response({"status": "ready"})


def model_info(runtime: Runtime) -> dict[str, Any]:
    classifier = runtime.classifier
    assert classifier is not None
    settings = runtime.settings
    return {
        "name": classifier.name,
        "version": classifier.version,
        "sha256": classifier.sha256,
        "file": classifier.path.name,
        "metadata": classifier.metadata,
        "runtime": {
            "input": classifier.input_name,
            "output": classifier.output_name,
            "digit_score_output": classifier.score_name,
            "strictness": runtime.strictness,
            "intra_op_threads": settings.intra_op_threads,
            "inter_op_threads": settings.inter_op_threads,
            "workers": settings.workers,
            "batch_max_size": settings.batch_max_size,
            "batch_max_delay_ms": settings.batch_max_delay_ms,
            "max_batch_images": settings.max_batch_images,
            "max_body_bytes": settings.max_body_bytes,
            "max_image_pixels": settings.max_image_pixels,
            "request_timeout_s": settings.request_timeout_s,
        },
    }


@router.get(
    "/model",
    response_model=ModelInfo,
    responses=error_responses(503),
    tags=["operations"],
    summary="Model metadata",
)
async def model(request: Request) -> Response:
    """The served model's metadata (version, sha256, metrics) and the runtime settings."""
    runtime = runtime_of(request)
    if runtime.classifier is None:
        raise errors.Unavailable(errors.MODEL_NOT_READY)
    return json_response(model_info(runtime))


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"example": "digits_images_classified_total 42.0\n"}}}},
    tags=["operations"],
    summary="Prometheus metrics",
)
async def prometheus_metrics() -> Response:
    """Request counts by route and status, latency histograms, batch sizes, images classified."""
    body, content_type = await asyncio.to_thread(metrics.render)
    return Response(body, media_type=content_type)


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def page() -> FileResponse:
    """The drawing page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
