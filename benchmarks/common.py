"""What the benchmark scripts share beyond the harness: model paths, MNIST payloads, hey, the report file.

Servers, processes and HTTP come from the shared ``harness`` package (the tests use it too): import
them from there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import MULTIPART_CONTENT_TYPE, ROOT, spawn, terminate

MODELS_DIR = ROOT / "models"
DEFAULT_MODEL = MODELS_DIR / "mnist-improved.onnx"
FALLBACK_MODEL = MODELS_DIR / "mnist-baseline.onnx"
DEFAULT_MNIST_DIR = ROOT.parent / "shared" / "datasets" / "mnist"


def default_model_path() -> Path:
    """The improved model, or the baseline while the improved one has not been trained yet."""
    if DEFAULT_MODEL.is_file() or not FALLBACK_MODEL.is_file():
        return DEFAULT_MODEL
    return FALLBACK_MODEL


def service_default_model() -> Path:
    """The model ``python -m service`` loads when DIGITS_MODEL_PATH is not set: its own default."""
    try:
        from service.config import DEFAULT_MODEL as service_default
    except ImportError:  # the service is not there (yet): what the issue says it defaults to
        return default_model_path()
    return Path(service_default)


def run_facts(script: str, model: Path) -> dict[str, str]:
    """What a results file says first: when, the command that made it, and which model (with its hash)."""
    model_path = model.resolve()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python " + " ".join(shlex.quote(a) for a in [script, *sys.argv[1:]]),
        "model": str(model_path.relative_to(ROOT)) if model_path.is_relative_to(ROOT) else model_path.name,
        "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest()[:16],
    }


# --------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class Digits:
    pngs: list[bytes]  # 28x28 greyscale PNGs, as MNIST has them (white ink on black)
    labels: list[int]
    images: list[np.ndarray] = field(default_factory=list)  # the same digits, uint8 (28, 28)


def load_test_digits(count: int, data_dir: str | os.PathLike[str] | None = None) -> Digits:
    """The first ``count`` MNIST test digits, each encoded as a 28x28 PNG."""
    from PIL import Image

    # training/data.py imports only numpy, so this does not pull TensorFlow in.
    from training.data import load_mnist

    directory = data_dir or os.environ.get("MNIST_DATA_DIR") or DEFAULT_MNIST_DIR
    test = load_mnist(directory).test
    pngs = []
    for image in test.images[:count]:
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L").save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    labels = [int(label) for label in test.labels[:count]]
    return Digits(pngs, labels, [np.asarray(image, dtype=np.uint8) for image in test.images[:count]])


# --------------------------------------------------------------------------- hey


@dataclass(frozen=True)
class HeyResult:
    rps: float  # 200 responses per second
    p50_ms: float
    p99_ms: float
    ok: int  # 200 responses
    non_200: int
    errors: int  # connection errors, timeouts
    total_s: float

    @property
    def failures(self) -> int:
        return self.non_200 + self.errors


def parse_hey(summary: str) -> HeyResult:
    """Read requests/s, p50, p99 and the error counts from hey's summary output."""

    def number(pattern: str) -> float:
        match = re.search(pattern, summary, re.MULTILINE)
        return float(match.group(1)) if match else float("nan")

    statuses = {
        int(code): int(count) for code, count in re.findall(r"^\s*\[(\d{3})\]\s+(\d+) responses", summary, re.MULTILINE)
    }
    errors = 0
    if "Error distribution:" in summary:
        errors = sum(
            int(n) for n in re.findall(r"^\s*\[(\d+)\]\s", summary.split("Error distribution:", 1)[1], re.MULTILINE)
        )
    ok = statuses.get(200, 0)
    total_s = number(r"Total:\s+([\d.]+) secs")
    return HeyResult(
        # hey's own Requests/sec counts failures too: count only the answers that were 200.
        rps=ok / total_s if total_s > 0 else float("nan"),
        p50_ms=number(r"^\s*50%+ in ([\d.]+) secs") * 1000,
        p99_ms=number(r"^\s*99%+ in ([\d.]+) secs") * 1000,
        ok=ok,
        non_200=sum(count for code, count in statuses.items() if code != 200),
        errors=errors,
        total_s=total_s,
    )


def hey_command(
    url: str,
    body_file: Path,
    *,
    duration_s: float,
    concurrency: int,
    cpus: int | None = None,
    timeout_s: int = 20,
    content_type: str = MULTIPART_CONTENT_TYPE,
) -> list[str]:
    """hey POSTing ``body_file`` to ``url`` over ``concurrency`` connections for ``duration_s`` seconds."""
    argv = ["hey", "-z", f"{duration_s:g}s", "-c", str(concurrency), "-t", str(timeout_s)]
    argv += ["-m", "POST", "-T", content_type, "-D", str(body_file)]
    if cpus:
        # GOMAXPROCS for hey: on a small machine the load generator must leave the server its cores.
        argv += ["-cpus", str(cpus)]
    return [*argv, url]


def run_hey(
    url: str,
    body_file: Path,
    *,
    duration_s: float,
    concurrency: int,
    cpus: int | None = None,
    timeout_s: int = 20,
    content_type: str = MULTIPART_CONTENT_TYPE,
) -> tuple[HeyResult, str]:
    """Load ``url`` with hey for ``duration_s`` seconds; returns the parsed summary and its text."""
    argv = hey_command(
        url,
        body_file,
        duration_s=duration_s,
        concurrency=concurrency,
        cpus=cpus,
        timeout_s=timeout_s,
        content_type=content_type,
    )
    process = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # hey stops by itself after -z; the margin covers its last in-flight requests and its report.
        output, _ = process.communicate(timeout=duration_s + timeout_s + 30)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"hey did not finish: {' '.join(argv)}") from exc
    finally:
        terminate(process, grace_s=2)
    text = output.decode(errors="replace")
    if process.returncode != 0 or "Requests/sec" not in text:
        raise RuntimeError(f"hey failed ({process.returncode}): {' '.join(argv)}\n{text}")
    return parse_hey(text), text


def require_hey() -> None:
    if subprocess.run(["sh", "-c", "command -v hey"], capture_output=True).returncode != 0:
        sys.exit("hey is not installed: apt-get update && apt-get install -y hey")


# --------------------------------------------------------------------------- report file

DOC_SKELETON = """# Benchmarks

<!-- {name}:start -->
<!-- {name}:end -->
"""


def update_section(path: Path, name: str, content: str) -> None:
    """Replace the generated section ``name`` of ``path`` (between its markers), keeping the rest."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.is_file() else DOC_SKELETON.format(name=name)
    block = f"{start}\n{content.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def git_commit() -> str:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "service", "models", "benchmarks")
    return commit + (" (with uncommitted changes in service/, models/ or benchmarks/)" if dirty else "")


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        if match:
            model = match.group(1).strip()
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    memory = ""
    with contextlib.suppress(OSError, AttributeError):
        kb = int(re.findall(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[0])
        memory = f", {kb / 1024 / 1024:.0f} GiB RAM"
    return f"{model}, {cores} logical cores ({usable} usable){memory}"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"
