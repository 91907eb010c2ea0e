"""Medians over rounds for one server, and the targets each configuration of the service is held to."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.runner import Run
from benchmarks.targets import Target

# Targets from the performance issue.
TARGET_RPS_VS_OBVIOUS = 1.5
TARGET_P99_MS = 20.0
TARGET_BATCH_VS_INPROCESS = 0.5
TARGET_RSS_MB = 150.0


def median(values: Sequence[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    return "n/a" if a != a or b != b or b == 0 else f"{a / b:.2f}×"


@dataclass
class Summary:
    """One target over all rounds. Speed comes from its quiet runs when it has any (see ``used``)."""

    target: Target
    runs: list[Run]
    quiet_only: bool = True

    @property
    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.predict is not None]

    @property
    def quiet_runs(self) -> list[Run]:
        return [r for r in self.ok_runs if r.quiet]

    @property
    def used(self) -> list[Run]:
        """The runs that speed and latency are read from: the quiet ones if there are any, else all.

        On a shared machine another process taking a core for a run halves what the server gets; a
        median over rounds does not protect against that when most rounds were disturbed.
        """
        return (self.quiet_runs if self.quiet_only else []) or self.ok_runs

    @property
    def rounds_used(self) -> str:
        if not self.ok_runs:
            return "none"
        if self.quiet_only and self.quiet_runs:
            return f"{len(self.quiet_runs)} quiet of {len(self.runs)}"
        return f"all {len(self.ok_runs)}" + (", none quiet" if self.quiet_only else "")

    @property
    def rps(self) -> float:
        return median([r.predict.rps for r in self.used if r.predict])

    @property
    def p50(self) -> float:
        return median([r.predict.p50_ms for r in self.used if r.predict])

    @property
    def p99(self) -> float:
        return median([r.predict.p99_ms for r in self.used if r.predict])

    @property
    def worst_p99(self) -> float:
        return max((r.predict.p99_ms for r in self.used if r.predict), default=float("nan"))

    @property
    def errors(self) -> int:
        failed_runs = sum(1 for r in self.runs if r.error)
        return (
            failed_runs
            + sum(r.predict.failures for r in self.ok_runs if r.predict)
            + sum(r.batch.failures for r in self.ok_runs if r.batch)
        )

    @property
    def requests(self) -> int:
        return sum(r.predict.ok for r in self.ok_runs if r.predict)

    @property
    def peak_rss(self) -> float:
        return max((r.peak_rss_mb for r in self.ok_runs if r.memory), default=float("nan"))

    @property
    def rss_sum(self) -> float:
        return max((r.rss_sum_mb for r in self.ok_runs if r.memory), default=float("nan"))

    @property
    def processes(self) -> str:
        """Serving processes / all processes: "2 / 4" is two workers, uvicorn's supervisor and a helper."""
        if not any(r.memory for r in self.ok_runs):
            return "n/a"
        workers = max(r.workers for r in self.ok_runs if r.memory)
        return f"{workers} / {max(len(r.memory) for r in self.ok_runs)}"

    @property
    def startup(self) -> float:
        return median([r.startup_s for r in self.runs])

    @property
    def batch_median(self) -> float:
        return median([r.batch_images_per_s for r in self.used if r.batch])

    @property
    def batch_best(self) -> float:
        return max((r.batch_images_per_s for r in self.used if r.batch), default=float("nan"))


def targets_table(service: Summary, obvious: Summary | None, inprocess: float) -> list[tuple[str, str, bool | None]]:
    """(target, measured, passed) for one configuration of the service; None: could not be measured."""

    def check(value: float, ok: bool) -> bool | None:
        return None if value != value else ok

    rows = []
    if obvious is not None:
        x = service.rps / obvious.rps if obvious.rps == obvious.rps and obvious.rps else float("nan")
        rows.append(
            (
                f"/predict req/s ≥ {TARGET_RPS_VS_OBVIOUS}× obvious",
                f"{fmt(x, 2)}×",
                check(x, x >= TARGET_RPS_VS_OBVIOUS),
            )
        )
    rows.append(
        (
            f"/predict p99 ≤ {TARGET_P99_MS:g} ms (median of the rounds used)",
            f"{fmt(service.p99)} ms",
            check(service.p99, service.p99 <= TARGET_P99_MS),
        )
    )
    rows.append(
        (
            "zero errors (non-200 + connection errors, all runs)",
            str(service.errors),
            None if not service.ok_runs else service.errors == 0,
        )
    )
    if service.batch_median == service.batch_median:
        x = service.batch_median / inprocess if inprocess == inprocess and inprocess else float("nan")
        rows.append(
            (
                f"/predict/batch ≥ {TARGET_BATCH_VS_INPROCESS}× in-process limit",
                f"{fmt(x, 2)}×",
                check(x, x >= TARGET_BATCH_VS_INPROCESS),
            )
        )
    rows.append(
        (
            f"peak RSS ≤ {TARGET_RSS_MB:g} MB per worker process (largest, all rounds)",
            f"{fmt(service.peak_rss)} MB",
            check(service.peak_rss, service.peak_rss <= TARGET_RSS_MB),
        )
    )
    return rows


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "not measured"}[passed]
