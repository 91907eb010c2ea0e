"""Triton's Performance Analyzer (``perf_analyzer``) against ``python -m service``, over HTTP and gRPC.

perf_analyzer reads the model's metadata and configuration, fills its inputs, and measures
throughput and latency with the server's own statistics beside them, as it would against Triton.
This runs it on:

- the tensor model (FP32 ``image``) with perf_analyzer's generated data, at batch 1 and 64.
  ``--input-data zero`` (blank images): its default, random bytes read as FP32 (mostly NaN and
  out of range), is answered too, clipped into 0-1 (tests/service/v2/test_perf_analyzer.py runs
  it), but each request then pays for the clipping and the table would measure that;
- the bytes model (BYTES ``image_bytes``) with real PNG files (``--input-data`` JSON).

Install perf_analyzer as docs/perf-analyzer.md says (the tritonclient 2.41.0 wheel carries a
binary that runs on Debian 12), then:

    python benchmarks/perf_analyzer.py
    python benchmarks/perf_analyzer.py --perf-analyzer /work/tools/pa/bin/perf_analyzer --markdown docs/benchmarks.md

The binary is found as the tests find it (``harness.perf_analyzer``): ``--perf-analyzer``, else
``PERF_ANALYZER``, else .ci/run's ``.tools/pa``, the documented ``/work/tools/pa``, or ``PATH``.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if not __package__:  # run as `python benchmarks/<script>.py`: see benchmarks/__init__.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.common import git_commit, machine, update_section  # noqa: E402
from harness import HOST, ROOT, Server, free_port, install_cleanup, spawn, started, terminate  # noqa: E402
from harness.perf_analyzer import INSTALLED_PATHS, find_perf_analyzer, perf_analyzer_env  # noqa: E402

MODEL = "mnist-improved"
BYTES_MODEL = "mnist-improved-bytes"
#: Files in the bytes model's input data: perf_analyzer sends them in turn.
PNG_COUNT = 16
#: perf_analyzer's stability criterion, in percent (its default is 10). This machine's 2 cores are
#: shared with other work: at 10 % most runs never settle.
STABILITY_PERCENT = 50
MEASUREMENT_MS = 3000
#: The longest one perf_analyzer run may take (it retries up to 10 windows per concurrency).
RUN_TIMEOUT_S = 300


@dataclass(frozen=True)
class Case:
    model: str
    batch: int
    concurrency: str  # perf_analyzer's --concurrency-range
    data: str  # "zero" or "pngs"


CASES = (
    Case(MODEL, 1, "1:4:3", "zero"),
    Case(MODEL, 64, "1", "zero"),
    Case(BYTES_MODEL, 1, "1", "pngs"),
)


def png_data(path: Path) -> None:
    """perf_analyzer's --input-data JSON: real PNGs (dark ink on white, as scans are).

    For BYTES, "b64" holds the serialized tensor, so each element carries its 4-byte length first.
    """
    from PIL import Image

    with np.load(ROOT / "tests" / "data" / "mnist_sample.npz") as data:
        digits = data["images"][:PNG_COUNT]
    steps = []
    for digit in digits:
        buffer = io.BytesIO()
        Image.fromarray(255 - digit).save(buffer, "PNG")
        png = buffer.getvalue()
        steps.append({"image_bytes": {"b64": base64.b64encode(len(png).to_bytes(4, "little") + png).decode()}})
    path.write_text(json.dumps({"data": steps}))


def run_case(
    perf_analyzer: Path, env: dict[str, str], protocol: str, url: str, case: Case, data_file: Path, workdir: Path
) -> tuple[list[dict[str, str]], str, list[str]]:
    """One perf_analyzer run: its CSV rows, its output, and the command."""
    csv_path = workdir / f"{protocol}-{case.model}-{case.batch}.csv"
    argv = [
        str(perf_analyzer),
        "-m",
        case.model,
        "-u",
        url,
        "-i",
        protocol,
        "-b",
        str(case.batch),
        "--concurrency-range",
        case.concurrency,
        "--input-data",
        "zero" if case.data == "zero" else str(data_file),
        "--measurement-interval",
        str(MEASUREMENT_MS),
        "--stability-percentage",
        str(STABILITY_PERCENT),
        "-f",
        str(csv_path),
    ]
    process = spawn(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        output = b"timed out"
    finally:
        terminate(process, grace_s=2)
    text = output.decode(errors="replace")
    rows = list(csv.DictReader(csv_path.open())) if process.returncode == 0 and csv_path.is_file() else []
    return rows, text, argv


def service_from(directory: Path) -> str:
    """The commit the service runs from: this checkout's, or the directory another one was put in."""
    return f"commit {git_commit()}" if directory.resolve() == ROOT else str(directory)


def table(results: list[tuple[str, Case, list[dict[str, str]], str]]) -> str:
    head = (
        "| protocol | model | batch | concurrency | infer/s | p50 us | p99 us | avg us | server queue us "
        "| compute input us | compute infer us | compute output us |"
    )
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for protocol, case, rows, output in results:
        if not rows:
            reason = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "no output")
            lines.append(f"| {protocol} | {case.model} | {case.batch} | {case.concurrency} | failed: {reason[:160]} |")
            continue
        for row in rows:
            avg = sum(
                float(row[k])
                for k in (
                    "Client Send",
                    "Network+Server Send/Recv",
                    "Server Queue",
                    "Server Compute Input",
                    "Server Compute Infer",
                    "Server Compute Output",
                    "Client Recv",
                )
            )
            throughput = float(row["Inferences/Second"])
            lines.append(
                f"| {protocol} | {case.model} | {case.batch} | {row['Concurrency']} | {throughput:.0f} "
                f"| {row['p50 latency']} | {row['p99 latency']} | {avg:.0f} | {row['Server Queue']} "
                f"| {row['Server Compute Input']} | {row['Server Compute Infer']} | {row['Server Compute Output']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--perf-analyzer",
        type=Path,
        default=find_perf_analyzer(),
        help="the perf_analyzer binary (default: $PERF_ANALYZER, else "
        + ", else ".join(str(p) for p in INSTALLED_PATHS)
        + ", else the one on PATH)",
    )
    parser.add_argument("--protocols", nargs="+", default=["http", "grpc"], choices=["http", "grpc"])
    parser.add_argument("--workers", type=int, default=2, help="service worker processes")
    parser.add_argument("--markdown", type=Path, help="write the table into this file's --section")
    parser.add_argument("--section", default="perf-analyzer", help="the generated section of --markdown to replace")
    parser.add_argument("--log", type=Path, default=Path("/tmp/perf_analyzer-service.log"))
    parser.add_argument(
        "--service-dir", type=Path, default=ROOT, help="the checkout whose `python -m service` runs (default: this one)"
    )
    args = parser.parse_args(argv)
    if args.perf_analyzer is None or not args.perf_analyzer.is_file():
        sys.exit(f"perf_analyzer not found ({args.perf_analyzer}): install it as docs/perf-analyzer.md says")
    env = perf_analyzer_env(args.perf_analyzer)
    install_cleanup()
    http_port, grpc_port = free_port(), free_port()
    server_argv = [sys.executable, "-m", "service", "--port", str(http_port), "--workers", str(args.workers)]
    if "grpc" in args.protocols:
        server_argv += ["--grpc-port", str(grpc_port)]
    server = Server(
        "service", server_argv, {"DIGITS_LOG_LEVEL": "warning"}, log_path=args.log, port=http_port, cwd=args.service_dir
    )
    urls = {"http": f"{HOST}:{http_port}", "grpc": f"{HOST}:{grpc_port}"}
    results = []
    commands = []
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-") as tmp, started(server):
        workdir = Path(tmp)
        data_file = workdir / "pngs.json"
        png_data(data_file)
        for protocol in args.protocols:
            for case in CASES:
                rows, output, command = run_case(
                    args.perf_analyzer, env, protocol, urls[protocol], case, data_file, workdir
                )
                print(output)
                results.append((protocol, case, rows, output))
                # As one types it: the binary by name (wherever it is installed), the data file by its own.
                shown = ["perf_analyzer", *command[1:]]
                commands.append(shlex.join(shown).replace(str(data_file), "pngs.json").replace(tmp + "/", ""))
    markdown = "\n".join(
        [
            f"Command: `python benchmarks/perf_analyzer.py {shlex.join(argv if argv is not None else sys.argv[1:])}`. "
            f"perf_analyzer 2.41.0; {args.workers} service workers; service from {service_from(args.service_dir)}; "
            f"{machine()}.",
            "Latencies in microseconds, as perf_analyzer reports them (avg: the sum of its client and server parts).",
            "",
            table(results),
            "",
            "perf_analyzer's commands (ports are free ones, chosen per run):",
            "",
            *[f"    {c}" for c in commands],
        ]
    )
    print(markdown)
    if args.markdown:
        update_section(args.markdown, args.section, markdown)
    return 0 if all(rows for _, _, rows, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
