"""grpc_vs_http's clients and floor: each gRPC client has its own connection, and the floor answers both clients."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.grpc_vs_http import grpc_call, http_call
from harness import Server, free_port, started


def test_the_floor_answers_both_clients_and_each_grpc_client_has_its_own_connection(tmp_path: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    argv = [sys.executable, "-m", "benchmarks.bare_v2", "--port", str(http_port), "--grpc-port", str(grpc_port)]
    server = Server("floor", argv, port=http_port, log_path=tmp_path / "floor.log")
    with started(server):
        # Each call asserts the answer's batch size: the floor reads it from the request.
        calls = [grpc_call(grpc_port, batch) for batch in (1, 3, 64)]
        for call in calls:
            call()
        for batch in (1, 3, 64):
            http_call(http_port, batch)()
        # gRPC's global subchannel pool would have put all three clients on one connection.
        assert established_to(grpc_port) == len(calls)


def established_to(port: int) -> int:
    """Established TCP connections whose local end is ``port`` (the server's side), from /proc.

    grpcio listens on a dual-stack IPv6 socket, so its IPv4 connections are listed in tcp6.
    """
    # Columns: sl, local address (hex ip:port), remote address, state (01: established), ...
    rows = [row.split() for name in ("tcp", "tcp6") for row in Path("/proc/net", name).read_text().splitlines()[1:]]
    return sum(1 for row in rows if row[1].endswith(f":{port:04X}") and row[3] == "01")
