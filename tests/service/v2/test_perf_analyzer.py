"""Triton's perf_analyzer against the service over HTTP and gRPC, as docs/perf-analyzer.md shows it.

Every request succeeds: 0 failed requests in the server's own statistics. perf_analyzer is a
native binary, not a Python dependency (docs/perf-analyzer.md installs it). The tests run when
``PERF_ANALYZER`` names it or it is installed where .ci/run or the docs put it (or on ``PATH``),
and skip only on a machine without it: .ci/run installs it and names it, so on CI a binary that
is missing or does not start fails them.
"""

from __future__ import annotations

import base64
import json
import struct
import subprocess
from pathlib import Path

import pytest

from harness.perf_analyzer import find_perf_analyzer, perf_analyzer_env
from tests.conftest import DATA
from tests.service.v2.conftest import Server

PERF_ANALYZER = find_perf_analyzer()
pytestmark = pytest.mark.skipif(PERF_ANALYZER is None, reason="perf_analyzer not installed (set PERF_ANALYZER)")
#: Short windows, and a stability band wide enough that a busy shared machine never makes it give up:
#: this checks that every request succeeds, not how fast they are.
WINDOWS = ["--measurement-interval", "1000", "-s", "1000", "--max-trials", "3"]
PROTOCOLS = ["http", "grpc"]


def counts(server: Server, model: str) -> tuple[int, int, int]:
    """The model's failed and successful requests, and the images it classified, from its statistics."""
    (entry,) = server.http.get(f"/v2/models/{model}/stats").json()["model_stats"]
    stages = entry["inference_stats"]
    return stages["fail"]["count"], stages["success"]["count"], entry["inference_count"]


def run(server: Server, protocol: str, model: str, batch: int, *args: str) -> str:
    """perf_analyzer on ``model``: it exits 0, no request fails, and each request carried ``batch`` images."""
    assert PERF_ANALYZER is not None
    port = server.port if protocol == "http" else server.grpc_port
    before = counts(server, model)
    command = [str(PERF_ANALYZER), "-m", model, "-u", f"127.0.0.1:{port}", "-i", protocol, "-b", str(batch)]
    done = subprocess.run(
        [*command, *WINDOWS, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=perf_analyzer_env(PERF_ANALYZER),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    failed, succeeded, images = counts(server, model)
    assert failed == before[0], done.stdout[-3000:]
    assert succeeded > before[1]
    assert images - before[2] == batch * (succeeded - before[1])
    return done.stdout


def test_it_is_version_2_41() -> None:
    """The wheel docs/perf-analyzer.md names: later ones need a newer glibc than Debian 12's."""
    assert PERF_ANALYZER is not None
    done = subprocess.run(
        [str(PERF_ANALYZER), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=perf_analyzer_env(PERF_ANALYZER),
    )
    assert done.returncode == 0 and "Perf Analyzer Version 2.41.0" in done.stderr, done.stdout + done.stderr


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("batch", [1, 16])
def test_tensor_model_with_generated_data(server: Server, protocol: str, batch: int) -> None:
    """perf_analyzer's default (random) data: random bytes as FP32, clipped into 0-1 by the service."""
    output = run(server, protocol, server.model, batch)
    assert "Successful request count" in output  # its server-side lines, read from our statistics


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bytes_model_with_real_images(server: Server, tmp_path: Path, protocol: str) -> None:
    files = sorted((DATA / "realworld").glob("*.png"))[:8]
    assert files
    # Each BYTES element base64-encoded with its 4-byte little-endian length in front.
    data = [
        {"image_bytes": {"b64": base64.b64encode(struct.pack("<I", len(b)) + b).decode()}}
        for b in (f.read_bytes() for f in files)
    ]
    input_data = tmp_path / "pngs.json"
    input_data.write_text(json.dumps({"data": data}))
    run(server, protocol, server.bytes_model, 1, "--input-data", str(input_data))
