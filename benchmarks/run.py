"""Side-by-side load benchmark: the project's service, the obvious implementation and the HTTP floor.

    python benchmarks/run.py [--rounds 5 --duration 10 --concurrency 32 --out docs/benchmarks.md]

In one run on one machine, each round starts every server in turn on its own free loopback port,
waits for ``/health/ready``, checks one answer, warms it up, loads ``POST /predict`` with hey for a
fixed time, reads the peak RSS of its processes, and stops it. The order rotates from round to round
so no server always runs first. The project's service (one or more configurations, see
``--variant``) is also loaded on ``POST /predict/batch`` with 256 different MNIST test PNGs per
request, and each round measures the in-process limit: the same 256 PNGs decoded and classified by
one ``session.run`` in this Python process, with no HTTP. Medians over rounds go to a Markdown table
in ``--out`` and to stdout, with the targets' pass/fail.

Compare configurations of the service in the same run with ``--variant NAME:ENV=V,ENV=V``, e.g.::

    python benchmarks/run.py --variant default: --variant 1-worker:DIGITS_WORKERS=1 \\
        --variant delay-2ms:DIGITS_BATCH_MAX_DELAY_MS=2

Needs hey (``apt-get install -y hey``); only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    # `python benchmarks/run.py`: import this checkout's packages (service, harness, benchmarks) as
    # `python -m benchmarks.run` from the repository root would, not from benchmarks/ itself.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.common import (
    MULTIPART_CONTENT_TYPE,
    ROOT,
    CpuMeter,
    HeyResult,
    ProcessMemory,
    Server,
    busy_cores,
    default_model_path,
    free_port,
    git_commit,
    install_cleanup,
    load_average,
    load_test_digits,
    machine,
    multipart_body,
    post,
    require_hey,
    run_hey,
    service_default_model,
    update_section,
)

# Targets from the performance issue.
TARGET_RPS_VS_OBVIOUS = 1.5
TARGET_P99_MS = 20.0
TARGET_BATCH_VS_INPROCESS = 0.5
TARGET_RSS_MB = 150.0

OBVIOUS, FLOOR = "obvious", "floor"
#: More CPU than this used by other processes during a run, in cores, and the run was not alone.
QUIET_CORES = 0.25


# --------------------------------------------------------------------------- what is measured


@dataclass(frozen=True)
class Target:
    """One server to benchmark: the obvious implementation, the floor, or a configuration of the service."""

    name: str
    kind: str  # "service", OBVIOUS or FLOOR
    env: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)  # what sets this variant apart, for its label
    revision: str = ""  # a git commit whose service code this variant runs; empty: the working tree

    def argv(self, port: int) -> list[str]:
        if self.kind == "service":
            # Exactly how `python -m service` starts by default; only the port differs.
            return [sys.executable, "-m", "service", "--port", str(port)]
        # Plain uvicorn defaults: one worker, uvloop and httptools when installed, access log on.
        return [sys.executable, "-m", "uvicorn", f"benchmarks.{self.kind}:app", "--port", str(port)]

    @property
    def model(self) -> Path:
        """The model this server loads (the service resolves a relative path from the repository root)."""
        default = service_default_model() if self.kind == "service" else default_model_path()
        path = Path(self.env.get("DIGITS_MODEL_PATH") or self.env.get("BENCH_MODEL_PATH") or default)
        return path if path.is_absolute() else ROOT / path

    @property
    def label(self) -> str:
        if self.kind != "service":
            return self.name
        settings = " ".join(f"{k}={v}" for k, v in self.settings.items())
        at = f" at `{self.revision}`" if self.revision else ""
        return f"service `{self.name}`{at}" + (f" ({settings})" if settings else "")


@dataclass
class Run:
    """One target in one round."""

    target: str
    round: int
    predict: HeyResult | None = None
    batch: HeyResult | None = None
    batch_size: int = 0
    memory: list[ProcessMemory] = field(default_factory=list)
    startup_s: float = float("nan")
    other_cores: float = float("nan")  # CPU the rest of the machine used during the /predict load
    server_cores: dict[int, float] = field(default_factory=dict)  # pid -> CPU it used, same load
    accuracy: str = ""
    error: str = ""

    @property
    def peak_rss_mb(self) -> float:
        """Peak RSS of the largest process that serves requests: a worker, or the main process if none."""
        serving = [m for m in self.memory if m.role == "worker"] or [m for m in self.memory if m.role == "main"]
        return max((m.peak_rss_mb for m in serving), default=float("nan"))

    @property
    def worker_cpu(self) -> str:
        """Cores each worker used under the /predict load (the main process if it serves alone)."""
        roles = {m.pid: m.role for m in self.memory}
        serving = [c for pid, c in self.server_cores.items() if roles.get(pid) == "worker"]
        if not serving:
            serving = [c for pid, c in self.server_cores.items() if roles.get(pid) == "main"]
        return " + ".join(f"{c:.2f}" for c in sorted(serving, reverse=True))

    @property
    def quiet(self) -> bool:
        """Whether the rest of the machine left this run alone (measured under the /predict load)."""
        return self.other_cores <= QUIET_CORES

    @property
    def workers(self) -> int:
        return sum(1 for m in self.memory if m.role == "worker") or 1

    @property
    def rss_sum_mb(self) -> float:
        return sum(m.peak_rss_mb for m in self.memory) if self.memory else float("nan")

    @property
    def batch_images_per_s(self) -> float:
        return self.batch.rps * self.batch_size if self.batch else float("nan")


def parse_env(items: Sequence[str]) -> dict[str, str]:
    """``KEY=V`` items; an item without ``=`` continues the previous value (``DIGITS_CORS_ORIGINS=a,b``)."""
    env: dict[str, str] = {}
    last = ""
    for item in items:
        if "=" in item:
            key, value = item.split("=", 1)
            last = key.strip()
            if not last:
                raise argparse.ArgumentTypeError(f"empty variable name in {item!r}")
            env[last] = value
        elif last:
            env[last] += "," + item
        elif item.strip():
            raise argparse.ArgumentTypeError(f"expected ENV=VALUE, got {item!r}")
    return env


def parse_variant(spec: str) -> Target:
    """``NAME[@COMMIT]:ENV=V,ENV=V`` (or just ``NAME``) as a service target."""
    name, _, settings = spec.partition(":")
    name, _, revision = (part.strip() for part in name.partition("@"))
    if not name or name in (OBVIOUS, FLOOR):
        raise argparse.ArgumentTypeError(f"variant needs a name other than {OBVIOUS}/{FLOOR}: {spec!r}")
    return Target(name, "service", parse_env(settings.split(",")) if settings else {}, revision=revision)


def check_out(revision: str, stack: contextlib.ExitStack) -> Path:
    """A temporary git worktree of ``revision``, removed when ``stack`` closes."""
    path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="digits-src-"))) / "tree"
    result = subprocess.run(
        ["git", "worktree", "add", "--detach", str(path), revision], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"cannot check out {revision!r}: {result.stderr.strip()}")
    stack.callback(subprocess.run, ["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True)
    return path


# --------------------------------------------------------------------------- the in-process limit


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
        with Image.open(__import__("io").BytesIO(png)) as image:
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


# --------------------------------------------------------------------------- one server, one round


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
    try:
        server.start(args.ready_timeout)
        run.startup_s = server.startup_s
        run.accuracy = check_answer(
            port, "/predict", files["single"].read_bytes(), labels["single"], floor=target.kind == FLOOR
        )
        url = server.url("/predict")
        if args.warmup > 0:
            run_hey(url, files["single"], duration_s=args.warmup, concurrency=args.concurrency, cpus=args.hey_cpus)
        assert server.process is not None
        with CpuMeter(server.process.pid) as meter:
            run.predict, text = run_hey(
                url, files["single"], duration_s=args.duration, concurrency=args.concurrency, cpus=args.hey_cpus
            )
        run.other_cores = meter.other_cores
        run.server_cores = meter.server_cores
        (log_dir / f"{target.name}-round{round_no}-predict.hey.txt").write_text(text)
        if target.kind == "service" and args.batch_size > 0:
            batch_accuracy = check_answer(
                port, "/predict/batch", files["batch"].read_bytes(), labels["batch"], floor=False
            )
            run.accuracy += f"; batch {batch_accuracy}"
            url = server.url("/predict/batch")
            if args.warmup > 0:
                run_hey(
                    url,
                    files["batch"],
                    duration_s=args.warmup,
                    concurrency=args.batch_concurrency,
                    cpus=args.hey_cpus,
                    timeout_s=60,
                )
            run.batch, text = run_hey(
                url,
                files["batch"],
                duration_s=args.batch_duration,
                concurrency=args.batch_concurrency,
                cpus=args.hey_cpus,
                timeout_s=60,
            )
            (log_dir / f"{target.name}-round{round_no}-batch.hey.txt").write_text(text)
        # VmHWM is a high-water mark: read once, at the end, it covers both loads.
        run.memory = server.memory()
    except (RuntimeError, OSError) as exc:
        run.error = str(exc).strip().splitlines()[0][:300]
        log(f"  {target.name}: FAILED: {exc}")
    finally:
        server.stop()
    return run


# --------------------------------------------------------------------------- report


def median(values: Sequence[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    return "n/a" if a != a or b != b or b == 0 else f"{a / b:.2f}×"


@dataclass
class Summary:
    """One target over all rounds. Speed comes from its quiet runs when it has any (see ``used``)."""

    target: Target
    runs: list[Run]
    quiet_only: bool = True

    @property
    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.predict is not None]

    @property
    def quiet_runs(self) -> list[Run]:
        return [r for r in self.ok_runs if r.quiet]

    @property
    def used(self) -> list[Run]:
        """The runs that speed and latency are read from: the quiet ones if there are any, else all.

        On a shared machine another process taking a core for a run halves what the server gets; a
        median over rounds does not protect against that when most rounds were disturbed.
        """
        return (self.quiet_runs if self.quiet_only else []) or self.ok_runs

    @property
    def rounds_used(self) -> str:
        if not self.ok_runs:
            return "none"
        if self.quiet_only and self.quiet_runs:
            return f"{len(self.quiet_runs)} quiet of {len(self.runs)}"
        return f"all {len(self.ok_runs)}" + (", none quiet" if self.quiet_only else "")

    @property
    def rps(self) -> float:
        return median([r.predict.rps for r in self.used if r.predict])

    @property
    def p50(self) -> float:
        return median([r.predict.p50_ms for r in self.used if r.predict])

    @property
    def p99(self) -> float:
        return median([r.predict.p99_ms for r in self.used if r.predict])

    @property
    def worst_p99(self) -> float:
        return max((r.predict.p99_ms for r in self.used if r.predict), default=float("nan"))

    @property
    def errors(self) -> int:
        failed_runs = sum(1 for r in self.runs if r.error)
        return (
            failed_runs
            + sum(r.predict.failures for r in self.ok_runs if r.predict)
            + sum(r.batch.failures for r in self.ok_runs if r.batch)
        )

    @property
    def requests(self) -> int:
        return sum(r.predict.ok for r in self.ok_runs if r.predict)

    @property
    def peak_rss(self) -> float:
        return max((r.peak_rss_mb for r in self.ok_runs if r.memory), default=float("nan"))

    @property
    def rss_sum(self) -> float:
        return max((r.rss_sum_mb for r in self.ok_runs if r.memory), default=float("nan"))

    @property
    def processes(self) -> str:
        """Serving processes / all processes: "2 / 4" is two workers, uvicorn's supervisor and a helper."""
        if not any(r.memory for r in self.ok_runs):
            return "n/a"
        workers = max(r.workers for r in self.ok_runs if r.memory)
        return f"{workers} / {max(len(r.memory) for r in self.ok_runs)}"

    @property
    def startup(self) -> float:
        return median([r.startup_s for r in self.runs])

    @property
    def batch_median(self) -> float:
        return median([r.batch_images_per_s for r in self.used if r.batch])

    @property
    def batch_best(self) -> float:
        return max((r.batch_images_per_s for r in self.used if r.batch), default=float("nan"))


def targets_table(service: Summary, obvious: Summary | None, inprocess: float) -> list[tuple[str, str, bool | None]]:
    """(target, measured, passed) for one configuration of the service; None: could not be measured."""

    def check(value: float, ok: bool) -> bool | None:
        return None if value != value else ok

    rows = []
    if obvious is not None:
        x = service.rps / obvious.rps if obvious.rps == obvious.rps and obvious.rps else float("nan")
        rows.append(
            (
                f"/predict req/s ≥ {TARGET_RPS_VS_OBVIOUS}× obvious",
                f"{fmt(x, 2)}×",
                check(x, x >= TARGET_RPS_VS_OBVIOUS),
            )
        )
    rows.append(
        (
            f"/predict p99 ≤ {TARGET_P99_MS:g} ms (median of the rounds used)",
            f"{fmt(service.p99)} ms",
            check(service.p99, service.p99 <= TARGET_P99_MS),
        )
    )
    rows.append(
        (
            "zero errors (non-200 + connection errors, all runs)",
            str(service.errors),
            None if not service.ok_runs else service.errors == 0,
        )
    )
    if service.batch_median == service.batch_median:
        x = service.batch_median / inprocess if inprocess == inprocess and inprocess else float("nan")
        rows.append(
            (
                f"/predict/batch ≥ {TARGET_BATCH_VS_INPROCESS}× in-process limit",
                f"{fmt(x, 2)}×",
                check(x, x >= TARGET_BATCH_VS_INPROCESS),
            )
        )
    rows.append(
        (
            f"peak RSS ≤ {TARGET_RSS_MB:g} MB per worker process (largest, all rounds)",
            f"{fmt(service.peak_rss)} MB",
            check(service.peak_rss, service.peak_rss <= TARGET_RSS_MB),
        )
    )
    return rows


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "not measured"}[passed]


def render(
    args: argparse.Namespace,
    summaries: list[Summary],
    inprocess: dict[Path, list[float]],
    inprocess_info: str,
    started: dt.datetime,
    elapsed_s: float,
    load_before: str,
    command: str,
) -> str:
    by_name = {s.target.name: s for s in summaries}
    obvious, floor = by_name.get(OBVIOUS), by_name.get(FLOOR)
    services = [s for s in summaries if s.target.kind == "service"]
    # A limit is what the work costs when nothing gets in its way: the best repetition.
    limit = {model: max(values, default=float("nan")) for model, values in inprocess.items()}
    others = [r.other_cores for s in summaries for r in s.runs if r.other_cores == r.other_cores]
    quiet = (
        f"Other processes used {median(others):.2f} cores (median; at most {max(others):.2f}) while "
        "a server was under load"
        + (": the machine was shared, so compare rows with care." if max(others) > QUIET_CORES else ".")
        if others
        else ""
    )
    lines = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC in {elapsed_s / 60:.0f} min on {machine()}; "
        f"load average before the run: {load_before}. {quiet}",
        "",
        f"- Commit: `{git_commit()}`",
        f"- Command: `{command}`",
        f"- Load: hey, {args.concurrency} connections, {args.rounds} rounds × {args.duration:g} s per server "
        f"after a {args.warmup:g} s warm-up, servers in rotating order; "
        f"hey limited to {args.hey_cpus or 'all'} CPU(s). "
        "Body: one 28×28 MNIST test PNG as multipart field `file`.",
        f"- Batch: {args.batch_size} different MNIST test PNGs per `POST /predict/batch` (field `files`), "
        f"{args.batch_concurrency} connections, {args.batch_duration:g} s per round.",
        f"- Python {platform.python_version()}; {inprocess_info}.",
        "- Every configuration of the service: "
        + (" ".join(f"`{k}={v}`" for k, v in args.service_env.items()) or "the defaults")
        + f" unless its name says otherwise (default model `{display_path(service_default_model())}`); "
        + "obvious loads "
        + f"`{display_path(obvious.target.model) if obvious else 'n/a'}`.",
        "",
        "### `POST /predict`, one image",
        "",
        (
            f"Speed and latency are medians over the quiet rounds of each server (other processes using at "
            f"most {QUIET_CORES} cores during its load), or over all its rounds if none was quiet; errors, "
            "memory and start-up cover all rounds."
            if args.quiet_only
            else "Medians over all rounds."
        ),
        "",
        "| server | req/s | p50 ms | p99 ms | worst p99 ms | rounds used | errors | vs obvious | vs floor "
        "| peak RSS per worker MB | RSS sum MB | workers / processes | ready in s |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.target.label} | {fmt(s.rps)} | {fmt(s.p50, 2)} | {fmt(s.p99, 2)} | {fmt(s.worst_p99, 2)} "
            f"| {s.rounds_used} | {s.errors} | {ratio(s.rps, obvious.rps) if obvious else 'n/a'} "
            f"| {ratio(s.rps, floor.rps) if floor else 'n/a'} | {fmt(s.peak_rss)} | {fmt(s.rss_sum)} "
            f"| {s.processes} | {fmt(s.startup, 1)} |"
        )
    if services and args.batch_size > 0:
        lines += [
            "",
            f"### `POST /predict/batch`, {args.batch_size} images per request",
            "",
            "| server | images/s (median) | images/s (best) | median vs in-process limit (best) |",
            "|---|---:|---:|---:|",
        ]
        for model, values in inprocess.items():
            lines.append(
                f"| in-process limit of `{display_path(model)}`: decode + one `session.run`, no HTTP "
                f"| {fmt(median(values), 0)} | {fmt(limit[model], 0)} | 1.00× |"
            )
        for s in services:
            lines.append(
                f"| {s.target.label} | {fmt(s.batch_median, 0)} | {fmt(s.batch_best, 0)} "
                f"| {ratio(s.batch_median, limit.get(s.target.model, float('nan')))} |"
            )
    if services:
        lines += ["", "### Targets", ""]
    for s in services:
        lines += [f"{s.target.label}:", "", "| target | measured | result |", "|---|---:|---|"]
        lines += [
            f"| {t} | {m} | {verdict(p)} |"
            for t, m, p in targets_table(s, obvious, limit.get(s.target.model, float("nan")))
        ]
        lines.append("")
    lines += [
        "<details><summary>Every run</summary>",
        "",
        "| round | server | req/s | p50 ms | p99 ms | 200s | non-200 | conn. errors | batch images/s "
        "| peak RSS MB per process | CPU per worker, cores | other CPU, cores | check | error |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|---|",
    ]
    for run in sorted((r for s in summaries for r in s.runs), key=lambda r: (r.round, r.target)):
        p = run.predict
        rss = ", ".join(f"{m.role} {m.peak_rss_mb:.0f}" for m in run.memory)
        lines.append(
            f"| {run.round} | {run.target} | {fmt(p.rps) if p else ''} | {fmt(p.p50_ms, 2) if p else ''} "
            f"| {fmt(p.p99_ms, 2) if p else ''} | {p.ok if p else ''} | {p.non_200 if p else ''} "
            f"| {p.errors if p else ''} | {fmt(run.batch_images_per_s, 0) if run.batch else ''} | {rss} "
            f"| {run.worker_cpu} | {fmt(run.other_cores, 2)} | {run.accuracy} | {run.error} |"
        )
    lines += [
        "",
        *(
            f"In-process limit of `{display_path(model)}`, images/s per repetition: "
            + ", ".join(f"{v:.0f}" for v in values)
            for model, values in inprocess.items()
        ),
        "",
        "</details>",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def display_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of obvious, floor and service runs")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of measured load per server")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load before each")
    parser.add_argument("--concurrency", type=int, default=32, help="hey connections for /predict")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "benchmarks.md",
        help="Markdown file whose generated section gets the results; '-' for none",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="ENV=VALUE",
        help="environment for every configuration of the service (repeatable)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        type=parse_variant,
        default=[],
        metavar="NAME[@COMMIT]:ENV=V,ENV=V",
        help="a configuration of the service to compare (repeatable; default: one, 'default'); "
        "with @COMMIT, the service code of that git commit, checked out in a temporary worktree",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["service", OBVIOUS, FLOOR],
        default=["service", OBVIOUS, FLOOR],
        help="which servers to run",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="images per /predict/batch request; 0: skip")
    parser.add_argument("--batch-concurrency", type=int, default=4, help="hey connections for /predict/batch")
    parser.add_argument("--batch-duration", type=float, help="seconds of batch load (default: --duration)")
    parser.add_argument("--inprocess-reps", type=int, default=5, help="in-process limit repetitions per round")
    parser.add_argument(
        "--inprocess-threads",
        type=int,
        default=1,
        help="onnxruntime intra-op threads for the in-process limit (the service's per worker)",
    )
    parser.add_argument(
        "--hey-cpus",
        type=int,
        default=1,
        help="CPUs hey may use (GOMAXPROCS), so the load generator leaves the server the rest; 0: all",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help=f"before each server, wait up to S seconds for other processes to use under {QUIET_CORES} cores",
    )
    parser.add_argument(
        "--all-rounds",
        dest="quiet_only",
        action="store_false",
        help=f"read speed from every round, not only from those where other processes used at most {QUIET_CORES} cores",
    )
    parser.add_argument(
        "--obvious-model",
        type=Path,
        help="model of the obvious server (default: the service's DIGITS_MODEL_PATH, else models/mnist-improved.onnx)",
    )
    parser.add_argument("--mnist-dir", help="MNIST IDX files (default: $MNIST_DATA_DIR or ../shared/datasets/mnist)")
    parser.add_argument("--digit-index", type=int, default=0, help="which MNIST test digit /predict sends")
    parser.add_argument("--ready-timeout", type=float, default=180.0, help="seconds to wait for /health/ready")
    parser.add_argument("--log-dir", type=Path, help="server logs and hey outputs (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.batch_duration is None:
        args.batch_duration = args.duration
    if args.rounds < 1 or args.duration <= 0 or args.concurrency < 1:
        parser.error("--rounds, --duration and --concurrency must be positive")
    try:
        args.service_env = parse_env(args.service_env)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    names = [v.name for v in args.variant]
    if len(set(names)) != len(names):
        parser.error(f"variant names must differ: {names}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    require_hey()
    install_cleanup()
    command = (
        "python benchmarks/run.py"
        + ("" if argv is None and len(sys.argv) < 2 else " ")
        + shlex.join(sys.argv[1:] if argv is None else argv)
    )
    started, t0, load_before = dt.datetime.now(dt.UTC), time.monotonic(), load_average()
    if float(load_before.split()[0]) > 0.5:
        log(f"warning: load average is {load_before}: something else is using the CPUs, numbers will suffer")

    service_model = Target("base", "service", args.service_env).model
    obvious_model = args.obvious_model or service_model
    targets: list[Target] = []
    if "service" in args.only:
        variants = args.variant or [Target("default", "service")]
        targets += [Target(v.name, "service", {**args.service_env, **v.env}, v.env, v.revision) for v in variants]
    if OBVIOUS in args.only:
        targets.insert(0, Target(OBVIOUS, OBVIOUS, {"BENCH_MODEL_PATH": str(obvious_model)}))
    if FLOOR in args.only:
        targets.insert(1 if OBVIOUS in args.only else 0, Target(FLOOR, FLOOR))

    log("encoding MNIST test digits as PNGs")
    digits = load_test_digits(max(args.batch_size, args.digit_index + 1), args.mnist_dir)
    with contextlib.ExitStack() as stack:
        if args.log_dir:
            log_dir = args.log_dir
            log_dir.mkdir(parents=True, exist_ok=True)
        else:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="digits-bench-")))
        files = {"single": log_dir / "single.multipart", "batch": log_dir / "batch.multipart"}
        files["single"].write_bytes(multipart_body("file", [digits.pngs[args.digit_index]]))
        files["batch"].write_bytes(multipart_body("files", digits.pngs[: args.batch_size]))
        labels = {"single": [digits.labels[args.digit_index]], "batch": digits.labels[: args.batch_size]}

        # One in-process limit per model that a configuration of the service loads.
        limits: dict[Path, InProcessLimit] = {}
        if args.batch_size > 0:
            for target in targets:
                if target.kind == "service" and target.model not in limits:
                    max_pixels = int(target.env.get("DIGITS_MAX_IMAGE_PIXELS", 24_000_000))
                    limits[target.model] = InProcessLimit(
                        target.model, digits.pngs[: args.batch_size], args.inprocess_threads, max_pixels
                    )
        inprocess: dict[Path, list[float]] = {model: [] for model in limits}
        first = next(iter(limits.values()), None)
        inprocess_info = (
            f"in-process limit: {first.preprocess_name}, onnxruntime "
            f"{__import__('onnxruntime').__version__}, {args.inprocess_threads} intra-op thread(s)"
            if first
            else "no batch measurement"
        )

        # Variants of other commits run their own checkout's service code (the same environment).
        sources = {t.name: check_out(t.revision, stack) for t in targets if t.revision}
        runs: dict[str, list[Run]] = {t.name: [] for t in targets}
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(targets)
            for target in targets[shift:] + targets[:shift]:
                log(f"round {round_no}/{args.rounds}: {target.label}")
                run = run_target(target, round_no, args, files, labels, log_dir, sources.get(target.name, ROOT))
                if run.predict:
                    p = run.predict
                    log(
                        f"  {p.rps:,.0f} req/s, p50 {p.p50_ms:.1f} ms, p99 {p.p99_ms:.1f} ms, "
                        f"{p.failures} errors, peak RSS {run.peak_rss_mb:.0f} MB, "
                        f"CPU per worker {run.worker_cpu}, other CPU {run.other_cores:.2f} cores"
                        + (f", batch {run.batch_images_per_s:,.0f} images/s" if run.batch else "")
                    )
                runs[target.name].append(run)
            for model, limit in limits.items():
                reps = [limit.once() for _ in range(args.inprocess_reps)]
                inprocess[model] += reps
                log(
                    f"  in-process limit of {display_path(model)}: {statistics.median(reps):,.0f} images/s "
                    f"(median of {len(reps)})"
                )

        summaries = [Summary(t, runs[t.name], quiet_only=args.quiet_only) for t in targets]
        report = render(
            args, summaries, inprocess, inprocess_info, started, time.monotonic() - t0, load_before, command
        )
        print(report)
        if str(args.out) != "-":
            update_section(args.out, "bench", report)
            log(f"wrote {args.out}")
        if args.log_dir:
            log(f"server logs and hey outputs in {log_dir}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: servers stopped", file=sys.stderr)
        sys.exit(130)
