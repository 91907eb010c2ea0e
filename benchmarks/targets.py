"""What the benchmark runs: the servers it compares, parsed from the command line, and other commits' code."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import default_model_path, service_default_model
from harness import ROOT, service_argv

OBVIOUS, FLOOR, BARE = "obvious", "floor", "bare"
REFERENCES = (OBVIOUS, FLOOR, BARE)
#: The floors run as many uvicorn workers as the service does by default, so that a ratio to a
#: floor compares the same stack on the same cores; the obvious implementation keeps one, as written.
FLOOR_WORKERS = 2


@dataclass(frozen=True)
class Target:
    """One server to benchmark: the obvious implementation, a floor, or a configuration of the service."""

    name: str
    kind: str  # "service", OBVIOUS, FLOOR or BARE
    env: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)  # what sets this variant apart, for its label
    revision: str = ""  # a git commit whose service code this variant runs; empty: the working tree
    workers: int = FLOOR_WORKERS  # for the floors only

    def argv(self, port: int) -> list[str]:
        if self.kind == "service":
            # Exactly how `python -m service` starts by default; only the port differs.
            return service_argv(port)
        # Plain uvicorn defaults otherwise: uvloop and httptools when installed, access log on.
        argv = [sys.executable, "-m", "uvicorn", f"benchmarks.{self.kind}:app", "--port", str(port)]
        return argv + (["--workers", str(self.workers)] if self.kind in (FLOOR, BARE) and self.workers > 1 else [])

    @property
    def model(self) -> Path:
        """The model this server loads (the service resolves a relative path from the repository root)."""
        default = service_default_model() if self.kind == "service" else default_model_path()
        path = Path(self.env.get("DIGITS_MODEL_PATH") or self.env.get("BENCH_MODEL_PATH") or default)
        return path if path.is_absolute() else ROOT / path

    @property
    def label(self) -> str:
        if self.kind != "service":
            plural = "s" if self.workers > 1 else ""
            return self.name + (f" ({self.workers} worker{plural})" if self.kind in (FLOOR, BARE) else "")
        settings = " ".join(f"{k}={v}" for k, v in self.settings.items())
        at = f" at `{self.revision}`" if self.revision else ""
        return f"service `{self.name}`{at}" + (f" ({settings})" if settings else "")


def parse_env(items: Sequence[str]) -> dict[str, str]:
    """``KEY=V`` items; an item without ``=`` continues the previous value (``DIGITS_CORS_ORIGINS=a,b``)."""
    env: dict[str, str] = {}
    last = ""
    for item in items:
        if "=" in item:
            key, value = item.split("=", 1)
            last = key.strip()
            if not last:
                raise argparse.ArgumentTypeError(f"empty variable name in {item!r}")
            env[last] = value
        elif last:
            env[last] += "," + item
        elif item.strip():
            raise argparse.ArgumentTypeError(f"expected ENV=VALUE, got {item!r}")
    return env


def parse_variant(spec: str) -> Target:
    """``NAME[@COMMIT]:ENV=V,ENV=V`` (or just ``NAME``) as a service target."""
    name, _, settings = spec.partition(":")
    name, _, revision = (part.strip() for part in name.partition("@"))
    if not name or name in REFERENCES:
        raise argparse.ArgumentTypeError(f"variant needs a name other than {'/'.join(REFERENCES)}: {spec!r}")
    return Target(name, "service", parse_env(settings.split(",")) if settings else {}, revision=revision)


def check_out(revision: str, stack: contextlib.ExitStack) -> Path:
    """A temporary git worktree of ``revision``, removed when ``stack`` closes."""
    path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="digits-src-"))) / "tree"
    result = subprocess.run(
        ["git", "worktree", "add", "--detach", str(path), revision], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"cannot check out {revision!r}: {result.stderr.strip()}")
    stack.callback(subprocess.run, ["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True)
    return path


def targets_for(args: argparse.Namespace) -> list[Target]:
    """The servers of one run, references first, from ``--only``, ``--variant`` and ``--service-env``."""
    service_model = Target("base", "service", args.service_env).model
    obvious_model = args.obvious_model or service_model
    targets: list[Target] = []
    if OBVIOUS in args.only:
        targets.append(Target(OBVIOUS, OBVIOUS, {"BENCH_MODEL_PATH": str(obvious_model)}, workers=1))
    if FLOOR in args.only:
        targets.append(Target(FLOOR, FLOOR, workers=args.floor_workers))
    if BARE in args.only:
        targets.append(Target(BARE, BARE, workers=args.floor_workers))
    if "service" in args.only:
        variants = args.variant or [Target("default", "service")]
        targets += [Target(v.name, "service", {**args.service_env, **v.env}, v.env, v.revision) for v in variants]
    return targets
