"""Triton's perf_analyzer against the service, as docs/kserve-v2.md shows it: 0 failed requests.

perf_analyzer is a native binary, not a Python dependency: the test runs when ``PERF_ANALYZER``
names it (or it is on ``PATH``), with its libraries on ``LD_LIBRARY_PATH`` (docs/kserve-v2.md).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DATA
from tests.service.v2.conftest import Server

PERF_ANALYZER = os.environ.get("PERF_ANALYZER") or shutil.which("perf_analyzer")
pytestmark = pytest.mark.skipif(PERF_ANALYZER is None, reason="perf_analyzer not installed (set PERF_ANALYZER)")
#: Short windows, and a stability band wide enough that a busy shared machine never makes it give up:
#: this checks that every request succeeds, not how fast they are.
WINDOWS = ["--measurement-interval", "1000", "-s", "1000", "--max-trials", "3"]


def failed_and_succeeded(server: Server, model: str) -> tuple[int, int]:
    (entry,) = server.http.get(f"/v2/models/{model}/stats").json()["model_stats"]
    return entry["inference_stats"]["fail"]["count"], entry["inference_stats"]["success"]["count"]


def run(server: Server, model: str, *args: str) -> str:
    assert PERF_ANALYZER is not None
    before = failed_and_succeeded(server, model)
    command = [PERF_ANALYZER, "-m", model, "-u", f"127.0.0.1:{server.port}", *WINDOWS, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    failed, succeeded = failed_and_succeeded(server, model)
    assert failed == before[0], done.stdout[-3000:]
    assert succeeded > before[1]
    return done.stdout


@pytest.mark.parametrize("batch", ["1", "16"])
def test_tensor_model_with_generated_data(server: Server, batch: str) -> None:
    output = run(server, server.model, "-b", batch)
    assert "Successful request count" in output  # its server-side lines, read from our statistics


def test_bytes_model_with_real_images(server: Server, tmp_path: Path) -> None:
    files = sorted((DATA / "realworld").glob("*.png"))[:8]
    assert files
    # Each BYTES element base64-encoded with its 4-byte little-endian length in front.
    data = [
        {"image_bytes": {"b64": base64.b64encode(struct.pack("<I", len(b)) + b).decode()}}
        for b in (f.read_bytes() for f in files)
    ]
    input_data = tmp_path / "pngs.json"
    input_data.write_text(json.dumps({"data": data}))
    run(server, server.bytes_model, "--input-data", str(input_data))
