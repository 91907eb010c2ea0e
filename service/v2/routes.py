"""The protocol's HTTP endpoints: each handler reads its request, runs the work and answers.

Errors come back as ``{"error": "..."}``, as the protocol defines them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from service import errors, metrics, parsing
from service.config import Settings
from service.inference import Classifier
from service.routes import JSON, Runtime, json_response, runtime_of
from service.v2 import encode, parse
from service.v2.messages import FIELD_TYPE, UNKNOWN_MODEL, UNKNOWN_VERSION
from service.v2.schemas import (
    INFER_RESPONSES,
    NOT_FOUND,
    NOT_READY,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
    infer_spec,
)
from service.v2.spec import BINARY, EXTENSIONS, HEADER_LENGTH, SERVER_NAME

# --- Errors in the protocol's form ----------------------------------------------------------------


def error_response(exc: errors.ServiceError) -> Response:
    """``{"error": ...}``; bad inputs are 400 here (the protocol's status), limits stay 413."""
    status = 400 if exc.status_code in (415, 422) else exc.status_code
    response = json_response({"error": exc.detail}, status)
    if isinstance(exc, errors.TooManyRequests):
        response.headers["retry-after"] = str(exc.retry_after)
    elif status >= 500:
        response.headers["retry-after"] = "1"
    if 400 <= status < 500:
        metrics.REJECTED.labels(str(status)).inc()
    return response


class V2Route(APIRoute):
    """A route whose client errors come back in the protocol's ``{"error": ...}`` form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def v2_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except errors.ServiceError as exc:
                return error_response(exc)

        return v2_handler


def served_model(runtime: Runtime, name: str, version: str | None) -> Classifier:
    """The classifier if the path names it (and its version); 404 otherwise."""
    classifier = runtime.classifier
    if classifier is None:
        raise errors.Unavailable(errors.MODEL_NOT_READY)
    if name != classifier.name:
        raise errors.NotFound(UNKNOWN_MODEL.format(name=name[:100], served=classifier.name))
    if version is not None and version != classifier.version:
        raise errors.NotFound(UNKNOWN_VERSION.format(name=name, version=version[:100], served=classifier.version))
    return classifier


async def read_request(request: Request, settings: Settings) -> tuple[dict[str, object], memoryview | None]:
    """The JSON of an inference request and the binary data after it, inflated if it came compressed."""
    body = await parsing.read_body(request.headers.get("content-length"), request.stream(), settings.max_body_bytes)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        body = await asyncio.to_thread(parse.decompress, body, encoding, settings.max_body_bytes)
    return parse.split_body(body, request.headers.get(HEADER_LENGTH))


def inference_response(
    classifier: Classifier, request_id: str | None, probabilities: np.ndarray, outputs: list[tuple[str, bool]]
) -> Response:
    header: dict[str, object] = {"model_name": classifier.name, "model_version": classifier.version}
    if request_id is not None:
        header["id"] = request_id
    content, json_length = encode.response_body(header, encode.output_tensors(probabilities), outputs)
    if json_length is None:
        return Response(content, media_type=JSON)
    response = Response(content, media_type=BINARY)
    response.headers[HEADER_LENGTH] = str(json_length)
    return response


# --- Routes ---------------------------------------------------------------------------------------

router = APIRouter(prefix="/v2", tags=["kserve-v2"], route_class=V2Route)


@router.get("", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata(request: Request) -> Response:
    """The server's name, version and protocol extensions."""
    return json_response({"name": SERVER_NAME, "version": request.app.version, "extensions": list(EXTENSIONS)})


@router.get("/health/live", response_model=ServerLive, summary="Server liveness")
async def server_live() -> Response:
    """200 while the process is up, like ``/health/live``."""
    return json_response({"live": True})


@router.get("/health/ready", response_model=ServerReady, responses=NOT_READY, summary="Server readiness")
async def server_ready(request: Request) -> Response:
    """200 once the model is loaded and warmed up; 503 before that and while shutting down."""
    runtime = runtime_of(request)
    if runtime.draining:
        raise errors.Unavailable(errors.SHUTTING_DOWN)
    if not runtime.ready:
        raise errors.Unavailable(errors.MODEL_NOT_READY)
    return json_response({"ready": True})


async def _model_ready(request: Request, model_name: str, version: str | None) -> Response:
    runtime = runtime_of(request)
    classifier = served_model(runtime, model_name, version)
    if runtime.draining:
        raise errors.Unavailable(errors.SHUTTING_DOWN)
    if not runtime.ready:
        raise errors.Unavailable(errors.MODEL_NOT_READY)
    return json_response({"name": classifier.name, "ready": True})


@router.get("/models/{model_name}/ready", response_model=ModelReady, responses=NOT_FOUND, summary="Model readiness")
async def model_ready(request: Request, model_name: str) -> Response:
    """200 when the named model can serve; 404 for another name."""
    return await _model_ready(request, model_name, None)


@router.get(
    "/models/{model_name}/versions/{model_version}/ready",
    response_model=ModelReady,
    responses=NOT_FOUND,
    summary="Model version readiness",
)
async def model_version_ready(request: Request, model_name: str, model_version: str) -> Response:
    """200 when the named model at that version can serve; 404 for another name or version."""
    return await _model_ready(request, model_name, model_version)


@router.get("/models/{model_name}", response_model=ModelMetadata, responses=NOT_FOUND, summary="Model metadata")
async def model_metadata_route(request: Request, model_name: str) -> Response:
    """The model's versions, platform, and input and output tensors (-1: any batch size)."""
    return json_response(encode.model_metadata(served_model(runtime_of(request), model_name, None)))


@router.get(
    "/models/{model_name}/versions/{model_version}",
    response_model=ModelMetadata,
    responses=NOT_FOUND,
    summary="Model version metadata",
)
async def model_version_metadata(request: Request, model_name: str, model_version: str) -> Response:
    """The model's metadata, if it is served at that version."""
    return json_response(encode.model_metadata(served_model(runtime_of(request), model_name, model_version)))


async def _infer(request: Request, model_name: str, version: str | None) -> Response:
    runtime = runtime_of(request)
    classifier = served_model(runtime, model_name, version)
    body, binary = await read_request(request, runtime.settings)
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise parse.bad(FIELD_TYPE.format(field="'id'", expected="a string"))
    outputs = parse.requested_outputs(body)
    prepare = parse.inference_work(body, binary, runtime.settings)
    _, probabilities = await runtime.classify(prepare)
    return inference_response(classifier, request_id, probabilities, outputs)


@router.post(
    "/models/{model_name}/infer",
    response_model=InferenceResponse,
    responses=INFER_RESPONSES,
    openapi_extra=infer_spec(),
    summary="Inference",
)
async def infer(request: Request, model_name: str) -> Response:
    """Classify N images sent as one tensor, in JSON or with binary tensor data."""
    return await _infer(request, model_name, None)


@router.post(
    "/models/{model_name}/versions/{model_version}/infer",
    response_model=InferenceResponse,
    responses=INFER_RESPONSES,
    openapi_extra=infer_spec(),
    summary="Inference on a model version",
)
async def infer_version(request: Request, model_name: str, model_version: str) -> Response:
    """Inference, if the model is served at that version."""
    return await _infer(request, model_name, model_version)
