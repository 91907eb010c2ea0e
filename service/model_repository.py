"""What Triton's tools ask a server about its models, in one place for every transport.

The served models, their model configuration, the repository index and the inference statistics,
each as the JSON Triton's HTTP API answers. The gRPC API turns the same dicts into its messages
(``google.protobuf.json_format``: Triton's JSON is the JSON mapping of those messages), so the two
transports cannot disagree.

Two model names, so that a generic tool (perf_analyzer with its own generated data) can fill
every input a model lists:

- ``<name>``: the single FP32 input ``image`` [N, 28, 28, 1], already in MNIST form;
- ``<name>-bytes``: the single BYTES input ``image_bytes`` [N], encoded image files.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Final

from service import errors, v2
from service.config import Settings
from service.inference import Classifier

#: Appended to the model's name for the model that takes encoded image files.
BYTES_MODEL_SUFFIX: Final = "-bytes"
#: Triton's data types for the protocol's (BYTES is TYPE_STRING in a model configuration).
DATA_TYPES: Final = {"FP32": "TYPE_FP32", "INT64": "TYPE_INT64", "BOOL": "TYPE_BOOL", "BYTES": "TYPE_STRING"}
#: Stages of Triton's inference statistics, each a count and a cumulative duration in ns.
STAGES: Final = (
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
    "cache_hit",
    "cache_miss",
)

Tensors = dict[str, tuple[str, list[int]]]

#: The bytes model's input: [N, 1], as Triton lists a batch of scalars (config dims [1] reshaped to
#: []), and perf_analyzer needs a shape with a dimension after the batch. [N] is accepted too.
BYTES_INPUT: Final = ("BYTES", [-1, 1])


@dataclass(frozen=True)
class ModelSpec:
    """One served model name: its inputs and outputs, as the protocol's datatypes and shapes."""

    name: str
    inputs: Tensors
    outputs: Tensors


def served_models(classifier: Classifier) -> dict[str, ModelSpec]:
    """Every model name this server answers to, the tensor model first."""
    outputs = dict(v2.OUTPUTS)
    tensor = ModelSpec(classifier.name, {v2.IMAGE: v2.INPUTS[v2.IMAGE]}, outputs)
    files = ModelSpec(classifier.name + BYTES_MODEL_SUFFIX, {v2.IMAGE_BYTES: BYTES_INPUT}, outputs)
    return {spec.name: spec for spec in (tensor, files)}


def triton_version(version: str) -> str:
    """Triton's integer version for ours: ``1.0.0-int8`` → ``1``, the major version.

    Triton numbers versions; perf_analyzer parses the version in the statistics as an integer and
    finds no statistics unless it reads back exactly that integer.
    """
    major = version.split(".", 1)[0]
    return str(int(major)) if major.isdigit() else version


def find_model(classifier: Classifier | None, name: str, version: str) -> tuple[Classifier, ModelSpec]:
    """The classifier and the model spec a request names; 503 before the model is loaded, 404 for no such model."""
    if classifier is None:
        raise errors.Unavailable(errors.MODEL_NOT_READY)
    models = served_models(classifier)
    spec = models.get(name)
    if spec is None:
        served = " or ".join(repr(n) for n in models)
        raise errors.NotFound(errors.GRPC_UNKNOWN_MODEL.format(name=name[:100], served=served))
    if version and version not in (classifier.version, triton_version(classifier.version)):
        raise errors.NotFound(v2.UNKNOWN_VERSION.format(name=name, version=version[:100], served=classifier.version))
    return classifier, spec


def model_metadata(classifier: Classifier, spec: ModelSpec) -> dict[str, object]:
    """The protocol's model metadata (``GET /v2/models/{name}``)."""

    def tensors(specs: Tensors) -> list[dict[str, object]]:
        return [{"name": n, "datatype": d, "shape": s} for n, (d, s) in specs.items()]

    return {
        "name": spec.name,
        "versions": [triton_version(classifier.version)],
        "platform": v2.PLATFORM,
        "inputs": tensors(spec.inputs),
        "outputs": tensors(spec.outputs),
    }


def model_config(classifier: Classifier, spec: ModelSpec, settings: Settings) -> dict[str, object]:
    """Triton's model configuration (``GET /v2/models/{name}/config``).

    ``dims`` leave out the batch dimension, as they do when ``max_batch_size`` is above 0; one
    element per image ([N] or [N, 1]) has dims [1] reshaped to [] (Triton's batch of scalars).
    """

    def tensors(specs: Tensors) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for name, (datatype, shape) in specs.items():
            item: dict[str, object] = {"name": name, "data_type": DATA_TYPES[datatype], "dims": shape[1:] or [1]}
            if item["dims"] == [1]:
                item["reshape"] = {"shape": []}
            out.append(item)
        return out

    return {
        "name": spec.name,
        "platform": v2.PLATFORM,
        "backend": "onnxruntime",
        "max_batch_size": settings.max_batch_images,
        "input": tensors(spec.inputs),
        "output": tensors(spec.outputs),
        "dynamic_batching": {
            "preferred_batch_size": [settings.batch_max_size],
            "max_queue_delay_microseconds": round(settings.batch_max_delay_ms * 1000),
        },
        "instance_group": [{"name": spec.name, "count": 1, "kind": "KIND_CPU"}],
        "default_model_filename": classifier.path.name,
    }


def repository_index(classifier: Classifier | None, ready: bool, ready_only: bool = False) -> list[dict[str, str]]:
    """The repository index (``POST /v2/repository/index``): every model name and its state."""
    if classifier is None:
        return []
    state, reason = ("READY", "") if ready else ("UNAVAILABLE", "not ready")
    if ready_only and not ready:
        return []
    return [
        {"name": name, "version": triton_version(classifier.version), "state": state, "reason": reason}
        for name in served_models(classifier)
    ]


@dataclass
class ModelStatistics:
    """Counts and cumulative times of one model's inferences in this worker process."""

    durations: dict[str, list[int]] = field(default_factory=lambda: {stage: [0, 0] for stage in STAGES})
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0


class Statistics:
    """Inference statistics of every model, per worker process (like the Prometheus metrics without
    multiprocess mode): a request that lands on another worker counts there.

    ``compute_input`` is the request's parsing and checks, ``compute_infer`` the wait for the batcher
    (queue, preprocessing and the model run: the batcher does not report them apart), and
    ``compute_output`` the encoding of the response; ``queue`` stays 0.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, ModelStatistics] = {}

    def record_success(self, model: str, images: int, stages_ns: dict[str, int], total_ns: int) -> None:
        with self._lock:
            stats = self._models.setdefault(model, ModelStatistics())
            for stage, ns in (*stages_ns.items(), ("success", total_ns)):
                stats.durations[stage][0] += 1
                stats.durations[stage][1] += ns
            stats.durations["queue"][0] += 1
            stats.inference_count += images
            stats.execution_count += 1
            stats.last_inference_ms = time.time_ns() // 1_000_000

    def record_failure(self, model: str, total_ns: int) -> None:
        with self._lock:
            stats = self._models.setdefault(model, ModelStatistics())
            stats.durations["fail"][0] += 1
            stats.durations["fail"][1] += total_ns

    def report(self, classifier: Classifier | None, name: str, version: str) -> dict[str, object]:
        """Triton's statistics (``GET /v2/models[/{name}]/stats``): one model, or all of them when ``name`` is empty."""
        if name:
            classifier, _ = find_model(classifier, name, version)
            names = [name]
        elif classifier is None:
            return {"model_stats": []}
        else:
            names = list(served_models(classifier))
        with self._lock:
            rows = []
            for model in names:
                stats = self._models.get(model, ModelStatistics())
                rows.append(
                    {
                        "name": model,
                        "version": triton_version(classifier.version),
                        "last_inference": stats.last_inference_ms,
                        "inference_count": stats.inference_count,
                        "execution_count": stats.execution_count,
                        "inference_stats": {s: {"count": c, "ns": ns} for s, (c, ns) in stats.durations.items()},
                        "batch_stats": [],
                    }
                )
        return {"model_stats": rows}


#: This process's statistics, shared by every transport (module-level, like the metrics).
STATISTICS: Final = Statistics()
