"""Peak RSS of the service's worker processes under a short single-image and batch load.

    .venv/bin/python benchmarks/memory.py                      # default service, 4 s per load
    .venv/bin/python benchmarks/memory.py --env MALLOC_ARENA_MAX=2 --repeat 3
    .venv/bin/python benchmarks/memory.py --timing             # Classifier.predict timings, in process

Starts ``python -m service`` (its defaults: two workers) on a free loopback port, reads each
worker's VmHWM/VmRSS (``/proc/PID/status``) after start-up, then loads ``POST /predict`` with one
28x28 MNIST PNG from ``--clients`` threads, then ``POST /predict/batch`` with 256 different MNIST
PNGs per request from ``--batch-clients`` threads, reading the memory after each load. VmHWM is
the high-water mark, as benchmarks/run.py reports it; RssAnon/RssFile split the final resident set
into heap (malloc, onnxruntime's arena, numpy) and mapped files (shared libraries).

``--timing`` instead times ``Classifier.predict`` in this process on batches of 1, 64 and 256, and
256 images in runs of 64 as the batcher makes them (best of ``--timing-repeat`` runs of
``timeit``): the cost that a memory setting must not raise.
Only 127.0.0.1 is used; the server's process group is stopped at exit.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import sys
import threading
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

if not __package__:  # run as `python benchmarks/<script>.py`: see benchmarks/__init__.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.common import load_test_digits, service_default_model
from harness import HOST, MULTIPART_CONTENT_TYPE, Server, free_port, install_cleanup, multipart_body


def worker_memory(server: Server) -> dict[int, dict[str, float]]:
    """VmHWM, VmRSS, RssAnon and RssFile in MB of every worker process of ``server``."""
    return {
        m.pid: {"VmHWM": m.peak_rss_mb, "VmRSS": m.rss_mb, "RssAnon": m.anon_mb, "RssFile": m.file_mb}
        for m in server.memory()
        if m.role == "worker"
    }


def load(port: int, path: str, body: bytes, clients: int, duration_s: float) -> tuple[int, int]:
    """POST ``body`` to ``path`` from ``clients`` keep-alive connections for ``duration_s``: (ok, failed)."""
    counts = [0, 0]
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s

    def client() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=60)
        ok = failed = 0
        try:
            while time.monotonic() < deadline:
                connection.request("POST", path, body=body, headers={"Content-Type": MULTIPART_CONTENT_TYPE})
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    ok += 1
                else:
                    failed += 1
        except OSError:
            failed += 1
        finally:
            connection.close()
            with lock:
                counts[0] += ok
                counts[1] += failed

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts[0], counts[1]


def fmt(memory: dict[int, dict[str, float]]) -> str:
    return "; ".join(
        f"pid {pid}: " + " ".join(f"{key} {value:.1f}" for key, value in values.items())
        for pid, values in sorted(memory.items())
    )


def measure(args: argparse.Namespace, single: bytes, batch: bytes) -> dict[str, Any]:
    port = free_port()
    env = dict(item.split("=", 1) for item in args.env)
    argv = [sys.executable, "-m", "service", "--port", str(port)]
    server = Server("service", argv, env={"DIGITS_ACCESS_LOG": "false", **env}, port=port)
    result: dict[str, Any] = {"env": env}
    with server:
        result["started"] = worker_memory(server)
        print(f"  after start-up: {fmt(result['started'])}", file=sys.stderr)
        ok, failed = load(port, "/predict", single, args.clients, args.duration)
        result["single"] = worker_memory(server)
        result["single_requests"] = (ok, failed)
        print(f"  after /predict ({ok} ok, {failed} failed): {fmt(result['single'])}", file=sys.stderr)
        ok, failed = load(port, "/predict/batch", batch, args.batch_clients, args.duration)
        result["batch"] = worker_memory(server)
        result["batch_requests"] = (ok, failed)
        print(f"  after /predict/batch ({ok} ok, {failed} failed): {fmt(result['batch'])}", file=sys.stderr)
    result["peak_mb"] = max(values["VmHWM"] for values in result["batch"].values())
    return result


def timing(args: argparse.Namespace) -> dict[str, float]:
    """Milliseconds per ``Classifier.predict`` call (best of ``--timing-repeat``), same session for all."""
    from service.inference import Classifier

    classifier = Classifier(Path(args.model or service_default_model()))
    classifier.warm_up(64)
    rng = np.random.default_rng(0)
    images = {size: rng.random((size, 28, 28), dtype=np.float32) for size in (1, 64, 256)}
    calls: dict[str, Callable[[], object]] = {
        "batch1_ms": functools.partial(classifier.predict, images[1]),
        "batch64_ms": functools.partial(classifier.predict, images[64]),
        "batch256_ms": functools.partial(classifier.predict, images[256]),
        # What the batcher does with a 256-image request: runs of at most 64 (its max_size).
        "batch256_in_64s_ms": lambda: [classifier.predict(images[256][i : i + 64]) for i in range(0, 256, 64)],
    }
    found = {}
    for name, call in calls.items():
        call()
        number = max(1, 2000 // int(name.split("_")[0].removeprefix("batch")))
        found[name] = min(timeit.repeat(call, number=number, repeat=args.timing_repeat)) / number * 1000
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the service (repeatable)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of each load")
    parser.add_argument("--clients", type=int, default=8, help="connections for POST /predict")
    parser.add_argument("--batch-clients", type=int, default=4, help="connections for POST /predict/batch")
    parser.add_argument("--repeat", type=int, default=1, help="fresh servers to measure")
    parser.add_argument("--timing", action="store_true", help="time Classifier.predict instead")
    parser.add_argument("--timing-repeat", type=int, default=7)
    parser.add_argument("--model", help="model for --timing (default: the service's)")
    args = parser.parse_args()
    if args.timing:
        print(json.dumps({k: round(v, 4) for k, v in timing(args).items()}))
        return 0
    install_cleanup()
    digits = load_test_digits(256)
    single = multipart_body("file", digits.pngs[:1])
    batch = multipart_body("files", digits.pngs)
    peaks = []
    for round_no in range(args.repeat):
        print(f"round {round_no + 1}/{args.repeat} {' '.join(args.env)}", file=sys.stderr)
        peaks.append(measure(args, single, batch)["peak_mb"])
    print(json.dumps({"env": args.env, "peak_mb": [round(p, 1) for p in peaks], "max_peak_mb": round(max(peaks), 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
