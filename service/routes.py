"""HTTP endpoints: prediction, health, model info, metrics, and the drawing page."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import TypeAdapter, ValidationError
from starlette.types import Receive, Scope, Send

from service import errors, lanes, metrics, parsing, preprocess
from service.config import Settings
from service.inference import Batcher, Classifier, Prepare
from service.logs import AccessLog
from service.schemas import (
    BatchImagesRequest,
    BatchPixelsRequest,
    BatchPrediction,
    ErrorResponse,
    Health,
    ImageRequest,
    ModelInfo,
    PixelsRequest,
    SinglePrediction,
)

STATIC_DIR = Path(__file__).resolve().parent / "static"
JSON = "application/json"


@dataclass
class Runtime:
    """What the endpoints share: settings, the model and its batcher, and the service state."""

    settings: Settings
    classifier: Classifier | None = None
    batcher: Batcher | None = None
    pool: ThreadPoolExecutor | None = None
    ready: bool = False
    draining: bool = False
    in_flight: dict[str, int] = field(default_factory=dict)
    access_log: AccessLog = field(init=False)
    lanes: lanes.Lanes = field(init=False)

    def __post_init__(self) -> None:
        self.access_log = AccessLog(self.settings.log_json)
        self.lanes = lanes.Lanes(self.settings)

    async def classify(self, prepare: Prepare) -> tuple[np.ndarray, np.ndarray]:
        """Prepare and classify one request's images; the model runs in the batcher thread.

        Light work (the usual single small image) is prepared in the batcher thread too, so it
        costs no extra thread hop. Costly images (judged from their headers) are decoded in a
        decoder process first (service/lanes.py), so that they never hold up the light requests
        queued behind them on this worker.
        """
        if self.batcher is None or not self.ready:
            raise errors.Unavailable(errors.MODEL_NOT_READY)
        batcher = self.batcher
        # No timeout of its own: the middleware's request timeout cancels this task, and with it
        # the job's future, so the batcher skips the job if it has not started on it.
        if isinstance(prepare, ImagesWork):
            return await self.lanes.classify(prepare, batcher.submit, self.pool)
        if isinstance(prepare, lanes.OffBatcher):  # many JSON pixel arrays: Python work, in a thread
            images = await asyncio.get_running_loop().run_in_executor(self.pool, prepare)
            return await batcher.submit(lambda: images)
        return await batcher.submit(prepare)


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type=JSON)


def prediction(probabilities: np.ndarray, inputs: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Probabilities (N, 10) → one dict per image, rounded to what a client can use."""
    rounded = np.round(probabilities.astype(np.float64), 6).tolist()
    out = [
        {"digit": d, "confidence": row[d], "probabilities": row}
        for d, row in zip(probabilities.argmax(axis=1).tolist(), rounded, strict=True)
    ]
    if inputs is not None:
        for item, image in zip(out, np.round(inputs.astype(np.float64), 3).tolist(), strict=True):
            item["input"] = image
    return out


# --- Turning each input form into work for the batcher ------------------------------------------


@dataclass
class ImagesWork:
    """Preprocess encoded images into one batch; an error names the image (``label`` with its index)."""

    datas: list[bytes]
    max_pixels: int
    label: str | None = "image {}"

    def __call__(self) -> np.ndarray:
        out = np.empty((len(self.datas), 28, 28), np.float32)
        for i, data in enumerate(self.datas):
            try:
                out[i] = preprocess.image_to_input(data, self.max_pixels)
            except errors.ServiceError as exc:
                if self.label is not None:
                    exc.detail = f"{self.label.format(i)}: {exc.detail}"
                raise
        return out


def _pixels(value: object, batch: bool) -> Prepare:
    def prepare() -> np.ndarray:
        images = preprocess.pixels_to_input(value, batch=batch)
        blank = np.flatnonzero(images.reshape(len(images), -1).max(axis=1) == 0)
        if len(blank):
            raise errors.InvalidInput(f"image {blank[0]}: {errors.NO_DIGIT}" if batch else errors.NO_DIGIT)
        return images

    return prepare


def _check_count(count: int, limit: int) -> None:
    if count > limit:
        raise errors.PayloadTooLarge(errors.TOO_MANY_IMAGES.format(count=count, limit=limit))
    if count == 0:
        raise errors.InvalidInput(errors.EMPTY_BATCH)


def _unsupported(content_type: str, field: str, json_forms: str, batch: bool = False) -> errors.UnsupportedMediaType:
    content_type = content_type[:100]  # the client's: echo a bounded amount of it
    if content_type.startswith("image/") and content_type not in parsing.IMAGE_TYPES:
        return errors.UnsupportedMediaType(errors.UNSUPPORTED_IMAGE_TYPE.format(content_type=content_type))
    # A supported image type sent raw to the batch endpoint is a wrong form, not a wrong image type.
    message = errors.UNSUPPORTED_BATCH_CONTENT_TYPE if batch else errors.UNSUPPORTED_CONTENT_TYPE
    return errors.UnsupportedMediaType(
        message.format(content_type=content_type or "none", field=field, json_forms=json_forms)
    )


async def _body(request: Request, settings: Settings) -> bytes:
    return await parsing.read_body(request.headers.get("content-length"), request.stream(), settings.max_body_bytes)


async def single_work(request: Request, settings: Settings) -> Prepare:
    """The work for ``POST /predict``, from whichever input form the request uses."""
    content_type = request.headers.get("content-type", "")
    kind = parsing.media_type(content_type)
    json_forms = '{"image": "<base64>"} or {"pixels": <28x28 numbers 0-255>}'
    if kind in parsing.IMAGE_TYPES:
        return ImagesWork([await _body(request, settings)], settings.max_image_pixels, label=None)
    if kind == "multipart/form-data":
        parts = parsing.parse_multipart(await _body(request, settings), content_type, "file")
        part = next((p for p in parts if p.name == "file"), None)
        if part is None:
            raise errors.InvalidInput(errors.MISSING_FILE_FIELD.format(field="file"))
        parsing.check_part_type(part)
        return ImagesWork([part.data], settings.max_image_pixels, label=None)
    if kind == JSON:
        body = parsing.loads_json(await _body(request, settings), json_forms)
        form = parsing.one_of(body, ("image", "pixels"))
        if form == "image":
            return ImagesWork([parsing.decode_base64(body["image"], "'image'")], settings.max_image_pixels, label=None)
        return _pixels(body["pixels"], batch=False)
    raise _unsupported(kind, "file", json_forms)


async def batch_work(request: Request, settings: Settings) -> Prepare:
    """The work for ``POST /predict/batch``."""
    content_type = request.headers.get("content-type", "")
    kind = parsing.media_type(content_type)
    json_forms = '{"images": ["<base64>", ...]} or {"pixels": <N x 28 x 28 numbers 0-255>}'
    limit = settings.max_batch_images
    if kind == "multipart/form-data":
        parts = [
            p
            for p in parsing.parse_multipart(await _body(request, settings), content_type, "files")
            if p.name == "files"
        ]
        if not parts:
            raise errors.InvalidInput(errors.MISSING_FILE_FIELD.format(field="files"))
        _check_count(len(parts), limit)
        for part in parts:
            parsing.check_part_type(part)
        return ImagesWork([p.data for p in parts], settings.max_image_pixels)
    if kind == JSON:
        body = parsing.loads_json(await _body(request, settings), json_forms)
        form = parsing.one_of(body, ("images", "pixels"))
        value = body[form]
        if not isinstance(value, list):
            raise errors.InvalidInput(
                errors.NOT_A_LIST
                if form == "images"
                else errors.PIXELS_SHAPE.format(expected="N x 28 x 28", got=type(value).__name__)
            )
        _check_count(len(value), limit)
        if form == "images":
            datas = [parsing.decode_base64(item, f"images[{i}]") for i, item in enumerate(value)]
            return ImagesWork(datas, settings.max_image_pixels)
        return lanes.pixels_work(_pixels(value, batch=True), len(value))
    raise _unsupported(kind, "files", json_forms, batch=True)


# --- OpenAPI descriptions of the request bodies -------------------------------------------------

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": description}
    for code, description in {
        400: "Malformed request (for example an invalid Content-Length).",
        401: "An API key is configured and the request did not carry a valid one.",
        413: "Body, image or batch over its limit.",
        415: "Unsupported Content-Type or image type.",
        422: "Undecodable image, no digit found, or invalid JSON/pixels.",
        429: "Too many requests in flight from this client, or the decoders are busy with large images.",
        503: "Model not ready, shutting down, timed out, or inference failed; retry.",
    }.items()
}


def _body_spec(field: str, multiple: bool, json_schemas: list[type[Any]]) -> dict[str, Any]:
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
    content[JSON] = {"schema": {"oneOf": [model.model_json_schema() for model in json_schemas]}}
    return {"requestBody": {"required": True, "content": content}}


def pixels_schema() -> dict[str, Any]:
    row = {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 255}, "minItems": 28, "maxItems": 28}
    return {"type": "array", "items": row, "minItems": 28, "maxItems": 28}


def _single_spec() -> dict[str, Any]:
    spec = _body_spec("file", False, [ImageRequest, PixelsRequest])
    json_schema = spec["requestBody"]["content"][JSON]["schema"]["oneOf"][1]
    json_schema["properties"]["pixels"] = pixels_schema()
    return spec


def _batch_spec() -> dict[str, Any]:
    spec = _body_spec("files", True, [BatchImagesRequest, BatchPixelsRequest])
    json_schema = spec["requestBody"]["content"][JSON]["schema"]["oneOf"][1]
    json_schema["properties"]["pixels"] = {"type": "array", "items": pixels_schema(), "minItems": 1}
    return spec


# --- Routes ---------------------------------------------------------------------------------------

router = APIRouter()


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _model_version(runtime: Runtime) -> str:
    assert runtime.classifier is not None
    return runtime.classifier.version


@router.post(
    "/predict",
    response_model=SinglePrediction,
    responses=ERROR_RESPONSES,
    openapi_extra=_single_spec(),
    tags=["prediction"],
    summary="Classify one image",
)
async def predict(
    request: Request,
    include_input: bool = Query(False, description="Also return the 28x28 image the model saw."),
) -> Response:
    """Classify one image: multipart field ``file``, a raw image body, or JSON ``image``/``pixels``."""
    return await answer_predict(runtime_of(request), request, include_input)


@router.post(
    "/predict/batch",
    response_model=BatchPrediction,
    responses=ERROR_RESPONSES,
    openapi_extra=_batch_spec(),
    tags=["prediction"],
    summary="Classify many images",
)
async def predict_batch(
    request: Request,
    include_input: bool = Query(False, description="Also return the 28x28 images the model saw."),
) -> Response:
    """Classify many images: multipart fields ``files``, or JSON ``images``/``pixels``; answers in order."""
    return await answer_batch(runtime_of(request), request, include_input)


async def answer_predict(runtime: Runtime, request: Request, include_input: bool) -> Response:
    inputs, probabilities = await runtime.classify(await single_work(request, runtime.settings))
    result = prediction(probabilities, inputs if include_input else None)[0]
    result["model_version"] = _model_version(runtime)
    return json_response(result)


async def answer_batch(runtime: Runtime, request: Request, include_input: bool) -> Response:
    inputs, probabilities = await runtime.classify(await batch_work(request, runtime.settings))
    predictions = prediction(probabilities, inputs if include_input else None)
    return json_response({"predictions": predictions, "model_version": _model_version(runtime)})


# --- The prediction routes without the framework's routing ----------------------------------------

Answer = Callable[[Runtime, Request, bool], Awaitable[Response]]
#: ``POST`` paths that :func:`serve_hot` answers directly, and how.
HOT_ROUTES: dict[str, Answer] = {"/predict": answer_predict, "/predict/batch": answer_batch}
_BOOL = TypeAdapter(bool)


async def serve_hot(answer: Answer, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a prediction route as its FastAPI route would, without the router and dependencies.

    The routes above stay the documented interface (the OpenAPI schema is built from them);
    ServiceMiddleware calls this instead, the same function with the same query parameter,
    without FastAPI's routing, dependency solving and exit stacks: +13% /predict throughput,
    measured side by side (docs/benchmarks.md). Errors are raised as ServiceError, which the
    middleware turns into the same responses as the app's exception handlers do.
    """
    include_input = False
    if scope["query_string"]:
        values = [
            v
            for k, v in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            if k == "include_input"
        ]
        if values:
            try:
                include_input = _BOOL.validate_python(values[-1])
            except ValidationError as exc:
                problem = f"include_input: {exc.errors()[0]['msg']}"
                raise errors.InvalidInput(errors.INVALID_REQUEST.format(problems=problem)) from None
    response = await answer(runtime, Request(scope, receive), include_input)
    await response(scope, receive, send)


@router.get("/health/live", response_model=Health, tags=["operations"], summary="Liveness")
async def live() -> Response:
    """200 while the process is up and serving HTTP."""
    return json_response({"status": "ok"})


@router.get(
    "/health/ready",
    response_model=Health,
    responses={503: {"model": ErrorResponse, "description": "Not ready, or shutting down."}},
    tags=["operations"],
    summary="Readiness",
)
async def ready(request: Request) -> Response:
    """200 once the model is loaded and warmed up; 503 before that and while shutting down."""
    runtime = runtime_of(request)
    if runtime.draining:
        return json_response({"detail": errors.SHUTTING_DOWN}, 503)
    if not runtime.ready:
        return json_response({"detail": errors.MODEL_NOT_READY}, 503)
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
    responses={503: {"model": ErrorResponse, "description": "Model not loaded yet."}},
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
