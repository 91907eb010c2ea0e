"""Where a request's images are decoded, chosen from what they cost before any of them is decoded.

Decoding cost follows the pixels an image declares in its header, not its encoded size: a 68-byte
BMP declares 24,000,000 x 1 px and took Pillow's Python RLE decoder 2.5-14 s; a 126 KB lossless
WebP of 4898^2 px took 0.3-1.1 s and 400 MB. So every request is planned from its headers:

- **light** (at most ``LIGHT_BYTES`` encoded and ``settings.light_pixels`` of work, the usual
  single drawing or photo thumbnail): decoded in the batcher thread as before, with no extra hop;
- **costly**: admitted against a per-worker budget of decoded pixels in flight (over it: 429 with
  Retry-After; one request over the whole budget: 413), then decoded one image at a time in a
  decoder process (:mod:`service.decoder_process`) at lower CPU priority, under a memory cap and a
  deadline. When the request is answered early (request timeout, deadline, client gone) the
  process is killed, so its work stops and its memory returns to the system at once.

In the worker each header is read once, by ``preprocess.image_cost``: its
:class:`~service.preprocess.ImageCost` plans the request here, and the batcher's decode takes it as
it is (``ImagesWork(costs)``). A decoder process reads the header again itself: the cost does not
cross the process boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import math
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
from starlette.requests import ClientDisconnect

from service import decoder_process, errors, preprocess
from service.config import Settings
from service.inference import Classified
from service.preprocess import ImageCost

log = logging.getLogger(__name__)

#: Requests with more encoded bytes than this are planned in a thread and decoded in a decoder
#: process. Reading headers walks chunks, markers and blocks in Python: 240 KB of empty PNG chunks
#: cost 200 ms to decode, against 2-5 ms for a 10 KB drawing.
LIGHT_BYTES: Final = 64 * 1024
#: Work of an image beyond its pixels: the Python around each decode (an MNIST PNG: 0.07 ms, the
#: cost of ~2,500 pixels of a canvas PNG at 28 ns a pixel).
PER_IMAGE_WORK: Final = 4_000
#: Decoders that run in Python, by ``ImageCost.variant``, and how much more a pixel costs in them
#: than in C (RLE8 BMP: 0.45 us a pixel, against 0.028 for PNG, measured in the decoder process).
SLOW_VARIANTS: Final = {"rle": 16}
#: Baseline JPEGs are decoded at 1/2 to 1/8 scale (``decode_image``'s draft): a 24 MP one took
#: 10.5 ms, the cost of 375,000 canvas-PNG pixels; /16 keeps a margin of four. Progressive JPEGs keep
#: every coefficient of the full image in memory, so they cost their full size.
JPEG_DRAFT_DIVISOR: Final = 16
#: A decoder process whose resident memory is over this after an image is replaced (it starts at
#: ~30 MB; a 24 MP PNG left it at 33 MB, the RLE BMP at 81 MB).
RECYCLE_RSS_MB: Final = 100
#: Seconds a client is told to wait when the budget is full: the decoders finish a 24 MP image in
#: 0.2-1.2 s here.
RETRY_AFTER_S: Final = 2

#: The ASGI ``receive`` of the request being served (set by the middleware), to notice that its
#: client has gone while its images are still being decoded.
RECEIVE: contextvars.ContextVar[Callable[[], Awaitable[Any]] | None] = contextvars.ContextVar("receive", default=None)


#: One image's header cost; None when the header is refused (decoding refuses it at once, again).
Costs = list[ImageCost | None]


class Work(Protocol):
    """What :class:`service.routes.ImagesWork` gives the lanes: the images, their limit, the error label."""

    datas: list[bytes]
    max_pixels: int
    label: str | None

    def __call__(self, costs: Costs | None = None, /) -> np.ndarray: ...


class Submit(Protocol):
    def __call__(self, prepare: Callable[[], np.ndarray], /) -> Awaitable[Classified]: ...


# --- Cost from the header -------------------------------------------------------------------------


def header_cost(data: bytes) -> ImageCost | None:
    """The image's cost from its header (``preprocess.image_cost``), or None if the header is refused."""
    try:
        return preprocess.image_cost(data)
    except errors.ServiceError:
        return None


def image_work(cost: ImageCost | None, max_pixels: int) -> int:
    """The decoding work of one image in pixel-equivalents of a PNG, from its header's cost."""
    pixels = 0 if cost is None else cost.pixels
    if cost is None or not 0 < pixels <= max_pixels:  # refused (413/422) before any pixel is decoded
        return PER_IMAGE_WORK
    if cost.format == "JPEG" and cost.variant != "progressive" and pixels > 4 * preprocess.WORK_PIXELS:
        work = pixels // JPEG_DRAFT_DIVISOR
    else:
        work = pixels * SLOW_VARIANTS.get(cost.variant, 1)
    return work + PER_IMAGE_WORK


def plan(datas: Sequence[bytes]) -> Costs:
    return [header_cost(data) for data in datas]


def total_work(costs: Costs, max_pixels: int) -> int:
    return sum(image_work(cost, max_pixels) for cost in costs)


class Reroute(errors.ServiceError):
    """Raised in the batcher thread by a request found costly there: its plan goes back to the loop."""

    def __init__(self, costs: Costs) -> None:
        super().__init__("costly request")
        self.costs = costs


@dataclass
class LightOrReroute:
    """The batcher-thread step of a small request: plan it, then decode it there if it is light."""

    work: Work
    light_pixels: int

    def __call__(self) -> np.ndarray:
        costs = plan(self.work.datas)
        if total_work(costs, self.work.max_pixels) > self.light_pixels:
            raise Reroute(costs)
        return self.work(costs)  # decoded with the costs just read: no header is parsed twice


#: JSON pixel batches of more images than this are converted in a thread, not the batcher's: 256
#: arrays (the batch limit) took 81 ms of Python there, which every light request behind waited.
PIXELS_IN_BATCHER: Final = 8


@dataclass
class OffBatcher:
    """Work prepared in a pool thread, then handed to the batcher ready-made."""

    prepare: Callable[[], np.ndarray]

    def __call__(self) -> np.ndarray:
        return self.prepare()


def pixels_work(prepare: Callable[[], np.ndarray], count: int) -> Callable[[], np.ndarray]:
    return OffBatcher(prepare) if count > PIXELS_IN_BATCHER else prepare


# --- Decoder processes ----------------------------------------------------------------------------


_ERRORS: Final = {cls.status_code: cls for cls in (errors.PayloadTooLarge, errors.UnsupportedMediaType)}
_ROOT: Final = str(Path(__file__).resolve().parent.parent)


class DecoderProcess:
    """One ``python -m service.decoder_process``, decoding one image at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.killed = False  # its returncode stays None until the event loop has reaped it

    @classmethod
    async def start(cls, memory_mb: int) -> DecoderProcess:
        env = {
            **os.environ,
            decoder_process.MEMORY_ENV: str(memory_mb * 1024 * 1024),
            # One BLAS thread: each would reserve its own buffers under the data cap, and none is used.
            "OPENBLAS_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")])),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service.decoder_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        return cls(process)

    @property
    def alive(self) -> bool:
        return not self.killed and self.process.returncode is None

    def rss_mb(self) -> float:
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return math.inf
        lines = status.splitlines()
        return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS:")), math.inf)

    def kill(self) -> None:
        if self.alive:
            self.killed = True
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def decode(self, data: bytes, max_pixels: int) -> np.ndarray:
        """One image to float32 (28, 28); a client error is raised as the in-process decoder raises it."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(decoder_process.REQUEST.pack(max_pixels, len(data)))
            stdin.write(data)
            await stdin.drain()
            kind, size = decoder_process.ANSWER.unpack(await stdout.readexactly(decoder_process.ANSWER.size))
            payload = await stdout.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.kill()  # it died on this image: out of memory under its cap, or a crashing decoder
            raise errors.InvalidInput(errors.UNDECODABLE_IMAGE.format(reason=errors.DECODER_DIED)) from None
        except BaseException:  # cancelled (timeout, client gone): stop the work now
            self.kill()
            raise
        if kind == decoder_process.OK:
            return np.frombuffer(payload, np.float32).reshape(28, 28)
        answer = json.loads(payload)
        raise _ERRORS.get(answer["status"], errors.InvalidInput)(answer["detail"])


class DecoderLane:
    """A worker's decoder processes, the budget of pixels they may have in flight, and their deadline."""

    def __init__(self, settings: Settings) -> None:
        self.processes = settings.decoder_processes
        # The largest image the service accepts must fit in the budget on its own.
        self.budget = max(settings.decoder_budget_pixels, settings.max_image_pixels)
        self.timeout_s = settings.decoder_timeout_s
        self.memory_mb = settings.decoder_memory_mb
        self.in_flight = 0
        self._slots = asyncio.Semaphore(self.processes)
        self._idle: list[DecoderProcess] = []
        self._busy: set[DecoderProcess] = set()

    def admit(self, work: int) -> None:
        if work > self.budget:
            raise errors.PayloadTooLarge(errors.REQUEST_TOO_COSTLY.format(work=work, limit=self.budget))
        if self.in_flight + work > self.budget:
            raise errors.TooManyRequests(errors.DECODERS_BUSY.format(retry_after=RETRY_AFTER_S), RETRY_AFTER_S)

    async def decode(self, work: Work, costs: Costs) -> np.ndarray:
        """Decode every image of ``work`` in a decoder process, within the deadline."""
        total = total_work(costs, work.max_pixels)
        self.admit(total)
        self.in_flight += total
        started = False
        try:
            async with asyncio.timeout(self.timeout_s), self._slots:
                started = True
                process = self._idle.pop() if self._idle else await DecoderProcess.start(self.memory_mb)
                self._busy.add(process)
                try:
                    out = np.empty((len(work.datas), 28, 28), np.float32)
                    for i, data in enumerate(work.datas):
                        try:
                            out[i] = await process.decode(data, work.max_pixels)
                        except errors.ServiceError as exc:
                            if work.label is not None:
                                exc.detail = f"{work.label.format(i)}: {exc.detail}"
                            raise
                finally:
                    self._busy.discard(process)
                    if process.alive and process.rss_mb() <= RECYCLE_RSS_MB:
                        self._idle.append(process)
                    else:
                        process.kill()  # its memory goes back to the system with it
                return out
        except TimeoutError:
            if not started:
                raise errors.TooManyRequests(
                    errors.DECODERS_BUSY.format(retry_after=RETRY_AFTER_S), RETRY_AFTER_S
                ) from None
            raise errors.PayloadTooLarge(errors.DECODE_TOO_SLOW.format(seconds=self.timeout_s)) from None
        finally:
            self.in_flight -= total

    def close(self) -> None:
        for process in [*self._idle, *self._busy]:
            process.kill()
        self._idle.clear()


async def _until_disconnected(receive: Callable[[], Awaitable[Any]]) -> None:
    # Once the body is read, receive() returns only when the client disconnects (or the response ends).
    while (await receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.05)


class Lanes:
    """Plans each request's images and runs them in the batcher thread or in a decoder process."""

    def __init__(self, settings: Settings) -> None:
        self.light_pixels = settings.light_pixels
        self.decoders = DecoderLane(settings)

    async def classify(self, work: Work, submit: Submit, planner: Executor | None = None) -> Classified:
        """Light work through the batcher thread; costly work through a decoder process, then the batcher."""
        if sum(map(len, work.datas)) <= LIGHT_BYTES:
            try:
                return await submit(LightOrReroute(work, self.light_pixels))
            except Reroute as reroute:
                costs = reroute.costs
        else:
            loop = asyncio.get_running_loop()
            costs = await loop.run_in_executor(planner, plan, work.datas)
        images = await self._decode_while_connected(work, costs)
        return await submit(lambda: images)

    async def _decode_while_connected(self, work: Work, costs: Costs) -> np.ndarray:
        receive = RECEIVE.get()
        if receive is None:
            return await self.decoders.decode(work, costs)
        decoding = asyncio.ensure_future(self.decoders.decode(work, costs))
        gone = asyncio.ensure_future(_until_disconnected(receive))
        try:
            done, _ = await asyncio.wait({decoding, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not decoding.done():
                decoding.cancel()  # kills the decoder process at once (DecoderProcess.decode)
        if decoding not in done:
            raise ClientDisconnect()
        return decoding.result()

    def close(self) -> None:
        self.decoders.close()
