"""Soak test: mixed valid and invalid traffic at high concurrency against ``python -m service``.

Starts the production command with its defaults (two workers, the default model) on a free
loopback port, and keeps ``--concurrency`` asyncio+httpx clients busy for ``--duration`` seconds
with a weighted mix of request kinds: valid images in every input form, and the usual bad inputs
(corrupt, empty, truncated, unsupported types, invalid JSON, NaN, out-of-range pixels, batches over
the limit, decompression bombs, wrong fields, wrong methods). Each kind has one expected status;
any other status, a timeout or a connection error is an *unexpected* result.

Reported every ``--window`` seconds: requests, unexpected results, p50/p99 latency (all requests
and valid ones only) and the resident memory of the server's main process and each worker.
Memory growth is judged from the end of warm-up (the first 10 % of the run, at least 60 s) to the
end of the run, per process: at most 10 %.

The clients keep idle connections for at most 2 s, less than the server's keep-alive timeout
(uvicorn's 5 s). With equal timeouts, a client can send on a connection the server is closing at
that very moment and get no answer (the request never reaches the service); that race is the
client's to avoid, as browsers do by retrying. The server's access log is counted too, so a
request the service never saw would show up as a difference.

    .venv/bin/python benchmarks/soak.py                          # 10 minutes, 64 clients
    .venv/bin/python benchmarks/soak.py --duration 30 --window 10  # a quick check of the script

Exit status: 0 when there were no unexpected results and memory grew at most 10 %, 1 otherwise.
Only 127.0.0.1 is used; every wait is bounded; the server's process group is stopped at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import struct
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

if not __package__:  # run as `python benchmarks/<script>.py`: see benchmarks/__init__.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from harness import HOST, ROOT, Server, free_port, install_cleanup  # noqa: E402

SAMPLE = ROOT / "tests" / "data" / "mnist_sample.npz"
BOUNDARY = "soakboundary5c1f"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
MAX_GROWTH = 0.10


# --------------------------------------------------------------------------- the traffic


def encode(image: Image.Image, fmt: str = "PNG", **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def multipart(field_name: str, files: list[bytes]) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(files)
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )


@dataclass(frozen=True)
class Kind:
    """One kind of request in the mix and the one status it must get."""

    name: str
    weight: int
    expected: int
    method: str
    path: str
    bodies: list[bytes]
    content_type: str | None = None

    @property
    def valid(self) -> bool:
        return self.expected == 200


def request_kinds(model: str) -> list[Kind]:
    with np.load(SAMPLE) as sample:
        images = sample["images"]
    digits = [Image.fromarray(image) for image in images[:50]]
    pngs = [encode(d) for d in digits]
    # Dark ink on light paper, 480 px a side: a phone photo of a digit, cropped.
    photos = [
        encode(Image.fromarray(255 - np.asarray(d.resize((480, 480), Image.Resampling.BICUBIC))), "JPEG", quality=90)
        for d in digits[:10]
    ]
    pixels = [json.dumps({"pixels": image.tolist()}).encode() for image in images[:20]]
    b64 = [json.dumps({"image": base64.b64encode(p).decode()}).encode() for p in pngs[:20]]
    v2 = [
        json.dumps(
            {
                "inputs": [
                    {"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(p).decode()]}
                ]
            }
        ).encode()
        for p in pngs[:20]
    ]
    batches = [multipart("files", pngs[i : i + 8]) for i in range(0, 40, 8)]
    over_limit = json.dumps({"pixels": np.zeros((257, 28, 28), np.uint8).tolist()}).encode()
    nan_row = "[" + ", ".join(["NaN"] + ["0"] * 27) + "]"
    nan = ('{"pixels": [' + ", ".join([nan_row] * 28) + "]}").encode()
    bomb = encode(Image.new("1", (20_000, 20_000)), optimize=True)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><text>7</text></svg>'
    jpeg = encode(digits[0].resize((112, 112)), "JPEG")
    kinds = [
        # Valid traffic: about two thirds of the requests.
        Kind("png-multipart", 12, 200, "POST", "/predict", [multipart("file", [p]) for p in pngs], MULTIPART),
        Kind("png-raw", 12, 200, "POST", "/predict", pngs, "image/png"),
        Kind("jpeg-photo-raw", 4, 200, "POST", "/predict", photos, "image/jpeg"),
        Kind("json-pixels", 8, 200, "POST", "/predict", pixels, "application/json"),
        Kind("json-base64", 8, 200, "POST", "/predict", b64, "application/json"),
        Kind("batch-of-8", 4, 200, "POST", "/predict/batch", batches, MULTIPART),
        Kind("v2-infer", 4, 200, "POST", f"/v2/models/{model}/infer", v2, "application/json"),
        Kind("ready", 2, 200, "GET", "/health/ready", [b""]),
        Kind("model", 1, 200, "GET", "/model", [b""]),
        # Invalid traffic: each with its exact status.
        Kind("corrupt-png", 3, 422, "POST", "/predict", [pngs[0][:100] + b"\0" * 200], "image/png"),
        Kind("empty-body", 2, 422, "POST", "/predict", [b""], "image/png"),
        Kind("truncated-jpeg", 2, 422, "POST", "/predict", [jpeg[: len(jpeg) // 2]], "image/jpeg"),
        Kind("svg", 2, 415, "POST", "/predict", [svg], "image/svg+xml"),
        Kind("text-plain", 2, 415, "POST", "/predict", [b"seven"], "text/plain"),
        Kind("invalid-json", 2, 422, "POST", "/predict", [b'{"image": '], "application/json"),
        Kind("nan-pixels", 2, 422, "POST", "/predict", [nan], "application/json"),
        Kind(
            "pixels-out-of-range",
            2,
            422,
            "POST",
            "/predict",
            [json.dumps({"pixels": np.full((28, 28), 300).tolist()}).encode()],
            "application/json",
        ),
        Kind("deeply-nested-json", 1, 422, "POST", "/predict", [b"[" * 20_000], "application/json"),
        Kind("batch-over-limit", 1, 413, "POST", "/predict/batch", [over_limit], "application/json"),
        Kind("decompression-bomb", 1, 413, "POST", "/predict", [bomb], "image/png"),
        Kind("huge-dimensions", 2, 413, "POST", "/predict", [png_claiming(100_000, 100_000)], "image/png"),
        Kind("missing-field", 2, 422, "POST", "/predict", [multipart("image", pngs[:1])], MULTIPART),
        Kind("blank-image", 2, 422, "POST", "/predict", [encode(Image.new("L", (64, 64), 255))], "image/png"),
        Kind("wrong-method", 1, 405, "GET", "/predict", [b""]),
        Kind("unknown-path", 1, 404, "GET", "/nowhere", [b""]),
        Kind("v2-unknown-model", 1, 404, "POST", "/v2/models/nope/infer", v2[:1], "application/json"),
    ]
    return kinds


# --------------------------------------------------------------------------- measuring


@dataclass
class Window:
    start_s: float
    latencies_ms: list[float] = field(default_factory=list)
    valid_latencies_ms: list[float] = field(default_factory=list)
    requests: int = 0
    unexpected: int = 0
    rss_mb: dict[str, float] = field(default_factory=dict)


@dataclass
class Run:
    window_s: float
    duration_s: float
    started: float = field(default_factory=time.monotonic)
    windows: list[Window] = field(default_factory=list)
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    unexpected_examples: list[str] = field(default_factory=list)

    def window(self) -> Window:
        index = int((time.monotonic() - self.started) // self.window_s)
        while len(self.windows) <= index:
            self.windows.append(Window(len(self.windows) * self.window_s))
        return self.windows[index]

    def record(self, kind: Kind, status: int | str, elapsed_ms: float) -> None:
        window = self.window()
        window.requests += 1
        window.latencies_ms.append(elapsed_ms)
        if kind.valid:
            window.valid_latencies_ms.append(elapsed_ms)
        counts = self.by_kind.setdefault(kind.name, {})
        counts[str(status)] = counts.get(str(status), 0) + 1
        if status != kind.expected:
            window.unexpected += 1
            if len(self.unexpected_examples) < 20:
                self.unexpected_examples.append(f"{kind.name}: expected {kind.expected}, got {status}")


async def client_loop(client: httpx.AsyncClient, kinds: list[Kind], run: Run, deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    weights = [kind.weight for kind in kinds]
    sent = 0
    while time.monotonic() < deadline:
        kind = rng.choices(kinds, weights)[0]
        body = rng.choice(kind.bodies)
        sent += 1
        # Marks the request in the server's access log, to count what the service saw.
        headers = {"x-request-id": f"soak-{seed}-{sent}"}
        if kind.content_type:
            headers["content-type"] = kind.content_type
        started = time.perf_counter()
        try:
            response = await client.request(kind.method, kind.path, content=body or None, headers=headers)
            await response.aread()
            status: int | str = response.status_code
        except httpx.TimeoutException:
            status = "timeout"
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        run.record(kind, status, (time.perf_counter() - started) * 1000)


async def sample_memory(server: Server, run: Run, deadline: float, every_s: float) -> None:
    while time.monotonic() < deadline:
        window = run.window()
        for memory in server.memory():
            if memory.role == "helper":
                continue
            name = "main" if memory.role == "main" else f"worker-{memory.pid}"
            window.rss_mb[name] = memory.rss_mb  # the last sample of the window
        await asyncio.sleep(every_s)


async def soak(server: Server, kinds: list[Kind], duration_s: float, concurrency: int, window_s: float) -> Run:
    run = Run(window_s, duration_s)
    deadline = run.started + duration_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0)
    timeout = httpx.Timeout(60.0, connect=10.0)
    base_url = f"http://{HOST}:{server.port}"
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        tasks = [client_loop(client, kinds, run, deadline, seed) for seed in range(concurrency)]
        await asyncio.gather(sample_memory(server, run, deadline, min(5.0, window_s / 3)), *tasks)
    return run


# --------------------------------------------------------------------------- reporting


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def server_saw(log_path: Path) -> int:
    """How many of the soak's requests the service logged (the access log is one JSON line each)."""
    count = 0
    for line in log_path.read_text(errors="replace").splitlines():
        if '"service.access"' in line and '"request_id":"soak-' in line:
            count += 1
    return count


def report(
    run: Run, kinds: list[Kind], argv: list[str], load: tuple[tuple[float, ...], tuple[float, ...]], seen: int
) -> tuple[str, bool]:
    # Requests still in flight at the deadline end in a stub window after it: count them in the last one.
    windows = [w for w in run.windows if w.requests]
    while len(windows) > 1 and windows[-1].start_s >= run.duration_s:
        stub = windows.pop()
        windows[-1].requests += stub.requests
        windows[-1].unexpected += stub.unexpected
        windows[-1].latencies_ms += stub.latencies_ms
        windows[-1].valid_latencies_ms += stub.valid_latencies_ms
    processes = sorted({name for w in windows for name in w.rss_mb}, key=lambda n: (n != "main", n))
    lines = [
        f"Command: `{' '.join(argv)}`",
        f"Load average (1, 5, 15 min) at start {load[0]}, at end {load[1]}",
        "",
        "| window (s) | requests | req/s | unexpected | p50 ms | p99 ms | p99 valid ms | "
        + " | ".join(f"RSS {name} MB" for name in processes)
        + " |",
        "|" + "---|" * (7 + len(processes)),
    ]
    for w in windows:
        end = w.start_s + run.window_s
        rss = " | ".join(f"{w.rss_mb[name]:.0f}" if name in w.rss_mb else "-" for name in processes)
        lines.append(
            f"| {w.start_s:.0f}–{end:.0f} | {w.requests} | {w.requests / run.window_s:.0f} | "
            f"{w.unexpected} | "
            f"{percentile(w.latencies_ms, 50):.1f} | {percentile(w.latencies_ms, 99):.1f} | "
            f"{percentile(w.valid_latencies_ms, 99):.1f} | {rss} |"
        )
    total = sum(w.requests for w in windows)
    unexpected = sum(w.unexpected for w in windows)
    everything = [x for w in windows for x in w.latencies_ms]
    lines += [
        "",
        f"Requests sent: {total}; logged by the service: {seen}; unexpected results: {unexpected}; "
        "overall p50 "
        f"{percentile(everything, 50):.1f} ms, p99 {percentile(everything, 99):.1f} ms",
        "",
    ]

    # Memory growth from the end of warm-up to the end, per process.
    warm_up_s = max(60.0, 0.1 * run.duration_s)
    warm = [w for w in windows if w.start_s + run.window_s >= warm_up_s]
    growth_ok = True
    if len(warm) >= 2:
        lines.append(f"| process | RSS after warm-up ({warm_up_s:.0f} s) MB | RSS at end MB | growth |")
        lines.append("|---|---|---|---|")
        for name in processes:
            after = next((w.rss_mb[name] for w in warm if name in w.rss_mb), None)
            end_rss = next((w.rss_mb[name] for w in reversed(windows) if name in w.rss_mb), None)
            if after is None or end_rss is None:
                continue
            growth = end_rss / after - 1
            growth_ok &= growth <= MAX_GROWTH
            lines.append(f"| {name} | {after:.0f} | {end_rss:.0f} | {growth:+.1%} |")
        lines.append("")
    lines.append("| kind | expected | answers |")
    lines.append("|---|---|---|")
    for kind in kinds:
        counts = run.by_kind.get(kind.name, {})
        answers = ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))
        lines.append(f"| {kind.name} | {kind.expected} | {answers} |")
    if run.unexpected_examples:
        lines += ["", "Unexpected results (first 20):", *[f"- {e}" for e in run.unexpected_examples]]
    passed = unexpected == 0 and growth_ok and seen == total
    lines += [
        "",
        f"Result: {'PASS' if passed else 'FAIL'} (unexpected results {unexpected}, memory growth "
        f"{'within' if growth_ok else 'over'} {MAX_GROWTH:.0%}, {total - seen} requests the service "
        "did not log)",
    ]
    return "\n".join(lines), passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic (default 600)")
    parser.add_argument("--concurrency", type=int, default=64, help="clients in flight (default 64)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per reported window (default 30)")
    parser.add_argument(
        "--report",
        type=Path,
        default=ROOT / "test-artifacts" / "soak.md",
        help="where to write the Markdown report (default test-artifacts/soak.md)",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra argument for python -m service (repeatable); none by default",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 3600 or not 1 <= args.concurrency <= 1024:
        parser.error("--duration must be 1..3600 s and --concurrency 1..1024")

    install_cleanup()
    port = free_port()
    command = [sys.executable, "-m", "service", "--port", str(port), *args.server_arg]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    log_path = args.report.with_suffix(".server.log")
    log_path.unlink(missing_ok=True)  # the server appends to it
    server = Server("service", command, log_path=log_path, port=port)
    load_start = tuple(round(x, 2) for x in os.getloadavg())
    server.start(120)
    try:
        model = json.loads(httpx.get(server.url("/model"), timeout=10).text)["name"]
        kinds = request_kinds(model)
        print(f"soaking {HOST}:{port} for {args.duration:.0f} s with {args.concurrency} clients", flush=True)
        run = asyncio.run(soak(server, kinds, args.duration, args.concurrency, args.window))
    finally:
        server.stop()
    load_end = tuple(round(x, 2) for x in os.getloadavg())
    shown = ["python", "-m", "service", "--port", "<free>", *args.server_arg]
    seen = server_saw(log_path)
    text, passed = report(run, kinds, shown, (load_start, load_end), seen)
    args.report.write_text(text + "\n")
    print(text)
    print(f"\nreport: {args.report}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
