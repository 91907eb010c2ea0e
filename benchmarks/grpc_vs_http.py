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

    client = client_module.InferenceServerClient(f"{HOST}:{port}")
    tensor = client_module.InferInput("image", [batch, 28, 28, 1], "FP32")
    tensor.set_data_from_numpy(images(batch))
    outputs = [client_module.InferRequestedOutput("probabilities"), client_module.InferRequestedOutput("digit")]

    def call() -> None:
        result = client.infer(MODEL, [tensor], outputs=outputs)
        assert result.as_numpy("digit").shape == (batch,)

    return call


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


def report(cells: list[Cell], command: str, rounds: int, seconds: float) -> tuple[str, bool]:
    by_key = {(c.protocol, c.batch, c.concurrency): c for c in cells}
    lines = [
        f"Command: `{command}` ({rounds} rounds of {seconds:g} s per cell, median shown). "
        f"Commit {git_commit()}; {machine()}.",
        "",
        "| batch | client threads | gRPC us/image | HTTP binary us/image | gRPC / HTTP | gRPC req/s | HTTP req/s "
        "| spread gRPC / HTTP |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    holds = True
    for batch in BATCHES:
        for concurrency in CONCURRENCY:
            g, h = by_key[("gRPC", batch, concurrency)], by_key[("HTTP binary", batch, concurrency)]
            ratio = g.us_per_image / h.us_per_image
            holds &= ratio <= 1 + NOISE
            lines.append(
                f"| {batch} | {concurrency} | {g.us_per_image:.1f} | {h.us_per_image:.1f} | {ratio:.2f} "
                f"| {g.requests_per_s:.0f} | {h.requests_per_s:.0f} | {g.spread:.2f} / {h.spread:.2f} |"
            )
    verdict = "holds" if holds else "does NOT hold"
    lines += [
        "",
        "Spread: the slowest round's time per image over the fastest's, for each protocol.",
        f"gRPC not slower per image than HTTP binary (within {NOISE:.0%}): {verdict}.",
    ]
    return "\n".join(lines), holds


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
    argv_ = [sys.executable, "-m", "service", "--port", str(http_port), "--grpc-port", str(grpc_port)]
    argv_ += ["--workers", str(args.workers)]
    server = Server("service", argv_, {"DIGITS_LOG_LEVEL": "warning"}, log_path=args.log, port=http_port)
    with started(server):
        cells = run(http_port, grpc_port, args.rounds, args.seconds)
    command = "python benchmarks/grpc_vs_http.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    table, holds = report(cells, command.strip(), args.rounds, args.seconds)
    print(table)
    if args.markdown:
        update_section(args.markdown, "grpc-vs-http", table)
    return 0 if holds else 1


if __name__ == "__main__":
    raise SystemExit(main())
