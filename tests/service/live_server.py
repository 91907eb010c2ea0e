"""A real ``python -m service`` process on a free loopback port, for tests that need real sockets.

Signals, the listener, Content-Length handling and worker processes only exist in a real
server, not behind a TestClient. Every wait here is bounded, and the whole process group is
killed when the test is done, however it ends.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import HOST as HOST
from benchmarks.common import free_port as free_port

ROOT = Path(__file__).resolve().parent.parent.parent


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection: status, headers (lower-cased names) and body."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def status_of(port: int, path: str, timeout_s: float = 2.0) -> int | None:
    """The status of ``GET path``, or None if nothing answers."""
    try:
        return request(port, "GET", path, timeout_s=timeout_s)[0]
    except OSError:
        return None


def is_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0


@dataclass
class LiveServer:
    """``python -m service`` with extra arguments and ``DIGITS_*`` variables; logs go to a file."""

    log_path: Path
    args: list[str] = field(default_factory=list)
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    #: False: only ``env`` sets DIGITS_* variables; none leak in from the caller's environment.
    inherit_settings: bool = True

    def start(self, wait_ready: bool = True, timeout_s: float = 90.0) -> LiveServer:
        inherited = {k: v for k, v in os.environ.items() if self.inherit_settings or not k.startswith("DIGITS_")}
        # No gRPC unless a test asks (--grpc-port or DIGITS_GRPC_PORT): its default port is one per machine.
        env = {"DIGITS_GRPC_PORT": "0", **inherited, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        argv = [sys.executable, "-m", "service", "--port", str(self.port), *self.args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait_ready:
            self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while status_of(self.port, "/health/ready") != 200:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.logs()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s:\n{self.logs()[-3000:]}")
            time.sleep(0.1)

    def wait_workers(self, count: int, timeout_s: float = 90.0) -> None:
        """Wait until ``count`` workers have finished starting: readiness answers once *one* has."""
        deadline = time.monotonic() + timeout_s
        while self.logs().count("Application startup complete") < count:
            if time.monotonic() > deadline:
                tail = self.logs()[-3000:]
                raise RuntimeError(f"fewer than {count} workers started in {timeout_s:.0f} s:\n{tail}")
            time.sleep(0.05)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Signal the main process only, as a container runtime or systemd does."""
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL for the whole process group (workers included) if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        return request(self.port, method, path, body, headers, timeout_s)


@contextlib.contextmanager
def live_server(log_path: Path, *args: str, env: Mapping[str, str] | None = None) -> Iterator[LiveServer]:
    server = LiveServer(log_path, list(args), dict(env or {}))
    try:
        yield server.start()
    finally:
        server.stop()
