"""The supervisor replaces dead workers with a growing delay, not every 0.2 s."""

from __future__ import annotations

import logging
import signal
import threading
import time

import pytest

from harness import HOST, free_port
from service.supervisor import MAX_RESTART_DELAY_S, RESTART_DELAY_S, STABLE_AFTER_S, Backoff, Supervisor
from tests.service.crashing_worker import dies_after_start

#: How long the crashing worker is kept being replaced.
WINDOW_S = 7.0


def test_backoff_doubles_while_workers_die_young_and_resets_after_a_healthy_life() -> None:
    backoff = Backoff()
    delays = [backoff.delay(lived_s=1) for _ in range(9)]
    assert delays[:4] == [0, RESTART_DELAY_S, 2 * RESTART_DELAY_S, 4 * RESTART_DELAY_S]
    assert delays[-1] == MAX_RESTART_DELAY_S and sorted(delays) == delays
    assert backoff.delay(lived_s=STABLE_AFTER_S) == 0


def test_a_crashing_worker_is_restarted_with_a_growing_delay(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor({"host": HOST, "port": free_port()}, 1, stop_timeout_s=5, target=dies_after_start)
    stopper = threading.Timer(WINDOW_S, lambda: setattr(supervisor, "stopping", True))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    stopper.start()
    try:
        with caplog.at_level(logging.INFO, logger="service"):
            started = time.monotonic()
            assert supervisor.run() == 0
    finally:
        stopper.cancel()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert time.monotonic() - started < WINDOW_S + 5
    events = [(r.created, r.getMessage()) for r in caplog.records if r.getMessage().startswith(("started", "worker"))]
    exits = [(t, float(m.rsplit(" in ", 1)[1].split()[0])) for t, m in events if "exited" in m]
    assert [delay for _, delay in exits][:3] == [0, RESTART_DELAY_S, 2 * RESTART_DELAY_S], events
    # Each replacement started no sooner than its delay after the death was seen.
    starts = [t for t, m in events if m.startswith("started")]
    for (died, delay), restarted in zip(exits, starts[1:], strict=False):
        assert restarted - died >= delay - 0.05, events
