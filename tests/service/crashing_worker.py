"""A worker process for the supervisor's tests: it starts, then crashes at once. Stdlib only, so it starts fast."""

from __future__ import annotations

from multiprocessing.synchronize import Event
from typing import Any


def dies_after_start(config: dict[str, Any], started: Event) -> None:
    """As a worker the OOM killer takes right after start-up would."""
    started.set()
    raise SystemExit(3)
