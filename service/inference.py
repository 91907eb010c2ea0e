"""The classifier (one onnxruntime session) and the dynamic batcher in front of it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import onnxruntime as ort

from service import errors
from service.config import MODELS_DIR

log = logging.getLogger(__name__)

#: Prepares the images of one request in the batcher thread: returns float32 (n, 28, 28)
#: in [0, 1], or raises a ServiceError that becomes that request's response.
Prepare = Callable[[], np.ndarray]
#: What the batcher hands back for one request: the images the model saw (n, 28, 28), the
#: probabilities of the ten digits (n, 10), and the probability that each image is a digit (n,).
Classified = tuple[np.ndarray, np.ndarray, np.ndarray]

#: The contract between training and the service: the metadata beside every model follows it.
METADATA_SCHEMA = MODELS_DIR / "metadata.schema.json"
#: The model's outputs, by name (read from the session, and from the metadata's open_set).
PROBABILITIES = "probabilities"
DIGIT_SCORE = "digit_score"


#: The batcher cuts a request with more images than this (and than its max_size) into session
#: runs of that many: onnxruntime's memory arena grows with the largest run and never shrinks.
#: Measured per image: 105 us in runs of 1, 83-85 us in runs of 8 to 64, 91 us in one run of 256.
MIN_RUN_LIMIT = 64


class ModelLoadError(RuntimeError):
    """The model cannot be served: missing, corrupt, or not the file its metadata describes."""


def load_metadata(model_path: Path) -> dict[str, Any]:
    path = model_path.with_suffix(".json")
    if not model_path.is_file():
        raise ModelLoadError(f"model file not found: {model_path}. Train one or point --model at an .onnx file.")
    if not path.is_file():
        raise ModelLoadError(f"model metadata not found: {path} (it is written beside the .onnx by training)")
    try:
        metadata: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model metadata {path} is not valid JSON: {exc}") from exc
    try:
        schema = json.loads(METADATA_SCHEMA.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"the metadata schema {METADATA_SCHEMA} cannot be read: {exc}") from exc
    problem = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(metadata))
    if problem is not None:
        where = "/".join(str(part) for part in problem.absolute_path) or "the top level"
        raise ModelLoadError(
            f"model metadata {path} does not follow {METADATA_SCHEMA.name}: at {where}: {problem.message}"
        )
    return metadata


def verified_bytes(model_path: Path, sha256: object, verify: bool = True) -> tuple[bytes, str]:
    """The model file's bytes and their sha256, hashed as read, so that what runs is what was verified."""
    model_bytes = model_path.read_bytes()
    digest = hashlib.sha256(model_bytes).hexdigest()
    if verify and digest != sha256:
        raise ModelLoadError(
            f"sha256 mismatch for {model_path}: the file has {digest}, its metadata says "
            f"{sha256}. The model file was changed or corrupted; restore it or retrain."
        )
    return model_bytes, digest


def cpu_session(model_bytes: bytes, model_path: Path, intra_op_threads: int, inter_op_threads: int) -> Any:
    """An onnxruntime CPU session of ``model_bytes``, sequential, threads not spinning; ModelLoadError if bad."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads burn a core between requests; the worker processes need it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ModelLoadError(f"{model_path} is not a loadable ONNX model: {exc}") from exc


class Classifier:
    """One onnxruntime session: a batch of MNIST-form images in, class probabilities out."""

    def __init__(
        self, model_path: Path, *, intra_op_threads: int = 1, inter_op_threads: int = 1, verify_sha256: bool = True
    ) -> None:
        self.metadata = load_metadata(model_path)
        model_bytes, digest = verified_bytes(model_path, self.metadata["sha256"], verify_sha256)
        self.session = cpu_session(model_bytes, model_path, intra_op_threads, inter_op_threads)
        inputs = self.session.get_inputs()
        outputs = {output.name: output for output in self.session.get_outputs()}
        # Old models name their one output otherwise: the ten-class output is the probabilities.
        ten = [name for name, output in outputs.items() if list(output.shape)[-1:] == [10]]
        name = PROBABILITIES if PROBABILITIES in outputs else (ten[0] if len(ten) == 1 else None)
        if len(inputs) != 1 or list(inputs[0].shape)[1:] != [28, 28, 1] or name is None:
            raise ModelLoadError(f"{model_path} does not take [N, 28, 28, 1] images to [N, 10] probabilities")
        self.input_name: str = inputs[0].name
        self.output_name: str = name
        open_set = self.metadata.get("open_set")
        #: The output that says whether an image shows a digit at all; None for models without one,
        #: whose every image counts as a digit (digit_score 1.0).
        self.score_name: str | None = open_set["output"] if open_set else None
        if self.score_name is not None and self.score_name not in outputs:
            raise ModelLoadError(f"{model_path} has no output {self.score_name!r}, which its metadata's open_set names")
        if self.score_name is None and DIGIT_SCORE in outputs:
            raise ModelLoadError(
                f"{model_path} has a {DIGIT_SCORE!r} output but its metadata has no open_set threshold for it"
            )
        #: The default strictness: is_digit is digit_score >= this (chosen on the validation split).
        self.threshold: float = float(open_set["threshold"]) if open_set else 0.0
        self._outputs = [self.output_name] if self.score_name is None else [self.output_name, self.score_name]
        self.sha256 = digest
        self.path = model_path

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def open_set(self) -> bool:
        """Whether the model says if an image is a digit at all (a ``digit_score`` output)."""
        return self.score_name is not None

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 (N, 28, 28) in [0, 1] → probabilities (N, 10) and digit_score (N,), float32."""
        feed = {self.input_name: np.ascontiguousarray(images, dtype=np.float32).reshape(-1, 28, 28, 1)}
        results = self.session.run(self._outputs, feed)
        probabilities: np.ndarray = results[0]
        if self.score_name is None:
            return probabilities, np.ones(len(probabilities), np.float32)
        scores: np.ndarray = results[1]
        return probabilities, scores.reshape(len(probabilities)).astype(np.float32, copy=False)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """float32 (N, 28, 28) in [0, 1] → float32 (N, 10) probabilities."""
        return self.run(images)[0]

    def warm_up(self, max_batch: int) -> None:
        """Run the shapes we will serve once, so the first real requests are not slow."""
        for n in {1, max_batch}:
            self.predict(np.zeros((n, 28, 28), np.float32))


@dataclass
class Job:
    prepare: Prepare
    future: asyncio.Future[Classified]
    images: np.ndarray | None = None
    result: tuple[np.ndarray, np.ndarray] | None = None
    error: BaseException | None = None


class Batcher:
    """Dynamic batching: concurrent requests share one ``session.run``.

    One thread per worker process takes every job waiting in the queue (up to ``max_size``
    images, waiting at most ``max_delay_s`` for more), prepares them (decoding and
    preprocessing release the event loop), runs the model once, and hands the results back to
    the event loop in one call. The loop never runs CPU-heavy work, and the thread hop is paid
    once per batch, not once per request.
    """

    def __init__(
        self,
        classifier: Classifier,
        *,
        max_size: int,
        max_delay_s: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.classifier = classifier
        self.max_size = max_size
        #: Most images in one session.run: the batch size, but never so few that cutting one
        #: request's images into runs would cost more per image.
        self.run_limit = max(max_size, MIN_RUN_LIMIT)
        self.max_delay_s = max_delay_s
        self.on_batch = on_batch
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._pending: Job | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def submit(self, prepare: Prepare) -> asyncio.Future[Classified]:
        """Queue one request's work; the future resolves to (inputs, probabilities, digit_score)."""
        future: asyncio.Future[Classified] = asyncio.get_running_loop().create_future()
        self._queue.put(Job(prepare, future))
        return future

    # --- The batcher thread
    def _collect(self) -> list[Job] | None:
        first = self._pending or self._queue.get()
        self._pending = None
        if first is None:
            return None
        jobs = [first]
        self._prepare(first)
        count = 0 if first.images is None else len(first.images)
        deadline = time.perf_counter() + self.max_delay_s
        while count < self.max_size:
            timeout = deadline - time.perf_counter()
            try:
                job = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            self._prepare(job)
            n = 0 if job.images is None else len(job.images)
            if count + n > self.max_size and count:
                # Keep the batch within max_size: this job starts the next one.
                self._pending = job
                break
            jobs.append(job)
            count += n
        return jobs

    @staticmethod
    def _prepare(job: Job) -> None:
        if job.future.cancelled():
            return
        try:
            job.images = job.prepare()
        except errors.ServiceError as exc:
            job.error = exc
        except Exception as exc:  # a bug in preprocessing must not kill the thread
            log.exception("preprocessing failed")
            job.error = errors.InvalidInput(errors.UNDECODABLE_IMAGE.format(reason="unreadable image data"))
            job.error.__cause__ = exc

    def _run(self) -> None:
        while True:
            jobs = self._collect()
            if jobs is None:
                return
            ready = [j for j in jobs if j.images is not None and j.error is None and not j.future.cancelled()]
            if ready:
                try:
                    arrays = [j.images for j in ready if j.images is not None]
                    batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
                    probabilities, scores = self._infer(batch)
                except Exception:
                    log.exception("inference failed")
                    for job in ready:
                        job.error = errors.Unavailable(errors.INFERENCE_FAILED)
                else:
                    start = 0
                    for job in ready:
                        assert job.images is not None
                        end = start + len(job.images)
                        job.result = probabilities[start:end], scores[start:end]
                        start = end
            self._deliver(jobs)

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Classify ``batch`` in session runs of at most ``run_limit`` images.

        One batch request can hold more images than ``max_size`` (256 against 64 by default).
        Run at once, its intermediate tensors grew onnxruntime's memory arena, which keeps what it
        grows to, by some 45 MB per worker process for 256 images. Runs of 64 images fit the arena
        the default warm-up sizes, and cost no more per image than one run of 256.
        """
        results = []
        for start in range(0, len(batch), self.run_limit):
            chunk = batch[start : start + self.run_limit]
            results.append(self.classifier.run(chunk))
            if self.on_batch is not None:
                self.on_batch(len(chunk))
        if len(results) == 1:
            return results[0]
        return np.concatenate([p for p, _ in results]), np.concatenate([s for _, s in results])

    @staticmethod
    def _deliver(jobs: list[Job]) -> None:
        loops: dict[asyncio.AbstractEventLoop, list[Job]] = {}
        for job in jobs:
            loops.setdefault(job.future.get_loop(), []).append(job)
        for loop, group in loops.items():
            try:
                loop.call_soon_threadsafe(_resolve, group)
            except RuntimeError:  # the loop has closed: nobody is waiting any more
                pass


def _resolve(jobs: list[Job]) -> None:
    for job in jobs:
        if job.future.done():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            assert job.images is not None and job.result is not None
            job.future.set_result((job.images, *job.result))
