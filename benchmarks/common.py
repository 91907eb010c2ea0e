"""What the benchmark scripts share: MNIST payloads, server processes, hey, and the report file.

Everything here talks to 127.0.0.1 only, every wait is bounded in time, and every process started
here is stopped again (its whole process group) when the script ends, however it ends.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import http.client
import io
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MODELS_DIR = ROOT / "models"
DEFAULT_MODEL = MODELS_DIR / "mnist-improved.onnx"
FALLBACK_MODEL = MODELS_DIR / "mnist-baseline.onnx"
DEFAULT_MNIST_DIR = ROOT.parent / "shared" / "datasets" / "mnist"
BOUNDARY = "----digitsbenchmarkboundary7MA4YWxkTrZu0gW"
MULTIPART_CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def default_model_path() -> Path:
    """The improved model, or the baseline while the improved one has not been trained yet."""
    if DEFAULT_MODEL.is_file() or not FALLBACK_MODEL.is_file():
        return DEFAULT_MODEL
    return FALLBACK_MODEL


def service_default_model() -> Path:
    """The model ``python -m service`` loads when DIGITS_MODEL_PATH is not set: its own default."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        from service.config import DEFAULT_MODEL as service_default
    except ImportError:  # the service is not there (yet): what the issue says it defaults to
        return default_model_path()
    return Path(service_default)


# --------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class Digits:
    pngs: list[bytes]  # 28x28 greyscale PNGs, as MNIST has them (white ink on black)
    labels: list[int]


def load_test_digits(count: int, data_dir: str | os.PathLike[str] | None = None) -> Digits:
    """The first ``count`` MNIST test digits, each encoded as a 28x28 PNG."""
    from PIL import Image

    # training/data.py imports only numpy, so this does not pull TensorFlow in.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from training.data import load_mnist

    directory = data_dir or os.environ.get("MNIST_DATA_DIR") or DEFAULT_MNIST_DIR
    test = load_mnist(directory).test
    pngs = []
    for image in test.images[:count]:
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L").save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return Digits(pngs=pngs, labels=[int(label) for label in test.labels[:count]])


def multipart_body(field_name: str, files: Sequence[bytes]) -> bytes:
    """A multipart/form-data body with one PNG part per file, all under ``field_name``."""
    out = io.BytesIO()
    for index, data in enumerate(files):
        out.write(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field_name}"; '
            f'filename="digit{index}.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
        )
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue()


# --------------------------------------------------------------------------- processes

_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _stop_all() -> None:
    for process in list(_LIVE.values()):
        terminate(process)


def _on_signal(signum: int, _frame: object) -> None:
    # Turn SIGTERM into the same unwinding as Ctrl-C, so every `finally` runs.
    raise KeyboardInterrupt(f"signal {signum}")


def install_cleanup() -> None:
    """Stop every process started here when the script exits, is interrupted or is terminated."""
    atexit.register(_stop_all)
    # A shell that starts us in the background makes us ignore SIGINT: take Ctrl-C back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)


def spawn(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group, to be stopped with it on exit whatever happens."""
    process = subprocess.Popen(list(argv), start_new_session=True, **kwargs)
    _LIVE[process.pid] = process
    return process


def terminate(process: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the process group of ``process``, then SIGKILL it if it has not gone in ``grace_s``."""
    _LIVE.pop(process.pid, None)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    # Children (server workers) may outlive their parent: the whole group goes.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    command: str
    peak_rss_mb: float  # VmHWM: the largest resident set the process has had
    rss_mb: float
    anon_mb: float = float("nan")  # RssAnon: the heap part of rss_mb (malloc, arenas, numpy)
    file_mb: float = float("nan")  # RssFile: the mapped-file part (shared libraries)
    role: str = "main"  # "main" (the process started), "worker" (a uvicorn worker) or "helper"


def busy_ticks() -> int:
    """Clock ticks the whole machine has been busy since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait; guest is inside user


def busy_cores(sample_s: float = 1.0) -> float:
    """How many cores the machine keeps busy, averaged over ``sample_s`` seconds."""
    before, started = busy_ticks(), time.monotonic()
    time.sleep(sample_s)
    return (busy_ticks() - before) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - started)


class CpuMeter:
    """CPU used while one server is under load, in cores: by each of its processes, and by the rest.

    ``other_cores`` is everything busy on the machine (/proc/stat) less what the server's processes,
    hey and this script used: on a shared machine, a run with a high figure had less than the whole
    machine. ``server_cores`` maps each server process to the cores it used, which shows how evenly
    the kernel spread the connections over uvicorn's workers.
    """

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.ticks_per_s = os.sysconf("SC_CLK_TCK")
        self.other_cores = float("nan")
        self.server_cores: dict[int, float] = {}

    def _sample(self) -> tuple[float, int, dict[int, int], float]:
        busy = busy_ticks()
        server = {}
        for pid in descendants(self.server_pid):
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                server[pid] = int(stat[11]) + int(stat[12])  # utime + stime
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # hey, once it has been waited for
        own = resource.getrusage(resource.RUSAGE_SELF)
        waited = (children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime) * self.ticks_per_s
        return time.monotonic(), busy, server, waited

    def __enter__(self) -> CpuMeter:
        self.start = self._sample()
        return self

    def __exit__(self, *_exc: object) -> None:
        end = self._sample()
        elapsed = end[0] - self.start[0]
        if elapsed <= 0:
            return
        per_tick = 1 / self.ticks_per_s / elapsed
        self.server_cores = {pid: (ticks - self.start[2].get(pid, 0)) * per_tick for pid, ticks in end[2].items()}
        other = (end[1] - self.start[1]) - (end[3] - self.start[3])
        self.other_cores = max(0.0, other * per_tick - sum(self.server_cores.values()))


def process_memory(pid: int) -> ProcessMemory | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    values = {key: int(kb) / 1024 for key, kb in re.findall(r"^(\w+):\s+(\d+) kB", status, re.MULTILINE)}
    if "VmHWM" not in values:  # a zombie, or a kernel thread
        return None
    nan = float("nan")
    return ProcessMemory(
        pid, command.strip(), values["VmHWM"], values["VmRSS"], values.get("RssAnon", nan), values.get("RssFile", nan)
    )


@dataclass
class Server:
    """One HTTP server under test, run as a subprocess in its own process group on a loopback port."""

    name: str
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_path: str = "/health/ready"
    log_path: Path | None = None
    port: int = 0
    cwd: Path = ROOT  # where `python -m service` finds its package: a checkout of another commit, say
    process: subprocess.Popen[bytes] | None = None
    startup_s: float = float("nan")

    def start(self, ready_timeout_s: float = 180.0) -> Server:
        env = {**os.environ, **self.env}
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        started = time.monotonic()
        try:
            self.process = spawn(
                self.argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            if not isinstance(log, int):
                log.close()
        deadline = started + ready_timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.process.returncode} before it was ready{self._log_tail()}"
                )
            status = http_status(self.port, self.ready_path)
            if status == 200:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} was not ready after {ready_timeout_s:.0f} s{self._log_tail()}")
            time.sleep(0.1)
        self.startup_s = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)

    def memory(self) -> list[ProcessMemory]:
        """Memory of the server process and of every process below it, each with its role."""
        assert self.process is not None
        found = []
        for pid in descendants(self.process.pid):
            memory = process_memory(pid)
            if memory is None:
                continue
            if pid == self.process.pid:
                role = "main"
            elif "multiprocessing.spawn" in memory.command or "multiprocessing.forkserver" in memory.command:
                role = "worker"  # uvicorn --workers N: spawned processes that each serve requests
            else:
                role = "helper"  # multiprocessing's resource tracker and the like
            found.append(dataclasses.replace(memory, role=role))
        return found

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def _log_tail(self, lines: int = 30) -> str:
        if not self.log_path or not self.log_path.is_file():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n--- last lines of " + str(self.log_path) + ":\n" + "\n".join(tail)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def http_status(port: int, path: str, timeout_s: float = 2.0) -> int | None:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def post(port: int, path: str, body: bytes, content_type: str, timeout_s: float = 60.0) -> tuple[int, object]:
    """POST ``body`` and return the status and the decoded JSON answer (or the text if it is not JSON)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode(errors="replace")


@contextlib.contextmanager
def started(server: Server, ready_timeout_s: float = 180.0) -> Iterator[Server]:
    server.start(ready_timeout_s)
    try:
        yield server
    finally:
        server.stop()


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
