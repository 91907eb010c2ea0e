"""Profile the service's hot path under hey load with py-spy, and summarise where the CPU goes.

    python benchmarks/hotspots.py [--duration 15 --concurrency 32 --top 15 --svg --out docs/benchmarks.md]

Starts the server exactly as ``benchmarks/run.py`` does (``python -m service`` on a free loopback
port, or the obvious/floor reference with ``--server``), puts it under the same ``POST /predict``
load with hey, and samples it and its worker processes with ``py-spy record --subprocesses``. The
collapsed stacks (``--format raw``: open them in speedscope, or feed them to flamegraph.pl) and,
with ``--svg`` / ``--speedscope``, a flame graph or a speedscope profile are written to
``--output-dir``; the top functions by own CPU time and a per-library breakdown go to the "profile"
section of ``--out``. Needs ``pip install py-spy`` and ptrace rights (root, or CAP_SYS_PTRACE).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if not __package__:  # run as `python benchmarks/<script>.py`: see benchmarks/__init__.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.common import (
    git_commit,
    hey_command,
    load_average,
    load_test_digits,
    machine,
    parse_hey,
    require_hey,
    service_default_model,
    update_section,
)
from benchmarks.targets import Target, parse_env
from harness import ROOT, Server, free_port, install_cleanup, multipart_body, spawn, terminate

#: Where a frame's file lives -> what part of the stack it is. First match wins.
AREAS: list[tuple[str, str]] = [
    (r"(^|/)onnxruntime/", "onnxruntime (session.run)"),
    (r"(^|/)PIL/", "Pillow (PNG decode, resize)"),
    (r"(^|/)numpy/", "numpy"),
    (
        r"(^|/)(python_)?multipart/|starlette/formparsers\.py|starlette/datastructures\.py",
        "multipart parsing",
    ),
    (r"(^|/)service/", "service code"),
    (r"(^|/)benchmarks/", "benchmark server code"),
    (r"(^|/)(pydantic|pydantic_core|orjson|json)/", "validation, JSON"),
    (r"(^|/)(fastapi|starlette|anyio)/", "FastAPI, Starlette, anyio"),
    (r"(^|/)(uvicorn|httptools|h11|uvloop|asyncio)/|^<frozen|selectors\.py", "uvicorn, asyncio, sockets"),
    (r"(^|/)(threading|concurrent/|queue)\.?", "threads, queues"),
]

PROCESS = re.compile(r'process (?P<pid>\d+):"(?P<command>(?:[^"\\]|\\.)*)"(?:;|$)')
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class Profile:
    samples: int
    own: collections.Counter[str]  # function -> samples where it was the innermost frame
    total: collections.Counter[str]  # function -> samples where it was anywhere on the stack
    areas: collections.Counter[str]  # area -> own samples
    processes: collections.Counter[str]  # process -> samples


def function_name(frame: str) -> tuple[str, str]:
    """``func (path/file.py:12)`` -> (``func (path/file.py)``, ``path/file.py``)."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    return f"{match['function']} ({match['file']})", match["file"]


def area_of(path: str) -> str:
    for pattern, area in AREAS:
        if re.search(pattern, path):
            return area
    return "other Python"


def process_label(pid: str, command: str) -> str:
    """A worker's pid as ``worker 12``; any other process as its pid and command line."""
    if "multiprocessing.spawn" in command or "multiprocessing.forkserver" in command:
        return f"worker {pid}"
    return f"{pid} {command}"


def summarise(raw: str) -> Profile:
    """Aggregate py-spy's collapsed stacks (``frame;frame;... count`` per line)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    processes: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        process = ""
        # With --subprocesses a worker's stack starts with its parent's "process" frame, then its own;
        # a command line may hold ';', so these are matched whole before the stack is split.
        while match := PROCESS.match(stack):
            process = process_label(match["pid"], match["command"])
            stack = stack[match.end() :]
        frames = stack.split(";")
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        samples += count
        processes[process] += count
        leaf, leaf_file = function_name(frames[-1])
        own[leaf] += count
        areas[area_of(leaf_file)] += count
        for name in {function_name(f)[0] for f in frames}:
            total[name] += count
    return Profile(samples, own, total, areas, processes)


def render(profile: Profile, top: int, meta: list[str]) -> str:
    def pct(n: int) -> str:
        return f"{100 * n / profile.samples:.1f} %" if profile.samples else "n/a"

    lines = [
        *meta,
        "",
        f"Top {top} functions by own CPU samples ({profile.samples:,} samples in all):",
        "",
        "| # | function (file) | own | on stack |",
        "|---:|---|---:|---:|",
    ]
    for rank, (name, count) in enumerate(profile.own.most_common(top), 1):
        lines.append(f"| {rank} | `{name}` | {pct(count)} | {pct(profile.total[name])} |")
    lines += ["", "Own CPU samples by part of the stack:", "", "| part | own |", "|---|---:|"]
    lines += [f"| {area} | {pct(count)} |" for area, count in profile.areas.most_common()]
    lines += [
        "",
        "Samples per process: "
        + "; ".join(f"`{name[:80]}` {pct(count)}" for name, count in profile.processes.most_common()),
    ]
    return "\n".join(lines) + "\n"


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).is_file():
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def record(pid: int, fmt: str, output: Path, duration_s: float, rate: int) -> None:
    argv = [
        py_spy(),
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--nonblocking",
        "--duration",
        f"{duration_s:.0f}",
        "--rate",
        str(rate),
        "--format",
        fmt,
        "--output",
        str(output),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    if result.returncode != 0 or not output.is_file():
        raise RuntimeError(f"py-spy failed ({result.returncode}): {shlex.join(argv)}\n{result.stderr}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--server", choices=["service", "obvious", "floor"], default="service")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="ENV=VALUE",
        help="environment for the service (repeatable)",
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of sampling per output format")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before sampling starts")
    parser.add_argument("--concurrency", type=int, default=32, help="hey connections")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=15, help="functions in the table")
    parser.add_argument("--svg", action="store_true", help="also record a flame graph SVG")
    parser.add_argument("--speedscope", action="store_true", help="also record a speedscope JSON profile")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "test-artifacts" / "profile")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "benchmarks.md",
        help="Markdown file whose 'profile' section gets the summary; '-' for none",
    )
    parser.add_argument("--mnist-dir", help="MNIST IDX files (default: $MNIST_DATA_DIR or ../shared/datasets/mnist)")
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    args.service_env = parse_env(args.service_env)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    require_hey()
    spy = py_spy()
    install_cleanup()
    command = shlex.join(["python", "benchmarks/hotspots.py", *(sys.argv[1:] if argv is None else argv)])
    started, load_before = dt.datetime.now(dt.UTC), load_average()
    out_dir: Path = args.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    body = out_dir / "single.multipart"
    body.write_bytes(multipart_body("file", load_test_digits(1, args.mnist_dir).pngs))

    env = dict(args.service_env)
    if args.server == "obvious":
        env = {"BENCH_MODEL_PATH": str(env.get("DIGITS_MODEL_PATH", service_default_model()))}
    target = Target(args.server, args.server, env)
    port = free_port()
    server = Server(args.server, target.argv(port), env=env, port=port, log_path=out_dir / "server.log")
    formats = ["raw"] + (["flamegraph"] if args.svg else []) + (["speedscope"] if args.speedscope else [])
    suffix = {"raw": "txt", "flamegraph": "svg", "speedscope": "speedscope.json"}
    outputs = {fmt: out_dir / f"profile-{args.server}.{suffix[fmt]}" for fmt in formats}
    load_s = args.warmup + len(formats) * (args.duration + 5)
    with server:
        assert server.process is not None
        print(f"{args.server} ready on port {port}; loading it for {load_s:.0f} s", file=sys.stderr)
        hey = spawn(
            hey_command(server.url("/predict"), body, duration_s=load_s, concurrency=args.concurrency, cpus=1),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            time.sleep(args.warmup)
            for fmt, output in outputs.items():
                print(f"py-spy record --format {fmt} for {args.duration:.0f} s -> {output}", file=sys.stderr)
                record(server.process.pid, fmt, output, args.duration, args.rate)
            hey_out, _ = hey.communicate(timeout=load_s + 60)
        finally:
            terminate(hey, grace_s=2)
    spy_version = subprocess.run([spy, "--version"], capture_output=True, text=True).stdout.strip()
    load = parse_hey(hey_out.decode(errors="replace"))
    profile = summarise(outputs["raw"].read_text())
    shown = [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in outputs.values()]
    meta = [
        f"Profiled {started:%Y-%m-%d %H:%M} UTC on {machine()}, load average before: {load_before}; "
        f"commit `{git_commit()}`.",
        "",
        f"- Command: `{command}` ({spy_version}, `record --subprocesses --rate {args.rate}`, idle threads not counted)",
        f"- Server: `{args.server}`{' with ' + ' '.join(f'{k}={v}' for k, v in env.items()) if env else ''}; "
        f"load: hey, {args.concurrency} connections on `POST /predict` with one MNIST PNG: "
        f"{load.rps:,.0f} req/s while sampled (py-spy slows it), {load.failures} errors.",
        f"- Files (not committed): {', '.join(f'`{s}`' for s in shown)}.",
    ]
    report = render(profile, args.top, meta)
    print(report)
    if str(args.out) != "-":
        update_section(args.out, "profile", report)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: server stopped", file=sys.stderr)
        sys.exit(130)
