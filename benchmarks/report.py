"""The Markdown report of one benchmark run: its conditions, one table per route, the targets, every run."""

from __future__ import annotations

import argparse
import datetime as dt
import platform
from pathlib import Path

from benchmarks.common import ROOT, git_commit, machine, service_default_model
from benchmarks.runner import QUIET_CORES
from benchmarks.summary import Summary, fmt, median, ratio, targets_table, verdict
from benchmarks.targets import FLOOR, OBVIOUS


def display_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def render(
    args: argparse.Namespace,
    summaries: list[Summary],
    inprocess: dict[Path, list[float]],
    inprocess_info: str,
    started: dt.datetime,
    elapsed_s: float,
    load_before: str,
    command: str,
) -> str:
    by_name = {s.target.name: s for s in summaries}
    obvious, floor = by_name.get(OBVIOUS), by_name.get(FLOOR)
    services = [s for s in summaries if s.target.kind == "service"]
    # A limit is what the work costs when nothing gets in its way: the best repetition.
    limit = {model: max(values, default=float("nan")) for model, values in inprocess.items()}
    others = [r.other_cores for s in summaries for r in s.runs if r.other_cores == r.other_cores]
    quiet = (
        f"Other processes used {median(others):.2f} cores (median; at most {max(others):.2f}) while "
        "a server was under load"
        + (": the machine was shared, so compare rows with care." if max(others) > QUIET_CORES else ".")
        if others
        else ""
    )
    lines = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC in {elapsed_s / 60:.0f} min on {machine()}; "
        f"load average before the run: {load_before}. {quiet}",
        "",
        f"- Commit: `{git_commit()}`",
        f"- Command: `{command}`",
        f"- Load: hey, {args.concurrency} connections, {args.rounds} rounds × {args.duration:g} s per server "
        f"after a {args.warmup:g} s warm-up, servers in rotating order; "
        f"hey limited to {args.hey_cpus or 'all'} CPU(s). "
        "Body: one 28×28 MNIST test PNG as multipart field `file`.",
        f"- Batch: {args.batch_size} different MNIST test PNGs per `POST /predict/batch` (field `files`), "
        f"{args.batch_concurrency} connections, {args.batch_duration:g} s per round.",
        f"- Python {platform.python_version()}; {inprocess_info}.",
        "- Every configuration of the service: "
        + (" ".join(f"`{k}={v}`" for k, v in args.service_env.items()) or "the defaults")
        + f" unless its name says otherwise (default model `{display_path(service_default_model())}`); "
        + "obvious loads "
        + f"`{display_path(obvious.target.model) if obvious else 'n/a'}`.",
        "",
        "### `POST /predict`, one image",
        "",
        (
            f"Speed and latency are medians over the quiet rounds of each server (other processes using at "
            f"most {QUIET_CORES} cores during its load), or over all its rounds if none was quiet; errors, "
            "memory and start-up cover all rounds."
            if args.quiet_only
            else "Medians over all rounds."
        ),
        "",
        "| server | req/s | p50 ms | p99 ms | worst p99 ms | rounds used | errors | vs obvious | vs floor "
        "| peak RSS per worker MB | RSS sum MB | workers / processes | ready in s |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.target.label} | {fmt(s.rps)} | {fmt(s.p50, 2)} | {fmt(s.p99, 2)} | {fmt(s.worst_p99, 2)} "
            f"| {s.rounds_used} | {s.errors} | {ratio(s.rps, obvious.rps) if obvious else 'n/a'} "
            f"| {ratio(s.rps, floor.rps) if floor else 'n/a'} | {fmt(s.peak_rss)} | {fmt(s.rss_sum)} "
            f"| {s.processes} | {fmt(s.startup, 1)} |"
        )
    if services and args.batch_size > 0:
        lines += [
            "",
            f"### `POST /predict/batch`, {args.batch_size} images per request",
            "",
            "| server | images/s (median) | images/s (best) | median vs in-process limit (best) |",
            "|---|---:|---:|---:|",
        ]
        for model, values in inprocess.items():
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
            f"| {t} | {m} | {verdict(p)} |"
            for t, m, p in targets_table(s, obvious, limit.get(s.target.model, float("nan")))
        ]
        lines.append("")
    lines += [
        "<details><summary>Every run</summary>",
        "",
        "| round | server | req/s | p50 ms | p99 ms | 200s | non-200 | conn. errors | batch images/s "
        "| peak RSS MB per process | CPU per worker, cores | other CPU, cores | check | error |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|---|",
    ]
    for run in sorted((r for s in summaries for r in s.runs), key=lambda r: (r.round, r.target)):
        p = run.predict
        rss = ", ".join(f"{m.role} {m.peak_rss_mb:.0f}" for m in run.memory)
        lines.append(
            f"| {run.round} | {run.target} | {fmt(p.rps) if p else ''} | {fmt(p.p50_ms, 2) if p else ''} "
            f"| {fmt(p.p99_ms, 2) if p else ''} | {p.ok if p else ''} | {p.non_200 if p else ''} "
            f"| {p.errors if p else ''} | {fmt(run.batch_images_per_s, 0) if run.batch else ''} | {rss} "
            f"| {run.worker_cpu} | {fmt(run.other_cores, 2)} | {run.accuracy} | {run.error} |"
        )
    lines += [
        "",
        *(
            f"In-process limit of `{display_path(model)}`, images/s per repetition: "
            + ", ".join(f"{v:.0f}" for v in values)
            for model, values in inprocess.items()
        ),
        "",
        "</details>",
    ]
    return "\n".join(lines) + "\n"
