"""The request timeout: every request's deadline on one timer, instead of a timer per request.

``asyncio.timeout`` schedules a ``TimerHandle`` (a context copy and a heap push) on entry and
cancels it on exit; with a 30 s timeout the cancelled handles pile up in the loop's heap until
it is rebuilt. Measured alone, 5.0 µs a request against 1.0 µs here (``benchmarks/asgi_cost.py``
attributes 7-9 µs of a ``/predict`` to it under load). Every request of a worker has the same
timeout, so deadlines come in the order the requests do: they wait in a queue, and one timer is
set for the oldest unfinished one. A finished request only marks its entry; the timer, when it
fires, drops the finished entries, cancels the requests whose deadline has passed, and is set
again for the next one. The cancellation is asyncio.timeout's: the request's task is cancelled,
and :meth:`Deadlines.leave` tells the caller whether a ``CancelledError`` was this deadline's
(then it is a timeout) or someone else's (then it must go on up).
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Deadline:
    """One request's deadline: its task, when it ends, and what became of it."""

    __slots__ = ("task", "when", "cancelling", "done", "expired")

    def __init__(self, task: asyncio.Task[object], when: float) -> None:
        self.task = task
        self.when = when
        self.cancelling = task.cancelling()  # cancellations asked before ours (as asyncio.timeout)
        self.done = False
        self.expired = False


class _Queue:
    """The deadlines of one event loop, oldest first, and its one timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.entries: collections.deque[Deadline] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None

    def expire(self) -> None:
        self.timer = None
        now = self.loop.time()
        entries = self.entries
        while entries and (entries[0].done or entries[0].when <= now):
            entry = entries.popleft()
            if not entry.done:
                entry.expired = True
                entry.task.cancel()
        if entries:
            self.timer = self.loop.call_at(entries[0].when, self.expire)


class Deadlines:
    """Deadlines of ``seconds`` for the requests of every event loop that serves the app."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        # One queue per event loop (a test client may run the app on several); the last one
        # used is kept at hand, as one tuple so that a thread never sees half of it.
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()
        self._last: tuple[asyncio.AbstractEventLoop | None, _Queue | None] = (None, None)

    def enter(self) -> Deadline:
        """Start the current task's deadline; call :meth:`leave` with it when the task's work ends."""
        loop = asyncio.get_running_loop()
        last_loop, queue = self._last
        if last_loop is not loop or queue is None:
            queue = self._queues.get(loop)
            if queue is None:
                queue = self._queues[loop] = _Queue(loop)
            self._last = (loop, queue)
        task = asyncio.current_task()
        assert task is not None
        entry = Deadline(task, loop.time() + self.seconds)
        queue.entries.append(entry)
        if queue.timer is None:
            queue.timer = loop.call_at(entry.when, queue.expire)
        return entry

    def leave(self, entry: Deadline) -> bool:
        """End the deadline; True if it expired, so that the task's ``CancelledError`` is a timeout."""
        entry.done = True
        queue = self._last[1]
        if queue is not None and queue.loop is entry.task.get_loop():
            entries = queue.entries
            while entries and entries[0].done:
                entries.popleft()
        # As asyncio.timeout: our cancellation is taken back, and only it makes a timeout.
        return entry.expired and entry.task.uncancel() <= entry.cancelling

    async def within(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` under the current task's deadline: TimeoutError if the deadline passes first."""
        deadline = self.enter()
        try:
            result = await awaitable
        except BaseException as exc:
            if self.leave(deadline) and isinstance(exc, asyncio.CancelledError):
                raise TimeoutError from None
            raise
        self.leave(deadline)
        return result
