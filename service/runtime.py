"""The state the routes share: settings, the model and its batcher, readiness and the clients in flight."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fastapi import Request

from service import errors, lanes
from service.config import Settings
from service.inference import Batcher, Classified, Classifier, Prepare
from service.logs import AccessLog
from service.read.pairs import PairModel
from service.work import ImagesWork


@dataclass
class Runtime:
    """What the endpoints share: settings, the model and its batcher, and the service state."""

    settings: Settings
    classifier: Classifier | None = None
    #: /read's pair model (None: not configured, so /read only cuts touching digits).
    pair_model: PairModel | None = None
    batcher: Batcher | None = None
    pool: ThreadPoolExecutor | None = None
    ready: bool = False
    draining: bool = False
    in_flight: dict[str, int] = field(default_factory=dict)
    access_log: AccessLog = field(init=False)
    lanes: lanes.Lanes = field(init=False)

    def __post_init__(self) -> None:
        self.access_log = AccessLog(self.settings.log_json)
        self.lanes = lanes.Lanes(self.settings)

    @property
    def serving(self) -> bool:
        """Ready to answer, as the readiness probes say: the model is loaded and shutdown has not begun."""
        return self.ready and not self.draining

    def check_ready(self) -> None:
        """The one readiness check of the probes: 503 while the model loads and once shutdown has begun."""
        if self.draining:
            raise errors.Unavailable(errors.SHUTTING_DOWN)
        if self.batcher is None or not self.ready:
            raise errors.Unavailable(errors.MODEL_NOT_READY)

    def admit(self, client: str, limit: int) -> None:
        """Count one more request in flight from ``client``: 429 if it has ``limit`` in flight already.

        The HTTP middleware and the gRPC server share the count. Each admitted request is released once.
        """
        count = self.in_flight.get(client, 0)
        if count >= limit:
            raise errors.TooManyRequests(errors.RATE_LIMITED.format(limit=limit, retry_after=1), retry_after=1)
        self.in_flight[client] = count + 1

    def release(self, client: str) -> None:
        """An admitted request from ``client`` has finished; a client with none left is forgotten."""
        remaining = self.in_flight[client] - 1
        if remaining:
            self.in_flight[client] = remaining
        else:
            del self.in_flight[client]

    @property
    def strictness(self) -> float:
        """``is_digit`` is ``digit_score >= strictness``: DIGITS_STRICTNESS, else the model's own threshold."""
        if self.settings.strictness is not None:
            return self.settings.strictness
        assert self.classifier is not None
        return self.classifier.threshold

    async def predict(self, prepare: Prepare) -> Classified:
        """Prepare and classify one request's images; the model runs in the batcher thread.

        Light work (the usual single small image) is prepared in the batcher thread too, so it
        costs no extra thread hop. Heavy work (many or large images) is prepared in a small pool
        first, so that it never holds up the light requests queued behind it on this worker.
        """
        # Not check_ready: while draining, requests are still answered (only the probes say 503).
        if self.batcher is None or not self.ready:
            raise errors.Unavailable(errors.MODEL_NOT_READY)
        batcher = self.batcher
        # No timeout of its own: the middleware's request timeout cancels this task, and with it
        # the job's future, so the batcher skips the job if it has not started on it.
        # The flag, not the type: a wrapper (v2's statistics timer) passes on the heaviness of its work.
        if isinstance(prepare, ImagesWork):
            # Planned from the images' headers: costly decoding goes to a decoder process (service/lanes.py).
            return await self.lanes.classify(prepare, batcher.submit, self.pool)
        if isinstance(prepare, lanes.OffBatcher):  # many JSON pixel arrays: Python work, in a thread
            images = await asyncio.get_running_loop().run_in_executor(self.pool, prepare)
            return await batcher.submit(lambda: images)
        if self.pool is not None and getattr(prepare, "heavy", False) is True:
            images = await asyncio.get_running_loop().run_in_executor(self.pool, prepare)
            return await batcher.submit(lambda: images)
        return await batcher.submit(prepare)


def runtime_of(request: Request) -> Runtime:
    """The app's Runtime (``create_app`` stores it on ``app.state``)."""
    runtime: Runtime = request.app.state.runtime
    return runtime
