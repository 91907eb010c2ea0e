"""Process groups that are always stopped, and what they cost: memory and CPU read from /proc."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import resource
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _stop_all() -> None:
    for process in list(_LIVE.values()):
        terminate(process)


def _on_signal(signum: int, _frame: object) -> None:
    # Turn SIGTERM into the same unwinding as Ctrl-C, so every `finally` runs.
    raise KeyboardInterrupt(f"signal {signum}")


def install_cleanup() -> None:
    """For a script: stop every process started here when it exits, is interrupted or is terminated."""
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


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL what is left of ``process``'s group (workers may outlive their parent), and reap it."""
    _LIVE.pop(process.pid, None)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def terminate(process: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the process group of ``process``, then SIGKILL it if it has not gone in ``grace_s``."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    kill_group(process)


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


def cpu_ticks(pid: int) -> int | None:
    """Clock ticks of CPU ``pid`` has used so far (utime + stime), or None once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(stat[11]) + int(stat[12])
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    command: str
    peak_rss_mb: float  # VmHWM: the largest resident set the process has had
    rss_mb: float
    anon_mb: float = float("nan")  # RssAnon: the heap part of rss_mb (malloc, arenas, numpy)
    file_mb: float = float("nan")  # RssFile: the mapped-file part (shared libraries)
    role: str = "main"  # "main" (the process started), "worker" (a uvicorn worker) or "helper"


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
    the kernel spread the connections over uvicorn's workers. ``server_cpu_s`` is the CPU seconds
    the server used in all, the numerator of a CPU cost per request.
    """

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.ticks_per_s = os.sysconf("SC_CLK_TCK")
        self.other_cores = float("nan")
        self.server_cores: dict[int, float] = {}
        self.server_cpu_s = float("nan")
        self.elapsed_s = float("nan")

    def _sample(self) -> tuple[float, int, dict[int, int], float]:
        busy = busy_ticks()
        server = {pid: ticks for pid in descendants(self.server_pid) if (ticks := cpu_ticks(pid)) is not None}
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # hey, once it has been waited for
        own = resource.getrusage(resource.RUSAGE_SELF)
        waited = (children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime) * self.ticks_per_s
        return time.monotonic(), busy, server, waited

    def __enter__(self) -> CpuMeter:
        self.start = self._sample()
        return self

    def __exit__(self, *_exc: object) -> None:
        end = self._sample()
        self.elapsed_s = end[0] - self.start[0]
        if self.elapsed_s <= 0:
            return
        used = {pid: ticks - self.start[2].get(pid, 0) for pid, ticks in end[2].items()}
        self.server_cpu_s = sum(used.values()) / self.ticks_per_s
        per_tick = 1 / self.ticks_per_s / self.elapsed_s
        self.server_cores = {pid: ticks * per_tick for pid, ticks in used.items()}
        other = (end[1] - self.start[1]) - (end[3] - self.start[3])
        self.other_cores = max(0.0, other * per_tick - sum(self.server_cores.values()))
