"""Start and stop a local Label Studio server (``flywheel label serve``, ``make label-studio``).

One process on loopback from ``.venv-label-studio`` (``scripts/setup_label_studio.sh``), SQLite and
uploads under ``<dir>/data``, audio clips served from ``<dir>/media`` (local-files storage), pid file
``<dir>/server.pid`` and log ``<dir>/server.log``. The admin user and its API token are created on the
first start from :func:`labeling.settings.credentials` (legacy token enabled, sign-up disabled).
First start about 30 s (migrations), later starts about 8 s. The process mechanics (pid file, process
group, log, health polling) are :class:`flywheel.processes.LocalServer`'s; :class:`ServerError` is its
error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx

from flywheel.processes import LocalServer
from flywheel.processes import ServerError as ServerError  # raised by start_server (re-exported)
from labeling.settings import Credentials, LabelingSettings, credentials


@dataclass
class ServerConfig:
    """Where the server listens and keeps its data."""

    host: str
    port: int
    root: Path  # data/, media/, server.pid, server.log
    venv: Path
    media_dir: Path
    creds: Credentials

    @classmethod
    def from_settings(cls, settings: LabelingSettings | None = None, **overrides: object) -> ServerConfig:
        """Defaults from :class:`LabelingSettings`; ``None`` overrides are ignored."""
        s = settings or LabelingSettings()
        cfg = cls(
            host=s.label_studio_host,
            port=s.label_studio_port,
            root=s.label_studio_dir,
            venv=s.label_studio_venv,
            media_dir=s.media_dir,
            creds=credentials(s),
        )
        for key, value in overrides.items():
            if value is not None:
                setattr(cfg, key, value)
        return cfg

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def pid_file(self) -> Path:
        return self.root / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def executable(self) -> Path:
        return self.venv / "bin" / "label-studio"

    def command(self) -> list[str]:
        """The ``label-studio start`` command line (loopback, no browser)."""
        return [
            str(self.executable),
            "start",
            "--internal-host",
            self.host,
            "-p",
            str(self.port),
            "--no-browser",
        ]

    def env(self) -> dict[str, str]:
        """Environment of the server process: its own venv, SQLite, preset admin and token, local files."""
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        env.update({
            "PATH": f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir.resolve()),
            "DJANGO_DB": "sqlite",
            "LABEL_STUDIO_USERNAME": self.creds.username,
            "LABEL_STUDIO_PASSWORD": self.creds.password,
            "LABEL_STUDIO_USER_TOKEN": self.creds.token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.media_dir.resolve()),
            "LATEST_VERSION_CHECK": "false",  # no call to pypi.org at start
            "COLLECT_ANALYTICS": "false",
        })  # fmt: skip
        return env


def health_ok(url: str, timeout_s: float = 2.0) -> bool:
    """Whether ``<url>/health`` answers ``{"status": "UP"}``."""
    try:
        response = httpx.get(f"{url}/health", timeout=timeout_s, trust_env=False)
        return response.status_code == 200 and response.json().get("status") == "UP"
    except (httpx.HTTPError, ValueError):
        return False


def _prepare(cfg: ServerConfig) -> None:
    """Before a launch: Label Studio is installed, its data and media folders exist."""
    if not cfg.executable.exists():
        raise ServerError(f"{cfg.executable} not found: run `bash scripts/setup_label_studio.sh`")
    for folder in (cfg.data_dir, cfg.media_dir):
        folder.mkdir(parents=True, exist_ok=True)


def local_server(cfg: ServerConfig) -> LocalServer:
    """The server of ``cfg`` as a :class:`flywheel.processes.LocalServer` (pid file, log, ``/health``)."""
    return LocalServer(
        name="Label Studio",
        url=cfg.url,
        command=cfg.command(),
        pid_file=cfg.pid_file,
        log_file=cfg.log_file,
        healthy=lambda: health_ok(cfg.url, timeout_s=2.0),
        marker=b"label-studio",
        env=cfg.env(),
        cwd=cfg.root,
        prepare=lambda: _prepare(cfg),
    )


def running_pid(cfg: ServerConfig) -> int | None:
    """Pid from the pid file when that process is alive and is Label Studio."""
    return local_server(cfg).running_pid()


def start_server(cfg: ServerConfig, timeout_s: float = 180.0) -> int:
    """Start the server in the background (idempotent) and wait for ``/health``; returns its pid.

    Raises:
        ServerError: not installed, the port answers but is not our server, or it did not come up.
    """
    return local_server(cfg).start(
        timeout_s,
        busy_hint="(not started by `flywheel label serve` here); "
        "set FLYWHEEL_LABEL_STUDIO_URL to use it, or choose another --port",
    )


def stop_server(cfg: ServerConfig, timeout_s: float = 15.0) -> bool:
    """Stop the server of the pid file (its whole process group); ``False`` when none was running."""
    return local_server(cfg).stop(timeout_s)
