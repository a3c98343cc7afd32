"""Start and stop the local MLflow tracking server (``flywheel mlflow``, ``make mlflow``).

One process on loopback: SQLite backend and artifact store under ``runtime/mlflow/`` by default,
``--workers 1`` and ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (about 450 MB instead of about 2 GB).
In the background mode the server runs in its own process group, its pid is written to
``runtime/mlflow/server.pid`` and :func:`start_server` returns once ``/health`` answers. The process
mechanics (pid file, process group, log, health polling) are :class:`flywheel.processes.LocalServer`'s;
:class:`ServerError` is its error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from flywheel.config import get_settings
from flywheel.processes import LocalServer, poll_until
from flywheel.processes import ServerError as ServerError  # raised by start_server (re-exported)
from registry.mlflow_utils import health_ok


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


def local_server(cfg: ServerConfig) -> LocalServer:
    """The server of ``cfg`` as a :class:`flywheel.processes.LocalServer` (pid file, log, ``/health``)."""
    return LocalServer(
        name="MLflow server",
        url=cfg.url,
        command=cfg.command(),
        pid_file=cfg.pid_file,
        log_file=cfg.log_file,
        healthy=lambda: health_ok(cfg.url, timeout_s=2.0),
        marker=b"mlflow",
        env=server_env(),
    )


def running_pid(cfg: ServerConfig) -> int | None:
    """Pid from the pid file when that process is still alive and is an MLflow server."""
    return local_server(cfg).running_pid()


def wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll ``/health`` every 0.5 s until it answers, ``timeout_s`` passes or ``proc`` exits."""
    return poll_until(lambda: health_ok(url, timeout_s=2.0), timeout_s, proc)


def launch(cfg: ServerConfig) -> subprocess.Popen:
    """Start the server in its own process group (output to the log file) and write the pid file."""
    return local_server(cfg).launch()


def start_server(cfg: ServerConfig, timeout_s: float = 240.0) -> int:
    """Start the server in the background (idempotent) and wait for ``/health``; returns its pid.

    Raises:
        ServerError: the port answers but is not our server, or the server did not come up.
    """
    return local_server(cfg).start(
        timeout_s,
        reuse_timeout_s=5.0,
        busy_hint="(not started by `flywheel mlflow` here); "
        "use it as the tracking URI or choose another --port",
    )


def stop_server(cfg: ServerConfig, timeout_s: float = 15.0) -> bool:
    """Stop the server of the pid file (its whole process group: uvicorn workers too)."""
    return local_server(cfg).stop(timeout_s)
