"""The harness that tests and benchmark scripts share: real servers on loopback ports, and HTTP to them.

A server under test is a subprocess in its own process group on a free 127.0.0.1 port. Every wait
here is bounded in time, and every process started here is stopped with its whole group, however
the test or script ends. Only the standard library is used, so a benchmark script can import this
before anything heavy.

- ``harness.client``: one request, readiness probes, a free port, multipart bodies.
- ``harness.processes``: starting and stopping process groups, their memory and CPU from /proc.
- ``harness.server``: ``Server`` (any command that serves HTTP) and ``ServiceServer``
  (``python -m service`` itself).
"""

from harness.client import (
    BOUNDARY,
    HOST,
    MULTIPART_CONTENT_TYPE,
    free_port,
    http_status,
    is_listening,
    multipart_body,
    post,
    request,
    status_of,
)
from harness.processes import (
    CpuMeter,
    ProcessMemory,
    busy_cores,
    busy_ticks,
    descendants,
    install_cleanup,
    process_memory,
    spawn,
    terminate,
)
from harness.server import ROOT, Server, ServiceServer, service_argv, started

__all__ = [
    "BOUNDARY",
    "HOST",
    "MULTIPART_CONTENT_TYPE",
    "ROOT",
    "CpuMeter",
    "ProcessMemory",
    "Server",
    "ServiceServer",
    "busy_cores",
    "busy_ticks",
    "descendants",
    "free_port",
    "http_status",
    "install_cleanup",
    "is_listening",
    "multipart_body",
    "post",
    "process_memory",
    "request",
    "service_argv",
    "spawn",
    "started",
    "status_of",
    "terminate",
]
