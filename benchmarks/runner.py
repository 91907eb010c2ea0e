"""One server in one round: start it, check one answer, warm it up, load it with hey, measure it, stop it.

Also the in-process limit: the same images decoded and classified in this process, with no HTTP.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.common import HeyResult, run_hey
from benchmarks.targets import BARE, FLOOR, Target
from harness import MULTIPART_CONTENT_TYPE, ROOT, CpuMeter, ProcessMemory, Server, busy_cores, free_port, post

#: More CPU than this used by other processes during a run, in cores, and the run was not alone.
QUIET_CORES = 0.25


@dataclass
class Load:
    """One input's ``POST /predict`` load on one server in one round."""

    hey: HeyResult
    cpu_s: float  # CPU seconds the server's processes used during the load
    other_cores: float  # CPU the rest of the machine used meanwhile, in cores
    server_cores: dict[int, float]  # pid -> cores it used
    check: str  # what the check request before the load found

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_s * 1000 / self.hey.ok if self.hey.ok else float("nan")

    @property
    def quiet(self) -> bool:
        """Whether the rest of the machine left this load alone."""
        return self.other_cores <= QUIET_CORES


@dataclass
class Run:
    """One target in one round: a load per input, then (for the service) the batch load."""

    target: str
    round: int
    loads: dict[str, Load] = field(default_factory=dict)
    batch: HeyResult | None = None
    batch_size: int = 0
    batch_check: str = ""
    memory: list[ProcessMemory] = field(default_factory=list)
    startup_s: float = float("nan")
    error: str = ""

    @property
    def peak_rss_mb(self) -> float:
        """Peak RSS of the largest process that serves requests: a worker, or the main process if none."""
        serving = [m for m in self.memory if m.role == "worker"] or [m for m in self.memory if m.role == "main"]
        return max((m.peak_rss_mb for m in serving), default=float("nan"))

    def worker_cpu(self, kind: str) -> str:
        """Cores each worker used under one input's load (the main process if it serves alone)."""
        load = self.loads.get(kind)
        if load is None:
            return ""
        roles = {m.pid: m.role for m in self.memory}
        serving = [c for pid, c in load.server_cores.items() if roles.get(pid) == "worker"]
        if not serving:
            serving = [c for pid, c in load.server_cores.items() if roles.get(pid) == "main"]
        return " + ".join(f"{c:.2f}" for c in sorted(serving, reverse=True))

    @property
    def workers(self) -> int:
        return sum(1 for m in self.memory if m.role == "worker") or 1

    @property
    def rss_sum_mb(self) -> float:
        return sum(m.peak_rss_mb for m in self.memory) if self.memory else float("nan")

    @property
    def batch_images_per_s(self) -> float:
        return self.batch.rps * self.batch_size if self.batch else float("nan")


def make_preprocess(max_pixels: int) -> tuple[Callable[[bytes], np.ndarray], str]:
    """PNG bytes -> float32 (28, 28) in [0, 1]: the service's own preprocessing when it is importable."""
    from PIL import Image

    try:
        from service.preprocess import image_to_input
    except ImportError:
        image_to_input = None  # type: ignore[assignment]

    if image_to_input is not None:

        def service_preprocess(png: bytes) -> np.ndarray:
            return np.asarray(image_to_input(png, max_pixels), dtype=np.float32).reshape(28, 28)

        return service_preprocess, "service.preprocess.image_to_input"

    def plain(png: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(png)) as image:
            grey = image.convert("L").resize((28, 28))
        return np.asarray(grey, dtype=np.float32) / 255.0

    return plain, "plain Pillow decode (service.preprocess not importable)"


class InProcessLimit:
    """Decode N PNGs and classify them in one ``session.run`` call, in this thread, with no HTTP."""

    def __init__(self, model_path: Path, pngs: list[bytes], threads: int, max_pixels: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.pngs = pngs
        self.preprocess, self.preprocess_name = make_preprocess(max_pixels)
        self.threads = threads
        self.once()  # warm-up: first run allocates the session's buffers

    def once(self) -> float:
        """Images per second of one decode + classify pass over all the PNGs."""
        started = time.perf_counter()
        batch = np.stack([self.preprocess(png) for png in self.pngs])[..., np.newaxis]
        self.session.run(None, {self.input_name: batch})
        return len(self.pngs) / (time.perf_counter() - started)


def digits_in(answer: object) -> list[int]:
    """Every ``digit`` value in a JSON answer, in document order."""
    found: list[int] = []
    if isinstance(answer, dict):
        if isinstance(answer.get("digit"), int):
            found.append(answer["digit"])
        for key, value in answer.items():
            if key != "digit":
                found += digits_in(value)
    elif isinstance(answer, list):
        for item in answer:
            found += digits_in(item)
    return found


def check_answer(port: int, path: str, body: bytes, labels: list[int], floor: bool) -> str:
    """One request before the load: fail fast on a wrong route or field, and report accuracy."""
    status, answer = post(port, path, body, MULTIPART_CONTENT_TYPE)
    if status != 200:
        raise RuntimeError(f"POST {path} answered {status}: {str(answer)[:500]}")
    if floor:
        return "constant"
    digits = digits_in(answer)
    if len(digits) != len(labels):
        return f"{len(digits)} digits in the answer for {len(labels)} images"
    correct = sum(d == label for d, label in zip(digits, labels, strict=True))
    return f"{correct}/{len(labels)} correct"


def log(message: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_until_quiet(limit_s: float) -> float:
    """Wait, at most ``limit_s`` seconds, for the machine to be idle; returns the busy cores seen last."""
    deadline = time.monotonic() + limit_s
    while True:
        busy = busy_cores()
        if busy <= QUIET_CORES or time.monotonic() >= deadline:
            return busy
        log(f"  waiting for a quiet machine: {busy:.2f} cores busy")
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))


def run_target(
    target: Target,
    round_no: int,
    args: argparse.Namespace,
    files: dict[str, Path],
    labels: dict[str, list[int]],
    log_dir: Path,
    cwd: Path = ROOT,
) -> Run:
    """Start ``target``, load ``POST /predict`` with each input of ``files`` in turn, then the batch route."""
    run = Run(target.name, round_no, batch_size=args.batch_size)
    if args.wait_quiet > 0:
        wait_until_quiet(args.wait_quiet)
    port = free_port()
    server = Server(
        target.name,
        target.argv(port),
        env=target.env,
        port=port,
        cwd=cwd,
        log_path=log_dir / f"{target.name}-round{round_no}.log",
    )
    constant = target.kind in (FLOOR, BARE)
    try:
        server.start(args.ready_timeout)
        run.startup_s = server.startup_s
        assert server.process is not None
        url = server.url("/predict")
        for kind in args.inputs:
            try:
                check = check_answer(port, "/predict", files[kind].read_bytes(), labels[kind], floor=constant)
                if args.warmup > 0:
                    run_hey(url, files[kind], duration_s=args.warmup, concurrency=args.concurrency, cpus=args.hey_cpus)
                with CpuMeter(server.process.pid) as meter:
                    hey, text = run_hey(
                        url, files[kind], duration_s=args.duration, concurrency=args.concurrency, cpus=args.hey_cpus
                    )
            except (RuntimeError, OSError) as exc:  # one input failing leaves the others measured
                run.error += f"{kind}: {str(exc).strip().splitlines()[0][:200]}; "
                log(f"  {target.name} on {kind}: FAILED: {exc}")
                continue
            run.loads[kind] = Load(hey, meter.server_cpu_s, meter.other_cores, meter.server_cores, check)
            (log_dir / f"{target.name}-round{round_no}-{kind}.hey.txt").write_text(text)
            log(
                f"  {kind}: {hey.rps:,.0f} req/s, p50 {hey.p50_ms:.1f} ms, p99 {hey.p99_ms:.1f} ms, "
                f"{run.loads[kind].cpu_ms_per_request:.2f} CPU ms/request, {hey.failures} errors, "
                f"other CPU {meter.other_cores:.2f} cores, {check}"
            )
        if target.kind == "service" and args.batch_size > 0:
            run.batch_check = check_answer(
                port, "/predict/batch", files["batch"].read_bytes(), labels["batch"], floor=False
            )
            load_batch = functools.partial(
                run_hey,
                server.url("/predict/batch"),
                files["batch"],
                concurrency=args.batch_concurrency,
                cpus=args.hey_cpus,
                timeout_s=60,
            )
            if args.warmup > 0:
                load_batch(duration_s=args.warmup)
            run.batch, text = load_batch(duration_s=args.batch_duration)
            (log_dir / f"{target.name}-round{round_no}-batch.hey.txt").write_text(text)
        # VmHWM is a high-water mark: read once, at the end, it covers every load.
        run.memory = server.memory()
    except (RuntimeError, OSError) as exc:
        run.error += str(exc).strip().splitlines()[0][:300]
        log(f"  {target.name}: FAILED: {exc}")
    finally:
        server.stop()
    return run
