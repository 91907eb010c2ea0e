"""A server under test: any command serving HTTP on a loopback port, run in its own process group."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.client import HOST, free_port, request, status_of
from harness.processes import ProcessMemory, descendants, kill_group, process_memory, spawn

ROOT = Path(__file__).resolve().parent.parent
#: How much of a server's log an error message carries when it fails to start.
LOG_TAIL_CHARS = 3000


@dataclass
class Server:
    """One HTTP server under test, started as a subprocess in its own process group.

    ``env`` is laid over this process's environment; with ``inherit_settings=False`` no ``DIGITS_*``
    variable leaks in from the caller's, so only ``env`` configures the service. ``port`` is where
    ``argv`` makes it listen (``free_port()`` chooses one).
    """

    name: str
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_path: str = "/health/ready"
    log_path: Path | None = None
    port: int = 0
    cwd: Path = ROOT  # where `python -m service` finds its package: a checkout of another commit, say
    process: subprocess.Popen[bytes] | None = None
    startup_s: float = float("nan")
    inherit_settings: bool = True
    unset_env: tuple[str, ...] = ()  # variables of this process's environment that the server must not see
    #: Seconds ``stop`` waits after SIGTERM before it kills the whole group.
    stop_grace_s: float = 30.0
    _started: float = field(default=float("nan"), init=False, repr=False)

    def start(self, timeout_s: float = 180.0, *, wait_ready: bool = True) -> Server:
        inherited = {
            k: v
            for k, v in os.environ.items()
            if (self.inherit_settings or not k.startswith("DIGITS_")) and k not in self.unset_env
        }
        env = {**inherited, **self.env}
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self._started = time.monotonic()
        try:
            self.process = spawn(
                self.argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            if not isinstance(log, int):
                log.close()
        if wait_ready:
            self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Wait until ``ready_path`` answers 200; stop the server and raise if it exits or takes too long."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while status_of(self.port, self.ready_path) != 200:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.process.returncode} before it was ready{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} was not ready after {timeout_s:.0f} s{self._log_tail()}")
            time.sleep(0.1)
        self.startup_s = time.monotonic() - self._started

    def wait_workers(self, count: int, timeout_s: float = 90.0) -> None:
        """Wait until ``count`` uvicorn workers have finished starting: readiness answers once *one* has."""
        deadline = time.monotonic() + timeout_s
        while self.logs().count("Application startup complete") < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {count} workers started in {timeout_s:.0f} s{self._log_tail()}")
            time.sleep(0.05)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Signal the main process only, as a container runtime or systemd does."""
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """SIGTERM to the main process (as a container runtime sends it), then SIGKILL to the whole group.

        The main process stops its own workers; whatever is left after ``stop_grace_s`` (or outlives
        it) is killed with the group, so no worker survives the test or the benchmark round.
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=self.stop_grace_s)
        kill_group(self.process)

    def memory(self) -> list[ProcessMemory]:
        """Memory of the server process and of every process below it, each with its role."""
        assert self.process is not None
        found = []
        for pid in descendants(self.process.pid):
            memory = process_memory(pid)
            if memory is None:
                continue
            if pid == self.process.pid:
                role = "main"
            elif "multiprocessing.spawn" in memory.command or "multiprocessing.forkserver" in memory.command:
                role = "worker"  # uvicorn --workers N: spawned processes that each serve requests
            else:
                role = "helper"  # multiprocessing's resource tracker and the like
            found.append(dataclasses.replace(memory, role=role))
        return found

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        return request(self.port, method, path, body, headers, timeout_s)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.is_file() else ""

    def _log_tail(self) -> str:
        text = self.logs()
        return f"\n--- end of {self.log_path}:\n{text[-LOG_TAIL_CHARS:]}" if text else ""

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def service_argv(port: int, *args: str) -> list[str]:
    """Exactly how ``python -m service`` starts, on ``port``."""
    return [sys.executable, "-m", "service", "--port", str(port), *args]


class ServiceServer(Server):
    """``python -m service`` with extra arguments and ``DIGITS_*`` variables, logging to ``log_path``."""

    def __init__(
        self,
        log_path: Path | None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        inherit_settings: bool = True,
        cwd: Path = ROOT,
        name: str = "service",
    ) -> None:
        port = port or free_port()
        super().__init__(
            name,
            service_argv(port, *args),
            # Unbuffered, so that a test reading the log sees every line the server has written. No
            # gRPC unless asked (--grpc-port or DIGITS_GRPC_PORT): its default port is one per machine.
            env={"PYTHONUNBUFFERED": "1", "DIGITS_GRPC_PORT": "0", **(env or {})},
            log_path=log_path,
            port=port,
            cwd=cwd,
            inherit_settings=inherit_settings,
            # A multiprocess-metrics directory left in the caller's environment would be shared with it.
            unset_env=("PROMETHEUS_MULTIPROC_DIR",),
        )
        self.args = list(args)

    def start(self, timeout_s: float = 90.0, *, wait_ready: bool = True) -> ServiceServer:
        super().start(timeout_s, wait_ready=wait_ready)
        return self


@contextlib.contextmanager
def started(server: Server, timeout_s: float = 180.0) -> Iterator[Server]:
    server.start(timeout_s)
    try:
        yield server
    finally:
        server.stop()
