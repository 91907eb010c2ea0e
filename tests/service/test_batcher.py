"""The Batcher on its own: batching, limits, errors and cancellation, with a classifier that records its calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from service import errors
from service.inference import Batcher


class Recorder:
    """A stand-in for Classifier: probabilities say which image they came from; runs are recorded."""

    def __init__(self, fail: bool = False) -> None:
        self.runs: list[int] = []
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.gate.wait(10)
        if self.fail:
            raise RuntimeError("the model broke")
        self.runs.append(len(images))
        probabilities = np.zeros((len(images), 10), np.float32)
        probabilities[:, 0] = images[:, 0, 0]  # carries each image's marker back
        return probabilities, images[:, 0, 1].copy()


def images(marker: float, n: int = 1) -> np.ndarray:
    out = np.zeros((n, 28, 28), np.float32)
    out[:, 0, 0] = marker
    out[:, 0, 1] = marker / 2
    return out


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def start(classifier: Any, **kwargs: Any) -> Batcher:
    batcher = Batcher(classifier, max_size=kwargs.pop("max_size", 64), max_delay_s=kwargs.pop("max_delay_s", 0.0))
    batcher.start()
    return batcher


@pytest.fixture
def batcher(recorder: Recorder) -> Iterator[Batcher]:
    batcher = start(recorder)
    yield batcher
    batcher.stop()


def test_each_request_gets_its_own_results(batcher: Batcher) -> None:
    def work(i: int) -> Any:
        return lambda: images(i / 10, 2)

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(batcher.submit(work(i)) for i in range(5))))

    for i, (inputs, probabilities, scores) in enumerate(asyncio.run(main())):
        assert inputs.shape == (2, 28, 28)
        assert probabilities[:, 0] == pytest.approx([i / 10] * 2)
        assert scores == pytest.approx([i / 20] * 2)


def test_waiting_requests_share_one_run(recorder: Recorder, batcher: Batcher) -> None:
    async def main() -> None:
        recorder.gate.clear()  # hold the first run, so the others queue behind it
        first = batcher.submit(lambda: images(0.1))
        await asyncio.sleep(0.1)
        rest = [batcher.submit(lambda: images(0.2, 3)) for _ in range(4)]
        recorder.gate.set()
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert recorder.runs == [1, 12]


def test_a_batch_stays_within_max_size(recorder: Recorder) -> None:
    batcher = start(recorder, max_size=4, max_delay_s=0.05)
    try:

        async def main() -> None:
            await asyncio.gather(*(batcher.submit(lambda: images(0.5, 3)) for _ in range(3)))

        asyncio.run(main())
    finally:
        batcher.stop()
    assert recorder.runs == [3, 3, 3]  # 3 + 3 would pass 4: each job starts the next batch


def test_one_large_request_runs_in_pieces_of_the_run_limit(recorder: Recorder, batcher: Batcher) -> None:
    async def main() -> Any:
        return await batcher.submit(lambda: images(0.3, 150))

    _, probabilities, _ = asyncio.run(main())
    assert recorder.runs == [64, 64, 22] and len(probabilities) == 150


def test_errors_stay_with_their_request(batcher: Batcher) -> None:
    def refused() -> np.ndarray:
        raise errors.InvalidInput(errors.NO_DIGIT)

    def bug() -> np.ndarray:
        raise ZeroDivisionError

    async def main() -> list[Any]:
        submitted = [batcher.submit(refused), batcher.submit(bug), batcher.submit(lambda: images(0.4))]
        return list(await asyncio.gather(*submitted, return_exceptions=True))

    refusal, failure, fine = asyncio.run(main())
    assert isinstance(refusal, errors.InvalidInput) and refusal.detail == errors.NO_DIGIT
    assert isinstance(failure, errors.InvalidInput) and "could not be decoded" in failure.detail
    assert fine[1][0, 0] == pytest.approx(0.4)


def test_a_model_failure_is_a_503_and_the_thread_lives_on() -> None:
    recorder = Recorder(fail=True)
    batcher = start(recorder)
    try:

        async def main() -> Any:
            with pytest.raises(errors.Unavailable, match="failed to run"):
                await batcher.submit(lambda: images(0.1))
            recorder.fail = False
            return await batcher.submit(lambda: images(0.7))

        assert asyncio.run(main())[1][0, 0] == pytest.approx(0.7)
    finally:
        batcher.stop()


def test_cancelled_work_is_never_prepared(recorder: Recorder, batcher: Batcher) -> None:
    prepared: list[str] = []

    async def main() -> None:
        recorder.gate.clear()
        first = batcher.submit(lambda: images(0.1))
        await asyncio.sleep(0.1)
        abandoned = batcher.submit(lambda: prepared.append("abandoned") or images(0.2))  # type: ignore[func-returns-value]
        abandoned.cancel()
        recorder.gate.set()
        await first
        await batcher.submit(lambda: images(0.3))

    asyncio.run(main())
    assert prepared == []
