"""Structured application logs of the serving processes: one JSON object per line, one file.

Every serving process (the ingress replica, each arm replica, a standalone uvicorn app) appends to
``<runtime>/logs/serving.jsonl`` (``FLYWHEEL_LOG_DIR`` to move it, ``FLYWHEEL_LOG_LEVEL`` to filter):
one line per request on ``POST /v1/diarize`` and every other logged request (``serving.access``),
plus warnings and errors of the loggers ``serving``, ``flywheel``, ``registry`` (champion
resolution, model loading, the prediction database) with their tracebacks. Lines carry the request
id of the request they belong to, so a row of the prediction log, an ``X-Request-Id`` header and a
log line can be joined. The file is outside Ray's session directory: it stays after ``make down``.

Each line is one ``write(2)`` on a file opened with ``O_APPEND``, so lines of several processes do
not interleave. Example::

    {"ts": "2026-11-30T10:01:02.345+00:00", "level": "WARNING", "logger": "serving.access",
     "msg": "POST /v1/diarize 415", "pid": 4242, "role": "ingress", "request_id": "7f0c...",
     "http_status": 415, "latency_ms": 3.1, "error": "not a decodable audio file ..."}
"""

from __future__ import annotations

import json
import logging
import os
import threading
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOG_FILE = "serving.jsonl"
LOGGERS = ("serving", "flywheel", "registry")
# Extra attributes a record may carry (``log.info(..., extra={...})``) that go into the JSON line.
FIELDS = (
    "request_id",
    "method",
    "path",
    "http_status",
    "latency_ms",
    "arm",
    "model_version",
    "client_id",
    "error",
    "warnings",
)
REQUEST_ID: ContextVar[str | None] = ContextVar("flywheel_request_id", default=None)

_lock = threading.Lock()
_installed: dict[str, Any] = {}


class JsonLineFormatter(logging.Formatter):
    """A log record as one JSON object (no newline inside: tracebacks are a string field)."""

    def __init__(self, role: str):
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line of ``record``."""
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        out: dict[str, Any] = {
            "ts": ts,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
            "role": self.role,
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            out["request_id"] = request_id
        for name in FIELDS[1:]:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(out, default=str, ensure_ascii=False)


class AppendHandler(logging.Handler):
    """Appends each formatted record to a file as a single ``write`` (``O_APPEND``: safe across
    processes). Reopens the file when it was removed or rotated away."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None

    def _open(self) -> int:
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if self._fd is None or current != self._inode:
            if self._fd is not None:
                os.close(self._fd)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            st = os.fstat(self._fd)
            self._inode = (st.st_dev, st.st_ino)
        return self._fd

    def emit(self, record: logging.LogRecord) -> None:
        """Write one line."""
        try:
            line = (self.format(record) + "\n").encode("utf-8")
            with self.lock or _lock:
                os.write(self._open(), line)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        """Close the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        super().close()


def log_path(log_dir: str | Path) -> Path:
    """The JSON log file in ``log_dir``."""
    return Path(log_dir) / LOG_FILE


def configure(log_dir: str | Path, role: str, level: str = "INFO") -> Path:
    """Send the serving loggers of this process to ``<log_dir>/serving.jsonl`` as JSON lines.

    Idempotent: a second call in the same process (another replica class, a test) only updates the
    role and level. Returns the file's path.
    """
    path = log_path(log_dir)
    with _lock:
        handler = _installed.get("handler")
        if handler is None or handler.path != path:
            if handler is not None:
                for name in LOGGERS:
                    logging.getLogger(name).removeHandler(handler)
                handler.close()
            handler = AppendHandler(path)
            for name in LOGGERS:
                logging.getLogger(name).addHandler(handler)
            _installed["handler"] = handler
        handler.setFormatter(JsonLineFormatter(role))
        numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        for name in LOGGERS:
            logging.getLogger(name).setLevel(numeric)
    return path
