"""The HTTP layer's own cost: CPU per ``POST /predict`` through the ASGI app, in process, A/B across commits.

    python benchmarks/asgi_cost.py --variant before@e14d4d3 --variant after [--input mnist --stub-batcher]

No sockets and no load generator: each variant's app (``create_app`` of that commit's service
code, from a temporary ``git worktree``; the working tree without ``@COMMIT``) runs its lifespan
in a child process and answers ``--requests`` requests fed straight to its ASGI callable, the
body that ``benchmarks/run.py`` sends for ``--input``, ``--concurrency`` at a time. What is
measured is the CPU time of the whole process (event loop, batcher thread, onnxruntime) per
request, which other processes on the machine disturb far less than throughput; ``loop`` is the
event loop thread's share. Rounds alternate the variants, and the report gives each variant's
median and its ratio to the first. Every variant loads the same model (``--model``), so only the
service code differs. With ``--stub-batcher`` each job is answered at once with the first real
answer (no preprocessing, no model): what is left is the HTTP layer's work alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: What hey sends besides the body (``benchmarks/run.py`` loads the service with hey).
HEY_HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"hey/0.0.1"), (b"accept-encoding", b"gzip")]


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": list(headers),
        "state": {},
    }


async def _drive(app: Any, args: argparse.Namespace) -> dict[str, float]:
    """Start the app's lifespan, send the requests, and return the CPU and wall time per request."""
    body: bytes = args.body.read_bytes()
    startup: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, startup.get, sent.put))
    started = await sent.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"lifespan failed: {started}")
    headers = [
        *HEY_HEADERS,
        (b"content-type", args.content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    statuses: dict[int, int] = {}

    async def one() -> None:
        messages = iter([{"type": "http.request", "body": body, "more_body": False}])

        async def receive() -> dict[str, Any]:
            message = next(messages, None)
            if message is None:
                await asyncio.Event().wait()  # as uvicorn does: nothing more until the client leaves
            return message  # type: ignore[return-value]

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(_scope(args.path, headers), receive, send)

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    async def load(total: int) -> None:
        share, extra = divmod(total, args.concurrency)
        await asyncio.gather(*(worker(share + (i < extra)) for i in range(args.concurrency)))

    # Warm-up: caches, lazy imports, the first batches.
    await load(args.warmup if args.warmup is not None else max(args.requests // 10, args.concurrency))
    if args.stub:
        _stub_batcher(app.state.runtime.batcher)
        await load(args.concurrency)
    statuses.clear()
    cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
    await load(args.requests)
    cpu, loop_cpu, wall = time.process_time() - cpu, time.thread_time() - loop_cpu, time.perf_counter() - wall
    await startup.put({"type": "lifespan.shutdown"})
    await lifespan
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses: {statuses}")
    n = args.requests
    return {"cpu_us": cpu / n * 1e6, "loop_cpu_us": loop_cpu / n * 1e6, "wall_us": wall / n * 1e6}


def _stub_batcher(batcher: Any) -> None:
    """Answer every job at once with the first real answer: what is left is the event loop's own work."""
    real = batcher.submit
    answer: list[Any] = []

    def submit(prepare: Any) -> Any:
        if answer:
            future = asyncio.get_running_loop().create_future()
            future.set_result(answer[0])
            return future
        future = real(prepare)
        future.add_done_callback(lambda done: answer.append(done.result()))
        return future

    batcher.submit = submit


def child(args: argparse.Namespace) -> None:
    """Measure one variant: run from its checkout, so that ``service`` is that commit's."""
    sys.path.insert(0, str(Path.cwd()))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="asgi-cost-metrics-")  # as with 2 workers
    os.environ["DIGITS_MODEL_PATH"] = str(args.model)
    os.environ["DIGITS_GRPC_PORT"] = "0"  # no gRPC server: only the HTTP path is measured
    import logging.config

    from service.app import create_app
    from service.config import Settings
    from service.logs import log_config

    settings = Settings()
    logging.config.dictConfig(log_config(settings.log_level, settings.log_json, settings.access_log))
    # The access log and any other log lines are written, as in the service, but to nowhere.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    result = asyncio.run(_drive(create_app(settings), args))
    print(json.dumps(result), file=sys.stdout, flush=True)


def parse_args() -> argparse.Namespace:
    from benchmarks.inputs import KINDS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", default=[], help="NAME[@COMMIT] (repeatable)")
    parser.add_argument("--input", choices=KINDS, default="mnist", help="what /predict gets (benchmarks/inputs.py)")
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per round")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight, as hey's connections")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--path", default="/predict")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mnist-improved-int8.onnx")
    parser.add_argument("--digit-index", type=int, default=0)
    parser.add_argument("--stub-batcher", dest="stub", action="store_true", help="answer jobs at once (see above)")
    parser.add_argument("--warmup", type=int, help="unmeasured requests first (default: a tenth of --requests)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--body", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--content-type", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.child:
        child(args)
        return 0

    from benchmarks.common import load_test_digits
    from benchmarks.inputs import real_inputs
    from benchmarks.targets import check_out
    from harness.client import MULTIPART_CONTENT_TYPE, multipart_body

    variants = [v.partition("@") for v in args.variant or ["working-tree"]]
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="asgi-cost-")))
        body = folder / "body.multipart"
        digits = load_test_digits(args.digit_index + 1)
        (sent,) = real_inputs(digits.images[args.digit_index], digits.labels[args.digit_index], (args.input,))
        body.write_bytes(multipart_body("file", [sent.data], content_type=sent.content_type, extension=sent.extension))
        sources = {name: check_out(revision, stack) if revision else ROOT for name, _, revision in variants}
        results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            f"--body={body}",
            f"--content-type={MULTIPART_CONTENT_TYPE}",
            f"--path={args.path}",
            f"--requests={args.requests}",
            f"--concurrency={args.concurrency}",
            f"--model={args.model.resolve()}",
        ]
        argv += ["--stub-batcher"] if args.stub else []
        argv += [f"--warmup={args.warmup}"] if args.warmup is not None else []
        for round_no in range(args.rounds):
            shift = round_no % len(variants)
            for name, _, _ in variants[shift:] + variants[:shift]:
                out = subprocess.run(argv, cwd=sources[name], check=True, capture_output=True, text=True).stdout
                results[name].append(json.loads(out.strip().splitlines()[-1]))
                print(f"round {round_no + 1} {name}: {results[name][-1]}", file=sys.stderr)
    first = statistics.median(r["cpu_us"] for r in results[variants[0][0]])
    stub = ", batcher stubbed" if args.stub else ""
    runs = f"{args.requests} requests x {args.rounds} rounds, {args.concurrency} at once"
    print(f"{args.path} ({args.input}), {runs}{stub}")
    print("| variant | CPU µs/request (median) | min–max | loop CPU µs | wall µs/request | CPU vs first |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, _, revision in variants:
        cpu = [r["cpu_us"] for r in results[name]]
        loop = statistics.median(r["loop_cpu_us"] for r in results[name])
        wall = statistics.median(r["wall_us"] for r in results[name])
        label = f"{name} at `{revision}`" if revision else name
        median = statistics.median(cpu)
        spread = f"{min(cpu):.1f}–{max(cpu):.1f}"
        print(f"| {label} | {median:.1f} | {spread} | {loop:.1f} | {wall:.1f} | {median / first:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
