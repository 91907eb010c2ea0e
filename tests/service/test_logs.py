"""The access log: whole JSON lines, even with several processes writing to one pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from service.logs import AccessLog, _chunks, timestamp

WRITER = """
import sys
from service.logs import AccessLog
log = AccessLog(True, interval_s=0.01, max_lines=int(sys.argv[2]))
for i in range(int(sys.argv[1])):
    log.record(request_id=f"{sys.argv[3]}-{i}", path="/predict/" + "x" * (i % 700), status=200)
log.flush()
"""


def test_chunks_keep_lines_whole_and_within_the_limit() -> None:
    lines = [b"a" * size + b"\n" for size in (10, 4000, 95, 5000, 1, 4095, 30, 30)]
    chunks = list(_chunks(lines, 4096))
    assert b"".join(chunks) == b"".join(lines)
    for chunk in chunks:
        assert chunk.endswith(b"\n")
        assert len(chunk) <= 4096 or chunk.count(b"\n") == 1  # only a single long line is longer


def test_lines_from_several_processes_on_one_pipe_stay_whole() -> None:
    """Two workers writing batches to one stderr pipe: no line is cut into another's."""
    read_end, write_end = os.pipe()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, "3000", str(max_lines), name], stderr=write_end, env=env)
        for name, max_lines in (("one", 256), ("two", 37))
    ]
    os.close(write_end)
    received = bytearray()
    while chunk := os.read(read_end, 1 << 16):
        received += chunk
    os.close(read_end)
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0]
    entries = [json.loads(line) for line in received.decode().splitlines()]  # every line is whole JSON
    for name in ("one", "two"):
        ids = [e["request_id"] for e in entries if e["request_id"].startswith(name + "-")]
        assert ids == [f"{name}-{i}" for i in range(3000)]  # all there, in order
    assert {e["logger"] for e in entries} == {"service.access"}


def test_lines_are_written_within_the_interval(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with open(tmp_path / "log", "w") as stream:
        log = AccessLog(True, stream=stream, interval_s=0.05)
        log.record(request_id="r1", status=200, duration_ms=1.5)
        time.sleep(0.5)
        entry = json.loads((tmp_path / "log").read_text())
    assert entry["request_id"] == "r1" and entry["status"] == 200 and entry["duration_ms"] == 1.5
    assert {"ts", "level", "logger", "msg"} <= set(entry)


def test_text_lines_carry_the_fields(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with open(tmp_path / "log", "w") as stream:
        log = AccessLog(False, stream=stream)
        log.record(method="POST", path="/predict", status=422)
        log.flush()
    line = (tmp_path / "log").read_text()
    assert line.endswith("INFO service.access: request method=POST path=/predict status=422\n")


@pytest.mark.parametrize("now", [0.0, 1_700_000_000.0009, 1_700_000_000.5, 1_799_999_999.999])
def test_cached_timestamps_equal_the_other_logs(now: float) -> None:
    log = AccessLog(True)
    log._timestamp(now - 1.5)  # a different second cached before
    assert log._timestamp(now) == timestamp(now)


def test_closing_stops_the_writer_and_later_lines_are_written_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with open(tmp_path / "log", "w") as stream:
        log = AccessLog(True, stream=stream, interval_s=60)
        log.record(request_id="before")
        writer = log._writer
        assert writer is not None and writer.is_alive()
        log.close()
        assert not writer.is_alive()
        log.record(request_id="after")
        ids = [json.loads(line)["request_id"] for line in (tmp_path / "log").read_text().splitlines()]
    assert ids == ["before", "after"]
