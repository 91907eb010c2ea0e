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
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    # `python benchmarks/run.py`: import this checkout's packages (service, harness, benchmarks) as
    # `python -m benchmarks.run` from the repository root would, not from benchmarks/ itself.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.common import (
    ROOT,
    install_cleanup,
    load_average,
    load_test_digits,
    multipart_body,
    require_hey,
    update_section,
)
from benchmarks.report import display_path, render
from benchmarks.runner import QUIET_CORES, InProcessLimit, Run, log, run_target
from benchmarks.summary import Summary
from benchmarks.targets import FLOOR, OBVIOUS, Target, check_out, parse_env, parse_variant


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
        targets.insert(0, Target(OBVIOUS, OBVIOUS, {"BENCH_MODEL_PATH": str(obvious_model)}, workers=1))
    if FLOOR in args.only:
        targets.insert(1 if OBVIOUS in args.only else 0, Target(FLOOR, FLOOR, workers=1))

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
