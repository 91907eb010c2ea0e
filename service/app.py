"""The application factory: settings in, the app out; the lifespan loads the model, and SIGTERM drains."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import signal
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware

from service import metrics, v2
from service.config import Settings
from service.grpc_api.server import serve as serve_grpc
from service.inference import Batcher, Classifier
from service.middleware import ServiceMiddleware
from service.openapi import add_docs, document_middleware
from service.operations import STATIC_DIR, router
from service.read.pairs import PairModel
from service.read.routes import router as read_router
from service.responses import (
    ErrorForm,
    add_error_handlers,
    register_error_form,
)
from service.routes import prediction_router
from service.runtime import Runtime
from service.v2.schemas import V2Error

log = logging.getLogger("service")


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


def v2_status(status: int) -> int:
    """The v2 protocol's status for an error: 400 for every bad input (the service says 415 or 422)."""
    return 400 if status in (415, 422) else status


#: The v2 protocol's error form. Bridge: it belongs to the v2 package, which registers it itself
#: once ``service/v2/`` lands (register_error_form replaces a form of the same prefix).
V2_ERROR_FORM = ErrorForm("/v2", lambda message: {"error": message}, v2_status, V2Error)


#: FastAPI's own OpenTelemetry instrumentation (FastAPI 0.165 and later), switched off: it looked
#: for configured OpenTelemetry providers on every request, 15-20 µs of the event loop's ~200 µs
#: per /predict (benchmarks/asgi_cost.py --stub-batcher). The service installs no OpenTelemetry
#: SDK (only the API that FastAPI depends on), so it never recorded anything; the service's own
#: metrics and logs are what it reports. Older FastAPI versions have no such option.
NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI).parameters
    else {}
)


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
        if settings.pair_model_path is not None:
            runtime.pair_model = await asyncio.to_thread(
                PairModel, settings.pair_model_path, verify_sha256=settings.verify_sha256
            )
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
        grpc_server = await serve_grpc(runtime, app.version) if settings.grpc_port else None
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
            if grpc_server is not None:
                # After HTTP's drain and grace: in-flight RPCs get the same grace, new ones are refused.
                await grpc_server.stop(settings.shutdown_timeout_s)
            runtime.ready = False
            runtime.batcher.stop()
            runtime.access_log.close()
            runtime.pool.shutdown(wait=False, cancel_futures=True)
            runtime.lanes.close()
            metrics.flush()  # the requests counted since the last write

    app = FastAPI(
        title="Handwritten digit recognition",
        version="1.0.0",
        description=(
            "Classifies handwritten digits (0–9) with a CNN trained on MNIST, served from ONNX. "
            "Send real images (canvas drawings, photos, any size, dark or light ink): the service "
            "turns them into MNIST form first. The drawing page is at [/](/)."
        ),
        lifespan=lifespan,
        # No 307 from /predict/ to /predict: Starlette builds the Location from the client's own Host
        # header, so anyone could make this service redirect to a host they name.
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
        **NO_TELEMETRY,
    )
    app.state.runtime = runtime
    # The PredictionRoutes (service/routes.py) are listed directly on the app's router, first (ahead
    # of /openapi.json too), so that they are the first ones matched, by one string compare each:
    # an included router adds its own matching on every request.
    app.router.routes[0:0] = [*prediction_router.routes, *read_router.routes]
    app.include_router(router)
    app.include_router(v2.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    add_docs(app)
    register_error_form(V2_ERROR_FORM)
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
