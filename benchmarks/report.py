"""The Markdown report of one benchmark run: its conditions, one table per input, the targets, every run."""

from __future__ import annotations

import argparse
import datetime as dt
import platform
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import git_commit, machine, service_default_model
from benchmarks.inputs import Cost, Input
from benchmarks.runner import QUIET_CORES
from benchmarks.summary import (
    TARGET_BEYOND_DECODE,
    Summary,
    check,
    divide,
    fmt,
    median,
    ratio,
    targets_table,
    times,
    verdict,
)
from benchmarks.targets import BARE, FLOOR, OBVIOUS
from harness import ROOT


def display_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


@dataclass(frozen=True)
class Measured:
    """Everything one run measured, for the report."""

    summaries: list[Summary]
    inputs: list[Input]
    costs: dict[str, Cost]
    inprocess: dict[Path, list[float]]
    inprocess_info: str
    started: dt.datetime
    elapsed_s: float
    load_before: str
    command: str


def size_text(n: int) -> str:
    return f"{n / 1024:,.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:,.2f} MiB"


def conditions(args: argparse.Namespace, m: Measured) -> list[str]:
    by_name = {s.target.name: s for s in m.summaries}
    obvious = by_name.get(OBVIOUS)
    others = [
        x.other_cores for s in m.summaries for r in s.runs for x in r.loads.values() if x.other_cores == x.other_cores
    ]
    quiet = (
        f"Other processes used {median(others):.2f} cores (median; at most {max(others):.2f}) while "
        "a server was under load"
        + (": the machine was shared, so compare rows with care." if max(others) > QUIET_CORES else ".")
        if others
        else ""
    )
    return [
        f"Measured {m.started:%Y-%m-%d %H:%M} UTC in {m.elapsed_s / 60:.0f} min on {machine()}; "
        f"load average before the run: {m.load_before}. {quiet}",
        "",
        f"- Commit: `{git_commit()}`",
        f"- Command: `{m.command}`",
        f"- Load: hey, {args.concurrency} connections on `POST /predict`, each input {args.rounds} rounds × "
        f"{args.duration:g} s per server after a {args.warmup:g} s warm-up, servers in rotating order; "
        f"hey limited to {args.hey_cpus or 'all'} CPU(s). Every input goes as multipart field `file` "
        "(the same body to every server; the page itself sends the canvas as a raw `image/png` body).",
        f"- Batch: {args.batch_size} different MNIST test PNGs per `POST /predict/batch` (field `files`), "
        f"{args.batch_concurrency} connections, {args.batch_duration:g} s per round.",
        "- CPU ms per request: CPU time of all the server's processes during the load (`/proc`), over its 200 answers.",
        f"- Python {platform.python_version()}; {m.inprocess_info}.",
        "- Every configuration of the service: "
        + (" ".join(f"`{k}={v}`" for k, v in args.service_env.items()) or "the defaults")
        + f" unless its name says otherwise (default model `{display_path(service_default_model())}`); "
        + "obvious loads "
        + f"`{display_path(obvious.target.model) if obvious else 'n/a'}`.",
        "",
        "Speed and latency are medians over the quiet loads of each server and input (other processes using "
        f"at most {QUIET_CORES} cores during it), or over all its loads if none was quiet; errors, memory "
        "and start-up cover all rounds. Ratios to the floors are medians of the round-by-round ratios (both servers "
        'measured in the same round) over all rounds. "By CPU ms" is the floor\'s CPU ms per request over this '
        "server's: the req/s ratio a CPU-bound run on an otherwise idle machine would give, and the one to read "
        "when other processes took the cores."
        if args.quiet_only
        else "Medians over all rounds.",
    ]


def inputs_table(m: Measured, workers: int) -> list[str]:
    lines = [
        "### The inputs, and what decoding them costs",
        "",
        "Decode and preprocessing timed in the harness's own process, one thread, best of 7 "
        "(`PIL.Image.open(...).load()`; for the JPEG also at libjpeg's 1/8 scale, the cheapest decode "
        "there is; the service's `preprocess.image_to_input` of this checkout, decode included). "
        f"The decode limit is what {workers} cores could answer if decoding were all there was to do.",
        "",
        "| input | body | pixels | decode ms | cheapest decode ms | service preprocessing ms "
        f"| beyond decode (target ≤ {TARGET_BEYOND_DECODE}×) | decode limit req/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i in m.inputs:
        c = m.costs.get(i.kind)
        if c is None:
            continue
        w, h = i.size
        beyond = c.beyond_decode
        lines.append(
            f"| `{i.kind}`: {i.description} | {size_text(len(i.data))} | {w * h / 1e6:,.2f} MP "
            f"| {fmt(c.decode_ms, 2)} | {fmt(c.decode_limit_ms, 2)} | {fmt(c.preprocess_ms, 2)} "
            f"| {fmt(beyond, 2)}× {verdict(check(beyond, beyond <= TARGET_BEYOND_DECODE))} "
            f"| {fmt(workers * 1000 / c.decode_limit_ms, 0)} |"
        )
    return lines


def input_section(kind: Input, m: Measured, workers: int) -> list[str]:
    by_name = {s.target.name: s for s in m.summaries}
    floor, bare = by_name.get(FLOOR), by_name.get(BARE)
    cost = m.costs.get(kind.kind)
    limit = workers * 1000 / cost.decode_limit_ms if cost else float("nan")
    lines = [
        f"### `POST /predict`: {kind.description} (`{kind.kind}`, {size_text(len(kind.data))})",
        "",
        "| server | req/s | p50 ms | p99 ms | worst p99 ms | CPU ms / request | vs FastAPI floor "
        "| vs bare floor | vs decode limit | by CPU ms: vs FastAPI floor | by CPU ms: vs bare floor "
        "| rounds used | errors | check |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for s in m.summaries:
        rps = s.rps(kind.kind)
        checks = sorted({x.check for x in s.loads(kind.kind)})
        lines.append(
            f"| {s.target.label} | {fmt(rps)} | {fmt(s.p50(kind.kind), 2)} | {fmt(s.p99(kind.kind), 2)} "
            f"| {fmt(s.worst_p99(kind.kind), 2)} | {fmt(s.cpu_ms(kind.kind), 2)} "
            f"| {times(s.vs(floor, kind.kind)) if floor else 'n/a'} "
            f"| {times(s.vs(bare, kind.kind)) if bare else 'n/a'} "
            f"| {ratio(rps, limit) if s.target.kind in ('service', OBVIOUS) else ''} "
            f"| {times(divide(floor.cpu_ms(kind.kind), s.cpu_ms(kind.kind))) if floor else 'n/a'} "
            f"| {times(divide(bare.cpu_ms(kind.kind), s.cpu_ms(kind.kind))) if bare else 'n/a'} "
            f"| {s.rounds_used(kind.kind)} | {s.errors(kind.kind)} | {', '.join(checks)} |"
        )
    return lines


def render(args: argparse.Namespace, m: Measured) -> str:
    services = [s for s in m.summaries if s.target.kind == "service"]
    references = {s.target.name: s for s in m.summaries if s.target.kind != "service"}
    # A limit is what the work costs when nothing gets in its way: the best repetition.
    limit = {model: max(values, default=float("nan")) for model, values in m.inprocess.items()}
    workers = max((r.workers for s in services for r in s.runs if r.memory), default=2)
    lines = [*conditions(args, m), "", *inputs_table(m, workers)]
    for kind in m.inputs:
        lines += ["", *input_section(kind, m, workers)]
    lines += [
        "",
        "### Memory and start-up",
        "",
        "| server | peak RSS per worker MB | RSS sum MB | workers / processes | ready in s |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {s.target.label} | {fmt(s.peak_rss)} | {fmt(s.rss_sum)} | {s.processes} | {fmt(s.startup, 1)} |"
        for s in m.summaries
    ]
    if services and args.batch_size > 0:
        lines += [
            "",
            f"### `POST /predict/batch`, {args.batch_size} MNIST PNGs per request",
            "",
            "| server | images/s (median) | images/s (best) | median vs in-process limit (best) |",
            "|---|---:|---:|---:|",
        ]
        for model, values in m.inprocess.items():
            lines.append(
                f"| in-process limit of `{display_path(model)}`: decode + one `session.run`, no HTTP "
                f"| {fmt(median(values), 0)} | {fmt(limit[model], 0)} | 1.00× |"
            )
        for s in services:
            lines.append(
                f"| {s.target.label} | {fmt(s.batch_median, 0)} | {fmt(s.batch_best, 0)} "
                f"| {ratio(s.batch_median, limit.get(s.target.model, float('nan')))} |"
            )
    if services:
        lines += ["", "### Targets", ""]
    for s in services:
        lines += [f"{s.target.label}:", "", "| target | measured | result |", "|---|---:|---|"]
        lines += [
            f"| {t} | {v} | {verdict(p)} |"
            for t, v, p in targets_table(s, references, limit.get(s.target.model, float("nan")))
        ]
        lines.append("")
    lines += every_run(m)
    return "\n".join(lines) + "\n"


def every_run(m: Measured) -> list[str]:
    lines = [
        "<details><summary>Every run</summary>",
        "",
        "| round | server | input | req/s | p50 ms | p99 ms | 200s | non-200 | conn. errors | CPU ms / request "
        "| CPU per worker, cores | other CPU, cores | check | error |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    runs = sorted((r for s in m.summaries for r in s.runs), key=lambda r: (r.round, r.target))
    for run in runs:
        for kind, x in run.loads.items():
            h = x.hey
            lines.append(
                f"| {run.round} | {run.target} | {kind} | {fmt(h.rps)} | {fmt(h.p50_ms, 2)} | {fmt(h.p99_ms, 2)} "
                f"| {h.ok} | {h.non_200} | {h.errors} | {fmt(x.cpu_ms_per_request, 2)} | {run.worker_cpu(kind)} "
                f"| {fmt(x.other_cores, 2)} | {x.check} | |"
            )
        extra = []
        if run.batch:
            extra.append(f"batch {fmt(run.batch_images_per_s, 0)} images/s, {run.batch_check}")
        if run.memory:
            extra.append("peak RSS MB " + ", ".join(f"{mm.role} {mm.peak_rss_mb:.0f}" for mm in run.memory))
        if extra or run.error:
            lines.append(f"| {run.round} | {run.target} | (all) | | | | | | | | | | {'; '.join(extra)} | {run.error} |")
    lines += [
        "",
        *(
            f"In-process limit of `{display_path(model)}`, images/s per repetition: "
            + ", ".join(f"{v:.0f}" for v in values)
            for model, values in m.inprocess.items()
        ),
        "",
        "</details>",
    ]
    return lines
