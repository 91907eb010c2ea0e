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

import numpy as np
import onnxruntime as ort

from service import errors

log = logging.getLogger(__name__)

#: Prepares the images of one request in the batcher thread: returns float32 (n, 28, 28)
#: in [0, 1], or raises a ServiceError that becomes that request's response.
Prepare = Callable[[], np.ndarray]


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
    for key in ("name", "version", "sha256"):
        if key not in metadata:
            raise ModelLoadError(f"model metadata {path} has no {key!r}")
    return metadata


class Classifier:
    """One onnxruntime session: a batch of MNIST-form images in, class probabilities out."""

    def __init__(
        self, model_path: Path, *, intra_op_threads: int = 1, inter_op_threads: int = 1, verify_sha256: bool = True
    ) -> None:
        self.metadata = load_metadata(model_path)
        model_bytes = model_path.read_bytes()
        # Hash the very bytes the session is built from, so what runs is what was verified.
        digest = hashlib.sha256(model_bytes).hexdigest()
        if verify_sha256 and digest != self.metadata["sha256"]:
            raise ModelLoadError(
                f"sha256 mismatch for {model_path}: the file has {digest}, its metadata says "
                f"{self.metadata['sha256']}. The model file was changed or corrupted; restore it or retrain."
            )
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
            self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelLoadError(f"{model_path} is not a loadable ONNX model: {exc}") from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or list(inputs[0].shape)[1:] != [28, 28, 1] or outputs[0].shape[-1] != 10:
            raise ModelLoadError(f"{model_path} does not take [N, 28, 28, 1] images to [N, 10] probabilities")
        self.input_name: str = inputs[0].name
        self.output_name: str = outputs[0].name
        self.sha256 = digest
        self.path = model_path

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    def predict(self, images: np.ndarray) -> np.ndarray:
        """float32 (N, 28, 28) in [0, 1] → float32 (N, 10) probabilities."""
        feed = {self.input_name: np.ascontiguousarray(images, dtype=np.float32).reshape(-1, 28, 28, 1)}
        result: np.ndarray = self.session.run([self.output_name], feed)[0]
        return result

    def warm_up(self, max_batch: int) -> None:
        """Run the shapes we will serve once, so the first real requests are not slow."""
        for n in {1, max_batch}:
            self.predict(np.zeros((n, 28, 28), np.float32))


@dataclass
class Job:
    prepare: Prepare
    future: asyncio.Future[tuple[np.ndarray, np.ndarray]]
    images: np.ndarray | None = None
    result: np.ndarray | None = None
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

    def submit(self, prepare: Prepare) -> asyncio.Future[tuple[np.ndarray, np.ndarray]]:
        """Queue one request's work; the future resolves to (inputs, probabilities)."""
        future: asyncio.Future[tuple[np.ndarray, np.ndarray]] = asyncio.get_running_loop().create_future()
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
                    probabilities = self._infer(batch)
                except Exception:
                    log.exception("inference failed")
                    for job in ready:
                        job.error = errors.Unavailable(errors.INFERENCE_FAILED)
                else:
                    start = 0
                    for job in ready:
                        assert job.images is not None
                        end = start + len(job.images)
                        job.result = probabilities[start:end]
                        start = end
            self._deliver(jobs)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """Classify ``batch`` in session runs of at most ``run_limit`` images.

        One batch request can hold more images than ``max_size`` (256 against 64 by default).
        Run at once, its intermediate tensors grew onnxruntime's memory arena, which keeps what it
        grows to, by some 45 MB per worker process for 256 images. Runs of 64 images fit the arena
        the default warm-up sizes, and cost no more per image than one run of 256.
        """
        results = []
        for start in range(0, len(batch), self.run_limit):
            chunk = batch[start : start + self.run_limit]
            results.append(self.classifier.predict(chunk))
            if self.on_batch is not None:
                self.on_batch(len(chunk))
        return results[0] if len(results) == 1 else np.concatenate(results)

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
            job.future.set_result((job.images, job.result))
