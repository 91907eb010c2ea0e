"""Prometheus metrics: requests by route and status, latency, batch sizes, images classified.

With several worker processes, prometheus_client's multiprocess mode aggregates the workers'
values (``PROMETHEUS_MULTIPROC_DIR`` is set by ``python -m service``), so a scrape that lands
on any worker reports the whole server.
"""

from __future__ import annotations

import asyncio
import os
import threading
from bisect import bisect_left
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

REQUESTS = Counter(
    "digits_http_requests_total", "HTTP requests by route, method and status.", ["route", "method", "status"]
)
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY = Histogram(
    "digits_http_request_duration_seconds", "Time to answer a request, by route.", ["route"], buckets=LATENCY_BUCKETS
)
BATCH_SIZE = Histogram(
    "digits_inference_batch_size",
    "Images in each session.run call (dynamic batching).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
IMAGES = Counter("digits_images_classified_total", "Images classified by the model.")
REJECTED = Counter("digits_inputs_rejected_total", "Requests refused, by status.", ["status"])


#: Request metrics are summed in the worker and written to the metric files at most this often
#: (and before every scrape this worker answers). In multiprocess mode each write is a locked
#: mmap write, three a request (count, latency sum, bucket): 5 µs of every /predict, against
#: 0.6 µs to sum it here. A scrape every 15 s never notices the lag.
FLUSH_S: Final = 0.5
_BOUNDS: Final = (*LATENCY_BUCKETS, float("inf"))


class Pending:
    """Requests counted since the last flush into ``requests`` (a Counter) and ``latency`` (a Histogram)."""

    def __init__(self, requests: Counter, latency: Histogram) -> None:
        self.requests, self.latency_metric = requests, latency
        self.lock = threading.Lock()  # gRPC and HTTP handlers, the scrape's thread
        self.counts: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, list[float]] = {}  # route → [sum, one count per bucket]
        self.timer: asyncio.TimerHandle | None = None
        self.timer_loop: asyncio.AbstractEventLoop | None = None

    def add(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            row = self.latency.get(route)
            if row is None:
                row = self.latency[route] = [0.0] * (len(_BOUNDS) + 1)
            row[0] += seconds
            row[bisect_left(_BOUNDS, seconds) + 1] += 1  # the first bucket whose bound is >= seconds
        if self.timer is None or self.timer_loop is not _running_loop():
            self.schedule()

    def schedule(self) -> None:
        loop = _running_loop()
        if loop is None:  # no event loop to flush later from
            self.flush()
            return
        self.timer_loop = loop
        self.timer = loop.call_later(FLUSH_S, self.flush)

    def flush(self) -> None:
        with self.lock:
            counts, latency = self.counts, self.latency
            self.counts, self.latency, self.timer = {}, {}, None
        # Label lookups take a lock and build a key: done here, at most twice a second, not per request.
        for (route, method, status), count in counts.items():
            self.requests.labels(route, method, str(status)).inc(count)
        for route, row in latency.items():
            add_observations(self.latency_metric.labels(route), row[0], row[1:])


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def add_observations(histogram: Any, total: float, counts: list[float]) -> None:
    """What ``observe`` does for each of many observations, once: their sum, then each bucket's count.

    prometheus_client has no public call for it; ``test_metrics.py`` pins the result to ``observe``'s.
    """
    histogram._sum.inc(total)
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)


_PENDING: Final = Pending(REQUESTS, LATENCY)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency. Routes are templates, so the label sets are few."""
    _PENDING.add(route, method, status, seconds)


def flush() -> None:
    """Write the requests counted so far to the metrics (a scrape and the shutdown call it)."""
    _PENDING.flush()


def observe_batch(size: int) -> None:
    BATCH_SIZE.observe(size)
    IMAGES.inc(size)


def render() -> tuple[bytes, str]:
    """The exposition text of every worker's metrics (this worker's counted requests flushed first)."""
    flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
