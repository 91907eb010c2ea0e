"""Prometheus metrics: requests by route and status, latency, batch sizes, images classified.

With several worker processes, prometheus_client's multiprocess mode aggregates the workers'
values (``PROMETHEUS_MULTIPROC_DIR`` is set by ``python -m service``), so a scrape that lands
on any worker reports the whole server.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

REQUESTS = Counter(
    "digits_http_requests_total", "HTTP requests by route, method and status.", ["route", "method", "status"]
)
LATENCY = Histogram(
    "digits_http_request_duration_seconds",
    "Time to answer a request, by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_SIZE = Histogram(
    "digits_inference_batch_size",
    "Images in each session.run call (dynamic batching).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
IMAGES = Counter("digits_images_classified_total", "Images classified by the model.")
REJECTED = Counter("digits_inputs_rejected_total", "Requests refused, by status.", ["status"])


@lru_cache(maxsize=1024)
def _request_children(route: str, method: str, status: int) -> tuple[Any, Any]:
    # labels() takes a lock and builds a key on every call; a request only needs the children.
    return REQUESTS.labels(route, method, str(status)), LATENCY.labels(route)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency. Routes are templates, so the label sets are few."""
    count, latency = _request_children(route, method, status)
    count.inc()
    latency.observe(seconds)


def observe_batch(size: int) -> None:
    BATCH_SIZE.observe(size)
    IMAGES.inc(size)


def render() -> tuple[bytes, str]:
    """The exposition text of every worker's metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
