"""The protocol's HTTP endpoints: each handler reads its request, runs the work and answers.

Errors come back as ``{"error": "..."}``, as the protocol defines them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NamedTuple, TypeVar

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from service import errors, metrics, parsing
from service.config import Settings
from service.routes import JSON, json_response, runtime_of
from service.v2 import encode, parse, spec, stats
from service.v2.messages import FIELD_TYPE, METHOD_NOT_ALLOWED, UNKNOWN_ROUTE, echo
from service.v2.schemas import (
    INFER_RESPONSES,
    NOT_FOUND,
    NOT_READY,
    InferenceResponse,
    ModelConfig,
    ModelMetadata,
    ModelReady,
    ModelStatisticsResponse,
    RepositoryModel,
    ServerLive,
    ServerMetadata,
    ServerReady,
    infer_spec,
)
from service.v2.spec import BINARY, EXTENSIONS, HEADER_LENGTH, SERVER_NAME

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: A repository index request is at most a small JSON object.
INDEX_BODY_BYTES = 4096

# --- Errors in the protocol's form ----------------------------------------------------------------


#: The longest error message sent. Every message is a template of at most a few hundred characters
#: with bounded pieces of the client's input in it; this is the last guard, should a piece slip through.
MAX_ERROR_CHARS = 1024


class MethodNotAllowed(errors.ServiceError):
    status_code = 405

    def __init__(self, detail: str, allowed: list[str]) -> None:
        super().__init__(detail)
        self.allowed = allowed


def error_response(exc: errors.ServiceError) -> Response:
    """``{"error": ...}``; bad inputs are 400 here (the protocol's status), limits stay 413."""
    status = 400 if exc.status_code in (415, 422) else exc.status_code
    detail = exc.detail if len(exc.detail) <= MAX_ERROR_CHARS else exc.detail[: MAX_ERROR_CHARS - 1] + "…"
    response = json_response({"error": detail}, status)
    if isinstance(exc, MethodNotAllowed):
        response.headers["allow"] = ", ".join(exc.allowed)
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


async def read_request(request: Request, settings: Settings) -> tuple[dict[str, object], memoryview | None]:
    """The JSON of an inference request and the binary data after it, inflated if it came compressed."""
    body = await parsing.read_body(request.headers.get("content-length"), request.stream(), settings.max_body_bytes)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        body = await asyncio.to_thread(parse.decompress, body, encoding, settings.max_body_bytes)
    return parse.split_body(body, request.headers.get(HEADER_LENGTH))


def inference_response(
    header: dict[str, object], tensors: dict[str, np.ndarray], outputs: list[tuple[str, bool]]
) -> Response:
    content, json_length = encode.response_body(header, tensors, outputs)
    if json_length is None:
        return Response(content, media_type=JSON)
    response = Response(content, media_type=BINARY)
    response.headers[HEADER_LENGTH] = str(json_length)
    return response


# --- Routes ---------------------------------------------------------------------------------------

router = APIRouter(prefix="/v2", tags=["kserve-v2"], route_class=V2Route)

#: The work behind a model endpoint: the request, the model's name and the version asked for (None: any).
ModelWork = Callable[[Request, str, str | None], Awaitable[Response]]
Work = TypeVar("Work", bound=ModelWork)


class Endpoint(NamedTuple):
    """How one of a model endpoint's two paths is named and described in the schema."""

    name: str  # the route's name, the stem of its OpenAPI operationId
    summary: str
    description: str


def model_routes(
    suffix: str, latest: Endpoint, versioned: Endpoint, *, method: str = "GET", **options: Any
) -> Callable[[Work], Work]:
    """Serve the decorated work at ``/models/{model_name}<suffix>`` and at its ``/versions/{model_version}`` twin.

    The protocol gives every model endpoint both paths; the first passes version None. ``options``
    go to FastAPI as they are (``response_model``, ``responses``...).
    """

    def register(work: Work) -> Work:
        async def for_model(request: Request, model_name: str) -> Response:
            return await work(request, model_name, None)

        async def for_version(request: Request, model_name: str, model_version: str) -> Response:
            return await work(request, model_name, model_version)

        paths = (
            ("/models/{model_name}" + suffix, for_model, latest),
            ("/models/{model_name}/versions/{model_version}" + suffix, for_version, versioned),
        )
        for path, endpoint, (name, summary, description) in paths:
            router.add_api_route(
                path, endpoint, methods=[method], name=name, summary=summary, description=description, **options
            )
        return work

    return register


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
    runtime.check_ready()
    return json_response({"ready": True})


# Registered before "/models/{model_name}", so that "/models/stats" is never taken for a model named "stats".
@router.get(
    "/models/stats", response_model=ModelStatisticsResponse, responses=NOT_FOUND, summary="Statistics of every model"
)
async def all_statistics(request: Request) -> Response:
    """Counts and cumulative times of each stage of inference, for every model (Triton's statistics)."""
    return await _statistics(request, None, None)


@model_routes(
    "/stats",
    Endpoint("model_statistics", "Model statistics", "The model's inference statistics."),
    Endpoint(
        "model_version_statistics",
        "Model version statistics",
        "The model's inference statistics, if it is served at that version.",
    ),
    response_model=ModelStatisticsResponse,
    responses=NOT_FOUND,
)
async def _statistics(request: Request, model_name: str | None, version: str | None) -> Response:
    runtime = runtime_of(request)
    if model_name is None:
        if runtime.classifier is None:
            raise errors.Unavailable(errors.MODEL_NOT_READY)
        classifier, names = runtime.classifier, list(spec.served_models(runtime.classifier.name))
    else:
        classifier, model = parse.served_model(runtime, model_name, version)
        names = [model.name]
    values = await asyncio.to_thread(stats.snapshot)
    version = spec.protocol_version(classifier.version)
    return json_response({"model_stats": [stats.model_stats(name, version, values) for name in names]})


@model_routes(
    "/config",
    Endpoint(
        "model_config",
        "Model configuration",
        "Triton's model configuration: platform, max_batch_size, inputs and outputs with data_type and dims.",
    ),
    Endpoint(
        "model_version_config",
        "Model version configuration",
        "The model's configuration, if it is served at that version.",
    ),
    response_model=ModelConfig,
    responses=NOT_FOUND,
)
async def _config(request: Request, model_name: str, version: str | None) -> Response:
    runtime = runtime_of(request)
    classifier, model = parse.served_model(runtime, model_name, version)
    return json_response(encode.model_config(model, classifier, runtime.settings))


@router.post("/repository/index", response_model=list[RepositoryModel], summary="Repository index")
async def repository_index(request: Request) -> Response:
    """Every model this server serves, with its version and state; ``{"ready": true}`` lists only ready ones."""
    runtime = runtime_of(request)
    body = await parsing.read_body(request.headers.get("content-length"), request.stream(), INDEX_BODY_BYTES)
    only_ready = parse.index_request(body)
    return json_response(encode.repository_index(runtime, only_ready))


@model_routes(
    "/ready",
    Endpoint("model_ready", "Model readiness", "200 when the named model can serve; 404 for another name."),
    Endpoint(
        "model_version_ready",
        "Model version readiness",
        "200 when the named model at that version can serve; 404 for another name or version.",
    ),
    response_model=ModelReady,
    responses=NOT_FOUND,
)
async def _model_ready(request: Request, model_name: str, version: str | None) -> Response:
    runtime = runtime_of(request)
    _, model = parse.served_model(runtime, model_name, version)
    runtime.check_ready()
    return json_response({"name": model.name, "ready": True})


@model_routes(
    "",
    Endpoint(
        "model_metadata_route",
        "Model metadata",
        "The model's versions, platform, and input and output tensors (-1: any batch size).",
    ),
    Endpoint(
        "model_version_metadata", "Model version metadata", "The model's metadata, if it is served at that version."
    ),
    response_model=ModelMetadata,
    responses=NOT_FOUND,
)
async def _metadata(request: Request, model_name: str, version: str | None) -> Response:
    classifier, model = parse.served_model(runtime_of(request), model_name, version)
    return json_response(encode.model_metadata(model, spec.protocol_version(classifier.version)))


@model_routes(
    "/infer",
    Endpoint("infer", "Inference", "Classify N images sent as one tensor, in JSON or with binary tensor data."),
    Endpoint("infer_version", "Inference on a model version", "Inference, if the model is served at that version."),
    method="POST",
    response_model=InferenceResponse,
    responses=INFER_RESPONSES,
    openapi_extra=infer_spec(),
)
async def _infer(request: Request, model_name: str, version: str | None) -> Response:
    runtime = runtime_of(request)
    classifier, model = parse.served_model(runtime, model_name, version)
    timer = stats.Timer(model.name)
    try:
        body, binary = await read_request(request, runtime.settings)
        request_id = body.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise parse.bad(FIELD_TYPE.format(field="'id'", expected="a string"))
        outputs = parse.requested_outputs(body)
        prepare = parse.inference_work(body, binary, runtime.settings, model)
        _, probabilities, digit_score = await runtime.predict(timer.timed(prepare))
        timer.mark_inferred()
        header: dict[str, object] = {
            "model_name": model.name,
            "model_version": spec.protocol_version(classifier.version),
        }
        if request_id is not None:
            header["id"] = request_id
        is_digit = digit_score >= runtime.strictness
        response = inference_response(header, encode.output_tensors(probabilities, digit_score, is_digit), outputs)
    except BaseException:
        # Bad inputs, timeouts and disconnects alike: Triton counts every request that failed.
        timer.failed()
        raise
    timer.succeeded(len(probabilities))
    return response


# Last, so that it answers only what no route above does: unknown paths, and known paths with
# another method, in the protocol's error form (Triton clients cannot read {"detail": ...}).
@router.api_route("", methods=[m for m in ALL_METHODS if m != "GET"], include_in_schema=False)
@router.api_route("/{path:path}", methods=list(ALL_METHODS), include_in_schema=False)
async def unknown_route(request: Request) -> Response:
    """404 for a path no v2 endpoint has, 405 (with Allow) for a known path and another method."""
    path = request.url.path
    allowed: set[str] = set()
    for route in router.routes:
        if isinstance(route, APIRoute) and route.endpoint is not unknown_route and route.path_regex.match(path):
            allowed |= route.methods or set()
    if allowed:
        methods = sorted(allowed)
        message = METHOD_NOT_ALLOWED.format(method=echo(request.method), path=echo(path), allowed=", ".join(methods))
        raise MethodNotAllowed(message, methods)
    raise errors.NotFound(UNKNOWN_ROUTE.format(path=echo(path)))
