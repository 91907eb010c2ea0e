"""Worker processes that each own a listening socket (SO_REUSEPORT), and a parent that keeps them up.

uvicorn's own ``--workers`` shares one listening socket between the workers. Under load with
keep-alive connections, whichever worker wakes first accepts nearly every connection, and the
other one idles: measured here with 32 hey connections, one worker took 99% of the requests.
With one socket per worker and SO_REUSEPORT, the kernel spreads new connections across the
workers' sockets by hash, so every worker gets its share.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event as EventType
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger("service")

#: How often the supervisor looks at its workers.
POLL_S = 0.2
#: The delay before the second restart of a worker that keeps dying young; it doubles with each
#: further one, up to MAX_RESTART_DELAY_S. A worker that crashes on every request (a bad model
#: input, the OOM killer) is then restarted 6 times in the first half minute, not 150 times.
RESTART_DELAY_S = 0.5
MAX_RESTART_DELAY_S = 30.0
#: A worker that lived this long was healthy: its slot's next restart is immediate again.
STABLE_AFTER_S = 60.0

#: Connections the kernel queues per worker socket before accept(): uvicorn's own default,
#: enough for a burst of new connections while a worker is busy.
LISTEN_BACKLOG = 2048


def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """A uvicorn server that tells the supervisor once its start-up (model load, warm-up) succeeded."""

    def __init__(self, config: uvicorn.Config, started: EventType) -> None:
        super().__init__(config)
        self.started_event = started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.started_event.set()


def _worker(config_kwargs: dict[str, Any], started: EventType) -> None:
    """One worker process: its own socket on the shared port, and a uvicorn server."""
    sock = bind(config_kwargs["host"], config_kwargs["port"], reuse_port=True)
    _Server(uvicorn.Config(**config_kwargs), started).run(sockets=[sock])


class Backoff:
    """How long to wait before restarting one worker slot: 0 at first, then doubling while its workers die young."""

    def __init__(
        self, first_s: float = RESTART_DELAY_S, most_s: float = MAX_RESTART_DELAY_S, stable_s: float = STABLE_AFTER_S
    ) -> None:
        self.first_s, self.most_s, self.stable_s = first_s, most_s, stable_s
        self.restarts = 0

    def delay(self, lived_s: float) -> float:
        """The wait before the next restart, for a worker that died after ``lived_s`` seconds."""
        if lived_s >= self.stable_s:
            self.restarts = 0
        delay = 0.0 if self.restarts == 0 else min(self.most_s, self.first_s * 2 ** (self.restarts - 1))
        self.restarts += 1
        return delay


WorkerTarget = Callable[[dict[str, Any], EventType], None]


class Supervisor:
    """Starts ``workers`` processes, replaces any that die, and stops them all on SIGTERM/SIGINT."""

    def __init__(
        self, config_kwargs: dict[str, Any], workers: int, stop_timeout_s: float, target: WorkerTarget | None = None
    ) -> None:
        self.config_kwargs = config_kwargs
        #: What each worker process runs (a uvicorn server; tests pass a stand-in).
        self.target: WorkerTarget = target or _worker
        self.workers = workers
        self.stop_timeout_s = stop_timeout_s
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self.started: dict[int, EventType] = {}
        self.stopping = False
        self.backoffs = [Backoff() for _ in range(workers)]
        self.born: list[float] = []
        #: When each dead worker's slot is restarted (monotonic time), once it has been scheduled.
        self.restart_at: dict[int, float] = {}

    def _spawn(self) -> multiprocessing.process.BaseProcess:
        started = self.context.Event()
        process = self.context.Process(target=self.target, args=(self.config_kwargs, started), name="digits-worker")
        process.start()
        assert process.pid is not None
        self.started[process.pid] = started
        log.info("started worker process %d", process.pid)
        return process

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        # Fail fast, with a clear message, if the port is taken (by anything that did not opt in
        # to SO_REUSEPORT, which is everything else).
        bind(self.config_kwargs["host"], self.config_kwargs["port"], reuse_port=False).close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.processes = [self._spawn() for _ in range(self.workers)]
        self.born = [time.monotonic()] * self.workers
        status = 0
        while not self.stopping:
            time.sleep(POLL_S)
            for i, process in enumerate(self.processes):
                if process.is_alive() or self.stopping:
                    continue
                assert process.pid is not None
                now = time.monotonic()
                if i in self.restart_at:
                    if now >= self.restart_at[i]:
                        del self.restart_at[i]
                        self.processes[i] = self._spawn()
                        self.born[i] = time.monotonic()
                    continue
                started = self.started.pop(process.pid).is_set()
                if not started and (process.exitcode or 0) > 0:
                    # It exited with an error before it finished starting (model load or warm-up
                    # failed): a new one would too. Killed by a signal (the OOM killer, say), it is replaced.
                    log.error("worker %d failed to start (exit code %s): stopping", process.pid, process.exitcode)
                    self.stopping, status = True, 1
                    break
                delay = self.backoffs[i].delay(now - self.born[i])
                log.warning(
                    "worker %d exited (code %s): starting a new one in %.1f s", process.pid, process.exitcode, delay
                )
                self.restart_at[i] = now + delay
        self._stop_all()
        return status

    def _stop_all(self) -> None:
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self.processes:
            if process.is_alive():
                log.warning("worker %s did not stop in %.0f s: killing it", process.pid, self.stop_timeout_s)
                process.kill()
                process.join()
