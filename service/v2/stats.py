"""Triton's statistics extension: per model, counts and cumulative times of each stage of inference.

The numbers are Prometheus counters (also on ``/metrics``), so that with several worker processes
prometheus_client's multiprocess files sum them, and a statistics request that lands on any worker
reports the whole server, as Triton's would. The stages of one request, as measured here:

- ``queue``: from the request's hand-over to the batcher (or the preparation pool) to the start
  of its preparation;
- ``compute_input``: parsing the request and preparing its images (decoding, checking);
- ``compute_infer``: from the end of preparation to the result (the model run, shared with the
  other requests of the batch);
  image files (the bytes model) are not wrapped: they go through the decoder lanes
  (service/lanes.py), whose budget, deadline and killable decoder process must apply to v2 as to
  ``/predict``. Their queue, decoding and model run are all counted as ``compute_input``;
- ``compute_output``: building the response;
- ``success``: the whole request, from the handler's start, for those answered 200; ``fail``: the
  same for the others (bad inputs included), once the model is known.

Transport-neutral: the gRPC service times its requests with the same :class:`Timer`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, multiprocess
from prometheus_client.metrics_core import Metric

from service.inference import Prepare
from service.work import ImagesWork

STAGES: Final = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
#: Stages Triton reports that this server does not have (no response cache): always zero.
ZERO_STAGES: Final = ("cache_hit", "cache_miss")

COUNT = Counter("digits_v2_stage", "v2 inference requests through each stage, by model.", ["model", "stage"])
SECONDS = Counter(
    "digits_v2_stage_seconds", "Cumulative time of v2 inference requests in each stage, by model.", ["model", "stage"]
)
INFERENCES = Counter("digits_v2_inferences", "Images classified through v2, by model.", ["model"])
LAST = Gauge(
    "digits_v2_last_inference_ms",
    "When the model last answered a v2 inference, in ms since the epoch.",
    ["model"],
    multiprocess_mode="max",
)


@lru_cache(maxsize=64)
def _children(model: str, stage: str) -> tuple[Any, Any]:
    # labels() takes a lock and builds a key on every call; a request only needs the children.
    return COUNT.labels(model, stage), SECONDS.labels(model, stage)


def _add(model: str, stage: str, ns: int) -> None:
    count, seconds = _children(model, stage)
    count.inc()
    seconds.inc(ns / 1e9)


class Timer:
    """The stages of one inference request on one model; record it with :meth:`succeeded` or :meth:`failed`."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = time.perf_counter_ns()
        self.submitted = self.prepare_started = self.prepare_ended = self.inferred = 0

    def timed(self, prepare: Prepare) -> Prepare:
        """``prepare`` as the batcher (or the preparation pool) runs it, marking the time it is
        handed over, starts and ends; image files as they are, for the decoder lanes."""
        self.submitted = time.perf_counter_ns()
        return prepare if isinstance(prepare, ImagesWork) else TimedWork(self, prepare)

    def mark_inferred(self) -> None:
        self.inferred = time.perf_counter_ns()

    def succeeded(self, images: int) -> None:
        now = time.perf_counter_ns()
        if not self.prepare_started:  # not wrapped (image files): all of it was preparing them
            self.prepare_started, self.prepare_ended = self.submitted, self.inferred
        _add(self.model, "success", now - self.started)
        _add(self.model, "queue", self.prepare_started - self.submitted)
        parse_ns = self.submitted - self.started
        _add(self.model, "compute_input", parse_ns + self.prepare_ended - self.prepare_started)
        _add(self.model, "compute_infer", self.inferred - self.prepare_ended)
        _add(self.model, "compute_output", now - self.inferred)
        INFERENCES.labels(self.model).inc(images)
        LAST.labels(self.model).set(time.time_ns() // 1_000_000)

    def failed(self) -> None:
        _add(self.model, "fail", time.perf_counter_ns() - self.started)


class TimedWork:
    """Work wrapped by a :class:`Timer`. It keeps the work's ``heavy`` flag, so that
    ``Runtime.predict`` still prepares heavy work in its pool, off the batcher thread."""

    def __init__(self, timer: Timer, prepare: Prepare) -> None:
        self.timer = timer
        self.prepare = prepare

    @property
    def heavy(self) -> bool:
        return getattr(self.prepare, "heavy", False) is True

    def __call__(self) -> Any:
        self.timer.prepare_started = time.perf_counter_ns()
        try:
            return self.prepare()
        finally:
            self.timer.prepare_ended = time.perf_counter_ns()


def _collected() -> Iterable[Metric]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry.collect()
    return [*COUNT.collect(), *SECONDS.collect(), *INFERENCES.collect(), *LAST.collect()]


def snapshot() -> dict[tuple[str, str, str], float]:
    """Every worker's values: (sample name, model, stage) → value. Reads files: call it off the event loop."""
    values: dict[tuple[str, str, str], float] = {}
    wanted = {"digits_v2_stage_total", "digits_v2_stage_seconds_total", "digits_v2_inferences_total"}
    for metric in _collected():
        for sample in metric.samples:
            if sample.name in wanted or sample.name == "digits_v2_last_inference_ms":
                values[(sample.name, sample.labels.get("model", ""), sample.labels.get("stage", ""))] = sample.value
    return values


def model_stats(model: str, version: str, values: dict[tuple[str, str, str], float]) -> dict[str, object]:
    """One model's entry of ``model_stats``, in Triton's shape (whole nanoseconds and counts)."""

    def stage(name: str) -> dict[str, int]:
        return {
            "count": int(values.get(("digits_v2_stage_total", model, name), 0)),
            "ns": round(values.get(("digits_v2_stage_seconds_total", model, name), 0.0) * 1e9),
        }

    inference_stats = {name: stage(name) for name in STAGES} | {name: {"count": 0, "ns": 0} for name in ZERO_STAGES}
    return {
        "name": model,
        "version": version,
        "last_inference": int(values.get(("digits_v2_last_inference_ms", model, ""), 0)),
        "inference_count": int(values.get(("digits_v2_inferences_total", model, ""), 0)),
        # The batcher merges the requests of every route into its runs, so the runs of one model
        # name are not told apart: each successful request counts as one execution.
        "execution_count": inference_stats["success"]["count"],
        "inference_stats": inference_stats,
        "batch_stats": [],
    }
