"""The prediction routes, ``POST /predict`` and ``POST /predict/batch``: the code that answers them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from service import errors
from service.openapi import batch_spec, error_responses, single_spec
from service.responses import JSON, json_response
from service.runtime import Runtime, runtime_of
from service.schemas import BatchPrediction, SinglePrediction
from service.work import ImagesWork, batch_work, prediction, single_work

__all__ = ["JSON", "ImagesWork", "Runtime", "json_response", "runtime_of"]  # what service/v2.py imports

ERROR_RESPONSES = error_responses(400, 413, 415, 422, 503)


_BOOL = TypeAdapter(bool)


def query_flags(query_string: bytes, defaults: Mapping[str, bool]) -> dict[str, bool]:
    """Boolean query parameters, read as FastAPI reads a ``bool`` query (the last value wins).

    ``test_api.py`` pins this to FastAPI's own parsing, value by value and message by message.
    """
    flags = dict(defaults)
    if not query_string:
        return flags
    given = {k: v for k, v in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True) if k in defaults}
    for key, value in given.items():
        try:
            flags[key] = _BOOL.validate_python(value)
        except ValidationError as exc:
            problem = f"{key}: {exc.errors()[0]['msg']}"
            raise errors.InvalidInput(errors.INVALID_REQUEST.format(problems=problem)) from None
    return flags


def route_path(scope: Scope) -> str:
    """The request's path within the app: ``path`` without the ``root_path`` it is mounted under.

    What Starlette's routing matches on (its private ``starlette._utils.get_route_path``, done the
    same way): the prefix is taken off only when it ends at a path segment, so ``/api`` is taken
    off ``/api/predict`` but not off ``/apix/predict``, and a path equal to it becomes ``""``.
    """
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if len(path) == len(root_path):
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


class PredictionRoute(APIRoute):
    """A FastAPI route, documented from its signature like any other, that skips FastAPI's per-request work.

    FastAPI solves a route's dependencies, validates its parameters with pydantic and opens two
    exit stacks on every request; for the prediction routes that cost 13% of /predict's
    throughput (docs/benchmarks.md). Their handlers take only the ``Request`` and ``bool`` query
    flags, so this route reads the flags itself (:func:`query_flags`) and calls the handler as a
    plain ASGI app. It adds no exception wrapper of its own either: an exception goes up to the
    app's ExceptionMiddleware, which answers it with the same handlers as on every route
    (``responses.add_error_handlers``), an ``HTTPException`` included. Its path has no
    parameters, so it is matched by comparing strings, not with a regex. The app lists these
    routes directly on its router, first (``service/app.py``), never through ``include_router``.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        params = self.dependant.query_params
        if self.dependant.path_params or self.dependant.body_params or self.dependant.dependencies:
            raise TypeError(f"{path}: a PredictionRoute handler takes only the Request and bool query flags")
        if any(p.field_info.annotation is not bool for p in params):
            raise TypeError(f"{path}: a PredictionRoute's query parameters must be bool")
        #: Each flag and its default, as the handler's signature declares them.
        self.flags = {p.name: bool(p.field_info.default) for p in params}
        #: The methods this route answers (the decorator's, e.g. POST); any other gets 405.
        self.allowed: frozenset[str] = frozenset(self.methods or ())
        handler: Callable[..., Awaitable[Response]] = endpoint
        flags = self.flags

        async def answer(scope: Scope, receive: Receive, send: Send) -> None:
            response = await handler(Request(scope, receive, send), **query_flags(scope["query_string"], flags))
            await response(scope, receive, send)

        self.app = answer

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """What ``APIRoute.matches`` answers for a path without parameters, by one string compare."""
        if scope["type"] != "http" or route_path(scope) != self.path:
            return Match.NONE, {}
        child_scope = {"endpoint": self.endpoint, "path_params": {}, "route": self}
        return (Match.FULL if scope["method"] in self.allowed else Match.PARTIAL), child_scope

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in self.allowed:
            raise HTTPException(405, headers={"Allow": ", ".join(sorted(self.allowed))})
        await self.app(scope, receive, send)


#: The prediction routes: the app lists them first (see :class:`PredictionRoute`).
prediction_router = APIRouter(route_class=PredictionRoute)


def _model_version(runtime: Runtime) -> str:
    assert runtime.classifier is not None
    return runtime.classifier.version


@prediction_router.post(
    "/predict",
    response_model=SinglePrediction,
    responses=ERROR_RESPONSES,
    openapi_extra=single_spec(),
    tags=["prediction"],
    summary="Classify one image",
)
async def predict(
    request: Request,
    include_input: bool = Query(False, description="Also return the 28x28 image the model saw."),
) -> Response:
    """Classify one image: multipart field ``file``, a raw image body, or JSON ``image``/``pixels``."""
    runtime = runtime_of(request)
    inputs, probabilities, scores = await runtime.predict(await single_work(request, runtime.settings))
    result = prediction(probabilities, scores, runtime.strictness, inputs if include_input else None)[0]
    result["model_version"] = _model_version(runtime)
    return json_response(result)


@prediction_router.post(
    "/predict/batch",
    response_model=BatchPrediction,
    responses=ERROR_RESPONSES,
    openapi_extra=batch_spec(),
    tags=["prediction"],
    summary="Classify many images",
)
async def predict_batch(
    request: Request,
    include_input: bool = Query(False, description="Also return the 28x28 images the model saw."),
) -> Response:
    """Classify many images: multipart fields ``files``, or JSON ``images``/``pixels``; answers in order."""
    runtime = runtime_of(request)
    inputs, probabilities, scores = await runtime.predict(await batch_work(request, runtime.settings))
    predictions = prediction(probabilities, scores, runtime.strictness, inputs if include_input else None)
    return json_response({"predictions": predictions, "model_version": _model_version(runtime)})
