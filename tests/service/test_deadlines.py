"""service/deadlines.py: the request timeout on one timer, answering as asyncio.timeout does."""

from __future__ import annotations

import asyncio

import pytest

from service.deadlines import Deadlines


async def within(deadlines: Deadlines, seconds: float) -> str:
    """Sleep ``seconds`` under a deadline, as the middleware runs a request: "done" or "timeout"."""
    entry = deadlines.enter()
    try:
        await asyncio.sleep(seconds)
    except BaseException as exc:
        if deadlines.leave(entry) and isinstance(exc, asyncio.CancelledError):
            return "timeout"
        raise
    deadlines.leave(entry)
    return "done"


def test_each_request_times_out_at_its_own_deadline() -> None:
    async def main() -> tuple[list[str], list[float]]:
        deadlines = Deadlines(0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        ended: list[float] = []

        async def one(delay: float, seconds: float) -> str:
            await asyncio.sleep(delay)
            result = await within(deadlines, seconds)
            ended.append(loop.time() - started)
            return result

        # Started at 0, 0.05 and 0.1 s: the first and the last run over 0.2 s, the middle one not.
        results = await asyncio.gather(one(0, 5), one(0.05, 0.01), one(0.1, 5))
        return list(results), sorted(ended)

    results, ended = asyncio.run(main())
    assert results == ["timeout", "done", "timeout"]
    assert ended[1] == pytest.approx(0.2, abs=0.05)  # the first, at its deadline
    assert ended[2] == pytest.approx(0.3, abs=0.05)  # the last, at its own, not at the first's


def test_finished_requests_leave_nothing_behind() -> None:
    async def main() -> Deadlines:
        deadlines = Deadlines(30)
        assert [await within(deadlines, 0) for _ in range(1000)] == ["done"] * 1000
        return deadlines

    queue = asyncio.run(main())._last[1]
    assert queue is not None and len(queue.entries) == 0


def test_another_cancellation_is_not_a_timeout() -> None:
    async def main() -> None:
        deadlines = Deadlines(30)
        task = asyncio.ensure_future(within(deadlines, 5))
        await asyncio.sleep(0.01)
        task.cancel()  # a client gone, a shutdown: it must go on up as a cancellation
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_cancellation_taken_back_leaves_the_task_uncancelled() -> None:
    async def main() -> int:
        deadlines = Deadlines(0.05)
        assert await within(deadlines, 1) == "timeout"
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0.01)  # not cancelled again: the deadline's cancellation was taken back
        return task.cancelling()

    assert asyncio.run(main()) == 0


def test_deadlines_work_on_each_event_loop_in_turn() -> None:
    deadlines = Deadlines(0.05)
    # A test client runs the app on a new loop each time: the timer of a closed loop must not stop the next.
    for _ in range(3):
        assert asyncio.run(within(deadlines, 1)) == "timeout"
        assert asyncio.run(within(deadlines, 0)) == "done"
