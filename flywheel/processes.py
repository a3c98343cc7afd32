"""Small process helpers shared by the server launchers (MLflow, Ray Serve) and the log spool."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def pid_from_file(pid_file: Path) -> int | None:
    """The pid written in ``pid_file`` when that process is alive (``None``: no file, garbage, dead)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def poll_until(
    ready: Callable[[], bool], timeout_s: float, proc: subprocess.Popen | None = None, every_s: float = 0.5
) -> bool:
    """Call ``ready`` every ``every_s`` until it is true (``True``), ``timeout_s`` passes or ``proc``
    exits (``False``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(every_s)
    return False


def stop_process_group(pid: int, timeout_s: float = 15.0) -> None:
    """SIGTERM the process group of ``pid`` (a server started with ``start_new_session``), wait up to
    ``timeout_s`` for it to go (reaping it when it is our child), then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid_alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
