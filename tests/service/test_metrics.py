"""service/metrics.py: request metrics summed in the worker, then written as prometheus_client would write them."""

from __future__ import annotations

import asyncio
import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from service import metrics


def exposition(observations: list[float], summed: bool) -> bytes:
    """The exposition of a histogram and a counter of ``observations``: summed by Pending, or one by one."""
    registry = CollectorRegistry()
    requests = Counter("r", "test", ["route", "method", "status"], registry=registry)
    latency = Histogram("h", "test", ["route"], buckets=metrics.LATENCY_BUCKETS, registry=registry)
    if summed:
        pending = metrics.Pending(requests, latency)

        async def add_all() -> None:  # on a loop, so that nothing is written before the flush
            for seconds in observations:
                pending.add("/predict", "POST", 200, seconds)
            assert generate_latest(registry).count(b"\nr_total{") == 0
            pending.flush()

        asyncio.run(add_all())
    else:
        for seconds in observations:
            requests.labels("/predict", "POST", "200").inc()
            latency.labels("/predict").observe(seconds)
    # Everything but the series' creation times.
    return b"\n".join(line for line in generate_latest(registry).splitlines() if b"_created" not in line)


def test_summed_observations_expose_as_observe_does() -> None:
    rng = random.Random(14)
    # Every bound exactly, just over and under it, and a spread of real latencies.
    values = [b + d for b in metrics.LATENCY_BUCKETS for d in (-1e-9, 0.0, 1e-9)] + [
        rng.lognormvariate(-5, 2) for _ in range(2000)
    ]
    values += [0.0, 11.0, 1e6]
    assert exposition(values, summed=True) == exposition(values, summed=False)


def sample(name: str, **labels: str) -> float:
    for metric in [*metrics.REQUESTS.collect(), *metrics.LATENCY.collect()]:
        for s in metric.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def test_requests_are_written_within_the_flush_interval_or_at_a_scrape() -> None:
    route = "/test-metrics"
    before = sample("digits_http_requests_total", route=route, method="POST", status="200")

    async def main() -> tuple[float, float]:
        for _ in range(3):
            metrics.observe_request(route, "POST", 200, 0.003)
        counted_at_once = sample("digits_http_requests_total", route=route, method="POST", status="200")
        await asyncio.sleep(metrics.FLUSH_S + 0.2)
        return counted_at_once, sample("digits_http_requests_total", route=route, method="POST", status="200")

    at_once, later = asyncio.run(main())
    assert (at_once, later) == (before, before + 3)
    assert sample("digits_http_request_duration_seconds_bucket", route=route, le="0.005") >= 3
    # Without a loop to wait on, and at a scrape, nothing waits.
    metrics.observe_request(route, "POST", 200, 0.003)
    assert sample("digits_http_requests_total", route=route, method="POST", status="200") == before + 4
    asyncio.run(_observe_then_render(route))
    assert sample("digits_http_requests_total", route=route, method="POST", status="200") == before + 5


async def _observe_then_render(route: str) -> None:
    metrics.observe_request(route, "POST", 200, 0.003)
    assert f'digits_http_requests_total{{method="POST",route="{route}",status="200"}}'.encode() in metrics.render()[0]
