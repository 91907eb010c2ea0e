"""Structured logs: one JSON object per line, with the request fields as keys."""

from __future__ import annotations

import atexit
import logging
import os
import select
import sys
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged as a key.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message", "taskName"}


#: Set by ServiceMiddleware when the client of the current request left before its answer was sent.
#: A request runs in its own task, and uvicorn logs about it in that task after the app returns, so
#: the value set while answering is still the one that task sees.
CLIENT_LEFT: ContextVar[bool] = ContextVar("client_left", default=False)
#: What uvicorn's httptools protocol logs at error level when the app returns mid-answer. It says so
#: too when a pipelined request's client left (uvicorn marks only the newest request disconnected).
UNFINISHED_ANSWER = "ASGI callable returned without completing response."


class ClientLeftFilter(logging.Filter):
    """Drops uvicorn's unfinished-answer error for a request whose client left: that is no bug of ours.

    The middleware has already counted the request, and logged it as 499, once.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == UNFINISHED_ANSWER and CLIENT_LEFT.get())


def timestamp(seconds: float) -> str:
    """ISO 8601 in UTC with milliseconds, as every log line carries it."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def log_config(level: str, json_lines: bool, access: bool) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the service and uvicorn (uvicorn's access log is ours)."""
    formatter = (
        {"()": "service.logs.JsonFormatter"}
        if json_lines
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"client_left": {"()": "service.logs.ClientLeftFilter"}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "service": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "service.access": {"level": "INFO" if access else "WARNING"},
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper(), "filters": ["client_left"]},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


class AccessLog:
    """The access log: one line per request, in the format of the other logs, written in batches.

    Through ``logging``, each line cost a LogRecord, the formatter and a locked write and flush:
    13% of a ``/predict`` request's CPU, measured with the benchmark. Here the line is built
    directly and what accumulated is written every ``interval_s`` (or every ``max_lines``
    lines), so a line reaches stderr at most that late. The writes go straight to the file
    descriptor in whole lines of at most PIPE_BUF bytes, which the kernel never interleaves
    with another process's writes to the same pipe: several workers share one stderr. Whether
    a line is written at all follows the ``service.access`` logger's level, as configured.
    """

    def __init__(
        self, json_lines: bool, *, stream: TextIO | None = None, interval_s: float = 0.1, max_lines: int = 256
    ) -> None:
        self.json_lines = json_lines
        self.interval_s = interval_s
        self.max_lines = max_lines
        self._stream = stream
        self._lines: list[bytes] = []
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._closed = threading.Event()
        self._second = -1
        self._prefix = ""
        atexit.register(self.flush)

    def record(self, **fields: object) -> None:
        now = time.time()
        if self.json_lines:
            entry: dict[str, object] = {
                "ts": self._timestamp(now),
                "level": "info",
                "logger": "service.access",
                "msg": "request",
            }
            entry.update(fields)
            line = orjson.dumps(entry, default=str, option=orjson.OPT_APPEND_NEWLINE)
        else:
            details = " ".join(f"{key}={value}" for key, value in fields.items())
            line = f"{self._timestamp(now)} INFO service.access: request {details}\n".encode(errors="replace")
        with self._lock:
            self._lines.append(line)
            full = len(self._lines) >= self.max_lines
        if full or self._closed.is_set():
            self.flush()
        elif self._writer is None:
            self._writer = threading.Thread(target=self._write_periodically, name="access-log", daemon=True)
            self._writer.start()

    def flush(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
            if not lines:
                return
            stream = self._stream or sys.stderr
            stream.flush()  # what other loggers left in its buffer goes first
            for chunk in _chunks(lines, select.PIPE_BUF):
                _write(stream, chunk)

    def close(self) -> None:
        """Stop the periodic writer and write what is left; later lines are written at once."""
        self._closed.set()
        if self._writer is not None:
            self._writer.join(timeout=5)
        self.flush()

    def _write_periodically(self) -> None:
        while not self._closed.wait(self.interval_s):
            try:
                self.flush()
            except (OSError, ValueError):  # stderr closed at exit: nothing left to write to
                return

    def _timestamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:  # formatting a datetime is the costly part: once a second
            self._second, self._prefix = second, timestamp(second)[:19]
        return f"{self._prefix}.{int((now - second) * 1000):03d}+00:00"


def _chunks(lines: list[bytes], limit: int) -> Iterator[bytes]:
    """Whole lines joined into pieces of at most ``limit`` bytes (a longer line is a piece alone)."""
    start, size = 0, 0
    for end, line in enumerate(lines):
        if size and size + len(line) > limit:
            yield b"".join(lines[start:end])
            start, size = end, 0
        size += len(line)
    yield b"".join(lines[start:])


def _write(stream: TextIO, data: bytes) -> None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not backed by a file (a test's capture, say)
        stream.write(data.decode(errors="replace"))
        stream.flush()
        return
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
