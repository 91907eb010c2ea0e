"""``python -m service``: start the HTTP server (options override ``DIGITS_*`` environment variables)."""

from __future__ import annotations

import argparse
import logging.config
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvicorn

from service.config import Settings
from service.inference import Classifier, ModelLoadError
from service.logs import log_config
from service.supervisor import Supervisor, bind

OPTIONS = {"host": str, "port": int, "grpc_port": int, "workers": int, "model": Path}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Serve the digit classifier. Every option is also an environment variable "
        "(DIGITS_HOST, DIGITS_PORT, DIGITS_WORKERS, DIGITS_MODEL_PATH, ...; see .env.example).",
    )
    defaults = Settings()
    parser.add_argument("--host", help=f"interface to bind (default {defaults.host})")
    parser.add_argument("--port", type=int, help=f"port (default {defaults.port})")
    parser.add_argument("--grpc-port", type=int, help=f"KServe v2 gRPC port, 0: off (default {defaults.grpc_port})")
    parser.add_argument("--workers", type=int, help=f"worker processes (default {defaults.workers})")
    parser.add_argument("--model", type=Path, help=f"ONNX model (default {defaults.model_path})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {
        "host": args.host,
        "port": args.port,
        "grpc_port": args.grpc_port,
        "workers": args.workers,
        "model_path": args.model,
    }
    # Worker processes build their settings from the environment: pass the options on that way.
    for key, value in overrides.items():
        if value is not None:
            os.environ[f"DIGITS_{key.upper()}"] = str(value)
    settings = Settings()
    logging.config.dictConfig(log_config(settings.log_level, settings.log_json, settings.access_log))
    log = logging.getLogger("service")

    # Refuse to start on a missing, corrupt or tampered model, before binding the port.
    try:
        Classifier(settings.model_path, verify_sha256=settings.verify_sha256)
    except ModelLoadError as exc:
        log.error("cannot start: %s", exc)
        print(f"error: cannot start: {exc}", file=sys.stderr)
        return 2

    if settings.grpc_port:
        # Every worker's gRPC server binds the port with SO_REUSEPORT; refuse a port something else holds.
        try:
            bind(settings.host, settings.grpc_port, reuse_port=False).close()
        except OSError as exc:
            print(f"error: cannot listen for gRPC on port {settings.grpc_port}: {exc}", file=sys.stderr)
            return 2

    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Workers write their metrics here so that any of them can report the total.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="digits-metrics-")

    config: dict[str, Any] = {
        "app": "service.app:create_app_from_env",
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "log_config": log_config(settings.log_level, settings.log_json, settings.access_log),
        "access_log": False,
        # uvicorn waits this long for in-flight requests (it takes whole seconds: round up).
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_timeout_s),
        "server_header": False,
        "proxy_headers": False,
    }
    if settings.workers == 1:
        uvicorn.run(**config)
        return 0
    # Each worker listens on its own SO_REUSEPORT socket, so the kernel balances connections.
    stop_timeout = settings.shutdown_drain_s + settings.shutdown_timeout_s + 5
    return Supervisor(config, settings.workers, stop_timeout).run()


if __name__ == "__main__":
    raise SystemExit(main())
