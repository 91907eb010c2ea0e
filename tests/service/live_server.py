"""A real ``python -m service`` process on a free loopback port, for tests that need real sockets.

Signals, the listener, Content-Length handling and worker processes only exist in a real
server, not behind a TestClient. The server is the shared harness's ``ServiceServer`` (the one the
benchmarks start too): every wait is bounded, and the whole process group is killed when the
test is done, however it ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from harness import HOST, ServiceServer, free_port, is_listening, request, status_of

#: The name the tests know it by.
LiveServer = ServiceServer

__all__ = ["HOST", "LiveServer", "free_port", "is_listening", "live_server", "request", "status_of"]


@contextlib.contextmanager
def live_server(log_path: Path, *args: str, env: Mapping[str, str] | None = None) -> Iterator[LiveServer]:
    server = LiveServer(log_path, list(args), dict(env or {}))
    try:
        yield server.start()
    finally:
        server.stop()
