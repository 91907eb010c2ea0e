"""Costly inputs of every accepted format against a real ``python -m service``, while a normal client
sends ``/predict`` (issue 16 §1).

The service starts as the README starts it (default settings, 2 workers). A normal client on
127.0.0.1 sends a 28x28 MNIST PNG and a 280x280 canvas PNG, one at a time on new connections, for
the whole run. Attackers on 127.0.0.2 and up send small files that decode to ~24 MP (and batches of
them, and the largest JSON pixel batch), every kind at once. The script reports, against the
issue's targets: the normal client's p99, each costly request's status and answer time, the
workers' RSS at peak and 10 s after the last answer, and the CPU the server still burns once every
answer is out.

    nice -n 10 python -m benchmarks.attack            # the table, in Markdown
    nice -n 10 python -m benchmarks.attack --out attack.json --copies 3
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from harness import HOST, MULTIPART_CONTENT_TYPE, ROOT, Server, descendants, free_port, install_cleanup, multipart_body

#: The issue's targets.
TARGET_P99_MS = 250.0
TARGET_ANSWER_S = 10.0
TARGET_PEAK_RSS_MB = 400.0
TARGET_RSS_RETURN_MB = 80.0
#: Busy cores left once the answers are out: an idle worker wakes a few times a second, no more.
TARGET_CPU_AFTER_CORES = 0.05
#: Side of the square bombs: 4898^2 = 23.99 MP, just under the default max_image_pixels (24 MP).
SIDE = 4898
PNG_CT, JSON_CT = "image/png", "application/json"


# --------------------------------------------------------------------------- costly inputs


@dataclass(frozen=True)
class Attack:
    name: str
    path: str
    body: bytes
    content_type: str


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _stroke(width: int, height: int, mode: str = "L") -> Image.Image:
    """A big image holding one bar (a "1"), so that what decodes is also a digit."""
    image = Image.new(mode, (width, height), 0)
    ImageDraw.Draw(image).rectangle(
        (width // 2 - max(1, width // 40), height // 6, width // 2 + max(1, width // 40), 5 * height // 6), fill=255
    )
    return image


def rle_bmp(width: int = 24_000_000, height: int = 1) -> bytes:
    """An 8-bit RLE BMP: one pixel, then "end of line", which Pillow's Python decoder pads a byte at a time."""
    rle = b"\x01\x01\x00\x00\x00\x01"
    palette = b"\x00\x00\x00\x00\xff\xff\xff\x00"
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rle), 2835, 2835, 2, 2)
    return b"BM" + struct.pack("<IHHI", offset + len(rle), 0, 0, offset) + info + palette + rle


def png_chunks(count: int = 20_000) -> bytes:
    """A small valid PNG preceded by ``count`` empty ancillary chunks: work for the chunk reader."""
    ihdr = struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0)
    raw = b"".join(b"\x00" + bytes(28) for _ in range(28))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    filler = chunk(b"prVt", b"") * count
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + filler + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def ico_bomb() -> bytes:
    """An ICO whose one entry is a 24 MP PNG: ICO is not an accepted format, so this must be a 415."""
    png = _encode(_stroke(SIDE, SIDE), "PNG", compress_level=9)
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def build_attacks() -> list[Attack]:
    """Every accepted format (and two refused ones), each small on the wire and ~24 MP decoded."""
    square = _stroke(SIDE, SIDE)
    webp = _encode(square, "WEBP", lossless=True, quality=0, method=0)
    png_l = _encode(square, "PNG", compress_level=9)
    png_rgba = _encode(square.convert("RGBA"), "PNG", compress_level=9)
    gif = _encode(square, "GIF")
    tiff = _encode(square, "TIFF", compression="tiff_adobe_deflate")
    jpeg_progressive = _encode(square.convert("RGB"), "JPEG", quality=10, progressive=True, subsampling=0)
    jpeg_wide = _encode(_stroke(65_500, 366), "JPEG", quality=10, progressive=True)
    bmp = rle_bmp()
    batch = "/predict/batch"

    def multipart(files: Sequence[bytes]) -> bytes:
        return multipart_body("files", files)

    pixels = json.dumps({"pixels": np.full((256, 28, 28), 255, np.uint8).tolist()}).encode()
    images = json.dumps({"images": [base64.b64encode(webp).decode()] * 4}).encode()
    return [
        Attack("BMP RLE8 24,000,000x1", "/predict", bmp, "image/bmp"),
        Attack("8 x BMP RLE8 (batch)", batch, multipart([bmp] * 8), MULTIPART_CONTENT_TYPE),
        Attack("WebP lossless 4898^2", "/predict", webp, "image/webp"),
        Attack("8 x WebP lossless (batch)", batch, multipart([webp] * 8), MULTIPART_CONTENT_TYPE),
        Attack("PNG RGBA 4898^2", "/predict", png_rgba, PNG_CT),
        Attack("9 x PNG grey 4898^2 (batch)", batch, multipart([png_l] * 9), MULTIPART_CONTENT_TYPE),
        Attack("PNG 20,000 chunks", "/predict", png_chunks(), PNG_CT),
        Attack("GIF 4898^2", "/predict", gif, "image/gif"),
        Attack("TIFF deflate 4898^2", "/predict", tiff, "image/tiff"),
        Attack("JPEG progressive 4:4:4 4898^2", "/predict", jpeg_progressive, "image/jpeg"),
        Attack("JPEG progressive 65500x366", "/predict", jpeg_wide, "image/jpeg"),
        Attack("ICO holding a 4898^2 PNG", "/predict", ico_bomb(), "image/x-icon"),
        Attack("JSON 4 x base64 WebP (batch)", batch, images, JSON_CT),
        Attack("JSON pixels 256x28x28 (batch)", batch, pixels, JSON_CT),
    ]


def normal_payloads() -> list[tuple[str, bytes]]:
    """The normal client's two images: an MNIST PNG and the drawing page's 280x280 canvas PNG."""
    digit = np.load(ROOT / "tests" / "data" / "mnist_sample.npz")["images"][0]
    mnist = _encode(Image.fromarray(digit), "PNG")
    # The page draws black ink on a transparent canvas, ten canvas pixels to an MNIST pixel.
    alpha = Image.fromarray(digit).resize((280, 280), Image.Resampling.BILINEAR)
    canvas = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    canvas.putalpha(alpha)
    return [("MNIST 28x28 PNG", mnist), ("canvas 280x280 PNG", _encode(canvas, "PNG"))]


# --------------------------------------------------------------------------- clients


@dataclass
class Answer:
    name: str
    client: str
    status: int  # 0: no answer (connection error or client timeout)
    seconds: float
    detail: str = ""


def send(port: int, source: str, path: str, body: bytes, content_type: str, timeout_s: float) -> tuple[int, str]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout_s, source_address=(source, 0))
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        raw = response.read()
    except OSError as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    try:
        detail = str(json.loads(raw).get("detail", ""))
    except (ValueError, AttributeError):
        detail = raw[:200].decode(errors="replace")
    return response.status, detail[:120]


@dataclass
class NormalClient:
    """Sends its images one after another on new connections (spread over both workers) until stopped."""

    port: int
    threads: int = 2
    latencies: list[tuple[float, float, int]] = field(default_factory=list)  # (start, seconds, status)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> list[threading.Thread]:
        payloads = normal_payloads()

        def loop(offset: int) -> None:
            i = offset
            while not self.stop.is_set():
                _, body = payloads[i % len(payloads)]
                started = time.monotonic()
                status, _ = send(self.port, HOST, "/predict", body, PNG_CT, 60.0)
                self.latencies.append((started, time.monotonic() - started, status))
                i += 1

        workers = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(self.threads)]
        for thread in workers:
            thread.start()
        return workers

    def p99_ms(self, since: float, until: float) -> tuple[float, int, int]:
        """p99 in ms, request count and non-200 count of requests started in [since, until)."""
        window = [(s, status) for start, s, status in self.latencies if since <= start < until]
        if not window:
            return float("nan"), 0, 0
        return float(np.percentile([s for s, _ in window], 99) * 1000), len(window), sum(st != 200 for _, st in window)


# --------------------------------------------------------------------------- server measurements


def tree_ticks(root: int) -> int:
    total = 0
    for pid in descendants(root):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(stat[11]) + int(stat[12])  # utime + stime
    return total


def busy_cores(root: int, seconds: float) -> float:
    before, started = tree_ticks(root), time.monotonic()
    time.sleep(seconds)
    return (tree_ticks(root) - before) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - started)


@dataclass
class MemorySampler:
    """Samples the RSS of every server process; workers' peaks also come from VmHWM."""

    server: Server
    total_peak_mb: float = 0.0  # everything the server started: what a container limit counts
    stop: threading.Event = field(default_factory=threading.Event)

    def workers(self) -> dict[int, tuple[float, float]]:
        """Worker pid → (rss, peak rss) in MB."""
        return {m.pid: (m.rss_mb, m.peak_rss_mb) for m in self.server.memory() if m.role == "worker"}

    def run(self) -> threading.Thread:
        def loop() -> None:
            while not self.stop.wait(0.1):
                self.total_peak_mb = max(self.total_peak_mb, sum(m.rss_mb for m in self.server.memory()))

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread


# --------------------------------------------------------------------------- the run


def run(
    copies: int, settle_s: float, client_timeout_s: float, env: dict[str, str], only: str = ""
) -> dict[str, object]:
    attacks = [item for item in build_attacks() if only.lower() in item.name.lower()]
    port = free_port()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"attack-{port}.log"
    server = Server("service", [sys.executable, "-m", "service", "--port", str(port)], env, port=port)
    server.log_path = log_path
    with server:
        time.sleep(3)  # let both workers finish their warm-up
        start_rss = {pid: rss for pid, (rss, _) in MemorySampler(server).workers().items()}
        sampler = MemorySampler(server)
        sampler.run()
        normal = NormalClient(port)
        normal.run()
        time.sleep(3)
        attack_started = time.monotonic()
        answers: list[Answer] = []
        lock = threading.Lock()

        def attack(index: int, item: Attack) -> None:
            source = f"127.0.0.{2 + index}"
            started = time.monotonic()
            status, detail = send(port, source, item.path, item.body, item.content_type, client_timeout_s)
            with lock:
                answers.append(Answer(item.name, source, status, time.monotonic() - started, detail))

        threads = [
            threading.Thread(target=attack, args=(i, item), daemon=True)
            for i, item in enumerate(item for item in attacks for _ in range(copies))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        last_answer = time.monotonic()
        normal.stop.set()
        time.sleep(0.5)
        cpu_after = busy_cores(server.process.pid if server.process else 0, 5.0)
        time.sleep(max(0.0, settle_s - (time.monotonic() - last_answer)))
        end = MemorySampler(server).workers()
        sampler.stop.set()
        quiet = normal.p99_ms(attack_started - 3, attack_started)
        under = normal.p99_ms(attack_started, last_answer)
    return {
        "attacks": [asdict(a) for a in sorted(answers, key=lambda a: (a.name, a.seconds))],
        "sizes": {a.name: len(a.body) for a in attacks},
        "normal_quiet": quiet,
        "normal_under_attack": under,
        "workers": {
            str(pid): {"start_mb": start_rss.get(pid, float("nan")), "peak_mb": peak, "after_mb": rss}
            for pid, (rss, peak) in end.items()
        },
        "total_peak_mb": sampler.total_peak_mb,
        "cpu_after_cores": cpu_after,
        "settle_s": settle_s,
        "log": str(log_path),
    }


def verdict(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


def render(result: dict[str, object]) -> str:
    attacks = result["attacks"]
    sizes = result["sizes"]
    assert isinstance(attacks, list) and isinstance(sizes, dict)
    lines = ["| costly request | bytes | statuses | slowest answer (s) | detail |", "|---|---:|---|---:|---|"]
    names = list(dict.fromkeys(a["name"] for a in attacks))
    all_ok = True
    for name in names:
        mine = [a for a in attacks if a["name"] == name]
        ok = all((200 <= a["status"] < 500) and a["seconds"] <= TARGET_ANSWER_S for a in mine)
        all_ok &= ok
        statuses = ", ".join(str(a["status"]) for a in mine)
        slowest = max(a["seconds"] for a in mine)
        detail = mine[-1]["detail"][:70].replace("|", "/")
        mark = "" if ok else " **FAIL**"
        lines.append(f"| {name} | {sizes[name]:,} | {statuses}{mark} | {slowest:.2f} | {detail} |")
    quiet, under = result["normal_quiet"], result["normal_under_attack"]
    assert isinstance(quiet, tuple | list) and isinstance(under, tuple | list)
    quiet_p99 = float(quiet[0])
    p99, count, failed = float(under[0]), int(under[1]), int(under[2])
    workers = result["workers"]
    assert isinstance(workers, dict)
    peak = max(w["peak_mb"] for w in workers.values())
    back = max(w["after_mb"] - w["start_mb"] for w in workers.values())
    cpu = float(result["cpu_after_cores"])  # type: ignore[arg-type]
    lines += [
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| normal client p99 ≤ {TARGET_P99_MS:.0f} ms | {p99:.0f} ms over {count} requests, {failed} not 200 "
        f"(quiet: {quiet_p99:.0f} ms) | {verdict(p99 <= TARGET_P99_MS and not failed)} |",
        f"| every costly request 200/4xx within {TARGET_ANSWER_S:.0f} s | see above | {verdict(all_ok)} |",
        f"| worker peak RSS ≤ {TARGET_PEAK_RSS_MB:.0f} MB | {peak:.0f} MB (all server processes together: "
        f"{float(result['total_peak_mb']):.0f} MB, sampled) | {verdict(peak <= TARGET_PEAK_RSS_MB)} |",  # type: ignore[arg-type]
        f"| worker RSS {result['settle_s']:.0f} s later within {TARGET_RSS_RETURN_MB:.0f} MB of its start "
        f"| +{back:.0f} MB | {verdict(back <= TARGET_RSS_RETURN_MB)} |",
        f"| no CPU busy once the answers are out | {cpu:.3f} cores (0.5-5.5 s after the last answer) "
        f"| {verdict(cpu <= TARGET_CPU_AFTER_CORES)} |",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m benchmarks.attack")
    parser.add_argument("--copies", type=int, default=2, help="concurrent copies of each costly request")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after the last answer to read RSS")
    parser.add_argument("--client-timeout", type=float, default=60.0, help="seconds an attacker waits for an answer")
    parser.add_argument("--env", action="append", default=[], help="DIGITS_X=value for the server (repeatable)")
    parser.add_argument("--only", default="", help="only the costly requests whose name contains this")
    parser.add_argument("--out", type=Path, help="also write the raw results as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, printer: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    install_cleanup()
    env = dict(item.split("=", 1) for item in args.env)
    result = run(args.copies, args.settle, args.client_timeout, env, args.only)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    printer(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
