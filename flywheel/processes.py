"""Small process helpers shared by the server launchers (MLflow, Label Studio, Ray Serve) and the log
spool, and :class:`LocalServer`: a local server process with a pid file, a log file and a health check."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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


class ServerError(RuntimeError):
    """A local server did not start (see its log file), or is not installed."""


def cmdline_has(pid: int, marker: bytes) -> bool:
    """Process ``pid``'s command line contains ``marker`` (guards against a recycled pid in a stale
    pid file); ``True`` without ``/proc`` (not Linux: the pid file is trusted)."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return sys.platform != "linux"


@dataclass(frozen=True)
class LocalServer:
    """A server process on this machine known by its pid file: launched detached in its own process
    group with its output in a log file, ready when ``healthy()`` (one short probe of ``url``) is
    true, stopped with its whole process group.

    The server modules (``registry.mlflow_server``, ``labeling.server``) build one from their config:
    the command line, environment and health check are theirs, the process mechanics are here.
    """

    name: str  # in messages: "MLflow server", "Label Studio"
    url: str
    command: Sequence[str]
    pid_file: Path
    log_file: Path
    healthy: Callable[[], bool]
    marker: bytes  # in the command line of a live server (stale pid file detection)
    env: Mapping[str, str] | None = None  # None: this process's environment
    cwd: Path | None = None
    prepare: Callable[[], None] | None = None  # before each launch: folders, install check

    def running_pid(self) -> int | None:
        """Pid from the pid file when that process is alive and is this server."""
        pid = pid_from_file(self.pid_file)
        return pid if pid is not None and cmdline_has(pid, self.marker) else None

    def wait_healthy(self, timeout_s: float, proc: subprocess.Popen | None = None) -> bool:
        """Poll ``healthy`` every 0.5 s until it is true, ``timeout_s`` passes or ``proc`` exits."""
        return poll_until(self.healthy, timeout_s, proc)

    def launch(self) -> subprocess.Popen:
        """Start the server in its own process group (output appended to the log file) and write the
        pid file; does not wait."""
        if self.prepare is not None:
            self.prepare()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log_fh:
            proc = subprocess.Popen(
                list(self.command),
                cwd=self.cwd,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=None if self.env is None else dict(self.env),
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc

    def start(self, timeout_s: float, *, reuse_timeout_s: float | None = None, busy_hint: str = "") -> int:
        """Start the server in the background unless the pid file's one answers within
        ``reuse_timeout_s`` (default ``timeout_s``), and wait for it to be healthy; returns its pid.

        Raises:
            ServerError: the URL answers but not from our server (``busy_hint`` says what to do), the
                server did not become healthy in ``timeout_s`` or exited (the log's tail), or
                ``prepare`` refused.
        """
        pid = self.running_pid()
        if pid is not None and self.wait_healthy(timeout_s if reuse_timeout_s is None else reuse_timeout_s):
            return pid
        if self.healthy():
            raise ServerError(f"something already answers at {self.url} {busy_hint}".rstrip())
        proc = self.launch()
        if not self.wait_healthy(timeout_s, proc):
            self.stop()
            tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise ServerError(
                f"{self.name} did not answer its health check at {self.url} in {timeout_s:.0f} s:\n{tail}"
            )
        return proc.pid

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Stop the server of the pid file (its whole process group) and remove the pid file;
        ``False`` when none was running."""
        pid = self.running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        stop_process_group(pid, timeout_s)
        self.pid_file.unlink(missing_ok=True)
        return True
