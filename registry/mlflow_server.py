"""Start and stop the local MLflow tracking server (``flywheel mlflow``, ``make mlflow``).

One process on loopback: SQLite backend and artifact store under ``runtime/mlflow/`` by default,
``--workers 1`` and ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (about 450 MB instead of about 2 GB).
In the background mode the server runs in its own process group, its pid is written to
``runtime/mlflow/server.pid`` and :func:`start_server` returns once ``/health`` answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from flywheel.config import get_settings
from flywheel.processes import pid_from_file, poll_until, stop_process_group
from registry.mlflow_utils import health_ok


class ServerError(RuntimeError):
    """The MLflow server did not start (see its log file)."""


@dataclass
class ServerConfig:
    """Where the server listens and keeps its data."""

    host: str = "127.0.0.1"
    port: int = 5000
    root: Path = Path("runtime/mlflow")
    backend_store_uri: str | None = None  # default: sqlite:///<root>/mlflow.db
    artifacts_destination: str | None = None  # default: <root>/artifacts
    workers: int = 1

    @classmethod
    def from_settings(cls, **overrides: object) -> ServerConfig:
        """Defaults from :class:`flywheel.config.Settings`; ``None`` overrides are ignored."""
        s = get_settings()
        cfg = cls(host=s.mlflow_host, port=s.mlflow_port, root=s.mlflow_dir)
        for key, value in overrides.items():
            if value is not None:
                setattr(cfg, key, value)
        return cfg

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.root / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def command(self) -> list[str]:
        """The ``mlflow server`` command line."""
        root = self.root.resolve()
        backend = self.backend_store_uri or f"sqlite:///{root / 'mlflow.db'}"
        artifacts = self.artifacts_destination or str(root / "artifacts")
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            artifacts,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]


def server_env() -> dict[str, str]:
    """Environment of the server process: no job runner (memory), no telemetry."""
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "true")
    return env


def _is_mlflow(pid: int) -> bool:
    """The process looks like an MLflow server (guards against a recycled pid in a stale pid file)."""
    try:
        return b"mlflow" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return sys.platform != "linux"  # no /proc: trust the pid file


def running_pid(cfg: ServerConfig) -> int | None:
    """Pid from the pid file when that process is still alive and is an MLflow server."""
    pid = pid_from_file(cfg.pid_file)
    return pid if pid is not None and _is_mlflow(pid) else None


def wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll ``/health`` every 0.5 s until it answers, ``timeout_s`` passes or ``proc`` exits."""
    return poll_until(lambda: health_ok(url, timeout_s=2.0), timeout_s, proc)


def launch(cfg: ServerConfig) -> subprocess.Popen:
    """Start the server in its own process group (output to the log file) and write the pid file."""
    cfg.root.mkdir(parents=True, exist_ok=True)
    with open(cfg.log_file, "ab") as log_fh:
        proc = subprocess.Popen(
            cfg.command(),
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_env(),
            start_new_session=True,
        )
    cfg.pid_file.write_text(str(proc.pid))
    return proc


def start_server(cfg: ServerConfig, timeout_s: float = 240.0) -> int:
    """Start the server in the background (idempotent) and wait for ``/health``; returns its pid.

    Raises:
        ServerError: the port answers but is not our server, or the server did not come up.
    """
    pid = running_pid(cfg)
    if pid is not None and wait_healthy(cfg.url, 5.0):
        return pid
    if health_ok(cfg.url):
        raise ServerError(
            f"something already answers at {cfg.url} (not started by `flywheel mlflow` here); "
            "use it as the tracking URI or choose another --port"
        )
    proc = launch(cfg)
    if not wait_healthy(cfg.url, timeout_s, proc):
        stop_server(cfg)
        tail = cfg.log_file.read_text(errors="replace")[-2000:] if cfg.log_file.exists() else ""
        raise ServerError(f"MLflow server did not answer {cfg.url}/health in {timeout_s:.0f} s:\n{tail}")
    return proc.pid


def stop_server(cfg: ServerConfig, timeout_s: float = 15.0) -> bool:
    """Stop the server of the pid file (its whole process group: uvicorn workers too)."""
    pid = running_pid(cfg)
    if pid is None:
        cfg.pid_file.unlink(missing_ok=True)
        return False
    stop_process_group(pid, timeout_s)
    cfg.pid_file.unlink(missing_ok=True)
    return True
