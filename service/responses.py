"""Writing responses: JSON bodies, and every error, through one renderer with one form per API.

Each API has its own error form: the service's ``{"detail": "..."}`` and the KServe v2
protocol's ``{"error": "..."}`` (which also answers 400 where the service says 415 or 422).
An :class:`ErrorForm` says how one API writes an error; the form is chosen by the path's
prefix. Everything else about an error is decided here, once, for every form:

- ``Retry-After``: the limit's own for a 429, 1 s for a 503 or 504 (worth retrying soon);
- ``digits_inputs_rejected_total``: counts the 4xx answers, the requests refused for what they
  sent; 5xx are the service's own failures (``digits_http_requests_total`` counts them by status).

A package with its own API form registers it with :func:`register_error_form`, for example
``register_error_form(ErrorForm("/v2", lambda message: {"error": message}, v2_status, V2Error))``.
The exception handlers (:func:`add_error_handlers`) and ServiceMiddleware's own refusals both
answer through :func:`render_error`, so a route never writes an error body itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from service import errors, metrics
from service.schemas import ErrorResponse

log = logging.getLogger("service")

JSON = "application/json"
#: Seconds a client should wait before retrying a 503 or 504: the states behind them (loading,
#: draining, a busy worker) last about that long, and a longer wait only adds latency.
RETRY_AFTER_S = 1


def json_response(content: Any, status_code: int = 200) -> Response:
    """A JSON response, serialised with orjson (numpy values included)."""
    return Response(orjson.dumps(content), status_code=status_code, media_type=JSON)


def same_status(status: int) -> int:
    return status


@dataclass(frozen=True)
class ErrorForm:
    """How one API writes its errors: the paths it covers, its body and its status for each error."""

    #: Paths that start with this answer in this form (the longest matching prefix wins).
    prefix: str
    #: The message → the JSON body.
    body: Callable[[str], dict[str, object]]
    #: The service's status for an error → the status this API answers with.
    status: Callable[[int], int] = same_status
    #: The body's schema, for the OpenAPI document.
    schema: type[BaseModel] = ErrorResponse


DETAIL_FORM = ErrorForm("", lambda message: {"detail": message}, same_status, ErrorResponse)
_forms: list[ErrorForm] = [DETAIL_FORM]


def register_error_form(form: ErrorForm) -> None:
    """Answer errors on the paths under ``form.prefix`` in that form (replaces one of the same prefix)."""
    _forms[:] = sorted([f for f in _forms if f.prefix != form.prefix] + [form], key=lambda f: -len(f.prefix))


def error_form(path: str) -> ErrorForm:
    """The error form of the API that ``path`` belongs to."""
    return next(form for form in _forms if path.startswith(form.prefix))


def render_error(
    path: str, status: int, message: str, headers: Mapping[str, str] | None = None, retry_after: int | None = None
) -> Response:
    """The one place an error response is built, for any route and any API form."""
    form = error_form(path)
    status = form.status(status)
    response = json_response(form.body(message), status)
    if headers:
        for key, value in headers.items():
            response.headers[key] = value
    if retry_after is None and status in (503, 504):
        retry_after = RETRY_AFTER_S
    if retry_after is not None:
        response.headers["retry-after"] = str(retry_after)
    if 400 <= status < 500:
        metrics.REJECTED.labels(str(status)).inc()
    return response


def service_error_response(path: str, exc: errors.ServiceError) -> Response:
    retry_after = exc.retry_after if isinstance(exc, errors.TooManyRequests) else None
    return render_error(path, exc.status_code, exc.detail, retry_after=retry_after)


def validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors()[: errors.MAX_PROBLEMS_LISTED]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body"))
        problems.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return errors.INVALID_REQUEST.format(problems="; ".join(problems))


def add_error_handlers(app: FastAPI) -> None:
    """Every exception a route can raise, answered through :func:`render_error`."""

    @app.exception_handler(errors.ServiceError)
    async def service_error(request: Request, exc: errors.ServiceError) -> Response:
        return service_error_response(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return render_error(request.url.path, 422, validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return render_error(request.url.path, exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Only reached by an error inside ServiceMiddleware itself, which answers the routes' own.
        # Log the details; the client learns nothing about the internals.
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return render_error(request.url.path, 500, errors.INTERNAL_ERROR)
