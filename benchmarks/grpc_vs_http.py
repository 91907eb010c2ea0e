"""KServe v2 over gRPC against KServe v2 over HTTP with binary tensors: time per image, side by side.

One ``python -m service`` serves both protocols (the same workers, batcher and model). tritonclient
drives each: ``tritonclient.grpc`` (raw tensor contents) and ``tritonclient.http`` with
``binary_data`` for the input and the outputs, at batch 1 and 64 and at 1 and 8 client threads.
Rounds alternate the order of the protocols, so that the machine's drift hits both alike; each
cell reports the median of its rounds. The client runs on the same cores as the server: the figures
are for comparing the two protocols, not for absolute capacity.

    python benchmarks/grpc_vs_http.py
    python benchmarks/grpc_vs_http.py --rounds 5 --seconds 4 --markdown docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if not __package__:  # run as `python benchmarks/<script>.py`: see benchmarks/__init__.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.common import git_commit, machine, update_section  # noqa: E402
from harness import HOST, ROOT, Server, free_port, install_cleanup, started  # noqa: E402

MODEL = "mnist-improved"
BATCHES = (1, 64)
CONCURRENCY = (1, 8)
#: gRPC may be this much slower per image and still count as "not slower": a margin for the drift
#: between rounds that alternating them does not cancel (the table shows each cell's spread).
NOISE = 0.05

Call = Callable[[], None]


@dataclass(frozen=True)
class Cell:
    protocol: str
    batch: int
    concurrency: int
    us_per_image: float
    requests_per_s: float
    spread: float  # slowest round / fastest round


def images(batch: int) -> np.ndarray:
    """MNIST-like FP32 input: the committed sample's digits, repeated to ``batch``."""
    with np.load(ROOT / "tests" / "data" / "mnist_sample.npz") as data:
        digits = data["images"]
    return (np.resize(digits, (batch, 28, 28)).astype(np.float32) / 255).reshape(batch, 28, 28, 1)


def grpc_call(port: int, batch: int) -> Call:
    import tritonclient.grpc as client_module

    client = client_module.InferenceServerClient(f"{HOST}:{port}", channel_args=own_connection())
    tensor = client_module.InferInput("image", [batch, 28, 28, 1], "FP32")
    tensor.set_data_from_numpy(images(batch))
    outputs = [client_module.InferRequestedOutput("probabilities"), client_module.InferRequestedOutput("digit")]

    def call() -> None:
        result = client.infer(MODEL, [tensor], outputs=outputs)
        assert result.as_numpy("digit").shape == (batch,)

    return call


def own_connection() -> list[tuple[str, int]]:
    """tritonclient.grpc's channel options, and a connection of the client's own.

    Without it, gRPC's channels to one address share one connection in the process (its global
    subchannel pool): the 8 threads would be one client on one connection, served by one worker,
    while HTTP's 8 clients have 8 connections over both. 8 clients of a service are 8 processes
    or machines, each with its connection.
    """
    from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

    keepalive = KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.use_local_subchannel_pool", 1),
    ]


def http_call(port: int, batch: int) -> Call:
    import tritonclient.http as client_module

    client = client_module.InferenceServerClient(f"{HOST}:{port}", connection_timeout=60, network_timeout=60)
    tensor = client_module.InferInput("image", [batch, 28, 28, 1], "FP32")
    tensor.set_data_from_numpy(images(batch), binary_data=True)
    outputs = [
        client_module.InferRequestedOutput("probabilities", binary_data=True),
        client_module.InferRequestedOutput("digit", binary_data=True),
    ]

    def call() -> None:
        result = client.infer(MODEL, [tensor], outputs=outputs)
        assert result.as_numpy("digit").shape == (batch,)

    return call


def measure(make: Callable[[], Call], concurrency: int, seconds: float) -> tuple[int, float]:
    """Requests done by ``concurrency`` threads (one client each) in about ``seconds``; and the time taken."""
    counts = [0] * concurrency
    errors: list[BaseException] = []
    # Every thread connects and warms up first; then all start together.
    start = threading.Barrier(concurrency + 1)
    window = [0.0]

    def worker(index: int) -> None:
        # tritonclient.http's gevent client works only in the thread that made it.
        try:
            call = make()
            call()
        except BaseException as exc:
            errors.append(exc)
            start.abort()
            return
        start.wait()
        try:
            while time.perf_counter() < window[0]:
                call()
                counts[index] += 1
        except BaseException as exc:  # reported below, after the threads have joined
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    try:
        window[0] = time.perf_counter() + 3600  # set for real just below, once everyone is ready
        start.wait(120)
    except threading.BrokenBarrierError:
        pass
    began = time.perf_counter()
    window[0] = began + seconds
    for thread in threads:
        thread.join(seconds + 60)
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {errors[0]!r}")
    return sum(counts), elapsed


def run(http_port: int, grpc_port: int, rounds: int, seconds: float) -> list[Cell]:
    makers = {
        "gRPC": lambda batch: lambda: grpc_call(grpc_port, batch),
        "HTTP binary": lambda batch: lambda: http_call(http_port, batch),
    }
    samples: dict[tuple[str, int, int], list[tuple[float, float]]] = {}
    for round_ in range(rounds):
        order = list(makers) if round_ % 2 == 0 else list(reversed(makers))
        for batch in BATCHES:
            for concurrency in CONCURRENCY:
                for protocol in order:
                    done, elapsed = measure(makers[protocol](batch), concurrency, seconds)
                    us = elapsed / (done * batch) * 1e6
                    samples.setdefault((protocol, batch, concurrency), []).append((us, done / elapsed))
                    print(f"round {round_ + 1}: {protocol:<11} batch {batch:>2} x{concurrency}: {us:8.1f} us/image")
    return [
        Cell(
            p,
            b,
            c,
            statistics.median(s[0] for s in v),
            statistics.median(s[1] for s in v),
            max(s[0] for s in v) / min(s[0] for s in v),
        )
        for (p, b, c), v in samples.items()
    ]


def report(service: list[Cell], floor: list[Cell], command: str, rounds: int, seconds: float) -> tuple[str, bool]:
    """The table, and whether gRPC holds: not slower per image, or no slower beyond its transport's floor."""
    cells = {(c.protocol, c.batch, c.concurrency): c for c in service}
    bare = {(c.protocol, c.batch, c.concurrency): c for c in floor}
    lines = [
        f"Command: `{command}` ({rounds} rounds of {seconds:g} s per cell, median shown). "
        f"Commit {git_commit()}; {machine()}.",
        "",
        "| batch | client threads | gRPC us/image | HTTP binary us/image | gRPC / HTTP | floor gRPC / HTTP us "
        "| service beyond floor gRPC / HTTP us | gRPC req/s | HTTP req/s | spread gRPC / HTTP |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    slower = []
    beyond_floor_slower = []
    for batch in BATCHES:
        for concurrency in CONCURRENCY:
            key = (batch, concurrency)
            g, h = cells[("gRPC", *key)], cells[("HTTP binary", *key)]
            fg, fh = bare[("gRPC", *key)], bare[("HTTP binary", *key)]
            ratio = g.us_per_image / h.us_per_image
            own_g, own_h = g.us_per_image - fg.us_per_image, h.us_per_image - fh.us_per_image
            if ratio > 1 + NOISE:
                slower.append(key)
                if own_g > own_h * (1 + NOISE):
                    beyond_floor_slower.append(key)
            lines.append(
                f"| {batch} | {concurrency} | {g.us_per_image:.1f} | {h.us_per_image:.1f} | {ratio:.2f} "
                f"| {fg.us_per_image:.1f} / {fh.us_per_image:.1f} | {own_g:.1f} / {own_h:.1f} "
                f"| {g.requests_per_s:.0f} | {h.requests_per_s:.0f} | {g.spread:.2f} / {h.spread:.2f} |"
            )
    named = ", ".join(f"batch {b} x{c}" for b, c in slower) or "none"
    lines += [
        "",
        "Floor: `benchmarks/bare_v2.py`, the same clients against a bare gRPC and a bare HTTP `ModelInfer` that",
        "answer zeros (no model, no checks). Beyond floor: the service's time per image less its floor's.",
        "Spread: the slowest round's time per image over the fastest's, for each protocol.",
        f"gRPC not slower per image than HTTP binary (within {NOISE:.0%}): "
        + ("holds." if not slower else f"does NOT hold at {named}."),
    ]
    if slower:
        verdict = "holds" if not beyond_floor_slower else "does NOT hold"
        lines.append(f"There, the service's own gRPC path is no slower than its HTTP path beyond the floor: {verdict}.")
    return "\n".join(lines), not beyond_floor_slower


def measure_server(name: str, argv: list[str], http_port: int, grpc_port: int, args: argparse.Namespace) -> list[Cell]:
    server = Server(name, argv, {"DIGITS_LOG_LEVEL": "warning"}, log_path=args.log, port=http_port)
    with started(server):
        print(f"--- {name}")
        return run(http_port, grpc_port, args.rounds, args.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one measurement")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes")
    parser.add_argument("--markdown", type=Path, help="write the table into this file's grpc-vs-http section")
    parser.add_argument("--log", type=Path, default=Path("/tmp/grpc_vs_http-service.log"))
    args = parser.parse_args(argv)
    install_cleanup()
    http_port, grpc_port = free_port(), free_port()
    service = [sys.executable, "-m", "service", "--port", str(http_port), "--grpc-port", str(grpc_port)]
    service += ["--workers", str(args.workers)]
    cells = measure_server("service", service, http_port, grpc_port, args)
    floor_argv = [sys.executable, "-m", "benchmarks.bare_v2", "--port", str(http_port), "--grpc-port", str(grpc_port)]
    floor = measure_server("floor", floor_argv, http_port, grpc_port, args)
    command = "python benchmarks/grpc_vs_http.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    table, holds = report(cells, floor, command.strip(), args.rounds, args.seconds)
    print(table)
    if args.markdown:
        update_section(args.markdown, "grpc-vs-http", table)
    return 0 if holds else 1


if __name__ == "__main__":
    raise SystemExit(main())
