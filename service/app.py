"""The application factory: lifespan, middleware, error handlers and the offline docs."""

from __future__ import annotations

import asyncio
import gc
import hmac
import itertools
import logging
import random
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect

from service import errors, lanes, metrics, v2
from service.config import Settings
from service.inference import Batcher, Classifier
from service.routes import HOT_ROUTES, STATIC_DIR, Runtime, json_response, router, serve_hot

log = logging.getLogger("service")
access_log = logging.getLogger("service.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DOCS_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
#: Paths that stay open when API keys are configured: probes, the page, and the docs.
OPEN_PATHS = ("/health/", "/v2/health/", "/static/", "/docs", "/redoc", "/openapi.json", "/favicon.ico")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Probes are never throttled: an orchestrator must not restart or drain an instance because the
#: clients behind the same address (a proxy, a NAT) are busy.
PROBE_PATHS = ("/health/", "/v2/health/")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
PAGE_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-frame-options", b"DENY"),
]
# Swagger UI and ReDoc start themselves with an inline script and inline styles.
DOCS_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        b"script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
]


_REQUEST_IDS = itertools.count(1)
_ID_PREFIX = f"{random.getrandbits(48):012x}"


def next_request_id() -> str:
    """A unique id: a random per-process prefix and a counter (uuid4 cost 7% of a request's CPU)."""
    return f"{_ID_PREFIX}{next(_REQUEST_IDS):020x}"


class ServiceMiddleware:
    """One pure-ASGI layer for what every request needs, cheaper than a stack of middlewares.

    Request ids, API keys, the per-client concurrency limit, the request timeout, security
    headers, metrics and the access log.
    """

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        settings = runtime.settings
        self.keys = [key.encode() for key in settings.api_keys]
        self.per_client = settings.max_concurrent_per_client
        self.timeout = settings.request_timeout_s
        self.access = runtime.access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")
        if not REQUEST_ID.match(request_id):
            request_id = next_request_id()
        status = 500
        response_started = False
        extra_headers = [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]
        if path == "/" or path.startswith("/static/"):
            extra_headers += PAGE_HEADERS
        elif path.startswith(("/docs", "/redoc")):
            extra_headers += DOCS_HEADERS

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), *extra_headers]
            await send(message)

        hot = HOT_ROUTES.get(path) if scope["method"] == "POST" else None
        client = (scope.get("client") or ("unknown", 0))[0]
        counted = False
        try:
            if self.keys and not path.startswith(OPEN_PATHS) and path != "/" and not self._authorised(headers):
                raise errors.Unauthorized(errors.MISSING_API_KEY)
            if self.per_client and not path.startswith(PROBE_PATHS):
                if self.runtime.in_flight.get(client, 0) >= self.per_client:
                    raise errors.TooManyRequests(
                        errors.RATE_LIMITED.format(limit=self.per_client, retry_after=1), retry_after=1
                    )
                self.runtime.in_flight[client] = self.runtime.in_flight.get(client, 0) + 1
                counted = True
            lanes.RECEIVE.set(receive)  # so that a costly decode stops when the client leaves
            async with asyncio.timeout(self.timeout):
                if hot is None:
                    await self.app(scope, receive, send_wrapper)
                else:
                    await serve_hot(hot, self.runtime, scope, receive, send_wrapper)
        except errors.ServiceError as exc:
            if not response_started:
                await middleware_error(path, exc).__call__(scope, receive, send_wrapper)
        except TimeoutError:
            if not response_started:
                timeout = errors.Timeout(errors.REQUEST_TIMEOUT.format(seconds=self.timeout))
                await middleware_error(path, timeout).__call__(scope, receive, send_wrapper)
        except ClientDisconnect:
            # The client left before sending its whole body: nobody to answer, and not an error of ours.
            # 499 is the status proxies log for this (nginx's "client closed request").
            status = 499
        except Exception:
            # A bug. Answered here rather than by Starlette's outermost handler, so that the 500 carries
            # the request id and the security headers, and the logged traceback carries the request id.
            log.exception("unhandled error on %s", path, extra={"request_id": request_id})
            if response_started:
                raise
            await json_response({"detail": errors.INTERNAL_ERROR}, 500).__call__(scope, receive, send_wrapper)
        finally:
            if counted:
                remaining = self.runtime.in_flight[client] - 1
                if remaining:
                    self.runtime.in_flight[client] = remaining
                else:
                    del self.runtime.in_flight[client]
            route_path = path if hot is not None else getattr(scope.get("route"), "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            metrics.observe_request(route_path, scope["method"], status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                self.access.record(
                    request_id=request_id,
                    method=scope["method"],
                    path=path,
                    route=route_path,
                    status=status,
                    duration_ms=round(elapsed * 1000, 3),
                    client=client,
                )

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"x-api-key")
        if given is None:
            auth = headers.get(b"authorization", b"")
            if auth[:7].lower() == b"bearer ":
                given = auth[7:].strip()
        if not given:
            return False
        # Compare against every key, in constant time, without stopping at the first match.
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(given, key)
        return matched


def middleware_error(path: str, exc: errors.ServiceError) -> Response:
    """The middleware's own refusals (401, 429, 504), in the form of the API the path belongs to."""
    return v2.error_response(exc) if path.startswith("/v2") else error_response(exc)


def error_response(exc: errors.ServiceError) -> Response:
    response = json_response({"detail": exc.detail}, exc.status_code)
    if isinstance(exc, errors.TooManyRequests):
        response.headers["retry-after"] = str(exc.retry_after)
    elif exc.status_code == 503:
        response.headers["retry-after"] = "1"
    if exc.status_code >= 400 and exc.status_code != 503:
        metrics.REJECTED.labels(str(exc.status_code)).inc()
    return response


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body"))
        problems.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return errors.INVALID_REQUEST.format(problems="; ".join(problems))


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.ServiceError)
    async def service_error(request: Request, exc: errors.ServiceError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return json_response({"detail": _validation_message(exc)}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = json_response({"detail": str(exc.detail)}, exc.status_code)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Log the details; the client learns nothing about the internals.
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return json_response({"detail": errors.INTERNAL_ERROR}, 500)


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


#: What ServiceMiddleware itself can answer, on any route it guards.
MIDDLEWARE_RESPONSES = {
    "401": "An API key is configured (DIGITS_API_KEYS) and the request did not carry a valid one.",
    "429": "Too many requests in flight from this client (DIGITS_MAX_CONCURRENT_PER_CLIENT); retry after "
    "the Retry-After seconds.",
    "504": "The request took longer than the limit (DIGITS_REQUEST_TIMEOUT_S).",
}


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
                name = "V2Error" if path.startswith("/v2") else "ErrorResponse"
                body = (
                    {"$ref": f"#/components/schemas/{name}"}
                    if name in known
                    else {"type": "object", "properties": {"detail": {"type": "string"}}}
                )
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    for code, description in MIDDLEWARE_RESPONSES.items():
                        if (code == "401" and path.startswith(OPEN_PATHS)) or (
                            code == "429" and path.startswith(PROBE_PATHS)
                        ):
                            continue
                        responses.setdefault(
                            code, {"description": description, "content": {"application/json": {"schema": body}}}
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


def install_drain_handler(runtime: Runtime) -> None:
    """On SIGTERM/SIGINT, turn readiness to 503 first, then let uvicorn shut down gracefully.

    uvicorn installs its own handlers before the lifespan starts; this wraps them. Load
    balancers see the instance leave (readiness 503) while it still answers, and uvicorn then
    stops accepting connections and waits up to the shutdown timeout for in-flight requests.
    """
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            if runtime.draining:
                previous(signum, frame)
                return
            runtime.draining = True
            log.info("shutdown requested: readiness is now 503, draining for %.1f s", runtime.settings.shutdown_drain_s)
            loop.call_soon_threadsafe(loop.call_later, runtime.settings.shutdown_drain_s, previous, signum, frame)

        signal.signal(sig, handler)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the model is loaded by the lifespan, not at import."""
    settings = settings or Settings()
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        classifier = await asyncio.to_thread(
            Classifier,
            settings.model_path,
            intra_op_threads=settings.intra_op_threads,
            inter_op_threads=settings.inter_op_threads,
            verify_sha256=settings.verify_sha256,
        )
        await asyncio.to_thread(classifier.warm_up, settings.batch_max_size)
        runtime.classifier = classifier
        runtime.batcher = Batcher(
            classifier,
            max_size=settings.batch_max_size,
            max_delay_s=settings.batch_max_delay_ms / 1000,
            on_batch=metrics.observe_batch,
        )
        runtime.batcher.start()
        runtime.pool = ThreadPoolExecutor(settings.prepare_threads, thread_name_prefix="prepare")
        if threading_is_main():
            install_drain_handler(runtime)
        # Everything built so far (the app, the model, the libraries' objects: ~70,000) lives as
        # long as the process. Out of the collector's sight, a full collection under load takes
        # microseconds instead of a 20-40 ms pause of every request in flight on this worker.
        gc.collect()
        gc.freeze()
        runtime.ready = True
        log.info("model %s %s ready (sha256 %s…)", classifier.name, classifier.version, classifier.sha256[:12])
        try:
            yield
        finally:
            runtime.ready = False
            runtime.batcher.stop()
            runtime.access_log.close()
            runtime.pool.shutdown(wait=False, cancel_futures=True)
            runtime.lanes.close()

    app = FastAPI(
        title="Handwritten digit recognition",
        version="1.0.0",
        description=(
            "Classifies handwritten digits (0–9) with a CNN trained on MNIST, served from ONNX. "
            "Send real images (canvas drawings, photos, any size, dark or light ink): the service "
            "turns them into MNIST form first. The drawing page is at [/](/)."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.include_router(router)
    app.include_router(v2.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    add_docs(app)
    add_error_handlers(app)
    document_middleware(app, settings)
    app.add_middleware(ServiceMiddleware, runtime=runtime)
    # Outermost, so that preflight requests (which carry no API key) are answered.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Content-Type",
                "Authorization",
                "X-API-Key",
                "X-Request-ID",
                "Inference-Header-Content-Length",
            ],
            expose_headers=["X-Request-ID"],
        )
    return app


def threading_is_main() -> bool:
    return threading.current_thread() is threading.main_thread()


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and worker processes: settings from the environment."""
    return create_app(Settings())
