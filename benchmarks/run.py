"""Side-by-side load benchmark on what users send: the service, the obvious implementation and two floors.

    python benchmarks/run.py [--rounds 3 --duration 10 --concurrency 32 --out docs/benchmarks.md]
    python -m benchmarks.run ...                  (the same, from the repository root)

The servers: the project's service (one or more configurations, ``--variant``), the obvious
implementation (``obvious.py``), the FastAPI upload floor (``floor.py``) and the bare-uvicorn floor
(``bare.py``), the floors with as many workers as the service. The inputs (``inputs.py``): the
drawing page's canvas PNG, a transparent-canvas PNG, a 12 MP phone JPEG, a scanned page and the
28x28 MNIST PNG, all showing one MNIST test digit.

In one run on one machine, each round starts every server in turn on its own free loopback port,
waits for ``/health/ready``, and for each input checks one answer, warms it up and loads
``POST /predict`` with hey for a fixed time, measuring the CPU the server used; then reads the peak
RSS of its processes and stops it. The order rotates from round to round so no server always runs
first. The service is also loaded on ``POST /predict/batch`` with 256 different MNIST test PNGs per
request, and each round measures the in-process limit: the same PNGs decoded and classified by one
``session.run`` in this process. Before the rounds, each input's decode-only and preprocessing costs
are timed in this process. Medians go to a Markdown section in ``--out`` and to stdout, with targets.

Compare configurations or commits of the service in the same run with ``--variant``::

    python benchmarks/run.py --variant default: --variant 1-worker:DIGITS_WORKERS=1
    python benchmarks/run.py --only service --variant before@fd26f33: --variant after:

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

if not __package__:  # run as `python benchmarks/<script>.py`: see benchmarks/__init__.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.common import load_average, load_test_digits, require_hey, update_section
from benchmarks.inputs import KINDS, decode_costs, real_inputs
from benchmarks.report import Measured, display_path, render
from benchmarks.runner import QUIET_CORES, InProcessLimit, Run, log, run_target
from benchmarks.summary import Summary
from benchmarks.targets import FLOOR_WORKERS, REFERENCES, check_out, parse_env, parse_variant, targets_for
from harness import ROOT, install_cleanup, multipart_body


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of obvious, floor and service runs")
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
        choices=["service", *REFERENCES],
        default=["service", *REFERENCES],
        help="which servers to run",
    )
    parser.add_argument(
        "--inputs",
        nargs="+",
        choices=KINDS,
        default=list(KINDS),
        help="which inputs to send to /predict (see benchmarks/inputs.py)",
    )
    parser.add_argument(
        "--floor-workers",
        type=int,
        default=FLOOR_WORKERS,
        help="uvicorn workers of the two floors (the service's default count)",
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
    command = shlex.join(["python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)])
    started, t0, load_before = dt.datetime.now(dt.UTC), time.monotonic(), load_average()
    if float(load_before.split()[0]) > 0.5:
        log(f"warning: load average is {load_before}: something else is using the CPUs, numbers will suffer")
    targets = targets_for(args)

    log("encoding MNIST test digits as PNGs, drawing the real inputs")
    digits = load_test_digits(max(args.batch_size, args.digit_index + 1), args.mnist_dir)
    index = args.digit_index
    inputs = real_inputs(digits.images[index], digits.labels[index], tuple(args.inputs))
    max_pixels = int(args.service_env.get("DIGITS_MAX_IMAGE_PIXELS", 24_000_000))
    log("timing decode and preprocessing of each input in this process")
    costs = decode_costs(inputs, max_pixels)
    with contextlib.ExitStack() as stack:
        if args.log_dir:
            log_dir = args.log_dir
            log_dir.mkdir(parents=True, exist_ok=True)
        else:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="digits-bench-")))
        files = {"batch": log_dir / "batch.multipart"}
        labels = {"batch": digits.labels[: args.batch_size]}
        files["batch"].write_bytes(multipart_body("files", digits.pngs[: args.batch_size]))
        for i in inputs:
            files[i.kind] = log_dir / f"{i.kind}.multipart"
            files[i.kind].write_bytes(
                multipart_body("file", [i.data], content_type=i.content_type, extension=i.extension)
            )
            labels[i.kind] = [i.label]

        # One in-process limit per model that a configuration of the service loads.
        limits: dict[Path, InProcessLimit] = {}
        if args.batch_size > 0:
            for target in targets:
                if target.kind == "service" and target.model not in limits:
                    pixels = int(target.env.get("DIGITS_MAX_IMAGE_PIXELS", max_pixels))
                    limits[target.model] = InProcessLimit(
                        target.model, digits.pngs[: args.batch_size], args.inprocess_threads, pixels
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
                log(
                    f"  peak RSS {run.peak_rss_mb:.0f} MB"
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
        measured = Measured(
            summaries,
            inputs,
            costs,
            inprocess,
            inprocess_info,
            started,
            time.monotonic() - t0,
            load_before,
            command,
        )
        report = render(args, measured)
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
